"""Tests for tfsp.postprocess.rcnn: FPN anchors, RPN proposals and box-head decoding, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfsp.postprocess.boxes import DECODE_MAX_LOG_SCALE
from tfsp.postprocess.rcnn import (BOX_HEAD_VARIANCES, RPN_VARIANCES, BoxHeadConfig, FpnAnchorConfig,
                                   RpnProposalConfig, decode_box_head, fpn_feature_map_sizes,
                                   generate_fpn_anchors, generate_proposals)
from tfsp.structures import Detections

LN = math.log

# ---------------------------------------------------------------- anchors

# Stride 4 on an 8 x 8 input: 2 x 2 cells centred at 2 and 6. Size 8 with h / w = 0.25, 1, 4:
# (w, h) = (16, 4), (8, 8), (4, 16). Order: row, col, aspect.
TINY_ANCHORS = np.array([
    [-6, 0, 10, 4], [-2, -2, 6, 6], [0, -6, 4, 10],  # cell (0, 0), centre (2, 2)
    [-2, 0, 14, 4], [2, -2, 10, 6], [4, -6, 8, 10],  # cell (0, 1), centre (6, 2)
    [-6, 4, 10, 8], [-2, 2, 6, 10], [0, -2, 4, 14],  # cell (1, 0), centre (2, 6)
    [-2, 4, 14, 8], [2, 2, 10, 10], [4, -2, 8, 14],  # cell (1, 1), centre (6, 6)
], np.float32)


def test_generate_fpn_anchors_golden_tiny_config():
    config = FpnAnchorConfig(image_size=8, levels=(2,), sizes_px=(8,), aspect_ratios=(0.25, 1, 4))
    (anchors,) = generate_fpn_anchors(config)
    assert anchors.dtype == np.float32
    np.testing.assert_array_equal(anchors, TINY_ANCHORS)


def test_generate_fpn_anchors_two_levels_non_square():
    config = FpnAnchorConfig(image_size=(8, 12), levels=(2, 3), sizes_px=(4, 16), aspect_ratios=(1,))
    assert config.image_size == (8, 12)
    assert fpn_feature_map_sizes(config) == ((2, 3), (1, 2))
    fine, coarse = generate_fpn_anchors(config)
    # Level 2: centres x = 2, 6, 10 and y = 2, 6, side 4; level 3: centres (4, 4), (12, 4), side 16.
    np.testing.assert_array_equal(fine, [[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4],
                                         [0, 4, 4, 8], [4, 4, 8, 8], [8, 4, 12, 8]])
    np.testing.assert_array_equal(coarse, [[-4, -4, 12, 12], [4, -4, 20, 12]])


def test_default_fpn_anchor_counts_and_shapes():
    config = FpnAnchorConfig(image_size=(100, 64))
    assert fpn_feature_map_sizes(config) == ((25, 16), (13, 8), (7, 4), (4, 2), (2, 1))  # ceil(size / 2 ** l)
    anchors = generate_fpn_anchors(config)
    assert [a.shape for a in anchors] == [(25 * 16 * 3, 4), (13 * 8 * 3, 4), (7 * 4 * 3, 4), (4 * 2 * 3, 4), (2 * 3, 4)]
    # P6 first cell, h / w = 0.5: w = 512 / sqrt(0.5), h = 512 * sqrt(0.5), centre (32, 32).
    half_w, half_h = 256 / math.sqrt(0.5), 256 * math.sqrt(0.5)
    np.testing.assert_allclose(anchors[4][0], [32 - half_w, 32 - half_h, 32 + half_w, 32 + half_h], rtol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"image_size": 0}, {"image_size": (8, 8, 8)}, {"image_size": 8, "levels": (3, 2)},
    {"image_size": 8, "levels": (2, 3), "sizes_px": (8,)}, {"image_size": 8, "aspect_ratios": (0.0,)},
    {"image_size": 8, "levels": ()},
])
def test_fpn_anchor_config_rejects_invalid(kwargs):
    with pytest.raises(ValueError, match="FpnAnchorConfig"):
        FpnAnchorConfig(**kwargs)


# ---------------------------------------------------------------- proposals

# One level on a 64 x 64 image, RPN variances (1, 1, 1, 1).
ANCHORS = np.array([
    [0, 0, 10, 10],  # a0, dx = 0.1 -> cx + 1 -> [1, 0, 11, 10]; IoU with a1 = 90 / 110 > 0.7
    [2, 0, 12, 10],  # a1, zero deltas, higher logit: keeps, suppresses a0
    [20, 20, 30, 30],  # a2, dw = ln 2 -> [15, 20, 35, 30]
    [40, 40, 44, 44],  # a3, 4 px wide: dropped by min_size_px = 4 despite the best logit
    [56, 0, 66, 10],  # a4, clipped to x1 = 64
], np.float32)
DELTAS = np.zeros((5, 4), np.float32)
DELTAS[0, 0] = 0.1
DELTAS[2, 2] = LN(2)
LOGITS = np.array([2.0, 3.0, 1.0, 5.0, 0.5], np.float32)
PROPOSAL_CONFIG = RpnProposalConfig(min_size_px=4.0)
EXPECTED_PROPOSALS = np.array([[2, 0, 12, 10], [15, 20, 35, 30], [56, 0, 64, 10]], np.float32)


def test_generate_proposals_golden():
    inputs = [LOGITS.copy()], [DELTAS.copy()], [ANCHORS.copy()]
    boxes, scores = generate_proposals(*inputs, PROPOSAL_CONFIG, 64, 64)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_allclose(boxes, EXPECTED_PROPOSALS, atol=1e-5)
    np.testing.assert_array_equal(scores, [3.0, 1.0, 0.5])
    for given, original in zip(inputs, (LOGITS, DELTAS, ANCHORS)):  # inputs untouched
        np.testing.assert_array_equal(given[0], original)


def test_generate_proposals_min_size_zero_keeps_small_box():
    boxes, scores = generate_proposals([LOGITS], [DELTAS], [ANCHORS], RpnProposalConfig(), 64, 64)
    np.testing.assert_array_equal(scores, [5.0, 3.0, 1.0, 0.5])
    np.testing.assert_allclose(boxes[0], [40, 40, 44, 44])


def test_generate_proposals_pre_nms_top_k_is_per_level_and_before_size_filter():
    config = RpnProposalConfig(pre_nms_top_k=2, min_size_px=4.0)  # a3 (5.0) and a1 (3.0); a3 too small
    boxes, scores = generate_proposals([LOGITS], [DELTAS], [ANCHORS], config, 64, 64)
    np.testing.assert_allclose(boxes, [[2, 0, 12, 10]])
    np.testing.assert_array_equal(scores, [3.0])


def test_generate_proposals_post_nms_top_k():
    config = RpnProposalConfig(post_nms_top_k=2, min_size_px=4.0)
    boxes, scores = generate_proposals([LOGITS], [DELTAS], [ANCHORS], config, 64, 64)
    np.testing.assert_allclose(boxes, EXPECTED_PROPOSALS[:2], atol=1e-5)
    np.testing.assert_array_equal(scores, [3.0, 1.0])


def test_generate_proposals_levels_do_not_suppress_each_other():
    box = np.array([[0, 0, 10, 10]], np.float32)
    zero = np.zeros((1, 4), np.float32)
    boxes, scores = generate_proposals([np.float32([1.0]), np.float32([2.0])], [zero, zero], [box, box],
                                       RpnProposalConfig(), 64, 64)
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [0, 0, 10, 10]])
    np.testing.assert_array_equal(scores, [2.0, 1.0])


def test_generate_proposals_clamps_log_scale_and_drops_non_finite():
    anchors = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.float32)
    deltas = np.array([[0, 0, 100, 0], [0, 0, 0, 0]], np.float32)  # w = 2 * 1000 / 16 = 125, centre 1
    boxes, scores = generate_proposals([np.float32([1.0, np.nan])], [deltas], [anchors], RpnProposalConfig(), 64, 64)
    assert math.isclose(DECODE_MAX_LOG_SCALE, LN(1000 / 16))
    np.testing.assert_allclose(boxes, [[0, 0, 63.5, 2]], rtol=1e-6)
    np.testing.assert_array_equal(scores, [1.0])


def test_generate_proposals_empty():
    empty_levels = ([np.zeros(0, np.float32)], [np.zeros((0, 4), np.float32)], [np.zeros((0, 4), np.float32)])
    for inputs in (empty_levels, ([], [], [])):
        boxes, scores = generate_proposals(*inputs, RpnProposalConfig(), 64, 64)
        assert boxes.shape == (0, 4) and boxes.dtype == np.float32
        assert scores.shape == (0,) and scores.dtype == np.float32


def test_generate_proposals_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="level 0"):
        generate_proposals([LOGITS[:4]], [DELTAS], [ANCHORS], RpnProposalConfig(), 64, 64)
    with pytest.raises(ValueError, match="one entry per level"):
        generate_proposals([LOGITS], [], [ANCHORS], RpnProposalConfig(), 64, 64)


@pytest.mark.parametrize("kwargs", [{"pre_nms_top_k": 0}, {"post_nms_top_k": -1}, {"iou_threshold": 1.5},
                                    {"min_size_px": -1.0}, {"variances": (1, 1, 1)}, {"variances": (1, 1, 1, 0)}])
def test_rpn_proposal_config_rejects_invalid(kwargs):
    with pytest.raises(ValueError, match="RpnProposalConfig"):
        RpnProposalConfig(**kwargs)


def test_variances_are_inverse_detectron2_weights():
    assert RPN_VARIANCES == (1.0, 1.0, 1.0, 1.0)
    assert BOX_HEAD_VARIANCES == tuple(1.0 / w for w in (10.0, 10.0, 5.0, 5.0))


# ---------------------------------------------------------------- box head

# 48 x 48 image; logits [background, class 0, class 1] = log of unnormalised probabilities.
PROPOSALS = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 40, 40], [0, 0, 10, 10]], np.float32)
CLASS_LOGITS = np.array([
    [0, LN(8), LN(1)],  # p = [.1, .8, .1]            -> (P0, c0) 0.8
    [0, LN(6), LN(1)],  # p = [1/8, 6/8, 1/8]         -> (P1, c0) 0.75, IoU 90 / 110 with P0: suppressed
    [0, LN(0.5), LN(3.5)],  # p = [.2, .1, .7]        -> (P2, c1) 0.7, box decoded below
    [0, LN(1), LN(4)],  # p = [1/6, 1/6, 4/6]         -> (P3, c1) 2/3: same box as P0, other class, kept
], np.float32)
BOX_DELTAS = np.zeros((4, 2, 4), np.float32)
# P2 (cx, cy, w, h) = (30, 30, 20, 20); class 1: cx += 1 * 0.1 * 20, cy -= 2, w *= 2 -> [12, 18, 52, 38],
# clipped to x1 = 48. Its class-0 deltas (score 0.1, below threshold) are ignored.
BOX_DELTAS[2, 1] = [1.0, -1.0, LN(2) / 0.2, 0.0]
BOX_DELTAS[2, 0] = [5.0, 5.0, 5.0, 5.0]
BOX_CONFIG = BoxHeadConfig(score_threshold=0.2)


def test_decode_box_head_golden():
    detections = decode_box_head(CLASS_LOGITS, BOX_DELTAS, PROPOSALS, BOX_CONFIG, 48, 48)
    assert isinstance(detections, Detections)
    np.testing.assert_allclose(detections.boxes_xyxy, [[0, 0, 10, 10], [12, 18, 48, 38], [0, 0, 10, 10]], atol=1e-4)
    np.testing.assert_allclose(detections.scores, [0.8, 0.7, 2 / 3], rtol=1e-6)
    np.testing.assert_array_equal(detections.class_ids, [0, 1, 1])


def test_decode_box_head_max_detections_and_class_agnostic_deltas():
    agnostic = np.zeros((4, 1, 4), np.float32)
    config = BoxHeadConfig(score_threshold=0.2, max_detections=2)
    detections = decode_box_head(CLASS_LOGITS, agnostic, PROPOSALS, config, 48, 48)
    np.testing.assert_allclose(detections.boxes_xyxy, [[0, 0, 10, 10], [20, 20, 40, 40]])
    np.testing.assert_allclose(detections.scores, [0.8, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(detections.class_ids, [0, 1])


def test_decode_box_head_empty():
    detections = decode_box_head(np.zeros((0, 3)), np.zeros((0, 2, 4)), np.zeros((0, 4)), BoxHeadConfig(), 48, 48)
    assert len(detections) == 0 and detections.boxes_xyxy.shape == (0, 4)
    nothing_passes = decode_box_head(CLASS_LOGITS, BOX_DELTAS, PROPOSALS, BoxHeadConfig(score_threshold=0.9), 48, 48)
    assert len(nothing_passes) == 0 and nothing_passes.class_ids.dtype == np.int32


def test_decode_box_head_rejects_bad_shapes():
    with pytest.raises(ValueError, match="box_deltas"):
        decode_box_head(CLASS_LOGITS, BOX_DELTAS[:, :, :3], PROPOSALS, BoxHeadConfig(), 48, 48)
    with pytest.raises(ValueError, match="class_logits"):
        decode_box_head(CLASS_LOGITS[:, :1], BOX_DELTAS, PROPOSALS, BoxHeadConfig(), 48, 48)


@pytest.mark.parametrize("kwargs", [{"iou_threshold": -0.1}, {"max_detections": -1}, {"variances": (0.1,) * 3}])
def test_box_head_config_rejects_invalid(kwargs):
    with pytest.raises(ValueError, match="BoxHeadConfig"):
        BoxHeadConfig(**kwargs)
