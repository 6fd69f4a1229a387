"""Evaluation of the non-COCO tasks through their device pipelines: dense maps and attributes.

Dense: every image goes through `tfsp.runtime.dense.DensePipeline` and its label and
depth maps, on the original pixel grid, are compared with the split's semantic PNG
(0 background, else the COCO category id of the topmost object) and depth PNG
(uint16 millimetres): mIoU and pixel accuracy (`tfsp.dense_metrics.SegmentationMetrics`),
AbsRel, delta < 1.25 and RMSE (`DepthMetrics`, pixels with depth > 0 only).

Attributes: the ground-truth boxes of every non-crowd object go through
`tfsp.runtime.attributes.AttributePipeline.classify_timed` (the same crops the device
cuts around detections), and the scores are compared with the objects' multi-hot
attributes: per-attribute AP and its mean, and F1 at the spec's thresholds
(`tfsp.attribute_metrics.attribute_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tfsp.attribute_metrics import attribute_metrics
from tfsp.data.coco import CocoDataset, ImageRecord
from tfsp.data.pipeline import DEPTH_MM_PER_METRE
from tfsp.dense_metrics import DepthMetrics, SegmentationMetrics
from tfsp.postprocess.dense import DenseHead
from tfsp.runtime.attributes import AttributePipeline
from tfsp.runtime.dense import DensePipeline
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.runtime.runner import Runner
from tfsp.runtime.timing import StageTimings
from tfsp.spec import ModelSpec

BACKGROUND_LABEL = 0
MAX_SEMANTIC_VALUE = 255  # uint8 semantic PNG
UNKNOWN_LABEL = -1  # a category id the model does not know (an error is raised before it is used)

DENSE_STAT_DESCRIPTIONS = {
    "mIoU": "mean IoU over background + classes present in ground truth or prediction",
    "pixel_acc": "fraction of pixels with the right label",
    "abs_rel": "mean |depth - true| / true (lower is better)",
    "delta1": "fraction of pixels with max(d/t, t/d) < 1.25",
    "rmse": "root mean squared depth error, metres (lower is better)",
}
ATTRIBUTE_STAT_DESCRIPTIONS = {
    "mAP": "mean over attributes of the average precision (ranking all objects)",
    "mean_F1": "mean over attributes of F1 at the spec's thresholds",
}
SEGMENTATION_STATS = ("mIoU", "pixel_acc")
DEPTH_STATS = ("abs_rel", "delta1", "rmse")
ATTRIBUTE_HEADLINE = ("mAP", "mean_F1")
"""The attribute stats shown on progress lines and compared in the demo."""
DENSE_HEADLINE = ("mIoU", "delta1", "pixel_acc")
"""The dense stats shown on progress lines and compared in the demo (plots show the first two)."""


def _check_categories(spec: ModelSpec, dataset: CocoDataset) -> None:
    if tuple(spec.category_ids) != tuple(dataset.category_ids):
        raise ValueError(f"model category ids {spec.category_ids} != {dataset.instances_json} "
                         f"category ids {dataset.category_ids}")


def _read_png(path: str | None, what: str, record: ImageRecord) -> np.ndarray:
    if path is None:
        raise ValueError(f"image {record.image_id} ({record.path}) has no {what} map: dense evaluation needs "
                         f"the images' \"dense\" field in the instances JSON")
    values = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if values is None:
        raise ValueError(f"cannot read the {what} map {path} of image {record.image_id}")
    if values.shape[:2] != (record.height, record.width):
        raise ValueError(f"{path}: {what} map is {values.shape[:2]}, image {record.image_id} is "
                         f"{(record.height, record.width)}")
    return values


def semantic_labels(semantic_png: np.ndarray, category_ids: Sequence[int]) -> np.ndarray:
    """Maps a semantic PNG (0 background, else COCO category id) to labels (0, else class id + 1).

    Raises:
        ValueError: the PNG holds a category id not in ``category_ids``.
    """
    lookup = np.full(MAX_SEMANTIC_VALUE + 1, UNKNOWN_LABEL, np.int32)
    lookup[BACKGROUND_LABEL] = BACKGROUND_LABEL
    lookup[np.asarray(category_ids, np.int64)] = np.arange(1, len(category_ids) + 1)
    labels = lookup[semantic_png]
    if np.any(labels == UNKNOWN_LABEL):
        unknown = sorted(set(np.unique(semantic_png[labels == UNKNOWN_LABEL]).tolist()))
        raise ValueError(f"semantic map holds category ids {unknown} that are not among {list(category_ids)}")
    return labels


def evaluate_dense(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                   records: Sequence[ImageRecord]) -> tuple[dict[str, float], int, StageTimings]:
    """Segmentation and depth metrics of a dense model over ``records`` (original pixels).

    Returns:
        (stats: mIoU, pixel_acc (segmentation head), abs_rel, delta1, rmse (depth head), then IoU
        per class; number of images; mean per-image timings).

    Raises:
        ValueError: category ids differ, or a record lacks or has unreadable dense maps.
    """
    _check_categories(spec, dataset)
    pipeline = DensePipeline(runner, spec)
    segmentation = SegmentationMetrics(spec.class_names) if DenseHead.SEGMENTATION in pipeline.heads else None
    depth = DepthMetrics() if DenseHead.DEPTH in pipeline.heads else None
    timings = []
    for record in records:
        prediction, timing = pipeline.detect_timed(read_image_rgb(record.path))
        if segmentation is not None:
            png = _read_png(record.semantic_path, "semantic", record)
            segmentation.update(prediction.semantic.values, semantic_labels(png, spec.category_ids))
        if depth is not None:
            true_depth = _read_png(record.depth_path, "depth", record).astype(np.float32) / DEPTH_MM_PER_METRE
            depth.update(prediction.depth.values, true_depth)
        timings.append(timing)
    seg = segmentation.result() if segmentation is not None else {}
    dep = depth.result() if depth is not None else {}
    stats = {name: values[name] for names, values in ((SEGMENTATION_STATS, seg), (DEPTH_STATS, dep)) if values
             for name in names}
    stats.update({name: value for name, value in seg.items() if name.startswith("IoU_")})
    return stats, len(records), StageTimings.mean(timings)


def score_ground_truth_objects(pipeline: AttributePipeline, records: Sequence[ImageRecord]
                               ) -> tuple[np.ndarray, np.ndarray, list[StageTimings]]:
    """Attribute scores and labels of every non-crowd ground-truth object, through the device crops.

    Args:
        pipeline: the attribute pipeline (its detector, if any, is not used).
        records: the images; their boxes are classified as the device classifies detections.

    Returns:
        (scores (N, A) float32, labels (N, A) bool, one ``StageTimings`` per image), N the objects
        in record order.
    """
    count = len(pipeline.spec.attributes.names)
    scores, labels, timings = [np.zeros((0, count), np.float32)], [np.zeros((0, count), bool)], []
    for record in records:
        keep = ~record.is_crowd
        attributes, timing = pipeline.classify_timed(read_image_rgb(record.path), record.boxes_xyxy[keep])
        scores.append(attributes.scores)
        labels.append(record.attribute_ids[keep] > 0)
        timings.append(timing)
    return np.concatenate(scores), np.concatenate(labels), timings


def evaluate_attributes(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                        records: Sequence[ImageRecord]) -> tuple[dict[str, float], int, StageTimings]:
    """Attribute AP and F1 on the ground-truth boxes of the non-crowd objects of ``records``.

    Returns:
        (stats: mAP, mean_F1, then AP_<name> and F1_<name> per attribute; number of objects;
        mean per-image timings).

    Raises:
        ValueError: the spec's attribute names differ from the data set's.
    """
    head = spec.attributes
    if head is None or tuple(head.names) != tuple(dataset.attribute_names):
        raise ValueError(f"model attributes {None if head is None else list(head.names)} != "
                         f"{dataset.instances_json} attributes {list(dataset.attribute_names)}")
    all_scores, all_labels, timings = score_ground_truth_objects(AttributePipeline(runner, spec), records)
    stats = attribute_metrics(all_scores, all_labels, head.names, np.asarray(head.thresholds, np.float32))
    ordered = {name: stats[name] for name in ATTRIBUTE_HEADLINE}
    ordered.update({name: value for name, value in stats.items() if name not in ordered})
    return ordered, len(all_scores), StageTimings.mean(timings)
