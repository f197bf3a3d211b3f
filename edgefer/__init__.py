"""edgefer: facial-expression recognition from training to the camera.

Importing ``edgefer`` is cheap and torch-free: the heavy parts (torch, onnx, openvino,
tensorrt) are imported by the submodules that need them, so the benchmark and the runtime
work on a device that has numpy, OpenCV and one inference backend only.
"""

from edgefer.errors import EdgeferError
from edgefer.labels import CLASS_NAMES, NUM_CLASSES

__version__ = "0.1.0"

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "EdgeferError", "__version__"]
