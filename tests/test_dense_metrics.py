"""Tests for tfsp.dense_metrics: hand-computed confusion matrices and depth errors."""

import math

import numpy as np
import pytest

from tfsp.dense_metrics import DELTA1_THRESHOLD, DepthMetrics, SegmentationMetrics

NAMES = ("person", "circle", "square")  # labels 1, 2, 3; label 0 background


def test_segmentation_golden_values():
    true = np.array([[0, 0, 1, 1],
                     [0, 2, 2, 1]], np.int32)
    pred = np.array([[0, 1, 1, 1],
                     [0, 2, 0, 1]], np.int64)
    metrics = SegmentationMetrics(NAMES)
    metrics.update(pred, true)
    result = metrics.result()
    # background: TP 2, FP 1 (true 2 -> 0), FN 1 (true 0 -> 1): 2 / 4
    # person:     TP 3, FP 1, FN 0: 3 / 4;  circle: TP 1, FP 0, FN 1: 1 / 2;  square: absent
    assert result["IoU_background"] == pytest.approx(0.5)
    assert result["IoU_person"] == pytest.approx(0.75)
    assert result["IoU_circle"] == pytest.approx(0.5)
    assert math.isnan(result["IoU_square"])
    assert result["mIoU"] == pytest.approx((0.5 + 0.75 + 0.5) / 3)
    assert result["pixel_acc"] == pytest.approx(6 / 8)
    np.testing.assert_array_equal(metrics.confusion, [[2, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_segmentation_pools_pixels_over_images_and_ignores_negative_truth():
    metrics = SegmentationMetrics(("a",))
    metrics.update(np.array([[1, 1]]), np.array([[1, -1]]))  # the second pixel is not scored
    metrics.update(np.zeros((2, 2), np.int32), np.array([[0, 0], [0, 1]]))
    # label 1: TP 1, FN 1 -> 1/2; background: TP 3, FP 1 -> 3/4
    result = metrics.result()
    assert result["IoU_a"] == pytest.approx(0.5) and result["IoU_background"] == pytest.approx(0.75)
    assert result["pixel_acc"] == pytest.approx(4 / 5)


def test_segmentation_without_pixels_is_nan_and_bad_labels_raise():
    metrics = SegmentationMetrics(NAMES)
    assert math.isnan(metrics.result()["mIoU"]) and math.isnan(metrics.result()["pixel_acc"])
    with pytest.raises(ValueError, match="true_labels"):
        metrics.update(np.zeros((1, 1), np.int32), np.full((1, 1), 4, np.int32))
    with pytest.raises(ValueError, match="pred_labels"):
        metrics.update(np.full((1, 1), -2, np.int32), np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match="integer"):
        metrics.update(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match="shape"):
        metrics.update(np.zeros((1, 2), np.int32), np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="foreground"):
        SegmentationMetrics(())


def test_depth_golden_values():
    true = np.array([[2.0, 4.0], [0.0, 10.0]], np.float32)  # 0 = no measurement
    pred = np.array([[2.0, 5.0], [7.0, 8.0]], np.float32)
    metrics = DepthMetrics()
    metrics.update(pred, true)
    result = metrics.result()
    # scored: (2, 2), (5, 4), (8, 10): abs_rel (0 + 0.25 + 0.2) / 3; ratios 1, 1.25, 1.25
    assert result["abs_rel"] == pytest.approx(0.45 / 3)
    assert result["delta1"] == pytest.approx(1 / 3)  # 1.25 is not < 1.25
    assert result["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert DELTA1_THRESHOLD == 1.25


def test_depth_pools_images_ignores_missing_and_counts_zero_predictions_as_misses():
    metrics = DepthMetrics()
    metrics.update(np.array([1.1, 3.0]), np.array([1.0, -1.0]))  # second pixel not measured
    metrics.update(np.array([[0.0]]), np.array([[2.0]]))
    result = metrics.result()
    assert result["delta1"] == pytest.approx(0.5)
    assert result["abs_rel"] == pytest.approx((0.1 + 1.0) / 2, rel=1e-6)
    assert result["rmse"] == pytest.approx(math.sqrt((0.01 + 4.0) / 2))


def test_depth_without_measurements_is_nan():
    metrics = DepthMetrics()
    metrics.update(np.ones((2, 2)), np.zeros((2, 2)))
    assert all(math.isnan(v) for v in metrics.result().values())
    with pytest.raises(ValueError, match="shape"):
        metrics.update(np.ones((2, 2)), np.ones((2, 3)))
