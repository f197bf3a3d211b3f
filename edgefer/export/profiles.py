"""Device profiles: the build settings for one device (``export/jetson/*.yaml``).

A profile fixes precision, batch (static ``batch`` or ``dynamic`` up to ``max_batch`` with an
``opt_batch``), workspace, DLA core and the TensorRT version found on that device (JetPack's),
which selects the flags of the printed ``trtexec`` command when the engine is built elsewhere.
Options given on the command line override the profile.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edgefer.engine_sidecar import parse_trt_version
from edgefer.errors import ExportError
from edgefer.export.tensorrt import DEFAULT_WORKSPACE_MIB, BatchProfile, batch_profile


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    device: str = ""
    jetpack: str | None = None
    tensorrt: str = "10.3"
    compute_capability: str | None = None
    precision: str = "fp16"
    dynamic: bool = False
    batch: int = 1
    max_batch: int | None = None
    opt_batch: int | None = None
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    dla_core: int | None = None
    img_size: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ExportError(f"profile {self.name}: precision must be fp32, fp16 or int8, not {self.precision!r}")
        parse_trt_version(self.tensorrt)
        if self.workspace_mib < 1:
            raise ExportError(f"profile {self.name}: workspace_mib must be positive")
        if self.dla_core is not None and (self.dynamic or self.dla_core < 0):
            raise ExportError(f"profile {self.name}: a DLA core needs dynamic: false (DLA has static shapes only)")
        self.batch_profile()  # validates batch / max_batch / opt_batch

    def batch_profile(self) -> BatchProfile:
        return batch_profile(self.batch, self.dynamic, self.max_batch, self.opt_batch)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read a device profile YAML; unknown keys are an error (a typo must not be ignored)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ExportError(f"device profile {p} does not exist (see export/jetson/*.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ExportError(f"device profile {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"device profile {p} must be a mapping of settings")
    known = {f.name for f in fields(DeviceProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ExportError(f"device profile {p}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    data.setdefault("name", p.stem)
    for key in ("tensorrt", "jetpack", "compute_capability"):
        if data.get(key) is not None:
            data[key] = str(data[key])
    try:
        return DeviceProfile(**data)
    except TypeError as exc:
        raise ExportError(f"device profile {p}: {exc}") from exc
