"""Tests for tfsp.postprocess.boxes: golden values, round trips, TF NMS parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfsp.postprocess import boxes as box_ops

IOU_THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 1.0)
NUM_PARITY_SEEDS = 200


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def test_area_golden():
    boxes = np.array([[0, 0, 2, 3], [1, 1, 1, 5], [2, 2, 1, 1]], np.float32)
    np.testing.assert_array_equal(box_ops.area_xyxy(boxes), [6.0, 0.0, 0.0])


def test_iou_golden():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 0, 1], [1, 1, 0, 0]], np.float32)
    expected = np.array(
        [
            [1 / 7, 1 / 4, 0, 0, 0],  # unit overlap of two 2x2 boxes; 1x1 inside 2x2
            [0, 1, 0, 0, 0],  # corner touch has zero intersection; degenerate/inverted -> 0
        ],
        np.float32,
    )
    iou = box_ops.iou_xyxy(a, b)
    assert iou.dtype == np.float32 and iou.shape == (2, 5)
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    np.testing.assert_allclose(box_ops.iou_xyxy(b, a), expected.T, rtol=1e-6)


def test_iou_empty_inputs():
    assert box_ops.iou_xyxy(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_cxcywh_golden_and_round_trip():
    xyxy = np.array([[1, 2, 5, 10]], np.float32)
    cxcywh = box_ops.xyxy_to_cxcywh(xyxy)
    np.testing.assert_array_equal(cxcywh, [[3, 6, 4, 8]])
    np.testing.assert_array_equal(box_ops.cxcywh_to_xyxy(cxcywh), xyxy)
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 100, (5, 7, 4)).astype(np.float32)
    back = box_ops.xyxy_to_cxcywh(box_ops.cxcywh_to_xyxy(boxes))
    assert back.shape == (5, 7, 4) and back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=1e-4)


def test_clip_golden():
    boxes = np.array([[-3, 2, 120, 50], [10, -1, 20, 90]], np.float32)
    np.testing.assert_array_equal(
        box_ops.clip_xyxy(boxes, height=64, width=100), [[0, 2, 100, 50], [10, 0, 20, 64]]
    )


def test_encode_golden():
    box = np.array([[0.1, 0.2, 0.5, 0.6]])  # cx .3, cy .4, w .4, h .4
    anchor = np.array([[0.25, 0.5, 0.2, 0.8]])
    expected = [[0.05 / 0.2 / 0.1, -0.1 / 0.8 / 0.1, math.log(2) / 0.2, math.log(0.5) / 0.2]]
    np.testing.assert_allclose(box_ops.encode_cxcywh(box, anchor), expected, rtol=1e-12)
    np.testing.assert_allclose(box_ops.decode_cxcywh(expected, anchor), box, atol=1e-12)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    xy0 = rng.uniform(0, 0.8, (500, 2))
    boxes = np.concatenate([xy0, xy0 + rng.uniform(0.01, 0.5, (500, 2))], axis=1).astype(np.float32)
    anchors = np.concatenate(
        [rng.uniform(0, 1, (500, 2)), rng.uniform(0.05, 0.9, (500, 2))], axis=1
    ).astype(np.float32)
    variances = (0.1, 0.1, 0.2, 0.2)
    deltas = box_ops.encode_cxcywh(boxes, anchors, variances)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(box_ops.decode_cxcywh(deltas, anchors, variances), boxes, atol=1e-5)
    re_encoded = box_ops.encode_cxcywh(box_ops.decode_cxcywh(deltas, anchors), anchors)
    np.testing.assert_allclose(re_encoded, deltas, rtol=1e-4, atol=1e-4)
    # Broadcasting over a leading batch axis gives the same numbers.
    batched = box_ops.encode_cxcywh(np.stack([boxes, boxes]), anchors)
    np.testing.assert_array_equal(batched[1], deltas)


def test_decode_caps_log_scale():
    anchor = np.array([[0.5, 0.5, 0.1, 0.1]], np.float32)
    decoded = box_ops.decode_cxcywh(np.array([[0, 0, 1e4, -1e4]], np.float32), anchor)
    assert np.all(np.isfinite(decoded))
    width = decoded[0, 2] - decoded[0, 0]
    np.testing.assert_allclose(width, 0.1 * 1000 / 16, rtol=1e-5)


def test_functions_do_not_mutate_inputs():
    boxes = np.array([[2, 2, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.5, 0.9, 0.9], np.float32)
    class_ids = np.array([0, 1, 1], np.int32)
    copies = boxes.copy(), scores.copy(), class_ids.copy()
    box_ops.nms(boxes, scores, 0.5)
    box_ops.batched_nms(boxes, scores, class_ids, 0.5)
    box_ops.clip_xyxy(boxes, 1, 1)
    box_ops.encode_cxcywh(boxes[1:], box_ops.xyxy_to_cxcywh(boxes[1:]))
    for original, copy in zip((boxes, scores, class_ids), copies):
        np.testing.assert_array_equal(original, copy)


def test_nms_semantics_golden():
    unit = [0, 0, 1, 1]
    # Equal scores: lower index first; a duplicate of a kept box is suppressed.
    tied = np.array([0.5, 0.5, 0.5])
    assert box_ops.nms(np.array([[2, 2, 3, 3], unit, unit]), tied, 0.5).tolist() == [0, 1]
    # IoU exactly 0.5 is not suppressed at threshold 0.5 (strict >).
    pair = np.array([[0, 0, 1, 2], unit], np.float32)
    assert box_ops.nms(pair, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert box_ops.nms(pair, np.array([0.9, 0.8]), 0.49).tolist() == [0]
    # Score threshold is strict; flipped corners are sorted; zero area never suppresses.
    kept = box_ops.nms(np.array([unit, unit]), np.array([0.5, 0.6]), 0.9, score_threshold=0.5)
    assert kept.tolist() == [1]
    assert box_ops.nms(np.array([[1, 1, 0, 0], unit]), np.array([0.9, 0.8]), 0.5).tolist() == [0]
    flat = np.array([[0, 0, 0, 1], [0, 0, 0, 1], unit], np.float32)
    assert box_ops.nms(flat, np.array([0.9, 0.8, 0.7]), 0.0).tolist() == [0, 1, 2]
    assert box_ops.nms(np.zeros((0, 4)), np.zeros((0,)), 0.5).dtype == np.int64
    assert box_ops.nms(np.array([unit]), np.array([0.9]), 0.5, max_detections=0).size == 0


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_nms_rejects_out_of_range_threshold(bad):
    with pytest.raises(ValueError, match="iou_threshold"):
        box_ops.nms(np.zeros((1, 4)), np.zeros((1,)), bad)


def _random_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes with duplicates, integer grids (exact IoU ties), flips, zero areas; tied scores."""
    if rng.random() < 0.5:
        xy0 = rng.integers(0, 8, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy0, xy0 + rng.integers(0, 5, (n, 2))], axis=1).astype(np.float32)
    else:
        xy0 = rng.uniform(0, 50, (n, 2))
        boxes = np.concatenate([xy0, xy0 + rng.uniform(0, 30, (n, 2))], axis=1).astype(np.float32)
    duplicates = rng.integers(0, n, n // 4)
    boxes[rng.integers(0, n, n // 4)] = boxes[duplicates]
    flip = rng.random(n) < 0.1
    boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    scores = rng.integers(0, 10, n).astype(np.float32) / 10 if rng.random() < 0.5 else rng.random(n)
    return boxes, scores.astype(np.float32)


def _tf_nms(tf, boxes_xyxy, scores, iou_threshold, score_threshold, max_detections):
    return tf.image.non_max_suppression(
        boxes_xyxy[:, [1, 0, 3, 2]], scores, max_detections, iou_threshold, score_threshold
    ).numpy()


def test_nms_matches_tensorflow(tf):
    num_suppressed = 0
    for seed in range(NUM_PARITY_SEEDS):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 60))
        boxes, scores = _random_case(rng, n)
        score_threshold = float(rng.choice([-np.inf, 0.0, 0.3, 0.5]))
        max_detections = int(rng.choice([n, max(1, n // 3)]))
        for iou_threshold in IOU_THRESHOLDS:
            expected = _tf_nms(tf, boxes, scores, iou_threshold, score_threshold, max_detections)
            got = box_ops.nms(boxes, scores, iou_threshold, score_threshold, max_detections)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed} iou {iou_threshold}")
            num_suppressed += int(np.sum(scores > score_threshold)) - len(expected)
    assert num_suppressed > 0  # the cases really exercise suppression


def test_batched_nms_matches_per_class_tensorflow(tf):
    for seed in range(NUM_PARITY_SEEDS // 2):
        rng = np.random.default_rng(1000 + seed)
        n = int(rng.integers(1, 60))
        boxes, scores = _random_case(rng, n)
        class_ids = rng.integers(0, 3, n).astype(np.int32)
        max_detections = int(rng.choice([n, max(1, n // 3)]))
        for iou_threshold in (0.3, 0.5):
            kept = []
            for c in np.unique(class_ids):
                members = np.flatnonzero(class_ids == c)
                tf_kept = _tf_nms(tf, boxes[members], scores[members], iou_threshold, 0.1, n)
                kept.append(members[tf_kept])
            kept = np.concatenate(kept)
            expected = kept[np.lexsort((kept, -scores[kept]))][:max_detections]
            got = box_ops.batched_nms(boxes, scores, class_ids, iou_threshold, 0.1, max_detections)
            np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}")


def test_batched_nms_classes_do_not_suppress_each_other():
    boxes = np.array([[0, 0, 1, 1]] * 3, np.float32)
    scores = np.array([0.7, 0.9, 0.8], np.float32)
    assert box_ops.batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist() == [1, 2]
    kept = box_ops.batched_nms(boxes, scores, np.array([0, 1, 2]), 0.5, max_detections=2)
    assert kept.tolist() == [1, 2]
    with pytest.raises(ValueError, match="class_ids"):
        box_ops.batched_nms(boxes, scores, np.array([0.0, 1.0, 2.0]), 0.5)


def test_box_list_xyxy_shapes_and_errors():
    from tfsp.postprocess.boxes import box_list_xyxy

    assert box_list_xyxy([]).shape == (0, 4) and box_list_xyxy(np.zeros((0,))).dtype == np.float32
    boxes = box_list_xyxy([[0, 1, 2, 3]])
    assert boxes.dtype == np.float32 and boxes.tolist() == [[0.0, 1.0, 2.0, 3.0]]
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_list_xyxy(np.zeros((2, 3)))
