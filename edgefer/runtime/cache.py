"""Where ``edgefer run`` and ``edgefer predict`` keep OpenVINO's compiled model between starts.

A camera service that restarts (a power cut, an update, a supervisor after exit 4) otherwise pays
OpenVINO's compile again before its first frame: hundreds of milliseconds on a CPU, seconds on an
iGPU or NPU. So the device commands use a model cache by default (``CACHE_DIR``; OpenVINO keys each
entry by the model, the device and the compile settings, so one folder serves every model):

1. ``--cache-dir DIR``: that folder (an unwritable one is an error, as the user asked for it);
2. a bundle folder that is writable: ``<bundle>/ov_cache`` (the cache lives and dies with the
   model it was compiled from; files a bundle does not list are not verified, so it stays valid);
3. else the user cache folder: ``$XDG_CACHE_HOME/edgefer/openvino`` (``~/.cache/edgefer/openvino``);
4. nothing, silently, when even that cannot be created (a read-only root file system): the model
   is compiled on every start, as before;

and ``--no-cache`` turns it off. Backends that do not compile on load (ONNX Runtime; TensorRT's
engine *is* the compiled model) ignore the folder and nothing is created for them. The library's
:class:`~edgefer.runtime.predictor.Predictor` keeps ``cache_dir=None`` (off) as its default: an
application that embeds it chooses.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgefer.errors import EdgeferError

#: the sub-folder of a bundle (and of the user cache folder's ``edgefer/``) that holds the cache
BUNDLE_CACHE = "ov_cache"


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/edgefer`` (an absolute ``XDG_CACHE_HOME`` only, per the XDG spec), else
    ``~/.cache/edgefer``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "edgefer"


def _creatable(path: Path) -> bool:
    """True when ``path`` exists as a writable folder or could be created (its nearest existing parent is writable)."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def model_cache_dir(
    model: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *, enabled: bool = True
) -> Path | None:
    """The OpenVINO cache folder for running ``model`` (an artifact or a bundle folder); see the module docstring.

    Creates nothing: the backend creates the folder when it compiles (and only OpenVINO does)."""
    if not enabled:
        if cache_dir is not None:
            raise EdgeferError("--cache-dir and --no-cache contradict each other: give one")
        return None
    if cache_dir is not None:
        return Path(cache_dir)
    p = Path(model)
    if p.is_dir() and (p / "bundle.json").is_file() and _creatable(p / BUNDLE_CACHE):
        return p / BUNDLE_CACHE
    user = user_cache_root() / "openvino"
    return user if _creatable(user) else None
