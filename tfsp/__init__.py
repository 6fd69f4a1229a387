"""tfsp: TensorFlow Structured Prediction.

Deep networks whose outputs are structures (boxes, instance masks, multi-person
keypoints, dense pixel maps, attributes), trained in Keras 3, exported to int8
TFLite, and decoded by one numpy postprocessing module on server and device.

This package module stays import-light: importing ``tfsp`` never imports
TensorFlow, so the device-side modules work with ``requirements-edge.txt``.
"""

__version__ = "0.2.0"
