"""Quantization-aware training (QAT) with NNCF on the PyTorch model, then INT8 IR or Q/DQ ONNX.

The usual answer when PTQ of the attention blocks costs too much: the fake-quantized network is
fine-tuned for a few epochs at a low learning rate, so the weights (and NNCF's learnable
quantizer scales) adapt to the INT8 grid.

0. BatchNorm is folded into the convolution before it (:func:`fold_batch_norms`), as the FP32
   ONNX and PTQ have it, so QAT trains the weights that are deployed and exports the FP32 graph's
   layout and node names;
1. ``nncf.quantize`` on the ``nn.Module`` with the calibration images inserts NNCF fake-quantizers
   (same placement and parameters as PTQ for the target) and initialises their ranges;
2. a short fine-tune on the training split with the training stage's own pieces -- its
   augmentation (:class:`edgefer.training.augment.TrainAugment` with the checkpoint's augmentation
   settings), data wrapper, optimiser and warm-up/cosine schedule builders. The loss is, by
   default (``loss="distill"``), distillation towards the FP32 model itself: a frozen eval-mode
   copy of the checkpoint's network, taken before ``nncf.quantize``, sees the same augmented batch
   and the fake-quantized student is pulled towards its logits
   (:func:`edgefer.training.distill.kd_kl` through :class:`~edgefer.training.distill.DistillationLoss`
   with ``alpha=1``, no label term). The benchmark gate measures INT8 *against FP32* (agreement of
   top-1 predictions, per-class change), and fine-tuning on the labels moves decisions away from
   FP32's (benchmarks/quantization.md: one label epoch lowered agreement from 97.6 to 96.5 %);
   distillation fine-tunes towards exactly what the gate checks. ``loss="labels"`` keeps the
   former cross-entropy on the labels with the checkpoint's label smoothing. The full training
   loop (:func:`edgefer.training.trainer.train`) builds its model from scratch and writes
   checkpoints, so QAT runs this ~20-line loop instead.
   BatchNorm statistics are frozen (BN layers in eval mode): with small fine-tuning batches,
   updating them moves the activation ranges the quantizers were calibrated for;
3. export: ``nncf.strip(..., StripFormat.NATIVE)`` turns NNCF's quantizers into native
   ``torch.ao`` FakeQuantize modules that the TorchScript ONNX exporter writes as
   QuantizeLinear/DequantizeLinear pairs -- for TensorRT/ONNX made signed and checked like PTQ; for
   OpenVINO read by ``ov.convert_model`` (the pairs become FakeQuantize, the weights int8). One
   export for both targets, named like the FP32 ONNX, is what lets NNCF's accuracy restorer (an
   ONNX or OpenVINO backend; it has none for PyTorch) map each layer back onto its FP32 weights;
   converting the NNCF module straight to OpenVINO gave weights NNCF's OpenVINO graph cannot
   trace back to constants;
4. with a budget (``--max-drop``/``--gate``; ``edgefer quantize --int8-method qat`` has the same default
   as ``ptq-acc``), the fine-tuned model is held to it like ``ptq-acc``'s PTQ model: NNCF's
   accuracy restorer puts layers back into floating point, with their FP32 weights, until the gate
   holds on the validation images (:func:`edgefer.quantize.accuracy_control.restore_accuracy`).
   Reverting every layer gives the FP32 model, so QAT can always meet the budget -- the fine-tune
   decides how few layers that costs. Then the weights are stored as int8.

NNCF's CPU fake-quantize kernels are a C++ extension compiled on first use (minutes on a small
CPU, and it needs a compiler); edgefer uses NNCF's own pure-PyTorch reference implementation
instead (the fallback NNCF itself uses when the build fails). Set ``EDGEFER_NNCF_CPU_EXTENSION=1``
to let NNCF compile and use the extension.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.data.calibration import ArrayData, open_split
from edgefer.errors import QuantizationError
from edgefer.export.targets import target_named
from edgefer.metadata import ModelMetadata
from edgefer.quantize.options import QAT_LOSSES, QuantizeOptions
from edgefer.utils.options import merged


def use_reference_fake_quantize() -> None:
    """Make NNCF's CPU fake-quantize run eagerly in PyTorch instead of compiling its C++ extension."""
    if os.environ.get("EDGEFER_NNCF_CPU_EXTENSION") == "1":
        return
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import torch_executor

    class _EagerReference:
        Quantize_forward = staticmethod(torch_executor.forward)
        Quantize_backward = staticmethod(torch_executor.backward)

    if extensions.QuantizedFunctionsCPU._loaded_namespace is None:
        extensions.QuantizedFunctionsCPU._loaded_namespace = _EagerReference


def fold_batch_norms(model: Any) -> tuple[Any, int]:
    """Fold every BatchNorm that directly follows a convolution into it, in place; returns
    ``(model, pairs folded)``, in eval mode.

    The FP32 ONNX and the PTQ artifacts carry BatchNorm folded into the preceding convolution (the
    ONNX exporter folds it in eval mode), so PTQ quantizes the *folded* weights. QAT on the raw
    network would fake-quantize the unfolded weights and export a BatchNormalization after every
    quantized convolution: another graph than the one it is compared with (twice the size, not the
    FP32 model's node for node), which NNCF's accuracy restorer cannot map back onto the FP32
    weights. Folding first makes QAT train the weights that are deployed and export the FP32
    graph's layout. ``torch.fx`` finds the pairs (a BatchNorm whose input is a convolution's output
    used nowhere else, as fx's own fusion does); the convolution module is replaced by its fused
    copy and the BatchNorm by ``nn.Identity``, so the module tree -- the names NNCF and the exporter
    see -- is unchanged (fx's ``GraphModule`` itself is not traceable by NNCF). Exact in eval mode.
    BatchNorms after anything else (e.g. PyConv's concatenation) stay; a network fx cannot trace
    is returned unchanged (0 pairs): QAT still works, only its graph keeps the BatchNorms.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = model.eval()
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # fx cannot trace every network (data-dependent control flow)
        return model, 0
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), nn.modules.conv._ConvNd)
            and len(src.users) == 1
        ):
            pairs.append((src.target, node.target))
    convs = [c for c, _ in pairs]
    if len(set(convs)) != len(convs):  # a convolution module called twice: folding would change the other call
        pairs = [(c, b) for c, b in pairs if convs.count(c) == 1]
    for conv_name, bn_name in pairs:
        model.set_submodule(conv_name, fuse_conv_bn_eval(modules[conv_name], modules[bn_name]))
        model.set_submodule(bn_name, nn.Identity())
    return model, len(pairs)


def _freeze_bn(model: Any) -> None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass(frozen=True)
class FineTune:
    """How QAT fine-tunes: length, learning rate, loss. Validated when made.

    ``loss="distill"`` pulls the student towards the FP32 teacher's logits, T^2 * KL(teacher_T ||
    student_T) on each augmented batch (``temperature`` T); ``loss="labels"`` is cross-entropy on
    the labels with the checkpoint's label smoothing. :meth:`from_options` reads the ``qat_*``
    fields of :class:`~edgefer.quantize.options.QuantizeOptions`.
    """

    epochs: int = 2
    lr: float = 1e-4
    seed: int = 0
    max_steps: int | None = None
    batch_size: int = 32
    progress: bool = True
    loss: str = "distill"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in QAT_LOSSES:
            raise QuantizationError(f"QAT loss must be one of {', '.join(QAT_LOSSES)}, not {self.loss!r}")
        if not self.temperature > 0:
            raise QuantizationError(f"QAT distillation temperature must be positive, got {self.temperature}")
        if self.epochs < 1:
            raise QuantizationError(f"QAT needs at least one epoch, got {self.epochs}")
        if not self.lr > 0:
            raise QuantizationError(f"QAT learning rate must be positive, got {self.lr}")

    @classmethod
    def from_options(cls, opts: QuantizeOptions) -> FineTune:
        return cls(
            epochs=opts.qat_epochs,
            lr=opts.qat_lr,
            seed=opts.seed,
            max_steps=opts.qat_max_steps,
            progress=opts.progress,
            loss=opts.qat_loss,
            temperature=opts.qat_temperature,
        )


def fine_tune(
    model: Any,
    data: Any,
    split: str,
    pp: Any,
    train_config: dict[str, Any],
    settings: FineTune | None = None,
    teacher: Any = None,
    **fields: Any,
) -> dict[str, Any]:
    """Fine-tune the fake-quantized ``model`` in place as ``settings`` say (or their fields given as
    keywords: ``fine_tune(..., epochs=1, loss="labels")``); returns loss/step statistics.

    ``loss="distill"`` needs ``teacher``, the FP32 network the student should agree with (frozen
    and kept in eval mode here).
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from edgefer.training.augment import AugmentConfig, TrainAugment
    from edgefer.training.data import AugmentedSubset
    from edgefer.training.distill import DistillationLoss, Teacher
    from edgefer.training.optim import build_optimizer, build_scheduler

    s = merged(FineTune, settings, fields, QuantizationError)
    epochs, lr, seed, max_steps, batch_size = s.epochs, s.lr, s.seed, s.max_steps, s.batch_size
    loss, temperature = s.loss, s.temperature
    if loss == "distill" and teacher is None:
        raise QuantizationError("QAT loss 'distill' needs the FP32 teacher model")
    reader = open_split(data, split)
    if len(reader) < batch_size:
        raise QuantizationError(f"the {split!r} split has {len(reader)} images, less than a QAT batch ({batch_size})")
    aug_fields = AugmentConfig.__dataclass_fields__
    aug = AugmentConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in train_config.items() if k in aug_fields}
    )
    train_set = AugmentedSubset(reader, np.arange(len(reader)), TrainAugment(pp, aug), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen)
    steps_per_epoch = len(loader)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    optimizer = build_optimizer(
        model,
        str(train_config.get("optimizer", "sgd")),
        lr,
        float(train_config.get("weight_decay", 1e-4)),
        float(train_config.get("momentum", 0.9)),
    )
    scheduler = build_scheduler(optimizer, total, 0)
    hard = nn.CrossEntropyLoss(label_smoothing=float(train_config.get("label_smoothing", 0.0)))
    if loss == "distill":
        # alpha=1: no label term -- the labels are what pulled QAT's decisions away from FP32's
        kd = DistillationLoss(hard, temperature=temperature, alpha=1.0)
        frozen = Teacher(teacher, pp, pp)  # same preprocessing: eval mode, no grad, no resize

        def criterion(logits: Any, x: Any, y: Any) -> Any:
            return kd(logits, frozen(x), y)[0]
    else:

        def criterion(logits: Any, x: Any, y: Any) -> Any:
            return hard(logits, y)

    torch.manual_seed(seed)
    step, losses, t0 = 0, [], time.perf_counter()
    from rich.progress import Progress

    with Progress(disable=not s.progress, transient=True) as bar:
        task = bar.add_task("QAT fine-tuning", total=total)
        for epoch in range(epochs):
            train_set.set_epoch(epoch)
            model.train()
            _freeze_bn(model)
            for x, y in loader:
                value = criterion(model(x), x, y)
                if not math.isfinite(value.item()):
                    raise QuantizationError(f"QAT loss became {value.item()} at step {step}; lower the QAT LR")
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                scheduler.step()
                losses.append(value.item())
                step += 1
                bar.update(task, advance=1)
                if step >= total:
                    break
            if step >= total:
                break
    model.eval()
    return {
        "steps": step,
        "epochs": epochs,
        "lr": lr,
        "loss": loss,
        **({"temperature": temperature} if loss == "distill" else {}),
        "first_loss": losses[0] if losses else None,
        "last_loss": float(np.mean(losses[-10:])) if losses else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }


#: ``restore(fp32_model, quantized) -> model``: puts layers of the QAT model back into floating point
#: until a budget holds (:func:`edgefer.quantize.accuracy_control.restore_accuracy`); both models are
#: ONNX with the same node names (the QAT one Q/DQ with floating-point weights), for either target.
Restore = Callable[[Any, Any], Any]


def quantization_aware_training(
    checkpoint: str | os.PathLike,
    target: str,
    meta: ModelMetadata,
    calib: ArrayData,
    data: Any,
    split: str,
    nncf_kwargs: dict[str, Any],
    settings: FineTune | None = None,
    restore: Restore | None = None,
) -> tuple[Any, dict[str, Any]]:
    """QAT of the checkpoint's model; returns (``openvino.Model`` or Q/DQ ``onnx.ModelProto``, info).

    BatchNorms are folded into their convolutions first (:func:`fold_batch_norms`) and the ones that
    cannot be folded are frozen entirely, so every parameter QAT changes belongs to an operation
    with weights. For ``loss="distill"`` the teacher is a copy of the checkpoint's FP32 network (the
    weights the FP32 ONNX reference is exported from, EMA when present) taken before NNCF inserts
    its quantizers, so the fine-tune pulls INT8 towards the model it is scored against.

    ``restore``, when given, receives the FP32 network and the fine-tuned model, both exported to
    ONNX the same way (same node names), before the weights are folded to int8; what it returns
    is delivered (as an OpenVINO model for the ``openvino`` target). Since reverting an operation
    also writes back its FP32 weights, reverting them all gives the FP32 model: QAT followed by
    restoration can always meet a budget.
    """
    import nncf
    import torch
    from torch import nn

    from edgefer.training.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, folded = fold_batch_norms(build_model(ckpt))
    for m in model.modules():  # unfolded BatchNorms stay the FP32 model's: nothing could restore them
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False)
    settings = settings if settings is not None else FineTune()
    fp32 = copy.deepcopy(model).eval()
    teacher = fp32 if settings.loss == "distill" else None
    pp = meta.preprocessing
    use_reference_fake_quantize()
    calib_ds = nncf.Dataset([torch.from_numpy(calib.x[i : i + 1]) for i in range(len(calib))])
    from edgefer.quantize.ptq import run_nncf

    qmodel = run_nncf(nncf.quantize, model, calib_ds, **nncf_kwargs)
    info = fine_tune(qmodel, data, split, pp, dict(ckpt.get("train_config") or {}), settings, teacher=teacher)
    info["batch_norms_folded"] = folded
    example = torch.from_numpy(calib.x[:1])
    for_trt = target_named(target).int8.qdq  # a signed Q/DQ ONNX (else OpenVINO's reading of it)
    with torch.no_grad():
        qdq = _to_qdq_onnx(qmodel, example, pp.input_size, signed=for_trt)
        if restore is not None:
            qdq = restore(_fp32_onnx(fp32, pp.input_size), qdq)
    model = _finish_qdq(qdq, check=for_trt)
    if for_trt:
        return model, info
    from edgefer.quantize.graph import onnx_to_openvino

    return onnx_to_openvino(model), info


def _unshare_quantizers(model: Any) -> int:
    """Give every hook its own quantizer module (a copy of the shared one).

    NNCF shares one quantizer between the inputs of ops that need equal scales (Concat, e.g. the
    multi-scale fusion); ``strip(NATIVE)`` walks the hooks with duplicates removed and converts
    the shared module only once, leaving NNCF's custom FakeQuantize in the exported graph. The
    copies hold identical parameters, so the numerics do not change.
    """
    from nncf.torch.function_hook.wrapper import get_hook_storage

    storage = get_hook_storage(model)
    seen: set[int] = set()
    copied = 0
    for name, module in list(storage.named_hooks(remove_duplicate=False)):
        if id(module) in seen:
            storage.set_submodule(name, copy.deepcopy(module))
            copied += 1
        seen.add(id(module))
    return copied


def _to_qdq_onnx(qmodel: Any, example: Any, img_size: int, signed: bool = True) -> Any:
    """The fake-quantized module as a Q/DQ ONNX whose weights are still FP32 (+ Q/DQ); ``signed``:
    unsigned activation pairs rewritten as int8 ones, as TensorRT needs (OpenVINO keeps uint8)."""
    import nncf
    import onnx

    from edgefer.export.onnx import simplify_onnx, torch_to_onnx
    from edgefer.quantize import ptq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the quantizers' Python scalars
        unshared = copy.deepcopy(qmodel)
        _unshare_quantizers(unshared)
        stripped = nncf.strip(unshared, do_copy=False, strip_format=nncf.StripFormat.NATIVE, example_input=example)
        with tempfile.TemporaryDirectory(prefix="edgefer-qat-") as tmp:
            path = torch_to_onnx(stripped.eval(), Path(tmp) / "qat.onnx", img_size, exporter="torchscript")
            model = onnx.load(str(path))
    # The exporter computes zero points with Cast/Round subgraphs; constant folding makes them the
    # plain int8 constants TensorRT's parser (and check_qdq) expect.
    model = simplify_onnx(model)
    if signed:
        ptq.to_signed_int8(model)
    return _declare_qdq_tensors(model)


def _declare_qdq_tensors(model: Any) -> Any:
    """Every Q/DQ node with its own scale and zero-point initializers, and ``value_info`` for them and
    for every Q/DQ output.

    NNCF's ONNX quantizer removal (what the accuracy restorer reverts a layer with) deletes a
    pair's parameters and their declarations along with it, so it fails on -- or breaks -- a model
    whose pairs share a zero point (the simplifier merges equal constants) or lack declarations
    (NNCF's own PTQ output has neither problem, the exporter's has both). Shape inference declares
    the outputs; the copied initializers are declared from their own type and shape.
    """
    import onnx
    from onnx import helper

    from edgefer.quantize import ptq

    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, role in ((1, "scale"), (2, "zero_point")):
            if i < len(node.input) and node.input[i] in inits:
                own = onnx.TensorProto()
                own.CopyFrom(inits[node.input[i]])
                own.name = f"{node.name}_own_{role}"
                model.graph.initializer.append(own)
                node.input[i] = own.name
    ptq.drop_unused_initializers(model)
    model = onnx.shape_inference.infer_shapes(model)
    declared = {v.name for v in model.graph.value_info}
    for t in model.graph.initializer:
        if "_own_" in t.name and t.name not in declared:
            model.graph.value_info.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return model


def _fp32_onnx(model: Any, img_size: int) -> Any:
    """The FP32 network exported exactly like :func:`_to_qdq_onnx` exports the QAT one (same names)."""
    import onnx

    from edgefer.export.onnx import simplify_onnx, torch_to_onnx

    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="edgefer-qat-") as tmp:
        warnings.simplefilter("ignore")
        path = torch_to_onnx(model.eval(), Path(tmp) / "fp32.onnx", img_size, exporter="torchscript")
        return simplify_onnx(onnx.load(str(path)))


def _finish_qdq(model: Any, check: bool = True) -> Any:
    """Weights to int8 initializers, as NNCF's ONNX PTQ writes them; ``check``: TensorRT's Q/DQ rules."""
    from edgefer.quantize import ptq

    ptq.fold_weight_quantizers(model)
    if check:
        ptq.check_qdq(model)
    return model
