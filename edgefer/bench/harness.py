"""``run_benchmark``: every artifact on the same images, scored against the labels and the FP32
reference, timed model-only and end-to-end, sized on disk and in memory — one report.

The harness never branches on a backend's name: it opens each artifact with
:func:`edgefer.backends.open_model` and reads what it needs from ``Backend.metadata`` /
``Backend.info()``. A model that fails to load or run becomes a row whose status says why; the
run goes on. Torch-free unless a ``.pt`` checkpoint is among the models.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.backends import open_model
from edgefer.bench.evalset import EvalSet, infer_all, load_evalset
from edgefer.bench.latency import time_calls
from edgefer.bench.metrics import accuracy_summary, compare_to_reference, latency_stats
from edgefer.bench.options import BenchOptions
from edgefer.bench.system import machine_info, peak_rss_mb, reset_peak_rss, rss_mb
from edgefer.bench.trust import snapshot, trust_warnings
from edgefer.errors import EdgeferError
from edgefer.labels import class_map
from edgefer.preprocess import preprocess_batch
from edgefer.reference import Reference
from edgefer.utils.compat import utc_now_iso
from edgefer.utils.options import merged

#: bump when a field of the report JSON changes meaning.
REPORT_SCHEMA = 1


@dataclass
class ModelSpec:
    """One artifact to benchmark, optionally with its own device/backend/threads/label."""

    path: Path
    device: str | None = None
    backend: str | None = None
    threads: int | None = None
    label: str | None = None

    @classmethod
    def of(cls, value: str | os.PathLike | ModelSpec | dict[str, Any]) -> ModelSpec:
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, dict):
            known = {k: value[k] for k in ("device", "backend", "threads", "label") if k in value}
            if "path" not in value:
                raise EdgeferError(f"model entry {value} has no 'path'")
            return cls(Path(value["path"]), **known)
        return cls(Path(value))


@dataclass
class BenchReport:
    """The outcome of a benchmark run (``rows`` are plain dicts, exactly what the JSON holds)."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    reference: dict[str, Any] | None
    rows: list[dict[str, Any]]
    gate: dict[str, Any] | None = None
    gate_failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the machine's load (and on a Jetson its temperatures) before and after the run
    conditions: dict[str, Any] = field(default_factory=dict)
    #: why the latency numbers may not be trusted (edgefer.bench.trust), one line each
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=utc_now_iso)
    schema: int = REPORT_SCHEMA
    files: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """False when a gate was given and a row broke it."""
        return not self.gate_failures

    @property
    def ok_rows(self) -> list[dict[str, Any]]:
        """The rows whose model loaded, ran and was scored (status ``ok``)."""
        return [r for r in self.rows if r.get("status") == "ok"]

    def to_dict(self) -> dict[str, Any]:
        from edgefer import __version__

        return {
            "schema": self.schema,
            "kind": "edgefer-benchmark",
            "edgefer_version": __version__,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "reference": self.reference,
            "gate": self.gate,
            "gate_passed": self.passed if self.gate is not None else None,
            "gate_failures": self.gate_failures,
            "notes": self.notes,
            "conditions": self.conditions,
            "warnings": self.warnings,
            "rows": self.rows,
        }

    def save(self, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, str]:
        """Write ``report.json``, ``report.md`` and (matplotlib permitting) PNG plots to ``out_dir``."""
        from edgefer.bench.report import save_report

        self.files = save_report(self, out_dir, plots=plots)
        return self.files

    def table(self) -> str:
        from edgefer.bench.report import markdown_table

        return markdown_table(self)


def _fp(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _latency_for_batch(
    backend: Any,
    evalset: EvalSet,
    x_all: np.ndarray,
    batch: int,
    warmup: int,
    iters: int | None,
    seconds: float | None,
    e2e: bool,
    mode: str = "latency",
) -> dict[str, Any]:
    if backend.max_batch is not None and batch > backend.max_batch:
        return {"status": f"skipped: the artifact's max batch is {backend.max_batch}"}
    n = len(evalset)
    idx = np.arange(batch) % n
    x = np.ascontiguousarray(x_all[idx])  # preallocated, real images
    if mode == "throughput":  # requests in flight: FPS measured over the run, p50/p99 per request
        run = backend.throughput(x, calls=iters, seconds=seconds, warmup=warmup)
        stats = latency_stats(run.latencies, batch)
        stats.update(fps=run.fps(batch), requests=run.requests, calls=run.calls, wall_s=round(run.seconds, 6))
        return {"status": "ok", "mode": mode, "model": stats}

    def device_ms() -> float | None:
        return getattr(backend, "last_device_ms", None)

    wall, dev = time_calls(lambda _i: backend.infer(x), warmup, iters, seconds, device_ms)
    result: dict[str, Any] = {"status": "ok", "model": latency_stats(wall, batch)}
    if dev is not None:
        result["device"] = latency_stats(dev, batch)
    if e2e:
        pp = backend.metadata.preprocessing

        def one(i: int) -> None:
            images = [evalset.decode((i * batch + k) % n) for k in range(batch)]
            backend.infer(preprocess_batch(images, pp))

        wall_e2e, _ = time_calls(one, max(1, warmup // 2), iters, seconds)
        result["e2e"] = latency_stats(wall_e2e, batch)
    return result


def _row_label(spec: ModelSpec, taken: set[str], device: str) -> str:
    label = spec.label or spec.path.name
    if label in taken:
        label = f"{label}@{device}"
    k = 2
    base = label
    while label in taken:
        label, k = f"{base}#{k}", k + 1
    taken.add(label)
    return label


def _bench_one(
    spec: ModelSpec,
    label: str,
    evalset: EvalSet,
    opts: BenchOptions,
    iters: int | None,
    seconds: float | None,
) -> tuple[dict[str, Any], np.ndarray | None, Any]:
    """Benchmark one artifact as ``opts`` say, ``iters`` calls or ``seconds`` per measurement (resolved
    by :meth:`BenchOptions.timing`); never raises for a model problem (the row says what went wrong)."""
    from edgefer.bundle import artifact_size

    batches, warmup, e2e, mode = opts.batches, opts.warmup, opts.e2e, opts.mode
    dev = spec.device or opts.device
    thr = spec.threads if spec.threads is not None else opts.threads
    row: dict[str, Any] = {
        "label": label,
        "path": str(spec.path),
        "model": None,
        "backend": spec.backend,
        "precision": None,
        "device": dev,
        "threads": thr,
        "status": "ok",
        "size_mb": None,
        "input_size": None,
        "load_s": None,
        "first_infer_ms": None,  # the first call after load: what a camera that restarts waits for
        "cache": None,  # OpenVINO's model cache: "hit" (compiled model read back), "miss", None (no cache)
        "memory": {},
        "info": {},
        "accuracy": None,
        "latency": {},
        "kept_fp": None,  # layers a mixed-precision INT8 model keeps in higher precision (its metadata)
    }
    try:
        row["size_mb"] = _fp(artifact_size(spec.path) / 1e6, 3) if spec.path.exists() else None
        reset_ok = reset_peak_rss()
        rss0 = rss_mb()
        t0 = time.perf_counter()
        backend = open_model(
            spec.path,
            device=dev,
            threads=thr,
            backend=spec.backend,
            cache_dir=opts.cache_dir,
            mode=mode,
            streams=opts.streams,
        )
        row["load_s"] = _fp(time.perf_counter() - t0, 3)
        rss_loaded = rss_mb()
    except Exception as exc:  # a broken artifact is a row, not a crash
        row["status"] = f"error: {_short(exc)}"
        return row, None, None
    with backend:
        meta = backend.metadata
        info = backend.info()
        row.update(
            model=meta.model_name,
            backend=info.get("backend", type(backend).__name__),
            precision=backend.precision,
            input_size=meta.preprocessing.input_size,
            info=info,
            threads=info.get("threads", thr),
            kept_fp=(meta.quantization or {}).get("kept_fp"),
        )
        if info.get("cache_dir"):
            row["cache"] = "hit" if info.get("loaded_from_cache") else "miss"
        try:
            x_all = evalset.preprocessed(meta.preprocessing)
            t0 = time.perf_counter()
            backend.infer(x_all[:1])
            row["first_infer_ms"] = _fp((time.perf_counter() - t0) * 1000, 3)
            logits = infer_all(backend, evalset, max(batches))
            if logits.shape[1] != meta.num_classes:
                raise EdgeferError(f"model outputs {logits.shape[1]} classes but its metadata names {meta.num_classes}")
            # classes matched by name: logits in the dataset's order, probabilities as log-probabilities
            logits = meta.dataset_logits(logits, evalset.class_names)
        except Exception as exc:
            row["status"] = f"error: {_short(exc)}"
            return row, None, meta
        for b in batches:
            try:
                row["latency"][str(b)] = _latency_for_batch(
                    backend, evalset, x_all, b, warmup, iters, seconds, e2e, mode
                )
            except Exception as exc:
                row["latency"][str(b)] = {"status": f"error: {_short(exc)}"}
        peak = peak_rss_mb()
        row["memory"] = {
            "rss_before_mb": _fp(rss0, 1),
            "load_delta_mb": _fp(rss_loaded - rss0, 1) if rss0 is not None and rss_loaded is not None else None,
            "peak_delta_mb": _fp(peak - rss0, 1) if peak is not None and rss0 is not None and reset_ok else None,
        }
    return row, logits, meta


def _short(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):  # an optional package (cv2 on a device): name the extra
        from edgefer.extras import missing_extra

        exc = missing_extra(exc) or exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, EdgeferError):
        text = f"{type(exc).__name__}: {text}"
    return text[:300]


def _align_reference(ref: Reference, evalset: EvalSet) -> tuple[Reference, dict[str, Any]]:
    """Reorder the reference to the dataset's order; refuse one made on other images or labels.

    Returns the aligned reference (the scored images only) and what is known about the reference
    images that were *not* scored: ``not_found`` (absent from the data or unreadable there, with
    ``unreadable`` of them unreadable) — images ``max_images`` left out on purpose do not count.
    """
    if list(ref.ids) == evalset.ids:
        aligned = ref
    else:
        pos = {i: k for k, i in enumerate(ref.ids)}
        missing = [i for i in evalset.ids if i not in pos]
        if missing:
            raise EdgeferError(
                f"the reference has no predictions for {len(missing)} of the {len(evalset)} benchmark images "
                f"(e.g. {missing[0]!r}): it was made on another dataset or split"
            )
        order = np.asarray([pos[i] for i in evalset.ids])
        aligned = Reference(ref.ids[order], ref.labels[order], ref.logits[order], ref.class_names, ref.metadata)
    if tuple(aligned.class_names) != evalset.class_names:
        # a reference in another class order (or with extra classes): its logits matched by name
        cmap = class_map(aligned.class_names, evalset.class_names)
        aligned = Reference(aligned.ids, aligned.labels, cmap(aligned.logits), cmap.dataset_names, aligned.metadata)
    bad = int((aligned.labels != evalset.labels).sum())
    if bad:
        raise EdgeferError(f"the reference's labels differ from the dataset's for {bad} images: another label file?")
    scored = set(evalset.ids) | set(evalset.unvisited_ids)
    not_found = [str(i) for i in ref.ids if str(i) not in scored]
    skipped = set(evalset.skipped_ids)
    coverage = {
        "total": len(ref),
        "scored": len(aligned),
        "not_found": len(not_found),
        "unreadable": sum(1 for i in not_found if i in skipped),
        "not_found_ids": not_found[:20],
    }
    return aligned, coverage


def _expand_models(models: Sequence[Any], notes: list[str]) -> tuple[list[ModelSpec], list[Any], Path | None]:
    """Replace bundles by their (verified) artifacts; returns specs, open bundles, bundle reference."""
    from edgefer.bundle import is_bundle, open_bundle

    specs: list[ModelSpec] = []
    bundles: list[Any] = []
    bundle_ref: Path | None = None
    for m in models:
        spec = ModelSpec.of(m)
        if is_bundle(spec.path):
            b = open_bundle(spec.path)
            bundles.append(b)
            verified = b.verify()
            notes.append(f"bundle {spec.path}: {len(verified)} files verified (sha256)")
            notes.append(b.gate_line(f"bundle {spec.path}"))
            for art in b.artifacts:
                specs.append(ModelSpec(art, spec.device, spec.backend, spec.threads))
            if b.reference is not None and bundle_ref is None:
                bundle_ref = b.reference
        else:
            specs.append(spec)
    if not specs:
        raise EdgeferError("no models to benchmark")
    return specs, bundles, bundle_ref


def run_benchmark(
    models: Sequence[str | os.PathLike | ModelSpec | dict[str, Any]],
    data: str | os.PathLike | Any,
    options: BenchOptions | None = None,
    *,
    reference: str | os.PathLike | Reference | None = None,
    **fields: Any,
) -> BenchReport:
    """Benchmark ``models`` (artifacts, checkpoints or bundles) on a split of ``data``, as
    :class:`BenchOptions` say (``fields`` is shorthand for them: ``run_benchmark(m, d, iters=5)``).

    Reference: ``reference`` (a ``reference.npz`` path or a :class:`Reference`); else a bundle's
    ``reference.npz``; else computed from the first FP32 model that runs (the report says which).
    ``options.out_dir`` gets ``report.json``, ``report.md`` and PNG plots. The gate's verdict is in
    the report (:attr:`BenchReport.passed`); this function never exits.

    Unreadable images are skipped and counted (``settings["skipped"]``), never replaced. Reference
    images that are not in the data are counted (``reference["not_found"]``, and a note); with a
    gate they fail it unless ``allow_partial``: a gate must not pass on part of its reference.
    """
    opts = merged(BenchOptions, options, fields, EdgeferError)
    split, batches, warmup = opts.split, list(opts.batches), opts.warmup
    threads, device, gate, e2e, max_images = opts.threads, opts.device, opts.gate, opts.e2e, opts.max_images
    progress, allow_partial, allow_missing_classes = opts.progress, opts.allow_partial, opts.allow_missing_classes
    notes: list[str] = []
    specs, bundles, bundle_ref = _expand_models(models, notes)
    try:
        machine = machine_info()
        before = snapshot(machine.get("jetson"))
        iters, seconds, timing = opts.timing(on_device=bool(bundles) or "jetson" in machine)
        evalset = load_evalset(
            data, split, max_images=max_images, progress=progress, allow_missing_classes=allow_missing_classes
        )
        ref: Reference | None = None
        ref_info: dict[str, Any] | None = None
        if reference is not None or bundle_ref is not None:
            source = "argument" if reference is not None else "bundle"
            ref_obj = reference if isinstance(reference, Reference) else Reference.load(reference or bundle_ref)
            ref, coverage = _align_reference(ref_obj, evalset)
            ref_info = {
                "source": source,
                "path": None if isinstance(reference, Reference) else str(reference or bundle_ref),
                "model": ref.metadata.get("model_name"),
                "artifact": ref.metadata.get("artifact"),
                "n": len(ref),
                **coverage,
            }
            if coverage["not_found"]:
                partial = (
                    f"{coverage['not_found']} of the {coverage['total']} reference images were not found in the data "
                    f"({coverage['unreadable']} of them unreadable): every number is over the {len(ref)} found"
                )
                notes.append(partial)
        names = evalset.class_names  # every row's logits are in the dataset's class order (_bench_one)
        rows: list[dict[str, Any]] = []
        logits_by_row: dict[str, tuple[np.ndarray, Any]] = {}
        taken: set[str] = set()
        from rich.progress import Progress

        with Progress(transient=True, disable=not progress) as prog:
            task = prog.add_task("benchmark", total=len(specs))
            for spec in specs:
                label = _row_label(spec, taken, spec.device or device)
                prog.update(task, description=f"benchmark {label}")
                row, logits, meta = _bench_one(spec, label, evalset, opts, iters, seconds)
                rows.append(row)
                if logits is not None:
                    logits_by_row[label] = (logits, meta)
                    note = meta.class_map(names).note
                    if note and f"{row['label']}: {note}" not in notes:
                        notes.append(f"{row['label']}: {note}")
                prog.advance(task)
        if ref is None:
            first = next((r for r in rows if r["label"] in logits_by_row and r["precision"] == "fp32"), None)
            if first is not None:
                logits, meta = logits_by_row[first["label"]]
                ref = Reference(np.asarray(evalset.ids), evalset.labels, logits, names, meta.to_dict())
                ref_info = {
                    "source": "computed",
                    "path": None,
                    "model": meta.model_name,
                    "artifact": first["label"],
                    "n": len(ref),
                }
                notes.append(
                    f"no reference given: the FP32 reference is {first['label']} ({first['backend']}) run here"
                )
            else:
                notes.append("no reference given and no FP32 model ran: deltas and agreement are not available")
        for row in rows:
            if row["label"] not in logits_by_row:
                continue
            logits, meta = logits_by_row[row["label"]]
            try:
                if ref is not None:
                    row["accuracy"] = compare_to_reference(logits, evalset.labels, ref, names)
                else:
                    row["accuracy"] = accuracy_summary(logits, evalset.labels, names)
            except EdgeferError as exc:
                row["status"] = f"error: {_short(exc)}"
                row["accuracy"] = accuracy_summary(logits, evalset.labels, names)
        if evalset.skipped:
            notes.append(
                f"{evalset.skipped} unreadable or missing images of the {split} split were skipped "
                f"(e.g. {evalset.skipped_ids[0]!r}); each readable image is scored once"
            )
        settings = {
            "data": evalset.source,
            "split": split,
            "images": len(evalset),
            "skipped": evalset.skipped,
            "skipped_ids": evalset.skipped_ids[:50],
            "batches": batches,
            "warmup": warmup,
            "iters": iters,
            "seconds": seconds,
            "timing": timing,
            "mode": opts.mode,
            "streams": opts.streams,
            "cache_dir": None if opts.cache_dir is None else str(opts.cache_dir),
            "threads": threads,
            "device": device,
            "e2e": e2e,
            "max_images": max_images,
            "allow_partial": allow_partial,
        }
        after = snapshot(machine.get("jetson"))
        report = BenchReport(machine, settings, ref_info, rows, notes=notes)
        report.conditions = {"before": before, "after": after}
        report.warnings = trust_warnings(rows, machine, before, after)
        if gate is not None:
            report.gate = gate.to_dict()
            report.gate_failures = gate.evaluate(rows)
            not_found = (ref_info or {}).get("not_found", 0)
            if not_found and not allow_partial:
                report.gate_failures.append(
                    f"partial reference: {not_found} of the {ref_info['total']} reference images were not found "
                    "in the data, so the gate cannot vouch for them (pass --allow-partial to gate on the rest)"
                )
        if opts.out_dir is not None:
            report.save(opts.out_dir, plots=opts.plots)
        return report
    finally:
        for b in bundles:
            b.close()
