"""Calibration images for full-integer quantisation.

From a data set in the ``tfsp.data.synthetic`` (COCO) layout the images come
from the training tf.data pipeline (``tfsp.data.pipeline.make_dataset``,
without augmentation), i.e. exactly what the model saw in training; any other
directory is read as a folder of image files, resized with the shared numpy
``preprocess_image``. Attribute models calibrate on object crops: the crops the
device cuts (``tfsp.postprocess.attributes.crop_boxes``) around the ground-truth
boxes of the training images, so they need a COCO-layout data set.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tfsp.postprocess.attributes import crop_boxes
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.spec import ModelSpec, Task

CALIBRATION_IMAGES = 100
"""Default number of calibration images (TFLite guidance: ~100-500)."""

CALIBRATION_SPLIT = "train"
"""Split of a COCO-layout data set the calibration images come from."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Files read as images from a plain image directory."""

PIPELINE_SEED = 0
"""Seed of the (unshuffled, unaugmented) calibration pipeline."""

PIPELINE_MAX_INSTANCES = 1
"""Instances padded per image; calibration only reads the images."""

CROP_MAX_INSTANCES = 32
"""Instances per image read when calibrating an attribute model on crops."""

PIPELINE_BATCH_SIZE = 16
"""Images per pipeline batch while collecting calibration images."""


def _is_coco_root(data: Path) -> bool:
    return (data / "annotations" / f"instances_{CALIBRATION_SPLIT}.json").is_file()


def _from_pipeline(data: Path, spec: ModelSpec, count: int) -> np.ndarray:
    """The first ``count`` training images (or object crops) through the tf.data pipeline (no augmentation)."""
    from tfsp.data.coco import load_split
    from tfsp.data.pipeline import PipelineConfig, make_dataset

    crops = spec.task is Task.ATTRIBUTES
    dataset = load_split(data, CALIBRATION_SPLIT, check_images=False)
    dataset = dataclasses.replace(dataset, records=dataset.records[:count])
    config = PipelineConfig(
        input_size=spec.attributes.image_size if crops else spec.input_size, resize=spec.resize_mode,
        max_instances=CROP_MAX_INSTANCES if crops else PIPELINE_MAX_INSTANCES, batch_size=PIPELINE_BATCH_SIZE,
        augment=None, deterministic=True, seed=PIPELINE_SEED)
    samples = []
    for batch in make_dataset(dataset, config, training=False):
        images = batch["image"].numpy().astype(np.float32)
        if not crops:
            samples.append(images)
            continue
        for image, boxes, classes, crowd in zip(images, batch["boxes_xyxy"].numpy(), batch["class_ids"].numpy(),
                                                batch["is_crowd"].numpy()):
            samples.append(crop_boxes(image, boxes[(classes >= 0) & ~crowd], spec.attributes.crop))
    size = spec.input_size
    return (np.concatenate(samples)[:count] if samples else np.zeros((0, size, size, 3))).astype(np.float32)


def _from_image_dir(data: Path, spec: ModelSpec, count: int) -> np.ndarray:
    """The first ``count`` image files under ``data`` (sorted paths), preprocessed."""
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    images = [preprocess_image(read_image_rgb(str(p)), spec.input_size, spec.resize_mode)[0] for p in paths]
    return np.stack(images) if images else np.zeros((0, spec.input_size, spec.input_size, 3), np.float32)


def calibration_images(data: str | os.PathLike, spec: ModelSpec, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Preprocessed images for int8 calibration.

    Args:
        data: a COCO-layout data set root (``annotations/instances_train.json``)
            or a directory of image files (searched recursively).
        spec: the model spec (input size and resize mode).
        count: at most this many images.

    Returns:
        (N, S, S, 3) float32 RGB in [0, 255], N <= ``count`` (attribute models: N crops).

    Raises:
        FileNotFoundError: ``data`` is not a directory or holds no images.
    """
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"calibration data {data} is not a directory")
    if spec.task is Task.ATTRIBUTES and not _is_coco_root(data):
        raise FileNotFoundError(f"attribute models calibrate on object crops: {data} must be a COCO-layout data set "
                                f"(annotations/instances_{CALIBRATION_SPLIT}.json with boxes)")
    images = _from_pipeline(data, spec, count) if _is_coco_root(data) else _from_image_dir(data, spec, count)
    if len(images) == 0:
        raise FileNotFoundError(f"no calibration images in {data} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images
