"""``edgefer quantize``: INT8 PTQ / accuracy-controlled PTQ / QAT / weights-only, and ``--sensitivity``.

Thin: everything is :func:`edgefer.quantize.quantize` and :func:`edgefer.quantize.sensitivity`.
The default method is ``ptq-acc`` held to the production gate (``QuantizeOptions.DEFAULT_METHOD``:
the dataset quantize calibrates on is labelled, so the gate can be held); ``--int8-method ptq`` is plain PTQ.
Exit status: 0 = done (and within ``--max-drop`` / ``--gate`` when given), 2 = user error, 3 = the
INT8 model was written but breaks the budget (``--gate``'s accuracy rules, or ``--max-drop`` alone;
the report says which and by how much).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgefer.cli import groups
from edgefer.cli.params import Param, Values, command, from_fields

BUDGET_EXIT_CODE = 3


#: what to try when the INT8 model misses the budget, by the method that missed it
_NEXT_STEP = {
    "ptq-acc": " (try --int8-method qat)",
    "qat": " (accuracy control could not restore it: see the report's accuracy_control section)",
}


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100.0 * v:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


#: what is quantized, on which data, and what is done instead of quantizing
SOURCE = [
    Param("checkpoint", ("--checkpoint", "-c"), Path, None, "FP32 checkpoint (.pt)."),
    Param("onnx_path", ("--onnx",), Path, None, "Start from this FP32 ONNX (no torch needed)."),
]


def params() -> list:
    """The flags of ``edgefer quantize``: the source, then :class:`QuantizeOptions`' fields by group."""
    from edgefer.quantize.options import QuantizeOptions

    return [
        SOURCE,
        groups.data(only=("data",), data={"default": ..., "help": "Dataset root: calibration from --calib-split."}),
        from_fields(QuantizeOptions, "target", "method"),
        groups.calibration(QuantizeOptions),
        from_fields(QuantizeOptions, "max_drop", "gate", "preset", "ignore"),
        Param("ignore_from", ("--ignore-from",), Path, None, "ignore.json from `edgefer debug`: added to --ignore."),
        groups.output(QuantizeOptions, dest="out_dir"),
        groups.shape(QuantizeOptions, only=("img_size",)),
        from_fields(QuantizeOptions, "val_size", "val_split", "fast_bias_correction"),
        from_fields(QuantizeOptions, "qat_epochs", "qat_lr", "qat_loss", "qat_temperature"),
        Param(
            "sensitivity",
            ("--sensitivity",),
            bool,
            False,
            "Instead: per-block accuracy impact when only that block is INT8.",
        ),
        groups.seed(QuantizeOptions),
        groups.data(QuantizeOptions, only=("allow_missing_classes",)),
        groups.json_output(),
        groups.progress(QuantizeOptions),
    ]


def register(app: typer.Typer) -> None:
    @command(app, "quantize", params)
    def quantize_cmd(v: Values) -> None:
        """Quantize to INT8 and print FP32 vs INT8 accuracy, agreement and size."""
        from edgefer.quantize import quantize
        from edgefer.quantize import sensitivity as run_sensitivity
        from edgefer.quantize.options import QuantizeOptions

        fields = v.pick(QuantizeOptions)
        if v.ignore_from is not None:  # an ignore list written by `edgefer debug`: its patterns join --ignore
            from edgefer.quantize.debug import read_ignore_file

            fields["ignore"] = [*v.ignore, *read_ignore_file(v.ignore_from)]
        fields["ignore"] = tuple(fields["ignore"])
        fields["progress"] = v.progress and not v.as_json
        options = QuantizeOptions(**fields)
        checkpoint, data, onnx_path, method, target = v.checkpoint, v.data, v.onnx_path, options.method, options.target
        if v.sensitivity:
            sres = run_sensitivity(checkpoint, data, options, onnx_path=onnx_path)
            if v.as_json:  # the sensitivity.json it wrote: one document on stdout
                typer.echo(Path(sres.json_path).read_text(encoding="utf-8"))
                return
            typer.echo(sres.markdown)
            typer.echo(f"\nwritten: {sres.json_path}  {sres.markdown_path}")
            return
        res = quantize(checkpoint, data, options, onnx_path=onnx_path)
        r = res.report
        if v.as_json:
            typer.echo(json.dumps({"artifact": str(res.artifact), "report_path": str(res.report_path), **r}, indent=2))
            if r.get("budget_met") is False:
                raise typer.Exit(BUDGET_EXIT_CODE)
            return
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
                + _NEXT_STEP.get(method, " (try --int8-method ptq-acc or qat)"),
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(BUDGET_EXIT_CODE)
