"""What limits Mask R-CNN keypoint AP: the detected people or the keypoints placed in them.

``python -m training.rcnn_diagnose --model exports/maskrcnn_fp32.tflite --data data/synth`` runs
the split once through the device pipeline (``tfsp.runtime.mask_rcnn.MaskRcnnPipeline``, as
``training.evaluate`` does) and scores three sets of poses with COCO keypoint AP:

* ``predicted``: the pipeline's poses (what ``training.evaluate`` reports as ``kp_AP``);
* ``matched_only``: the same without the poses whose box matches no labelled person (the cost of
  false people);
* ``gt_keypoints``: every pose whose box matches a labelled person takes that person's labelled
  keypoints, score unchanged (the ceiling that detection and ranking leave to the keypoint head).

A pose matches the unmatched labelled person (non-crowd, with a labelled keypoint) of highest box
IoU, at least ``MATCH_IOU``, poses taken in descending score. Per keypoint type it also prints,
over the matched poses, how far the predicted keypoint lies from the label (median and 90th
percentile, original pixels) and how often the label lies outside the predicted box, where the
keypoint head (which only sees the box) cannot place it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np

from tfsp.cli import SuggestingParser
from tfsp.data.coco import CocoDataset, ImageRecord, load_split
from tfsp.data.keypoints import KEYPOINT_NAMES
from tfsp.eval import IouType, evaluate_coco
from tfsp.postprocess.boxes import iou_xyxy
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.runtime.runner import Runner, open_runner
from tfsp.spec import ModelSpec, SpecError, Task
from tfsp.structures import Poses
from training.eval_rcnn import check_instance_categories
from training.eval_tasks import keypoints_json
from training.evaluate import find_spec
from training.pose_diagnose import PERCENTILE, add_model_and_data_arguments

MATCH_IOU = 0.5
"""Least box IoU between a pose's detection and a labelled person for them to match."""
COMBINATIONS = ("predicted", "matched_only", "gt_keypoints")
EXIT_ERROR = 2


@dataclasses.dataclass(frozen=True)
class KeypointError:
    """One keypoint type over the matched poses.

    Attributes:
        count: labelled keypoints (v > 0) of matched people.
        median_px: median distance from the predicted keypoint to the label, original pixels.
        p90_px: the ``PERCENTILE`` th percentile of the same (the next higher value, not interpolated).
        outside_box: fraction of the labels outside the matched pose's predicted box.
    """

    count: int
    median_px: float
    p90_px: float
    outside_box: float


def match_people(boxes_xyxy: np.ndarray, scores: np.ndarray, people_xyxy: np.ndarray,
                 min_iou: float = MATCH_IOU) -> np.ndarray:
    """Greedy one-to-one matching of predicted boxes to labelled people, highest score first.

    Args:
        boxes_xyxy: (P, 4) float predicted boxes, original pixels.
        scores: (P,) float their scores.
        people_xyxy: (G, 4) float the labelled people's boxes.
        min_iou: least IoU of a match.

    Returns:
        (P,) int64: the matched person's row, or -1.
    """
    matches = np.full(len(boxes_xyxy), -1, np.int64)
    if not len(boxes_xyxy) or not len(people_xyxy):
        return matches
    overlap = iou_xyxy(np.asarray(boxes_xyxy, np.float32), np.asarray(people_xyxy, np.float32))
    free = np.ones(len(people_xyxy), bool)
    for row in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(free, overlap[row], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= min_iou:
            matches[row], free[best] = best, False
    return matches


def with_labelled_keypoints(poses: Poses, matches: np.ndarray, people_keypoints: np.ndarray) -> Poses:
    """The matched poses' keypoints replaced by their people's labelled ones (unlabelled ones kept).

    Args:
        poses: P poses.
        matches: (P,) int64 from :func:`match_people`.
        people_keypoints: (G, 17, 3) float ``[x, y, v]`` labels, original pixels.

    Returns:
        New Poses, scores unchanged; a replaced keypoint has score 1.
    """
    keypoints = poses.keypoints.copy()
    for row in np.flatnonzero(matches >= 0):
        label = people_keypoints[matches[row]]
        labelled = label[:, 2] > 0
        keypoints[row, labelled, :2] = label[labelled, :2]
        keypoints[row, labelled, 2] = 1.0
    return Poses.create(keypoints, poses.scores)


def _labelled_people(record: ImageRecord, person_class_id: int) -> np.ndarray:
    """Rows of the record's non-crowd people with at least one labelled keypoint."""
    person = (record.class_ids == person_class_id) & ~record.is_crowd
    return np.flatnonzero(person & np.any(record.keypoints[..., 2] > 0, axis=-1))


def diagnose(runner: Runner, spec: ModelSpec, dataset: CocoDataset, max_images: int | None = None
             ) -> tuple[dict[str, dict[str, float]], dict[str, KeypointError]]:
    """Keypoint AP of each of ``COMBINATIONS`` and the per-keypoint errors of the matched poses.

    Args:
        runner: the Mask R-CNN chain (stage 1 and heads, with a keypoint head).
        spec: its ModelSpec (Task.INSTANCE_SEGMENTATION with a person class).
        dataset: the split, with person keypoints.
        max_images: first N images only (None: all).

    Returns:
        ``({combination: stats}, {keypoint name: KeypointError})``: stats keyed as
        ``tfsp.eval.stat_names(IouType.KEYPOINTS)``; keypoint types never labelled on a matched
        person are left out.

    Raises:
        ValueError: not an instance-segmentation spec with a person class, categories that differ
            from the data set's, or a chain without a keypoint head.
    """
    if spec.task is not Task.INSTANCE_SEGMENTATION or spec.rcnn.person_class_id is None:
        raise ValueError(f"needs an instance-segmentation spec with a person class, got {spec.task}")
    check_instance_categories(spec, dataset)
    pipeline = MaskRcnnPipeline.from_runner(runner, spec)
    person = spec.rcnn.person_class_id
    category = int(spec.category_ids[person])
    records = dataset.records[:max_images]
    results: dict[str, list[dict]] = {name: [] for name in COMBINATIONS}
    distances: list[list[float]] = [[] for _ in KEYPOINT_NAMES]
    outside: list[list[bool]] = [[] for _ in KEYPOINT_NAMES]
    for record in records:
        result = pipeline(read_image_rgb(record.path))
        if result.poses is None:
            raise ValueError(f"{runner!r} has no keypoint head: nothing to diagnose")
        people = _labelled_people(record, person)
        boxes = result.detections.boxes_xyxy[result.pose_detection_index]
        matches = match_people(boxes, result.poses.scores, record.boxes_xyxy[people])
        labels = record.keypoints[people]
        matched = matches >= 0
        results["predicted"].extend(result.poses.to_coco(record.image_id, category))
        kept = Poses.create(result.poses.keypoints[matched], result.poses.scores[matched])
        results["matched_only"].extend(kept.to_coco(record.image_id, category))
        results["gt_keypoints"].extend(with_labelled_keypoints(result.poses, matches, labels)
                                       .to_coco(record.image_id, category))
        for row in np.flatnonzero(matched):
            label, box = labels[matches[row]], boxes[row]
            for kind in np.flatnonzero(label[:, 2] > 0):
                distances[kind].append(float(np.linalg.norm(result.poses.keypoints[row, kind, :2] - label[kind, :2])))
                x, y = label[kind, :2]
                outside[kind].append(not (box[0] <= x <= box[2] and box[1] <= y <= box[3]))
    ground_truth, image_ids = str(keypoints_json(dataset)), [record.image_id for record in records]
    stats = {name: evaluate_coco(ground_truth, found, IouType.KEYPOINTS, image_ids=image_ids)
             for name, found in results.items()}
    errors = {name: KeypointError(len(found), float(np.median(found)),
                                  float(np.percentile(found, PERCENTILE, method="higher")), float(np.mean(out)))
              for name, found, out in zip(KEYPOINT_NAMES, distances, outside) if found}
    return stats, errors


def format_report(stats: dict[str, dict[str, float]], errors: dict[str, KeypointError]) -> str:
    """The CLI's text: AP per combination, then the per-keypoint table."""
    lines = [f"{'poses':<14} {'AP':>6} {'AP50':>6} {'AP75':>6}"]
    lines += [f"{name:<14} {values['AP']:6.3f} {values['AP50']:6.3f} {values['AP75']:6.3f}"
              for name, values in stats.items()]
    lines += ["", "matched poses vs labelled keypoints (original px; 'outside' = label outside the predicted box)",
              f"{'keypoint':<15} {'count':>6} {'median':>7} {'p90':>7} {'outside':>8}"]
    lines += [f"{name:<15} {error.count:6d} {error.median_px:7.2f} {error.p90_px:7.2f} {error.outside_box:8.2f}"
              for name, error in errors.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the diagnosis CLI; returns the process exit code."""
    parser = SuggestingParser(prog="python -m training.rcnn_diagnose", description=__doc__.splitlines()[0])
    add_model_and_data_arguments(parser, "Mask R-CNN model: .keras or .tflite stage 1 with its head files beside it")
    args = parser.parse_args(argv)
    try:
        spec = ModelSpec.from_json(args.spec or find_spec(args.model))
        stats, errors = diagnose(open_runner(args.model), spec, load_split(args.data, args.split), args.max_images)
    except (FileNotFoundError, SpecError, ValueError) as error:
        print(f"Mask R-CNN diagnosis failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(format_report(stats, errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
