"""Mask R-CNN (+ keypoints) pipeline: RGB image -> split graphs with numpy between -> original pixels.

Device-safe: imports neither TensorFlow nor Keras (the graph names below mirror
``tfsp.models.mask_rcnn`` / ``mask_rcnn_heads``, which import Keras; a test holds them equal).
The same code runs Keras graphs on the server and TFLite graphs on the device::

    preprocess (letterbox) -> stage1(image) -> fpn_p{l}, rpn_objectness_p{l}, rpn_deltas_p{l}
    -> generate_proposals -> multilevel_roi_align (7 x 7) -> box_head.run_features -> decode_box_head
    -> multilevel_roi_align (14 x 14) of the detections -> mask_head.run_features -> sigmoid of each
       detection's class channel -> paste_masks in ORIGINAL pixels
    -> multilevel_roi_align (14 x 14) of the person detections -> keypoint_head.run_features
       -> decode_keypoint_heatmaps (input pixels) -> letterbox to original pixels

Everything up to the heads works in model-input pixels. Mapping back: detection boxes go through
``Letterbox.to_original_xyxy`` and are clipped to the original image. Masks are pasted directly in
the original image with the *unclipped* mapped boxes (the letterbox is an axis-aligned scale, so the
box-relative mask maps exactly; bilinear at original pixel centres as ``paste_masks`` defines; a box
reaching into the letterbox padding keeps its mask geometry and only the in-image part is drawn).
Keypoints go through ``Letterbox.to_original_keypoints`` and are clipped to ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from tfsp.postprocess.boxes import clip_xyxy
from tfsp.postprocess.rcnn import (
    BOX_COORDS,
    FPN_OUTPUT,
    RPN_DELTAS_OUTPUT,
    RPN_OBJECTNESS_OUTPUT,
    decode_box_head,
    generate_fpn_anchors,
    generate_proposals,
)
from tfsp.postprocess.rcnn_masks import (KEYPOINT_LOGITS, MASK_LOGITS, decode_keypoint_heatmaps, paste_masks,
                                         pose_scores)
from tfsp.postprocess.roi_align import multilevel_roi_align
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS
from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, KEYPOINT_HEAD_GRAPH, MASK_HEAD_GRAPH, GraphChain
from tfsp.runtime.mask_rcnn_config import PERSON_CLASS_NAME, MaskRcnnPipelineConfig
from tfsp.runtime.preprocess import preprocess_image
from tfsp.runtime.timing import MS_PER_S, StageTimings
from tfsp.structures import Detections, InstanceMasks, Poses

BOX_HEAD_OUTPUT_NAMES = (CLASS_LOGITS, BOX_DELTAS)

GRAPH_STEPS = ("stage1", "box_head", "mask_head", "keypoint_head")
"""Steps that run a graph; their sum is ``StageTimings.inference_ms``."""
NUMPY_STEPS = ("proposals", "roi_align_box", "decode", "roi_align_mask", "paste", "roi_align_keypoint",
               "keypoint_decode")
"""Numpy steps after stage 1; their sum is ``StageTimings.postprocess_ms``."""
STEP_NAMES = ("stage1", "proposals", "roi_align_box", "box_head", "decode", "roi_align_mask", "mask_head",
              "paste", "roi_align_keypoint", "keypoint_head", "keypoint_decode")
"""Keys of the per-step milliseconds of :meth:`MaskRcnnPipeline.detect_profiled`, in run order."""


@dataclasses.dataclass(frozen=True, eq=False)
class MaskRcnnResult:
    """One image's Mask R-CNN results, all in ORIGINAL image pixels.

    Attributes:
        detections: N boxes (clipped to the image), scores, class ids.
        masks: ``(N, H, W)`` bool masks in the detections' order, same scores and class ids.
        poses: P poses of the person detections (None when the pipeline has no keypoint head);
            keypoints ``[x, y, score]`` clipped to ``[0, W] x [0, H]``, pose score
            ``tfsp.postprocess.rcnn_masks.pose_scores`` (box score and keypoint peak probabilities).
        pose_detection_index: ``(P,)`` int64, row of ``detections`` each pose belongs to.
    """

    detections: Detections
    masks: InstanceMasks
    poses: Poses | None
    pose_detection_index: np.ndarray

    def __post_init__(self) -> None:
        index = np.asarray(self.pose_detection_index, np.int64).reshape(-1)
        if len(self.masks) != len(self.detections):
            raise ValueError(f"{len(self.masks)} masks for {len(self.detections)} detections")
        if len(index) != (0 if self.poses is None else len(self.poses)):
            raise ValueError(f"pose_detection_index has {len(index)} rows for {self.poses!r}")
        if index.size and (index.min() < 0 or index.max() >= len(self.detections)):
            raise ValueError(f"pose_detection_index out of range for {len(self.detections)} detections")
        index.flags.writeable = False
        object.__setattr__(self, "pose_detection_index", index)


def _check_outputs(graph: str, runner, names: Sequence[str]) -> None:
    missing = sorted(set(names) - set(runner.output_names))
    if missing:
        raise ValueError(f"{graph} runner lacks outputs {missing}; it has {list(runner.output_names)}")


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, np.float64)))).astype(np.float32)


class _Steps:
    """Accumulates per-step wall-clock milliseconds."""

    def __init__(self) -> None:
        self.ms = dict.fromkeys(STEP_NAMES, 0.0)
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] += (now - self._last) * MS_PER_S
        self._last = now


class MaskRcnnPipeline:
    """Runs the split Mask R-CNN graphs on full images; results in original pixels.

    Args:
        stage1: image runner (``runner(images)``) with every ``fpn_p{l}``, ``rpn_objectness_p{l}``,
            ``rpn_deltas_p{l}`` of ``config.levels``; ``input_size == config.input_size``.
        box_head: feature runner (``run_features``) with ``class_logits`` (R, C + 1), ``box_deltas`` (R, 4C).
        mask_head: feature runner with ``mask_logits`` (R, M, M, C).
        keypoint_head: optional feature runner with ``keypoint_logits`` (R, S_k, S_k, 17).
        config: pipeline settings.

    Raises:
        ValueError: a runner lacks an output, or the stage-1 input size differs.
    """

    def __init__(self, stage1, box_head, mask_head, keypoint_head=None, *,
                 config: MaskRcnnPipelineConfig) -> None:
        if stage1.input_size != config.input_size:
            raise ValueError(f"stage1 input size {stage1.input_size} != config input size {config.input_size}")
        _check_outputs("stage1", stage1, [name.format(level) for level in config.levels
                                          for name in (FPN_OUTPUT, RPN_OBJECTNESS_OUTPUT, RPN_DELTAS_OUTPUT)])
        _check_outputs("box head", box_head, BOX_HEAD_OUTPUT_NAMES)
        _check_outputs("mask head", mask_head, (MASK_LOGITS,))
        if keypoint_head is not None:
            _check_outputs("keypoint head", keypoint_head, (KEYPOINT_LOGITS,))
        self._stage1, self._box_head, self._mask_head, self._keypoint_head = stage1, box_head, mask_head, keypoint_head
        self._config = config
        self._anchors = generate_fpn_anchors(config.anchors)

    @classmethod
    def from_runner(cls, runner: GraphChain, spec) -> MaskRcnnPipeline:
        """The pipeline of a split-graph model opened with ``tfsp.runtime.runner.open_runner``.

        Args:
            runner: a ``GraphChain`` with the box and mask heads (keypoint head optional).
            spec: its ``tfsp.spec.ModelSpec`` (Task.INSTANCE_SEGMENTATION); the keypoint head runs
                when the chain has it and ``spec.rcnn.person_class_id`` is not None.

        Raises:
            ValueError: ``runner`` is not a ``GraphChain``, lacks a head, or does not fit the spec.
        """
        if not isinstance(runner, GraphChain):
            raise ValueError(f"MaskRcnnPipeline needs a GraphChain (stage 1 plus MODEL.{BOX_HEAD_GRAPH}.* and "
                             f"MODEL.{MASK_HEAD_GRAPH}.* beside the model file), got {type(runner).__name__}")
        config = MaskRcnnPipelineConfig.from_spec(spec)
        keypoint_head = (runner.heads.get(KEYPOINT_HEAD_GRAPH) if spec.rcnn.person_class_id is not None else None)
        return cls(runner.stage1, runner.head(BOX_HEAD_GRAPH), runner.head(MASK_HEAD_GRAPH), keypoint_head,
                   config=config)

    @property
    def config(self) -> MaskRcnnPipelineConfig:
        """The pipeline settings."""
        return self._config

    def __call__(self, image_rgb: np.ndarray) -> MaskRcnnResult:
        """Detects, segments and (for persons) finds keypoints in one (H, W, 3) uint8 RGB image."""
        return self.detect_profiled(image_rgb)[0]

    def detect_timed(self, image_rgb: np.ndarray) -> tuple[MaskRcnnResult, StageTimings]:
        """Like ``__call__`` but also returns the stage timings (inference = all graph calls)."""
        result, timings, _ = self.detect_profiled(image_rgb)
        return result, timings

    def detect_profiled(self, image_rgb: np.ndarray) -> tuple[MaskRcnnResult, StageTimings, dict[str, float]]:
        """Like ``detect_timed`` plus per-step milliseconds keyed by :data:`STEP_NAMES` (0 if skipped)."""
        cfg = self._config
        start = time.perf_counter()
        image, letterbox = preprocess_image(image_rgb, cfg.input_size, cfg.resize_mode)
        preprocess_ms = (time.perf_counter() - start) * MS_PER_S
        steps = _Steps()
        height, width = image_rgb.shape[:2]
        size = float(cfg.input_size)

        outputs = self._stage1(image[np.newaxis])
        steps.mark("stage1")
        features = {level: np.asarray(outputs[FPN_OUTPUT.format(level)][0], np.float32) for level in cfg.levels}
        objectness = [np.asarray(outputs[RPN_OBJECTNESS_OUTPUT.format(level)][0], np.float32).reshape(-1)
                      for level in cfg.levels]
        rpn_deltas = [np.asarray(outputs[RPN_DELTAS_OUTPUT.format(level)][0], np.float32).reshape(-1, BOX_COORDS)
                      for level in cfg.levels]
        proposals, _ = generate_proposals(objectness, rpn_deltas, self._anchors, cfg.proposals, size, size)
        steps.mark("proposals")

        detections = Detections.empty()
        if len(proposals):
            rois = multilevel_roi_align(features, proposals, cfg.box_roi_size, cfg.sampling_ratio)
            steps.mark("roi_align_box")
            head = self._box_head.run_features(rois)
            steps.mark("box_head")
            logits = np.asarray(head[CLASS_LOGITS], np.float32)
            if logits.ndim != 2 or logits.shape[1] != len(cfg.class_names) + 1:
                raise ValueError(f"class_logits must be (R, {len(cfg.class_names) + 1}), got {logits.shape}")
            deltas = np.asarray(head[BOX_DELTAS], np.float32).reshape(len(proposals), -1, BOX_COORDS)
            detections = decode_box_head(logits, deltas, proposals, cfg.box_head, size, size)
            steps.mark("decode")

        boxes_input = detections.boxes_xyxy
        boxes_mapped = letterbox.to_original_xyxy(boxes_input)  # unclipped: mask geometry
        masks = InstanceMasks.empty(height, width)
        if len(detections):
            rois = multilevel_roi_align(features, boxes_input, cfg.mask_roi_size, cfg.sampling_ratio)
            steps.mark("roi_align_mask")
            mask_logits = np.asarray(self._mask_head.run_features(rois)[MASK_LOGITS], np.float32)
            steps.mark("mask_head")
            probs = _sigmoid(mask_logits[np.arange(len(detections)), :, :, detections.class_ids])
            masks = InstanceMasks.create(paste_masks(probs, boxes_mapped, height, width, cfg.mask_threshold),
                                         detections.scores, detections.class_ids)
            steps.mark("paste")

        poses, pose_index = None, np.zeros(0, np.int64)
        if self._keypoint_head is not None:
            poses = Poses.empty()
            if cfg.person_class_id is not None:
                pose_index = np.flatnonzero(detections.class_ids == cfg.person_class_id).astype(np.int64)
            if pose_index.size:
                person_boxes = boxes_input[pose_index]
                rois = multilevel_roi_align(features, person_boxes, cfg.keypoint_roi_size, cfg.sampling_ratio)
                steps.mark("roi_align_keypoint")
                heatmaps = np.asarray(self._keypoint_head.run_features(rois)[KEYPOINT_LOGITS], np.float32)
                steps.mark("keypoint_head")
                keypoints = letterbox.to_original_keypoints(
                    decode_keypoint_heatmaps(heatmaps.transpose(0, 3, 1, 2), person_boxes))
                keypoints[..., :2] = np.clip(keypoints[..., :2], 0.0, np.array([width, height], np.float32))
                poses = Poses.create(keypoints, pose_scores(detections.scores[pose_index], keypoints[..., 2]))
                steps.mark("keypoint_decode")

        original = clip_xyxy(boxes_mapped, height, width)
        result = MaskRcnnResult(
            detections=Detections.create(original, detections.scores, detections.class_ids),
            masks=masks, poses=poses, pose_detection_index=pose_index)
        steps.mark("decode")  # the final mapping of boxes counts as decoding
        timings = StageTimings(preprocess_ms, sum(steps.ms[s] for s in GRAPH_STEPS),
                               sum(steps.ms[s] for s in NUMPY_STEPS))
        return result, timings, dict(steps.ms)
