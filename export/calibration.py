"""Calibration images for full-integer quantisation.

From a data set in the ``tfsp.data.synthetic`` (COCO) layout the images come
from the training tf.data pipeline (``tfsp.data.pipeline.make_dataset``,
without augmentation), i.e. exactly what the model saw in training; any other
directory is read as a folder of image files, resized with the shared numpy
``preprocess_image``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.spec import ModelSpec

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

PIPELINE_BATCH_SIZE = 16
"""Images per pipeline batch while collecting calibration images."""


def _is_coco_root(data: Path) -> bool:
    return (data / "annotations" / f"instances_{CALIBRATION_SPLIT}.json").is_file()


def _from_pipeline(data: Path, spec: ModelSpec, count: int) -> np.ndarray:
    """The first ``count`` training images through the tf.data pipeline (no augmentation)."""
    from tfsp.data.coco import load_split
    from tfsp.data.pipeline import PipelineConfig, make_dataset

    dataset = load_split(data, CALIBRATION_SPLIT, check_images=False)
    dataset = dataclasses.replace(dataset, records=dataset.records[:count])
    config = PipelineConfig(input_size=spec.input_size, resize=spec.resize_mode, max_instances=PIPELINE_MAX_INSTANCES,
                            batch_size=PIPELINE_BATCH_SIZE, augment=None, deterministic=True, seed=PIPELINE_SEED)
    batches = make_dataset(dataset, config, training=False)
    return np.concatenate([batch["image"].numpy() for batch in batches]).astype(np.float32)


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
        (N, S, S, 3) float32 RGB in [0, 255], N <= ``count``.

    Raises:
        FileNotFoundError: ``data`` is not a directory or holds no images.
    """
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"calibration data {data} is not a directory")
    images = _from_pipeline(data, spec, count) if _is_coco_root(data) else _from_image_dir(data, spec, count)
    if len(images) == 0:
        raise FileNotFoundError(f"no calibration images in {data} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images
