"""Per-attribute decision thresholds, picked once after training on training images.

The attribute model's sigmoid scores are ranked the same whatever the thresholds, so AP
does not depend on them; F1 and what the edge demo shows do. Training picks, per
attribute, the threshold that maximises F1 on the ground-truth boxes of the first
`TUNING_IMAGES` training images (never the validation split), through the same
device pipeline evaluation uses, and writes them into the run's ModelSpec.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfsp.attribute_metrics import choose_thresholds
from tfsp.data.coco import CocoDataset
from tfsp.runtime.attributes import AttributePipeline
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.spec import ModelSpec

DEFAULT_ATTRIBUTE_THRESHOLD = 0.5
"""Threshold of every attribute before tuning (and where an attribute has no positives)."""
TUNING_IMAGES = 300
"""Training images whose objects pick the thresholds."""


def tune_attribute_thresholds(model: keras.Model, spec: ModelSpec, train: CocoDataset,
                              num_images: int = TUNING_IMAGES) -> ModelSpec:
    """The spec with each attribute's threshold set to the F1-maximising one on training objects.

    Args:
        model: the trained attribute model (input: crops).
        spec: its ModelSpec (task ATTRIBUTES); not modified.
        train: the training split; its first ``num_images`` records are used.
        num_images: how many training images to score.

    Returns:
        A new spec whose ``attributes.thresholds`` are the tuned values.
    """
    pipeline = AttributePipeline(KerasRunner(model), spec)
    scores, labels = [], []
    for record in train.records[:num_images]:
        keep = ~record.is_crowd
        attributes, _ = pipeline.classify_timed(read_image_rgb(record.path), record.boxes_xyxy[keep])
        scores.append(attributes.scores)
        labels.append(record.attribute_ids[keep] > 0)
    count = len(spec.attributes.names)
    thresholds = choose_thresholds(np.concatenate(scores) if scores else np.zeros((0, count), np.float32),
                                   np.concatenate(labels) if labels else np.zeros((0, count), bool),
                                   default=DEFAULT_ATTRIBUTE_THRESHOLD)
    head = dataclasses.replace(spec.attributes, thresholds=tuple(float(t) for t in thresholds))
    return dataclasses.replace(spec, attributes=head)
