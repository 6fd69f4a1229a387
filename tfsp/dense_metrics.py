"""Dense prediction metrics: semantic segmentation and monocular depth (numpy only, device-safe).

Both accumulators pool pixels over every image passed to ``update`` (a large image weighs more
than a small one), the usual convention of segmentation benchmarks (PASCAL VOC, Cityscapes) and
of the depth metrics of Eigen et al. (NeurIPS 2014):

* :class:`SegmentationMetrics`: a (C + 1) x (C + 1) confusion matrix (label 0 background, k + 1
  foreground class id k); IoU_c = TP / (TP + FP + FN); mIoU is the mean IoU over the classes that
  occur in the ground truth or in the predictions; pixel accuracy = trace / total.
* :class:`DepthMetrics`: over pixels with a measured ground truth (``true > 0``, finite):
  ``abs_rel = mean(|p - t| / t)``, ``delta1`` = fraction with ``max(p / t, t / p) < 1.25``,
  ``rmse = sqrt(mean((p - t)^2))`` in metres.

A metric with nothing to average (no pixels, or a class that never occurs) is NaN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BACKGROUND_NAME = "background"
"""Name of label 0 in the per-class IoU keys (``IoU_background``)."""

IGNORE_LABEL = -1
"""Ground-truth label of pixels that are not scored (any negative label is ignored)."""

DELTA1_THRESHOLD = 1.25
"""``delta1`` counts pixels whose ratio ``max(p / t, t / p)`` is strictly below this."""

MIN_PREDICTED_DEPTH_M = 1e-6
"""Predicted depths are clamped up to this (metres) before ratios, so 0 counts as a miss, not NaN."""


class SegmentationMetrics:
    """Accumulates a confusion matrix over label maps; ``result()`` gives mIoU, pixel accuracy, IoUs.

    Args:
        class_names: the C foreground class names by class id; labels are 0 (background, named
            :data:`BACKGROUND_NAME`) and k + 1 for class id k.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise ValueError("SegmentationMetrics needs at least one foreground class name")
        self.num_labels = len(self.class_names) + 1
        self.confusion = np.zeros((self.num_labels, self.num_labels), np.int64)  # [true, predicted]

    def update(self, pred_labels: np.ndarray, true_labels: np.ndarray) -> None:
        """Adds one image.

        Args:
            pred_labels: (H, W) integer predicted labels in [0, C].
            true_labels: (H, W) integer ground-truth labels in [0, C]; negative labels are ignored.

        Raises:
            ValueError: shapes differ, non-integer arrays, or labels out of range.
        """
        pred, true = np.asarray(pred_labels), np.asarray(true_labels)
        if pred.shape != true.shape or pred.ndim != 2:
            raise ValueError(f"pred_labels and true_labels must be (H, W) of one shape, got {pred.shape}, {true.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(true.dtype, np.integer)):
            raise ValueError(f"labels must be integer arrays, got {pred.dtype} and {true.dtype}")
        scored = true >= 0
        pred, true = pred[scored].astype(np.int64), true[scored].astype(np.int64)
        for name, labels in (("pred_labels", pred), ("true_labels", true)):
            if labels.size and labels.max() >= self.num_labels:
                raise ValueError(f"{name} must lie in [0, {self.num_labels - 1}], got {labels.max()}")
        if pred.size and pred.min() < 0:
            raise ValueError(f"pred_labels must lie in [0, {self.num_labels - 1}], got {pred.min()}")
        counts = np.bincount(true * self.num_labels + pred, minlength=self.num_labels ** 2)
        self.confusion += counts.reshape(self.num_labels, self.num_labels)

    def iou(self) -> np.ndarray:
        """(C + 1,) float64 IoU per label; NaN for labels absent from both truth and prediction."""
        true_positive = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    def result(self) -> dict[str, float]:
        """``{"mIoU", "pixel_acc", "IoU_background", "IoU_<name>" per class}`` as floats (NaN if empty)."""
        iou = self.iou()
        total = self.confusion.sum()
        present = ~np.isnan(iou)
        metrics = {
            "mIoU": float(iou[present].mean()) if present.any() else float("nan"),
            "pixel_acc": float(np.trace(self.confusion) / total) if total else float("nan"),
        }
        for name, value in zip((BACKGROUND_NAME,) + self.class_names, iou):
            metrics[f"IoU_{name}"] = float(value)
        return metrics


class DepthMetrics:
    """Accumulates depth errors over pixels with a measurement; ``result()`` gives abs_rel, delta1, rmse."""

    def __init__(self) -> None:
        self.count = 0
        self.abs_rel_sum = 0.0
        self.delta1_count = 0
        self.squared_error_sum = 0.0

    def update(self, pred_m: np.ndarray, true_m: np.ndarray) -> None:
        """Adds one image.

        Args:
            pred_m: (H, W) float predicted depth in metres.
            true_m: (H, W) float ground-truth depth in metres; pixels with ``true <= 0`` or
                non-finite values (no measurement) are ignored.

        Raises:
            ValueError: shapes differ.
        """
        pred, true = np.asarray(pred_m, np.float64), np.asarray(true_m, np.float64)
        if pred.shape != true.shape:
            raise ValueError(f"pred_m and true_m must have one shape, got {pred.shape} and {true.shape}")
        valid = np.isfinite(true) & (true > 0)
        pred, true = np.maximum(pred[valid], MIN_PREDICTED_DEPTH_M), true[valid]
        self.count += int(true.size)
        self.abs_rel_sum += float(np.sum(np.abs(pred - true) / true))
        self.delta1_count += int(np.sum(np.maximum(pred / true, true / pred) < DELTA1_THRESHOLD))
        self.squared_error_sum += float(np.sum((pred - true) ** 2))

    def result(self) -> dict[str, float]:
        """``{"abs_rel", "delta1", "rmse"}`` (rmse in metres) as floats; NaN before any measured pixel."""
        if not self.count:
            return {"abs_rel": float("nan"), "delta1": float("nan"), "rmse": float("nan")}
        return {"abs_rel": self.abs_rel_sum / self.count, "delta1": self.delta1_count / self.count,
                "rmse": float(np.sqrt(self.squared_error_sum / self.count))}
