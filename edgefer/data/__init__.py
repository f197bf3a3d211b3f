"""Datasets: torch-free readers for RAF-DB, FER2013 and image folders, and the synthetic set.

``open_dataset(path, split)`` detects the layout and returns a :class:`FERDataset` (ids and
labels known up front, images decoded on demand as HxWx3 uint8 RGB, canonical class order).
``generate_synthetic(out)`` writes the procedurally drawn default set in RAF-DB's layout.
The torch ``Dataset`` adapter lives in :mod:`edgefer.data.torch_dataset`; importing
``edgefer.data`` never imports torch.
"""

from edgefer.data.base import FERDataset, Sample, read_image
from edgefer.data.readers import FORMATS, dataset_info, detect_format, list_splits, open_dataset
from edgefer.data.synth import compose_frame, generate_synthetic, render_face

__all__ = [
    "FORMATS",
    "FERDataset",
    "Sample",
    "compose_frame",
    "dataset_info",
    "detect_format",
    "generate_synthetic",
    "list_splits",
    "open_dataset",
    "read_image",
    "render_face",
]
