"""Data: the embedded synthetic COCO-format data set, COCO loading and input pipelines.

Submodules are imported explicitly (``from tfsp.data import synthetic``); this package
imports nothing so that device-side code can use :mod:`tfsp.data.keypoints` without
pulling in TensorFlow, pycocotools or the generator.
"""
