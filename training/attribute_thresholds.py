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

from tfsp.attribute_metrics import choose_thresholds
from tfsp.data.coco import CocoDataset
from tfsp.runtime.attributes import AttributePipeline
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.spec import ModelSpec
from training.eval_structured import score_ground_truth_objects

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
    scores, labels, _ = score_ground_truth_objects(pipeline, train.records[:num_images])
    thresholds = choose_thresholds(scores, labels, default=DEFAULT_ATTRIBUTE_THRESHOLD)
    head = dataclasses.replace(spec.attributes, thresholds=tuple(float(t) for t in thresholds))
    return dataclasses.replace(spec, attributes=head)
