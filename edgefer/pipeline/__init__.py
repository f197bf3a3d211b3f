"""The main job end to end: data -> train -> export -> quantize -> benchmark -> bundle.

:mod:`edgefer.pipeline.stages` is a tiny make-like engine (a stage runs when an output is
missing or older than an input); :mod:`edgefer.pipeline.flow` declares the FER flow with it.
"""

from edgefer.extras import require_train_python

require_train_python("edgefer.pipeline")
