"""Mask R-CNN ``tf.data`` glue: per-example RPN targets and Keras ``fit`` inputs.

The RPN targets depend only on the ground truth, so they are computed per example in the input
pipeline (:func:`make_rcnn_target_fn`, mapped before batching); proposals, RoI sampling and the
head targets depend on the model's outputs and are computed in the train step
(:class:`tfsp.models.mask_rcnn_train.MaskRcnnTrainModel`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfsp.data.rcnn_targets import rpn_targets
from tfsp.models.mask_rcnn import MaskRcnnConfig, fpn_anchor_config
from tfsp.postprocess.rcnn import generate_fpn_anchors

Example = dict[str, tf.Tensor]

RCNN_FIT_KEYS = ("image", "boxes_xyxy", "class_ids", "is_crowd", "keypoints", "masks", "rpn_labels", "rpn_deltas")
"""Batch keys the Mask R-CNN train step reads (``x`` of :func:`rcnn_fit_targets`)."""


def rcnn_anchors(config: MaskRcnnConfig) -> np.ndarray:
    """(A, 4) float32 anchors of every level concatenated, input px, in the RPN output order.

    Args:
        config: model configuration (levels, anchor sizes and aspect ratios).
    """
    return np.concatenate(generate_fpn_anchors(fpn_anchor_config(config)), axis=0)


def _example_seed(example: Example) -> tf.Tensor:
    """(2,) int32 stateless seed from the example's id and (augmented) boxes: reproducible, varies per epoch."""
    image_id = tf.cast(example.get("image_id", tf.constant(0, tf.int64)), tf.int32)
    box_sum = tf.reduce_sum(tf.cast(example["boxes_xyxy"], tf.float32))
    return tf.stack([image_id, tf.bitcast(box_sum, tf.int32)])


def make_rcnn_target_fn(config: MaskRcnnConfig) -> Callable[[Example], Example]:
    """Returns a per-example ``target_fn`` adding the sampled RPN targets.

    Args:
        config: model configuration (anchors, ``rpn_batch_size``, ``rpn_positive_fraction``).

    Returns:
        ``fn(example) -> example``: reads ``boxes_xyxy`` (M, 4) float32 input px, ``class_ids``
        (M,) int32 (-1 padding) and ``is_crowd`` (M,) bool; returns a new dict adding
        ``rpn_labels`` (A,) int32 (1 positive, 0 negative, -1 ignored) and ``rpn_deltas``
        (A, 4) float32 (see :func:`tfsp.data.rcnn_targets.rpn_targets`).
    """
    anchors = tf.constant(rcnn_anchors(config))

    def target_fn(example: Example) -> Example:
        class_ids = tf.cast(example["class_ids"], tf.int32)
        is_crowd = tf.cast(example["is_crowd"], tf.bool)
        real = class_ids >= 0
        labels, deltas = rpn_targets(anchors, example["boxes_xyxy"], real & ~is_crowd, _example_seed(example),
                                     gt_crowd=real & is_crowd, num_samples=config.rpn_batch_size,
                                     positive_fraction=config.rpn_positive_fraction)
        out = dict(example)
        out["rpn_labels"] = labels
        out["rpn_deltas"] = deltas
        return out

    return target_fn


def rcnn_fit_targets(batch: Example) -> tuple[Example, tf.Tensor]:
    """Maps a batch with RPN targets to Keras ``fit``'s ``(x, y)``.

    Args:
        batch: dict with at least the keys of :data:`RCNN_FIT_KEYS` (shapes as in
            ``tfsp.data.pipeline.make_dataset`` with ``with_masks=True`` plus the target fn's).

    Returns:
        ``(x, y)``: x the dict of :data:`RCNN_FIT_KEYS`; y (B,) float32 zeros, unused (the train
        step computes every loss from x).
    """
    x = {key: batch[key] for key in RCNN_FIT_KEYS}
    return x, tf.zeros(tf.shape(batch["image"])[:1], tf.float32)
