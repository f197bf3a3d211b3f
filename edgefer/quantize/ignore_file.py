"""``ignore.json``: the layers ``edgefer debug`` says to keep in floating point, as NNCF
ignored-scope regexes that ``edgefer quantize --ignore-from`` reads back.

One regex per layer, ``^<ONNX node name>(/WithoutBiases)?$``: NNCF matches it against the ONNX node
names (trt/onnx targets) and the OpenVINO friendly names (openvino target, where the quantized
Convolution of a Conv with bias carries the ``/WithoutBiases`` suffix), so one file serves both.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgefer.errors import QuantizationError

#: what ``ignore.json`` says it is (checked by :func:`read_ignore_file`)
IGNORE_FORMAT = "edgefer-ignore/1"


#: suffix OpenVINO's ONNX frontend gives the Convolution of a Conv with bias (the op NNCF quantizes)
OV_CONV_SUFFIX = "/WithoutBiases"


def ignore_pattern(node_name: str) -> str:
    """The NNCF ignored-scope regex keeping ONNX node ``node_name`` in FP for every target (see module doc)."""
    return f"^{re.escape(node_name)}({re.escape(OV_CONV_SUFFIX)})?$"


def read_ignore_file(path: str | os.PathLike) -> list[str]:
    """The regex patterns of an ``ignore.json`` written by :func:`debug_int8` (or a plain JSON list of regexes).

    Raises :class:`QuantizationError` for a missing or unreadable file, a wrong shape or a pattern
    that is not a valid regular expression.
    """
    p = Path(path)
    if not p.is_file():
        raise QuantizationError(f"ignore file {p} does not exist")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizationError(f"ignore file {p} is not readable JSON ({exc})") from None
    patterns = doc.get("patterns") if isinstance(doc, dict) else doc
    if not isinstance(patterns, list) or not all(isinstance(s, str) and s for s in patterns):
        raise QuantizationError(
            f"ignore file {p} must hold a list of regex strings, or an object with one under 'patterns'"
        )
    for s in patterns:
        try:
            re.compile(s)
        except re.error as exc:
            raise QuantizationError(f"ignore file {p}: {s!r} is not a valid regular expression ({exc})") from None
    return list(patterns)
