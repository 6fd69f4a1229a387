"""Tests for tfsp.data.rcnn_train_targets: the per-example RPN target fn and the fit mapping."""

import numpy as np
import tensorflow as tf

from tfsp.data.rcnn_targets import RPN_IGNORE, RPN_NEGATIVE, RPN_POSITIVE, rpn_targets
from tfsp.data.rcnn_train_targets import RCNN_FIT_KEYS, make_rcnn_target_fn, rcnn_anchors, rcnn_fit_targets
from tfsp.models.mask_rcnn import MaskRcnnConfig, fpn_anchor_config
from tfsp.postprocess.rcnn import generate_fpn_anchors

CONFIG = MaskRcnnConfig(input_size=64, anchor_sizes_px=(8, 16, 32, 64, 128), rpn_batch_size=32)


def _example() -> dict:
    return {"image": tf.zeros([64, 64, 3]), "image_id": tf.constant(7, tf.int64),
            "boxes_xyxy": tf.constant([[4.0, 4.0, 20.0, 20.0], [32.0, 32.0, 64.0, 64.0], [0.0] * 4]),
            "class_ids": tf.constant([1, 0, -1]), "is_crowd": tf.constant([False, True, False])}


def test_anchors_concatenate_every_level_in_output_order():
    anchors = rcnn_anchors(CONFIG)
    expected = np.concatenate(generate_fpn_anchors(fpn_anchor_config(CONFIG)))
    assert anchors.shape == (3 * sum((64 // 2**l) ** 2 for l in CONFIG.levels), 4)
    np.testing.assert_array_equal(anchors, expected)


def test_target_fn_samples_rpn_labels_with_crowd_ignored():
    out = make_rcnn_target_fn(CONFIG)(_example())
    labels, deltas = out["rpn_labels"].numpy(), out["rpn_deltas"].numpy()
    count = len(rcnn_anchors(CONFIG))
    assert labels.shape == (count,) and labels.dtype == np.int32 and deltas.shape == (count, 4)
    assert set(np.unique(labels)) <= {RPN_IGNORE, RPN_NEGATIVE, RPN_POSITIVE}
    assert np.sum(labels >= 0) == CONFIG.rpn_batch_size and np.sum(labels == RPN_POSITIVE) >= 1
    anchors = rcnn_anchors(CONFIG)
    inside_crowd = np.all((anchors[:, :2] >= 32.0) & (anchors[:, 2:] <= 64.0), axis=1)
    assert inside_crowd.any() and not np.any(labels[inside_crowd] == RPN_NEGATIVE)
    # the same example gives the same sample (seeded by the example), matching rpn_targets
    again = make_rcnn_target_fn(CONFIG)(_example())
    np.testing.assert_array_equal(again["rpn_labels"].numpy(), labels)
    example = _example()
    seed = tf.stack([tf.constant(7), tf.bitcast(tf.reduce_sum(example["boxes_xyxy"]), tf.int32)])
    expected, _ = rpn_targets(tf.constant(anchors), example["boxes_xyxy"], tf.constant([True, False, False]), seed,
                              gt_crowd=tf.constant([False, True, False]), num_samples=CONFIG.rpn_batch_size)
    np.testing.assert_array_equal(expected.numpy(), labels)


def test_fit_targets_pass_the_train_step_keys():
    batch = {key: tf.zeros([2, 1]) for key in RCNN_FIT_KEYS}
    batch["image"] = tf.zeros([2, 64, 64, 3])
    batch["extra"] = tf.zeros([2])
    x, y = rcnn_fit_targets(batch)
    assert set(x) == set(RCNN_FIT_KEYS) and y.shape == (2,)
