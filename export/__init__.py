"""Export trained Keras models to builtin-only TFLite (fp32, fp16, dynamic, int8) plus a ModelSpec.

Modules:
    convert: the quantisation table (``QUANT_SETTINGS``), ``convert_model`` and
        ``export_model`` (writes ``NAME.tflite`` and ``NAME.json`` atomically).
    calibration: int8 calibration images from the training pipeline or an image folder.
    cli: ``python -m export`` (``main``).
    quant_report: ``python -m export.quant_report``, per-tensor int8 error against the fp32 export.
"""

import os as _os

# Hide TensorFlow's C++ INFO/WARNING start-up lines in these CLIs (errors still show); an explicit setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
