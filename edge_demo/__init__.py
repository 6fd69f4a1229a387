"""On-device demo and latency benchmark for exported tfsp models (``requirements-edge.txt`` only).

Modules:
    app: ``python -m edge_demo`` — run a ``.tflite`` model on an image, an image
        directory, a video or a camera; draw, write and time every frame.
    benchmark: ``python -m edge_demo.benchmark`` — interleaved latency of several
        models on the same inputs, with ratios to the first.
    sources: frame sources (image, directory, video, camera) and annotated-output writers.
    cli: argument-parsing helpers shared by both commands.

Device-safe: numpy, OpenCV, LiteRT and the device-safe ``tfsp`` modules only; never
TensorFlow or Keras.
"""
