"""What evaluation does per task: pipeline, ground truth, metric and stat names.

`training.evaluate.evaluate_runner` looks the model's task up in `TASK_EVALUATIONS`:
detection runs `tfsp.runtime.detection.DetectionPipeline` and is matched by box IoU
against the instances JSON; pose runs `tfsp.runtime.pose.PosePipeline` and is matched
by OKS against the person-keypoints JSON beside it (COCO layout:
`annotations/instances_{split}.json` and `annotations/person_keypoints_{split}.json`);
dense models are scored per pixel against the split's semantic and depth PNGs, and
attribute models on the ground-truth boxes of the instances JSON
(`training.eval_structured`); Mask R-CNN chains get mask, box and keypoint AP in one
pass (`training.eval_rcnn`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from tfsp.data.coco import CocoDataset, ImageRecord
from tfsp.eval import IouType, evaluate_coco, load_ground_truth
from tfsp.runtime.detection import DetectionPipeline, detect_coco
from tfsp.runtime.pose import PERSON_CLASS_NAME, PosePipeline, person_category_id, pose_coco
from tfsp.runtime.runner import Runner
from tfsp.runtime.timing import StageTimings
from tfsp.spec import ModelSpec, Task
from training.eval_rcnn import INSTANCE_HEADLINE, INSTANCE_PREFIXES, check_instance_categories, evaluate_instances
from training.eval_structured import (
    ATTRIBUTE_HEADLINE,
    ATTRIBUTE_STAT_DESCRIPTIONS,
    DENSE_HEADLINE,
    DENSE_STAT_DESCRIPTIONS,
    evaluate_attributes,
    evaluate_dense,
)

MISSING_STAT = -1.0
"""A stat with nothing to measure: pycocotools' value where no ground truth falls in the stat's range,
and ours for a class or attribute that never occurs (never NaN, so the JSON stays strict)."""

INSTANCES_PREFIX = "instances_"
KEYPOINTS_PREFIX = "person_keypoints_"
"""COCO file names: instances_{split}.json and person_keypoints_{split}.json side by side."""

STAT_DESCRIPTIONS: dict[IouType, dict[str, str]] = {
    IouType.BBOX: {
        "AP": "IoU 0.50:0.95, all areas",
        "AP50": "IoU 0.50",
        "AP75": "IoU 0.75",
        "APs": "small objects (< 32^2 px)",
        "APm": "medium objects",
        "APl": "large objects (> 96^2 px)",
        "AR1": "1 detection per image",
        "AR10": "10 detections per image",
        "AR100": "100 detections per image",
        "ARs": "small objects",
        "ARm": "medium objects",
        "ARl": "large objects",
    },
    IouType.KEYPOINTS: {
        "AP": "OKS 0.50:0.95, all areas",
        "AP50": "OKS 0.50",
        "AP75": "OKS 0.75",
        "APm": "medium people (32^2 to 96^2 px)",
        "APl": "large people (> 96^2 px)",
        "AR": "OKS 0.50:0.95, 20 poses per image",
        "AR50": "OKS 0.50",
        "AR75": "OKS 0.75",
        "ARm": "medium people",
        "ARl": "large people",
    },
}
"""One line per COCOeval statistic, by matching type (`tfsp.eval.stat_names`)."""

INSTANCE_LABELS = {IouType.SEGM: "masks", IouType.BBOX: "boxes", IouType.KEYPOINTS: "person keypoints"}
INSTANCE_STAT_DESCRIPTIONS = {
    prefix + name: f"{INSTANCE_LABELS[iou_type]}, {text}"
    for iou_type, prefix in INSTANCE_PREFIXES.items()
    for name, text in STAT_DESCRIPTIONS[IouType.KEYPOINTS if iou_type is IouType.KEYPOINTS else IouType.BBOX].items()}
"""One line per Mask R-CNN stat (``mask_AP``: "masks, IoU 0.50:0.95, all areas")."""

Predict = Callable[[Runner, ModelSpec, Sequence[ImageRecord]], tuple[list[dict], StageTimings]]
Stats = dict[str, float]
Evaluate = Callable[[Runner, ModelSpec, CocoDataset, Sequence[ImageRecord]], tuple[Stats, int, StageTimings]]
COCO_HEADLINE = ("AP", "AP50", "AP75")


@dataclasses.dataclass(frozen=True)
class TaskEvaluation:
    """How one task is evaluated.

    Attributes:
        metric: name of the stats block in reports and JSON ("bbox", "keypoints", "dense", "attributes",
            "instances").
        evaluate: `(runner, spec, dataset, records) -> (stats, number of results, mean timings)`;
            raises `ValueError` when the spec and the data set do not fit together.
        noun: what the results are called in reports ("detections", "poses", "images", "objects",
            "instances").
        headline: the stats shown on progress lines, plotted over epochs and compared in the
            demo summary (all fractions where higher is better, first = the main one).
        descriptions: one line per stat name.
        title: heading of the printed stats table.
    """

    metric: str
    evaluate: Evaluate
    noun: str
    headline: tuple[str, ...]
    descriptions: dict[str, str]
    title: str


def coco_evaluation(iou_type: IouType, ground_truth: Callable[[ModelSpec, CocoDataset], str], predict: Predict,
                    noun: str) -> TaskEvaluation:
    """A task scored by pycocotools: predict COCO results, then COCOeval against `ground_truth`."""

    def evaluate(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                 records: Sequence[ImageRecord]) -> tuple[Stats, int, StageTimings]:
        annotations = ground_truth(spec, dataset)
        results, timings = predict(runner, spec, records)
        stats = evaluate_coco(annotations, results, iou_type, image_ids=[record.image_id for record in records])
        return stats, len(results), timings

    return TaskEvaluation(iou_type.value, evaluate, noun, COCO_HEADLINE, STAT_DESCRIPTIONS[iou_type],
                          f"COCO {iou_type.value}")


def detection_per_category(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                           records: Sequence[ImageRecord]) -> dict[str, Stats]:
    """COCO bbox stats of a detection model for each category of the data set on its own.

    Args:
        runner: Keras or TFLite runner of an SSD-style detection model.
        spec: its ModelSpec (task DETECTION).
        dataset: the split; its category ids must be the model's.
        records: images to evaluate.

    Returns:
        ``{class name: {stat: value}}`` in the data set's category order, ``tfsp.eval.BOX_STAT_NAMES``
        stats each (``-1.0`` where the category has nothing to measure).

    Raises:
        ValueError: not a detection model, or model and data set disagree on category ids.
    """
    if spec.task is not Task.DETECTION:
        raise ValueError(f"per-class stats are for detection models; this spec's task is {spec.task.value}")
    ground_truth = load_ground_truth(_detection_ground_truth(spec, dataset))
    results, _ = detect_coco(DetectionPipeline(runner, spec), records)
    image_ids = [record.image_id for record in records]
    return {name: evaluate_coco(ground_truth, results, IouType.BBOX, image_ids=image_ids, category_ids=[category])
            for category, name in zip(dataset.category_ids, dataset.class_names)}


def _detection_ground_truth(spec: ModelSpec, dataset: CocoDataset) -> str:
    if tuple(spec.category_ids) != tuple(dataset.category_ids):
        raise ValueError(f"model category ids {spec.category_ids} != {dataset.instances_json} "
                         f"category ids {dataset.category_ids}")
    return dataset.instances_json


def keypoints_json(dataset: CocoDataset) -> Path:
    """The person-keypoints JSON beside the split's instances JSON.

    Raises:
        ValueError: the instances file is not named `instances_*.json`, or the keypoints file is missing.
    """
    instances = Path(dataset.instances_json)
    if not instances.name.startswith(INSTANCES_PREFIX):
        raise ValueError(f"cannot find the person keypoints of {instances}: expected a file named "
                         f"{INSTANCES_PREFIX}SPLIT.json")
    path = instances.with_name(KEYPOINTS_PREFIX + instances.name[len(INSTANCES_PREFIX):])
    if not path.is_file():
        raise ValueError(f"pose evaluation needs {path} (person keypoints of the split)")
    return path


def _pose_ground_truth(spec: ModelSpec, dataset: CocoDataset) -> str:
    category = person_category_id(spec)
    if dict(zip(dataset.category_ids, dataset.class_names)).get(category) != PERSON_CLASS_NAME:
        raise ValueError(f"model person category id {category} is not the {PERSON_CLASS_NAME!r} category of "
                         f"{dataset.instances_json} (categories {dict(zip(dataset.category_ids, dataset.class_names))})")
    return str(keypoints_json(dataset))


def _evaluate_instances(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                        records: Sequence[ImageRecord]) -> tuple[Stats, int, StageTimings]:
    """Mask R-CNN stats; keypoint AP only with a person class and the split's person-keypoints JSON."""
    check_instance_categories(spec, dataset)
    keypoints = None
    if spec.rcnn is not None and spec.rcnn.person_class_id is not None:
        with contextlib.suppress(ValueError):  # no person-keypoints JSON: masks and boxes only
            keypoints = str(keypoints_json(dataset))
        category = int(spec.category_ids[spec.rcnn.person_class_id])
        if keypoints is not None and dict(zip(dataset.category_ids, dataset.class_names)).get(
                category) != PERSON_CLASS_NAME:
            raise ValueError(f"model person category id {category} is not the {PERSON_CLASS_NAME!r} category of "
                             f"{dataset.instances_json}")
    return evaluate_instances(runner, spec, dataset, records, keypoints)


TASK_EVALUATIONS: dict[Task, TaskEvaluation] = {
    Task.DETECTION: coco_evaluation(
        IouType.BBOX, _detection_ground_truth,
        lambda runner, spec, records: detect_coco(DetectionPipeline(runner, spec), records), "detections"),
    Task.POSE: coco_evaluation(
        IouType.KEYPOINTS, _pose_ground_truth,
        lambda runner, spec, records: pose_coco(PosePipeline(runner, spec), records), "poses"),
    Task.DENSE: TaskEvaluation("dense", evaluate_dense, "images", DENSE_HEADLINE,
                               DENSE_STAT_DESCRIPTIONS, "dense (segmentation and depth, original pixels)"),
    Task.ATTRIBUTES: TaskEvaluation("attributes", evaluate_attributes, "objects", ATTRIBUTE_HEADLINE,
                                    ATTRIBUTE_STAT_DESCRIPTIONS, "attributes (on ground-truth boxes)"),
    Task.INSTANCE_SEGMENTATION: TaskEvaluation("instances", _evaluate_instances, "instances", INSTANCE_HEADLINE,
                                               INSTANCE_STAT_DESCRIPTIONS,
                                               "COCO segm, bbox and keypoints (Mask R-CNN)"),
}
"""The tasks `training.evaluate` can evaluate."""

METRIC_DESCRIPTIONS: dict[str, dict[str, str]] = {e.metric: e.descriptions for e in TASK_EVALUATIONS.values()}
"""Stat descriptions by metric name (`EvalResult.metric`)."""
