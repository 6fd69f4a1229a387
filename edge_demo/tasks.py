"""What the edge demo does per task: build the timed pipeline, draw the result, describe it.

``TASKS`` maps each ``tfsp.spec.Task`` to its ``TaskHandlers``; a new task plugs in with one
entry. Device-safe (numpy, OpenCV, LiteRT through the runners).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tfsp.runtime.attributes import AttributedDetections, AttributePipeline
from tfsp.runtime.dense import DensePipeline, DensePrediction
from tfsp.runtime.detection import DetectionPipeline
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline, MaskRcnnResult
from tfsp.runtime.pose import PosePipeline
from tfsp.runtime.runner import Runner
from tfsp.runtime.timing import StageTimings
from tfsp.spec import ModelSpec, Task
from tfsp.structures import Detections, Poses
from tfsp.viz import draw_attributes, draw_dense, draw_detections, draw_masks, draw_poses

TimedPipeline = Callable[[np.ndarray], tuple[Any, StageTimings]]
"""(H, W, 3) uint8 RGB image -> (task structure in original pixels, per-stage timings)."""
ProfiledPipeline = Callable[[np.ndarray], tuple[Any, StageTimings, dict[str, float]]]
"""Like ``TimedPipeline`` plus milliseconds per pipeline step (each graph and numpy step, in run order)."""


class EdgeDemoError(RuntimeError):
    """A model, spec or source the demo cannot use; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class TaskHandlers:
    """How the demo runs and draws one task.

    Attributes:
        make_pipeline: ``(runner, spec, score_threshold or None, detector or None) -> TimedPipeline``;
            the detector (a ``DetectionPipeline``) is given to tasks that need boxes (attributes).
        draw: ``(image_rgb, result, spec) -> annotated image`` (pure, new array).
        describe: ``result -> short text`` for the per-frame line (e.g. ``"3 detections"``).
        profiled: ``make_pipeline`` returns a ``ProfiledPipeline`` (per-step milliseconds too, e.g.
            Mask R-CNN's graphs and numpy steps) instead of a ``TimedPipeline``.
    """

    make_pipeline: Callable[[Runner, ModelSpec, float | None, DetectionPipeline | None],
                            TimedPipeline | ProfiledPipeline]
    draw: Callable[[np.ndarray, Any, ModelSpec], np.ndarray]
    describe: Callable[[Any], str]
    profiled: bool = False


def detector_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None) -> DetectionPipeline:
    """A detection pipeline, with ``score_threshold`` (if given) replacing the spec's."""
    if score_threshold is not None:
        spec = dataclasses.replace(
            spec, postprocess=dataclasses.replace(spec.postprocess, score_threshold=score_threshold))
    return DetectionPipeline(runner, spec)


def _detection_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None,
                        detector: DetectionPipeline | None) -> TimedPipeline:
    return detector_pipeline(runner, spec, score_threshold).detect_timed


def _draw_detections(image_rgb: np.ndarray, detections: Detections, spec: ModelSpec) -> np.ndarray:
    return draw_detections(image_rgb, detections, spec.class_names)


def _pose_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None,
                   detector: DetectionPipeline | None) -> TimedPipeline:
    """Pose pipeline keeping the people whose person score is strictly above ``score_threshold``."""
    detect_timed = PosePipeline(runner, spec).detect_timed
    if score_threshold is None:
        return detect_timed

    def detect_confident(image_rgb: np.ndarray) -> tuple[Poses, StageTimings]:
        poses, timings = detect_timed(image_rgb)
        return poses[poses.scores > np.float32(score_threshold)], timings

    return detect_confident


def _attribute_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None,
                        detector: DetectionPipeline | None) -> TimedPipeline:
    if detector is None:
        raise EdgeDemoError("an attribute model classifies detected objects: pass --detector DETECTOR.tflite "
                            "(e.g. exports/ssd_int8.tflite from `make demo`)")
    return AttributePipeline(runner, spec, detector).detect_timed


def _draw_attributes(image_rgb: np.ndarray, result: AttributedDetections, spec: ModelSpec) -> np.ndarray:
    boxes = draw_detections(image_rgb, result.detections, spec.class_names)
    return draw_attributes(boxes, result.detections, result.attributes)


DEPTH_DISPLAY_RANGE_M = (0.0, 10.0)
"""Depth colour scale of the demo (metres), fixed so frames compare."""


def _draw_dense(image_rgb: np.ndarray, result: DensePrediction, spec: ModelSpec) -> np.ndarray:
    """Segmentation overlay and depth heat map side by side (those the graph has; one image per map)."""
    panels = []
    if result.semantic is not None:
        panels.append(draw_dense(image_rgb, result.semantic))
    if result.depth is not None:
        panels.append(draw_dense(image_rgb, result.depth, alpha=1.0, depth_range=DEPTH_DISPLAY_RANGE_M))
    return np.concatenate(panels, axis=1)


def _describe_dense(result: DensePrediction) -> str:
    parts = []
    if result.semantic is not None:
        labels = result.semantic.values
        parts.append(f"{np.count_nonzero(labels) / labels.size:.0%} foreground")
    if result.depth is not None:
        parts.append(f"depth {np.median(result.depth.values):.2f} m median")
    return ", ".join(parts)


def instance_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None) -> MaskRcnnPipeline:
    """A Mask R-CNN pipeline over a graph chain, ``score_threshold`` (if given) replacing the box head's."""
    if score_threshold is not None and spec.rcnn is not None:
        box_head = dataclasses.replace(spec.rcnn.box_head, score_threshold=score_threshold)
        spec = dataclasses.replace(spec, rcnn=dataclasses.replace(spec.rcnn, box_head=box_head))
    return MaskRcnnPipeline.from_runner(runner, spec)


def _instance_pipeline(runner: Runner, spec: ModelSpec, score_threshold: float | None,
                       detector: DetectionPipeline | None) -> ProfiledPipeline:
    return instance_pipeline(runner, spec, score_threshold).detect_profiled


def _draw_instances(image_rgb: np.ndarray, result: MaskRcnnResult, spec: ModelSpec) -> np.ndarray:
    """Masks, then boxes with labels, then the skeletons of the people."""
    drawn = draw_detections(draw_masks(image_rgb, result.masks), result.detections, spec.class_names)
    return drawn if result.poses is None else draw_poses(drawn, result.poses)


def _describe_instances(result: MaskRcnnResult) -> str:
    """``"3 instances, 1 person"`` (people: the detections that got keypoints)."""
    text = f"{len(result.detections)} instance{'' if len(result.detections) == 1 else 's'}"
    if result.poses is not None:
        text += f", {len(result.poses)} {'person' if len(result.poses) == 1 else 'people'}"
    return text


TASKS: dict[Task, TaskHandlers] = {
    Task.DETECTION: TaskHandlers(_detection_pipeline, _draw_detections, lambda d: f"{len(d)} detections"),
    Task.POSE: TaskHandlers(_pose_pipeline, lambda image, poses, spec: draw_poses(image, poses),
                            lambda p: f"{len(p)} people"),
    Task.DENSE: TaskHandlers(lambda runner, spec, score, detector: DensePipeline(runner, spec).detect_timed,
                             _draw_dense, _describe_dense),
    Task.ATTRIBUTES: TaskHandlers(_attribute_pipeline, _draw_attributes,
                                  lambda r: f"{len(r.detections)} objects with attributes"),
    Task.INSTANCE_SEGMENTATION: TaskHandlers(_instance_pipeline, _draw_instances, _describe_instances,
                                             profiled=True),
}
"""The tasks the demo runs."""
