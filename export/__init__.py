"""Export trained Keras models to builtin-only TFLite (fp32, fp16, dynamic, int8) plus a ModelSpec.

Modules:
    convert: the quantisation table (``QUANT_SETTINGS``), ``convert_model`` and
        ``export_model`` (writes ``NAME.tflite`` and ``NAME.json`` atomically).
    calibration: int8 calibration images from the training pipeline or an image folder.
    cli: ``python -m export`` (``main``).
"""
