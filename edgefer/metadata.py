"""Artifact metadata: what a device needs to run a model correctly (docs/architecture.md invariant 2).

The same :class:`ModelMetadata` travels in a checkpoint, as ONNX ``metadata_props``, as OpenVINO
``rt_info`` and as the JSON sidecar of a TensorRT engine. It is flattened to a ``str -> str``
map by :meth:`ModelMetadata.to_props` (ONNX and OpenVINO only store strings) and read back by
:meth:`ModelMetadata.from_props`. :func:`read_metadata` finds it for any artifact path.

Torch-free by design: the benchmark and the runtime read it on a Jetson.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import BackendError, EdgeferError
from edgefer.labels import CLASS_NAMES, OUTPUT_KINDS, ClassMap, as_logits, class_map
from edgefer.preprocess import Preprocessing

#: Bump when the meaning of a field changes; readers refuse newer major versions.
METADATA_SCHEMA = 1
PROPS_KEY = "edgefer.metadata"
SIDECAR_SUFFIX = ".json"


@dataclass
class ModelMetadata:
    """Everything downstream of training needs to know about a model.

    ``precision`` is one of fp32, fp16, int8 (with ``quantization`` describing how, e.g.
    ``{"method": "ptq", "engine": "nncf", "format": "qdq"}``). ``source_checkpoint_sha256`` and
    ``source_onnx_sha256`` tie an artifact to what it was built from. ``class_names`` are in the
    model's output order (canonical names, :data:`edgefer.labels.KNOWN_CLASS_NAMES`); ``outputs``
    says whether the model returns logits or probabilities (a final Softmax, common in imported
    models). Records without ``outputs`` are edgefer's own models: logits.
    """

    model_name: str
    class_names: tuple[str, ...] = CLASS_NAMES
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model_args: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    quantization: dict[str, Any] = field(default_factory=dict)
    edgefer_version: str = ""
    source_checkpoint_sha256: str = ""
    source_onnx_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = METADATA_SCHEMA
    outputs: str = "logits"

    def __post_init__(self) -> None:
        if not self.edgefer_version:
            from edgefer import __version__

            self.edgefer_version = __version__
        self.class_names = tuple(self.class_names)
        if isinstance(self.preprocessing, dict):
            self.preprocessing = Preprocessing.from_dict(self.preprocessing)
        if self.outputs not in OUTPUT_KINDS:
            raise EdgeferError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, not {self.outputs!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_map(self, dataset_names: tuple[str, ...] = CLASS_NAMES) -> ClassMap:
        """This model's outputs matched to a dataset's classes by name (:func:`edgefer.labels.class_map`)."""
        return class_map(self.class_names, dataset_names)

    def logits(self, outputs: Any) -> Any:
        """The model's raw outputs as logits (log-probabilities for a model that outputs probabilities)."""
        return as_logits(outputs, self.outputs)

    def dataset_logits(self, outputs: Any, dataset_names: tuple[str, ...] = CLASS_NAMES) -> Any:
        """Raw outputs -> logits in the dataset's class order (shared classes only): what every
        evaluation compares with the labels and the FP32 reference."""
        return self.class_map(dataset_names)(self.logits(outputs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "edgefer_version": self.edgefer_version,
            "model_name": self.model_name,
            "model_args": self.model_args,
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_dict(),
            "precision": self.precision,
            "quantization": self.quantization,
            "source_checkpoint_sha256": self.source_checkpoint_sha256,
            "source_onnx_sha256": self.source_onnx_sha256,
            "extra": self.extra,
            "outputs": self.outputs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMetadata:
        """Parse a metadata record; anything malformed is a :class:`BackendError` naming the field."""
        if not isinstance(d, dict):
            raise BackendError(f"artifact metadata must be a JSON object, not {type(d).__name__}")
        try:
            return cls._from_dict(d)
        except BackendError:
            raise
        except EdgeferError as exc:
            raise BackendError(f"invalid artifact metadata: {exc}") from None
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise BackendError(
                f"invalid artifact metadata ({type(exc).__name__}: {exc}): "
                "the artifact's edgefer metadata was edited or is damaged"
            ) from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> ModelMetadata:
        schema = int(d.get("schema", METADATA_SCHEMA))
        if schema > METADATA_SCHEMA:
            raise BackendError(
                f"artifact metadata schema {schema} is newer than this edgefer understands "
                f"({METADATA_SCHEMA}); upgrade edgefer on this device"
            )
        if "model_name" not in d:
            raise BackendError("artifact metadata has no model_name: not an edgefer artifact?")
        if not isinstance(d["model_name"], str) or not d["model_name"]:
            raise BackendError(f"artifact metadata model_name must be a non-empty string, not {d['model_name']!r}")
        names = d.get("class_names", CLASS_NAMES)
        if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
            raise BackendError(f"artifact metadata class_names must be a list of names, not {names!r}")
        for key in ("preprocessing", "model_args", "quantization", "extra"):
            if not isinstance(d.get(key, {}), dict):
                raise BackendError(f"artifact metadata field {key} must be an object, not {d[key]!r}")
        return cls(
            model_name=d["model_name"],
            class_names=tuple(d.get("class_names", CLASS_NAMES)),
            preprocessing=Preprocessing.from_dict(d.get("preprocessing", {})),
            model_args=dict(d.get("model_args", {})),
            precision=d.get("precision", "fp32"),
            quantization=dict(d.get("quantization", {})),
            edgefer_version=d.get("edgefer_version", ""),
            source_checkpoint_sha256=d.get("source_checkpoint_sha256", ""),
            source_onnx_sha256=d.get("source_onnx_sha256", ""),
            extra=dict(d.get("extra", {})),
            schema=schema,
            outputs=d.get("outputs", "logits"),
        )

    def to_props(self) -> dict[str, str]:
        """Flat string map for ONNX metadata_props / OpenVINO rt_info.

        The full record is one JSON value under ``edgefer.metadata``; the most useful fields are
        repeated as their own keys so ``netron`` or ``onnx`` users can read them at a glance.
        """
        pp = self.preprocessing
        return {
            PROPS_KEY: json.dumps(self.to_dict(), sort_keys=True),
            "edgefer.version": self.edgefer_version,
            "edgefer.model_name": self.model_name,
            "edgefer.class_names": ",".join(self.class_names),
            "edgefer.precision": self.precision,
            "edgefer.input_size": str(pp.input_size),
            "edgefer.color_order": pp.color_order,
            "edgefer.mean": ",".join(f"{v:g}" for v in pp.mean),
            "edgefer.std": ",".join(f"{v:g}" for v in pp.std),
            "edgefer.resize": pp.resize,
            "edgefer.layout": pp.layout,
            "edgefer.outputs": self.outputs,
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        if PROPS_KEY not in props:
            raise BackendError(
                f"no '{PROPS_KEY}' entry in the artifact metadata: it was not exported by edgefer "
                "(export it with `edgefer export`)"
            )
        try:
            return cls.from_dict(json.loads(props[PROPS_KEY]))
        except json.JSONDecodeError as exc:
            raise BackendError(f"artifact metadata is not valid JSON: {exc}") from exc

    def replace(self, **changes: Any) -> ModelMetadata:
        d = self.to_dict()
        for k, v in changes.items():
            d[k] = v.to_dict() if isinstance(v, Preprocessing) else v
        return ModelMetadata.from_dict(d)


def set_onnx_metadata(model: Any, metadata: ModelMetadata) -> None:
    """Replace the ``edgefer.*`` entries of an ``onnx.ModelProto``'s ``metadata_props`` with
    ``metadata.to_props()`` (the writer beside :func:`read_metadata`, so every builder writes the
    same record the device reads)."""
    props = metadata.to_props()
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("edgefer.")]
    del model.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"edgefer {metadata.model_name} ({metadata.precision})"


def set_ov_metadata(model: Any, metadata: ModelMetadata) -> None:
    """Write ``metadata.to_props()`` into an OpenVINO model's ``rt_info["framework"]`` (overwriting
    the copy of the ONNX props that ``convert_model`` carries over, so ``precision`` is the IR's own)."""
    for key, value in metadata.to_props().items():
        model.set_rt_info(value, ["framework", key])


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """The JSON sidecar beside an artifact: ``model.engine`` -> ``model.engine.json``."""
    p = Path(artifact)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Metadata of any artifact: ``.onnx``, OpenVINO ``.xml``, TensorRT ``.engine``/``.plan``
    (its JSON sidecar), or a bundle directory (``bundle.json``), read the way its row of
    :data:`edgefer.formats.FORMATS` says. An unknown suffix is an :class:`~edgefer.formats.UnknownFormatError`.

    Only the package the artifact needs is imported (onnx, openvino), never torch.
    """
    p = Path(path)
    if not p.exists():
        raise BackendError(f"artifact {p} does not exist")
    if p.is_dir():
        manifest = p / "bundle.json"
        if not manifest.exists():
            raise BackendError(f"{p} is a directory but not an edgefer bundle (no bundle.json)")
        data = _load_json(manifest, "bundle manifest")
        if not isinstance(data.get("metadata"), dict):
            raise BackendError(f"bundle manifest {manifest} has no metadata object")
        return ModelMetadata.from_dict(data["metadata"])
    from edgefer.formats import format_of

    fmt = format_of(p)  # an unknown suffix: UnknownFormatError naming the known ones
    if fmt.metadata == "onnx":
        from edgefer.errors import require

        onnx = require("onnx", "runtime", "reading ONNX metadata")
        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish types, OSError...
            raise BackendError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
        return ModelMetadata.from_props({e.key: e.value for e in model.metadata_props})
    if fmt.metadata == "openvino":
        from edgefer.errors import require

        ov = require("openvino", "runtime", "reading OpenVINO metadata")
        try:
            model = ov.Core().read_model(str(p))
        except Exception as exc:  # OpenVINO raises RuntimeError for a bad .xml or a missing .bin
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BackendError(f"{p} is not a readable OpenVINO IR ({first})") from None
        if not model.has_rt_info(["framework", PROPS_KEY]):
            raise BackendError(f"{p} has no edgefer metadata in rt_info: it was not exported by edgefer")
        return ModelMetadata.from_props({PROPS_KEY: model.get_rt_info(["framework", PROPS_KEY]).astype(str)})
    if fmt.metadata == "checkpoint":
        raise BackendError(
            f"{p} is a training checkpoint: its metadata is read when it is loaded (the torch backend), "
            "not by read_metadata; export it first (`edgefer export`)"
        )
    sidecar = sidecar_path(p)
    if sidecar.exists():
        # read here, not through engine_sidecar.load_sidecar: that module builds on this one
        data = _load_json(sidecar, "engine sidecar")
        return ModelMetadata.from_dict(data.get("metadata", data))
    raise BackendError(f"cannot find edgefer metadata for {p} (expected a sidecar {sidecar.name})")


def _load_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; invalid JSON or another type is a :class:`BackendError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackendError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BackendError(f"{what} {path} must hold a JSON object, not {type(data).__name__}")
    return data
