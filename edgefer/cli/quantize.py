"""``edgefer quantize``: INT8 PTQ / accuracy-controlled PTQ / QAT / weights-only, and ``--sensitivity``.

Thin: everything is :func:`edgefer.quantize.quantize` and :func:`edgefer.quantize.sensitivity`.
The default method is ``ptq-acc`` held to the production gate (``QuantizeOptions.DEFAULT_METHOD``:
the dataset quantize calibrates on is labelled, so the gate can be held); ``--method ptq`` is plain PTQ.
Exit status: 0 = done (and within ``--max-drop`` / ``--gate`` when given), 2 = user error, 3 = the
INT8 model was written but breaks the budget (``--gate``'s accuracy rules, or ``--max-drop`` alone;
the report says which and by how much).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

BUDGET_EXIT_CODE = 3


#: what to try when the INT8 model misses the budget, by the method that missed it
_NEXT_STEP = {
    "ptq-acc": " (try --method qat)",
    "qat": " (accuracy control could not restore it: see the report's accuracy_control section)",
}


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100.0 * v:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def register(app: typer.Typer) -> None:
    @app.command("quantize")
    def quantize_cmd(
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="FP32 checkpoint (.pt)."),
        data: Path = typer.Option(..., "--data", help="Dataset root: calibration from --calib-split."),
        target: str = typer.Option("openvino", "--target", help="openvino (INT8 IR) | trt | onnx (Q/DQ ONNX)."),
        method: str = typer.Option(
            "ptq-acc",
            "--method",
            help="ptq-acc (default: PTQ, then layers kept in floating point until --gate holds, the production "
            "gate unless given) | ptq (plain PTQ, every layer INT8; the gate only checked) | qat | wc (INT8 weights "
            "only).",
        ),
        calib_size: int = typer.Option(300, "--calib-size", help="Calibration images (deterministic subset)."),
        max_drop: Optional[float] = typer.Option(
            None,
            "--max-drop",
            help="Accuracy budget in points (ptq-acc, qat: enforced, default 0.5; else checked, exit 3).",
        ),
        gate: Optional[str] = typer.Option(
            None,
            "--gate",
            help="Accuracy rules as for benchmark --gate (ptq-acc, qat: enforced, default "
            "max-drop=<max-drop>,max-class-drop=1.0,min-agreement=0.98; else checked, exit 3).",
        ),
        preset: str = typer.Option("performance", "--preset", help="performance (symmetric) | mixed (OpenVINO)."),
        ignore: List[str] = typer.Option([], "--ignore", help="Regex of graph node names to keep in FP (repeat)."),
        ignore_from: Optional[Path] = typer.Option(
            None, "--ignore-from", help="ignore.json from `edgefer debug`: its patterns are added to --ignore."
        ),
        out: Path = typer.Option(Path("runs/quantize"), "--out", "-o", help="Output directory."),
        onnx_path: Optional[Path] = typer.Option(None, "--onnx", help="Start from this FP32 ONNX (no torch needed)."),
        img_size: Optional[int] = typer.Option(None, "--img-size", help="Export size (default: the checkpoint's)."),
        val_size: Optional[int] = typer.Option(None, "--val-size", help="Score on N validation images (default all)."),
        calib_split: str = typer.Option("train", "--calib-split", help="Split the calibration images come from."),
        val_split: str = typer.Option("test", "--val-split", help="Split INT8 is scored (and controlled) on."),
        accurate_bias_correction: bool = typer.Option(
            False, "--accurate-bias-correction", help="NNCF's slower, more accurate bias correction."
        ),
        qat_epochs: int = typer.Option(2, "--qat-epochs", help="QAT fine-tuning epochs."),
        qat_lr: float = typer.Option(1e-4, "--qat-lr", help="QAT learning rate."),
        qat_loss: str = typer.Option(
            "distill", "--qat-loss", help="QAT fine-tunes towards: distill (the FP32 model's logits) | labels."
        ),
        qat_temperature: float = typer.Option(1.0, "--qat-temperature", help="QAT distillation temperature."),
        sensitivity: bool = typer.Option(
            False, "--sensitivity", help="Instead: per-block accuracy impact when only that block is INT8."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        allow_missing_classes: bool = typer.Option(
            False, "--allow-missing-classes", help="Calibrate on a split that lacks some class (model trained so)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier INT8 model of the same name."),
    ) -> None:
        """Quantize to INT8 and print FP32 vs INT8 accuracy, agreement and size."""
        from edgefer.quantize import quantize
        from edgefer.quantize import sensitivity as run_sensitivity
        from edgefer.quantize.options import QuantizeOptions

        if ignore_from is not None:  # an ignore list written by `edgefer debug`: its patterns join --ignore
            from edgefer.quantize.debug import read_ignore_file

            ignore = [*ignore, *read_ignore_file(ignore_from)]
        options = QuantizeOptions(
            target=target,
            method=method,
            calib_size=calib_size,
            max_drop=max_drop,
            gate=gate,
            preset=preset,
            ignore=tuple(ignore),
            out_dir=out,
            img_size=img_size,
            fast_bias_correction=not accurate_bias_correction,
            qat_epochs=qat_epochs,
            qat_lr=qat_lr,
            qat_loss=qat_loss,
            qat_temperature=qat_temperature,
            progress=not quiet,
            val_size=val_size,
            calib_split=calib_split,
            val_split=val_split,
            allow_missing_classes=allow_missing_classes,
            overwrite=overwrite,
        )
        if sensitivity:
            sres = run_sensitivity(checkpoint, data, options, onnx_path=onnx_path)
            typer.echo(sres.markdown)
            typer.echo(f"\nwritten: {sres.json_path}  {sres.markdown_path}")
            return
        res = quantize(checkpoint, data, options, onnx_path=onnx_path)
        r = res.report
        typer.echo(f"{r['model']} -> {res.artifact}  ({method}, {target}, {r['validation']['images']} images)")
        typer.echo(f"  FP32 accuracy   {_pct(r['fp32_accuracy'])}")
        typer.echo(f"  INT8 accuracy   {_pct(r['int8_accuracy'])}   delta {r['delta_pts']:+.2f} pt")
        typer.echo(f"  worst class     {r['worst_class']} {r['worst_class_delta_pts']:+.2f} pt")
        typer.echo(f"  agreement       {_pct(r['agreement'])} of top-1 predictions equal FP32")
        typer.echo(f"  size            {_size(r['fp32_size_bytes'])} -> {_size(r['int8_size_bytes'])}")
        acc = r.get("accuracy_control")
        if acc:
            typer.echo(
                f"  {acc['before'] + ' alone':<15} delta {acc['before_delta_pts']:+.2f} pt, agreement "
                f"{_pct(acc.get('before_agreement'))}, gate severity {acc.get('before_severity', 0.0):.2f} "
                f"(> 1 fails); kept in FP: {', '.join(acc['kept_fp']) or 'none'}"
            )
        typer.echo(f"  report          {res.report_path}")
        if method == "ptq":
            typer.echo(
                "  method          plain PTQ: every quantizable layer INT8, nothing kept in FP, gate only checked"
            )
        if r.get("gate"):
            typer.echo(f"  gate            {r['gate']}: {'passed' if r.get('budget_met') else 'FAILED'}")
        if r.get("budget_met") is False:
            for violation in r.get("gate_violations") or []:
                typer.secho(f"  {violation}", fg=typer.colors.RED, err=True)
            typer.secho(
                f"INT8 model is outside the budget ({r['gate']})"
                + _NEXT_STEP.get(method, " (try --method ptq-acc or qat)"),
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(BUDGET_EXIT_CODE)
