"""The device install's packaging, checked statically: pyproject.toml's core + ``runtime`` leave torch out
and bring what the device commands import, and every extra edgefer's own messages name exists.

The install itself -- a fresh venv on each Python a Jetson ships (3.8, 3.10), ``pip install
edgefer[runtime]`` from this checkout, and the commands a camera runs inside it -- is
``tests/test_device_python.py``. test_torchfree.py blocks torch in an import hook.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(reqs: list[str]) -> set[str]:
    """Distribution names of requirement strings (``"torch>=2.4"`` -> ``"torch"``)."""
    import re

    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in reqs}


def _resolve_extras(project: dict, extras: set[str]) -> set[str]:
    """Every distribution the core + ``extras`` pull in, following ``edgefer[...]`` self-references."""
    optional = project["optional-dependencies"]
    names = _requirement_names(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            if req.startswith("edgefer["):
                todo += [e.strip() for e in req[len("edgefer[") : req.index("]")].split(",")]
            else:
                names |= _requirement_names([req])
    return names


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_runtime_extra_has_no_torch_and_all_still_has_everything() -> None:
    project = _project()
    device = _resolve_extras(project, {"runtime"})
    assert not device & {"torch", "torchvision", "matplotlib", "nncf", "torchao", "opencv-python-headless"}, device
    assert {"numpy", "onnxruntime", "openvino"} <= device
    assert _resolve_extras(project, {"opencv"}) - device == {"opencv-python-headless"}
    train = _resolve_extras(project, {"train"})
    assert {"torch", "torchvision", "matplotlib", "opencv-python-headless"} <= train
    # `make install` uses .[all,dev]: everything the old core + extras installed is still there
    everything = _resolve_extras(project, {"all", "dev"})
    assert train | device | {"onnx", "onnxscript", "onnxslim", "nncf", "torchao", "pytest"} <= everything
    # the extras edgefer's own messages name exist
    from edgefer.extras import MODULE_EXTRAS

    assert set(MODULE_EXTRAS.values()) <= set(project["optional-dependencies"])
