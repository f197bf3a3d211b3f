"""Benchmark suites: a YAML file declaring a matrix of artifacts × backends × devices × batch sizes.

Format (every key but ``models`` optional; ``${VAR}`` / ``${VAR:-default}`` expand from the
environment; relative paths are relative to the current directory, like the CLI)::

    name: synthetic_cpu
    data: ${EDGEFER_DATA:-runs/synth}      # dataset root (any layout open_dataset knows)
    split: test
    reference: runs/export/reference.npz   # omit: bundle reference, else first FP32 model
    batches: [1, 8]
    warmup: 10
    iters: 50                              # or seconds: 5
    threads: 2
    device: cpu                            # default device of every model
    max_images: null
    gate: {max-drop: 1.0, max-class-drop: 3.0, min-agreement: 0.97}   # or "max-drop=1.0,..."
    allow_partial: false                   # true: the gate may pass when reference images are missing
    out: runs/bench/synthetic_cpu
    models:
      - path: runs/export/model.onnx
        backends: [onnxruntime, openvino]  # the same file on two backends -> two rows
      - path: runs/export/model_int8.xml
        devices: [cpu, gpu]                # one row per device
        label: ov-int8                     # optional row label
      - runs/export/model_qdq.onnx         # a bare path is fine too

Precisions are artifacts (``model_fp16.xml``, ``model_int8.xml``), so the precision axis of the
matrix is the list of files. Each model entry expands to the product of its ``backends`` and
``devices``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_KEYS = {
    "name",
    "description",
    "data",
    "split",
    "reference",
    "batches",
    "warmup",
    "iters",
    "seconds",
    "cache_dir",
    "threads",
    "device",
    "gate",
    "out",
    "models",
    "max_images",
    "e2e",
    "plots",
    "allow_partial",
}
#: Top-level keys handed to run_benchmark unchanged (the others are read or converted above/below):
#: derived from _TOP_KEYS so that a key the schema accepts cannot be silently dropped.
_PASSED_AS_IS = tuple(sorted(_TOP_KEYS - {"name", "description", "models", "batches"}))
_MODEL_KEYS = {"path", "backend", "backends", "device", "devices", "threads", "label"}


def expand_vars(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise EdgeferError(f"suite uses ${{{name}}} but it is not set (give a default with ${{{name}:-value}})")

    return _VAR.sub(sub, text)


def _expand(obj: Any) -> Any:
    if isinstance(obj, str):
        return expand_vars(obj)
    if isinstance(obj, list):
        return [_expand(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _expand(v) for k, v in obj.items()}
    return obj


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return [None]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expand_models(entries: list[Any]) -> list[dict[str, Any]]:
    """Model entries -> one ``ModelSpec``-like dict per (path, backend, device)."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or "path" not in entry:
            raise EdgeferError(f"suite model entry {entry!r} needs a 'path'")
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise EdgeferError(f"suite model entry has unknown keys {sorted(unknown)}; known: {sorted(_MODEL_KEYS)}")
        backends = _as_list(entry.get("backends", entry.get("backend")))
        devices = _as_list(entry.get("devices", entry.get("device")))
        multi = len(backends) * len(devices) > 1
        for be in backends:
            for dev in devices:
                spec: dict[str, Any] = {"path": entry["path"], "backend": be, "device": dev}
                if entry.get("threads") is not None:
                    spec["threads"] = int(entry["threads"])
                base = entry.get("label") or Path(entry["path"]).name
                if multi:
                    base += "".join(f" [{x}]" for x in (be, dev) if x is not None)
                spec["label"] = base if (multi or entry.get("label")) else None
                out.append(spec)
    return out


def load_suite(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a suite file; returns keyword arguments for ``run_benchmark`` plus ``name``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise EdgeferError(f"suite file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EdgeferError(f"suite file {p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise EdgeferError(f"suite file {p} must be a mapping with at least 'models' and 'data'")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise EdgeferError(f"suite file {p} has unknown keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    suite = _expand(raw)
    if not suite.get("models"):
        raise EdgeferError(f"suite file {p} lists no models")
    kwargs: dict[str, Any] = {"name": suite.get("name", p.stem), "models": expand_models(suite["models"])}
    for key in _PASSED_AS_IS:
        if suite.get(key) is not None:
            kwargs[key] = suite[key]
    if "batches" in suite:
        b = suite["batches"]
        kwargs["batches"] = [int(x) for x in (b if isinstance(b, list) else str(b).split(","))]
    return kwargs
