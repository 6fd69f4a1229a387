"""Tests for tfsp.data.rcnn_proposals_tf: parity with the numpy generate_proposals, shapes, padding, no gradient."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.rcnn_proposals_tf import decode_deltas_tf, proposals_tf
from tfsp.postprocess.boxes import decode_cxcywh, xyxy_to_cxcywh
from tfsp.postprocess.rcnn import FpnAnchorConfig, RpnProposalConfig, generate_fpn_anchors, generate_proposals

SIZE = 64
ANCHORS = FpnAnchorConfig(image_size=SIZE, levels=(2, 3, 4, 5, 6), sizes_px=(8.0, 16.0, 32.0, 64.0, 128.0))
BATCH = 3
ATOL = 1e-4


def _outputs(seed: int, delta_scale: float = 0.5):
    rng = np.random.default_rng(seed)
    anchors = generate_fpn_anchors(ANCHORS)
    objectness = [rng.normal(size=(BATCH, len(a))).astype(np.float32) for a in anchors]
    deltas = [(delta_scale * rng.normal(size=(BATCH, len(a), 4))).astype(np.float32) for a in anchors]
    return anchors, objectness, deltas


@pytest.mark.parametrize("config", [
    RpnProposalConfig(pre_nms_top_k=40, post_nms_top_k=60),
    RpnProposalConfig(pre_nms_top_k=1000, post_nms_top_k=2000, iou_threshold=0.5, min_size_px=4.0),
])
def test_matches_numpy_generate_proposals(config):
    anchors, objectness, deltas = _outputs(seed=1)
    boxes, valid = proposals_tf([tf.constant(o) for o in objectness], [tf.constant(d) for d in deltas], anchors,
                                config, SIZE)
    assert boxes.shape == (BATCH, config.post_nms_top_k, 4) and valid.shape == (BATCH, config.post_nms_top_k)
    for b in range(BATCH):
        expected, _ = generate_proposals([o[b] for o in objectness], [d[b] for d in deltas], anchors, config,
                                         SIZE, SIZE)
        count = int(np.sum(valid[b]))
        assert count == len(expected) and np.all(valid[b, :count]) and not np.any(valid[b, count:])
        np.testing.assert_allclose(boxes[b, :count].numpy(), expected, atol=ATOL)
        np.testing.assert_array_equal(boxes[b, count:].numpy(), 0.0)


def test_nhwc_outputs_read_in_anchor_order():
    anchors, objectness, deltas = _outputs(seed=2)
    config = RpnProposalConfig(pre_nms_top_k=30, post_nms_top_k=20)
    maps = [(SIZE // 2**level) for level in ANCHORS.levels]
    nhwc_obj = [tf.reshape(o, [BATCH, m, m, 3]) for o, m in zip(objectness, maps)]
    nhwc_deltas = [tf.reshape(d, [BATCH, m, m, 12]) for d, m in zip(deltas, maps)]
    flat = proposals_tf(objectness, deltas, anchors, config, SIZE)
    nhwc = proposals_tf(nhwc_obj, nhwc_deltas, anchors, config, SIZE)
    np.testing.assert_array_equal(flat[0].numpy(), nhwc[0].numpy())


def test_decode_clamps_like_numpy():
    deltas = np.array([[0.1, -0.2, 10.0, -3.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    anchors = np.array([[0.0, 0.0, 16.0, 8.0], [4.0, 4.0, 12.0, 20.0]], np.float32)
    expected = decode_cxcywh(deltas, xyxy_to_cxcywh(anchors), (1.0, 1.0, 1.0, 1.0))
    np.testing.assert_allclose(decode_deltas_tf(deltas, anchors, (1.0, 1.0, 1.0, 1.0)).numpy(), expected, rtol=1e-6)


def test_no_gradient_and_all_invalid_when_every_box_is_tiny():
    anchors, objectness, deltas = _outputs(seed=3)
    config = RpnProposalConfig(pre_nms_top_k=10, post_nms_top_k=5, min_size_px=float(SIZE))
    variables = [tf.Variable(o) for o in objectness]
    with tf.GradientTape() as tape:
        boxes, valid = proposals_tf(variables, deltas, anchors, config, SIZE)
        total = tf.reduce_sum(boxes)
    assert all(g is None for g in tape.gradient(total, variables))
    assert not np.any(valid.numpy()) and np.all(boxes.numpy() == 0.0)
