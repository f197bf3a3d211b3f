"""The benchmark harness: accuracy vs the labels and the FP32 reference, latency, size, a gate.

``run_benchmark(models, data, BenchOptions(...))`` -> :class:`BenchReport` (JSON, Markdown, PNG plots).
Torch-free: benchmarking ONNX / OpenVINO / TensorRT artifacts imports numpy, OpenCV and the
backend only.
"""

from edgefer.bench.gate import GATE_EXIT_CODE, Gate
from edgefer.bench.harness import REPORT_SCHEMA, BenchReport, ModelSpec, run_benchmark
from edgefer.bench.metrics import compare_to_reference, latency_stats, percentile
from edgefer.bench.options import BenchOptions

__all__ = [
    "GATE_EXIT_CODE",
    "REPORT_SCHEMA",
    "BenchOptions",
    "BenchReport",
    "Gate",
    "ModelSpec",
    "compare_to_reference",
    "latency_stats",
    "percentile",
    "run_benchmark",
]
