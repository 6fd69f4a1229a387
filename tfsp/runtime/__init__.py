"""Runtime: the same preprocessing, runners and postprocessing on server and device.

Submodules are imported explicitly (``from tfsp.runtime import preprocess``); this package
imports nothing, so device-side modules (:mod:`tfsp.runtime.preprocess`, the TFLite runner)
never pull in TensorFlow.
"""
