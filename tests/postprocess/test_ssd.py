"""SSD decoding against hand-computed detections."""

import math

import numpy as np
import pytest

from tfsp.postprocess.boxes import encode_cxcywh
from tfsp.postprocess.ssd import (DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS, DEFAULT_SCORE_THRESHOLD,
                                  SsdPostprocessConfig, decode_ssd, softmax)

# Five anchors, [cx, cy, w, h] normalised.
ANCHORS = np.array([
    [0.30, 0.30, 0.2, 0.2],  # a0 -> [0.2, 0.2, 0.4, 0.4]
    [0.32, 0.30, 0.2, 0.2],  # a1 -> [0.22, 0.2, 0.42, 0.4], IoU(a0) = 0.036 / 0.044 = 0.818
    [0.70, 0.70, 0.2, 0.4],  # a2, decoded with non-zero deltas below
    [0.95, 0.50, 0.2, 0.2],  # a3 -> [0.85, 0.4, 1.05, 0.6], clipped to x1 = 1
    [0.30, 0.30, 0.2, 0.2],  # a4: same box as a0, another class
], np.float32)
LN = math.log
# Logits [background, class 0, class 1] = log of unnormalised probabilities.
LOGITS = np.array([
    [0, LN(8), LN(1)],  # p = [.1, .8, .1]        -> (a0, c0) 0.8
    [0, LN(6), LN(1)],  # p = [1/8, 6/8, 1/8]     -> (a1, c0) 0.75, suppressed by a0
    [0, LN(0.5), LN(3.5)],  # p = [.2, .1, .7]    -> (a2, c1) 0.7
    [0, LN(2), LN(1)],  # p = [.25, .5, .25]      -> (a3, c0) 0.5 and (a3, c1) 0.25
    [0, LN(1), LN(4)],  # p = [1/6, 1/6, 4/6]     -> (a4, c1) 2/3 (class-aware: a0 does not suppress it)
], np.float32)
DELTAS = np.zeros((5, 4), np.float32)
# a2: cx += 1 * 0.1 * 0.2, cy -= 1 * 0.1 * 0.4, w *= 2 -> [0.72, 0.66, 0.4, 0.4].
DELTAS[2] = [1.0, -1.0, LN(2) / 0.2, 0.0]
CONFIG = SsdPostprocessConfig(score_threshold=0.2, iou_threshold=0.5, max_detections=10, pre_nms_top_k=100)

EXPECTED_BOXES = np.array([
    [0.20, 0.20, 0.40, 0.40],
    [0.52, 0.46, 0.92, 0.86],
    [0.20, 0.20, 0.40, 0.40],
    [0.85, 0.40, 1.00, 0.60],
    [0.85, 0.40, 1.00, 0.60],
], np.float32)
EXPECTED_SCORES = np.array([0.8, 0.7, 2 / 3, 0.5, 0.25], np.float32)
EXPECTED_CLASSES = np.array([0, 1, 1, 0, 1], np.int32)


def test_defaults_are_the_named_constants():
    config = SsdPostprocessConfig()
    assert (config.score_threshold, config.iou_threshold, config.max_detections) == (
        DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS) == (0.01, 0.6, 100)


def test_softmax_is_stable_and_normalised():
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0], [0.2, 0.6, 0.2]], atol=1e-7)
    assert probs.dtype == np.float32


def test_golden_detections():
    det = decode_ssd(DELTAS, LOGITS, ANCHORS, CONFIG)
    np.testing.assert_allclose(det.boxes_xyxy, EXPECTED_BOXES, atol=1e-6)
    np.testing.assert_allclose(det.scores, EXPECTED_SCORES, atol=1e-6)
    np.testing.assert_array_equal(det.class_ids, EXPECTED_CLASSES)


def test_max_detections_keeps_the_best():
    det = decode_ssd(DELTAS, LOGITS, ANCHORS, SsdPostprocessConfig(0.2, 0.5, max_detections=2))
    np.testing.assert_allclose(det.scores, EXPECTED_SCORES[:2], atol=1e-6)


def test_pre_nms_top_k_limits_candidates_before_nms():
    # Top 3 candidates: (a0,c0) .8, (a1,c0) .75, (a2,c1) .7; NMS then removes (a1,c0).
    det = decode_ssd(DELTAS, LOGITS, ANCHORS, SsdPostprocessConfig(0.2, 0.5, 10, pre_nms_top_k=3))
    np.testing.assert_allclose(det.scores, [0.8, 0.7], atol=1e-6)


def test_iou_threshold_one_suppresses_nothing():
    det = decode_ssd(DELTAS, LOGITS, ANCHORS, SsdPostprocessConfig(0.2, 1.0, 10))
    assert 0.75 == pytest.approx(float(det.scores[1]), abs=1e-6) and len(det) == 6


def test_all_background_gives_empty_detections():
    logits = np.tile(np.array([[10.0, -10.0, -10.0]], np.float32), (5, 1))
    det = decode_ssd(DELTAS, logits, ANCHORS, CONFIG)
    assert len(det) == 0 and det.boxes_xyxy.shape == (0, 4)


def test_encoded_ground_truth_is_recovered():
    boxes = np.array([[0.1, 0.15, 0.45, 0.5], [0.55, 0.3, 0.9, 0.95]], np.float32)
    anchors = ANCHORS[[0, 2]]
    deltas = encode_cxcywh(boxes, anchors)
    logits = np.array([[0.0, 5.0, -5.0], [0.0, -5.0, 5.0]], np.float32)
    det = decode_ssd(deltas, logits, anchors, CONFIG)
    np.testing.assert_allclose(det.boxes_xyxy, boxes, atol=1e-6)
    np.testing.assert_array_equal(det.class_ids, [0, 1])


def test_shape_errors():
    with pytest.raises(ValueError, match="box_deltas must have shape"):
        decode_ssd(DELTAS[:4], LOGITS, ANCHORS)
    with pytest.raises(ValueError, match="class_logits must have shape"):
        decode_ssd(DELTAS, LOGITS[:, :1], ANCHORS)
