"""Mask R-CNN numpy steps between the split graphs: FPN anchors, RPN proposals, box-head decoding.

The two-stage model runs as several graphs with this numpy in between (``rcnn_masks`` holds the
steps after stage 3)::

    stage 1 (backbone + FPN + RPN) --objectness, deltas per level--> generate_proposals
    stage 2 (box head on RoIAlign of the proposals) --class logits, per-class deltas--> decode_box_head

Box coding is the Faster R-CNN parameterisation (Ren et al. 2015, as in detectron2's
``Box2BoxTransform``): ``dx = (cx - acx) / aw * wx``, ``dw = log(w / aw) * ww``, decoded with
``tfsp.postprocess.boxes.decode_cxcywh`` using ``variances = 1 / weights``; ``decode_cxcywh`` caps
``dw / ww`` and ``dh / wh`` at ``log(1000 / 16)`` before ``exp`` (detectron2's ``scale_clamp``).

All boxes here are ``[x0, y0, x1, y1]`` in model-input pixels (pixel (i, j) covers
``[j, j + 1) x [i, i + 1)``, centre ``(j + 0.5, i + 0.5)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfsp.postprocess.anchors import CELL_CENTER_OFFSET
from tfsp.postprocess.boxes import Variances, batched_nms, clip_xyxy, decode_cxcywh, xyxy_to_cxcywh
from tfsp.postprocess.ssd import softmax
from tfsp.structures import Detections

FPN_OUTPUT = "fpn_p{}"
"""Stage-1 output of FPN level l (``.format(l)``): (B, H_l, W_l, F) features."""
RPN_OBJECTNESS_OUTPUT = "rpn_objectness_p{}"
"""Stage-1 output of level l: (B, H_l, W_l, A) RPN logits (anchor order: ``generate_fpn_anchors``)."""
RPN_DELTAS_OUTPUT = "rpn_deltas_p{}"
"""Stage-1 output of level l: (B, H_l, W_l, 4A) RPN deltas, ``(dx, dy, dw, dh)`` per anchor."""
BOX_ROIS_INPUT = "box_rois"
"""Input of the box head: (R, s, s, F) RoI features."""
BOX_COORDS = 4
"""Values per box delta: ``(dx, dy, dw, dh)``."""

DEFAULT_FPN_LEVELS: tuple[int, ...] = (2, 3, 4, 5, 6)
"""FPN levels P2..P6; level l has stride ``2 ** l`` input pixels (Lin et al. 2017)."""

DEFAULT_FPN_SIZES_PX: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
"""One anchor side (square-root of the area) per level, in input pixels (FPN paper)."""

DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)
"""Anchor aspect ratios, height / width (detectron2's convention)."""

RPN_VARIANCES: Variances = (1.0, 1.0, 1.0, 1.0)
"""RPN box coding: detectron2 ``RPN.BBOX_REG_WEIGHTS`` (1, 1, 1, 1), as variances 1 / weight."""

BOX_HEAD_VARIANCES: Variances = (0.1, 0.1, 0.2, 0.2)
"""Box-head coding: detectron2 ``ROI_BOX_HEAD.BBOX_REG_WEIGHTS`` (10, 10, 5, 5), as 1 / weight."""

DEFAULT_RPN_PRE_NMS_TOP_K = 1000
"""Proposals kept per level before NMS (detectron2 ``RPN.PRE_NMS_TOPK_TEST``)."""

DEFAULT_RPN_POST_NMS_TOP_K = 1000
"""Proposals kept per image after NMS (detectron2 ``RPN.POST_NMS_TOPK_TEST``)."""

DEFAULT_RPN_IOU_THRESHOLD = 0.7
"""RPN NMS suppresses IoU strictly above this (detectron2 ``RPN.NMS_THRESH``)."""

DEFAULT_RPN_MIN_SIZE_PX = 0.0
"""Proposals need width and height strictly above this, in input pixels (0: non-empty)."""

DEFAULT_BOX_SCORE_THRESHOLD = 0.05
"""Box head keeps class probabilities strictly above this (detectron2 ``SCORE_THRESH_TEST``)."""

DEFAULT_BOX_IOU_THRESHOLD = 0.5
"""Box head per-class NMS IoU threshold (detectron2 ``ROI_HEADS.NMS_THRESH_TEST``)."""

DEFAULT_MAX_DETECTIONS = 100
"""At most this many detections per image (COCO evaluates the top 100)."""


def _positive_floats(owner: str, name: str, values: Sequence[float]) -> tuple[float, ...]:
    result = tuple(float(v) for v in values)
    if not result or any(not 0 < v < math.inf for v in result):
        raise ValueError(f"{owner}.{name} must be non-empty, positive and finite, got {values!r}")
    return result


def _checked_nms_coding(owner: str, iou_threshold: float, variances: Sequence[float]) -> tuple[float, ...]:
    """Validates the NMS IoU threshold and the box-coding variances every decoding config has.

    Returns:
        The variances as 4 floats.

    Raises:
        ValueError: the threshold is outside [0, 1] or the variances are not 4 positive floats.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"{owner}.iou_threshold must be in [0, 1], got {iou_threshold}")
    result = _positive_floats(owner, "variances", variances)
    if len(result) != 4:
        raise ValueError(f"{owner}.variances must be 4 positive floats, got {variances}")
    return result


@dataclasses.dataclass(frozen=True)
class FpnAnchorConfig:
    """FPN anchors: one size and several aspect ratios per level.

    Attributes:
        image_size: model input ``(height, width)`` in pixels; an int means a square input.
        levels: FPN levels, finest first; level l has stride ``2 ** l`` pixels and an
            ``ceil(height / 2 ** l) x ceil(width / 2 ** l)`` feature map ("same" padding).
        sizes_px: per level, the anchor side ``sqrt(w * h)`` in input pixels.
        aspect_ratios: ratios ``h / w`` used at every location, in this order.
    """

    image_size: tuple[int, int]
    levels: tuple[int, ...] = DEFAULT_FPN_LEVELS
    sizes_px: tuple[float, ...] = DEFAULT_FPN_SIZES_PX
    aspect_ratios: tuple[float, ...] = DEFAULT_ASPECT_RATIOS

    def __post_init__(self) -> None:
        owner = "FpnAnchorConfig"
        size = (self.image_size, self.image_size) if isinstance(self.image_size, int) else tuple(self.image_size)
        if len(size) != 2 or any(not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"{owner}.image_size must be a positive int or (height, width), got {self.image_size!r}")
        levels = tuple(self.levels)
        if not levels or any(not isinstance(v, int) or v < 0 for v in levels) or list(levels) != sorted(set(levels)):
            raise ValueError(f"{owner}.levels must be increasing non-negative ints, got {self.levels!r}")
        sizes = _positive_floats(owner, "sizes_px", self.sizes_px)
        if len(sizes) != len(levels):
            raise ValueError(f"{owner}.sizes_px needs {len(levels)} entries (one per level), got {len(sizes)}")
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "sizes_px", sizes)
        object.__setattr__(self, "aspect_ratios", _positive_floats(owner, "aspect_ratios", self.aspect_ratios))


def fpn_feature_map_sizes(config: FpnAnchorConfig) -> tuple[tuple[int, int], ...]:
    """Per level, the feature map ``(H_l, W_l) = (ceil(height / 2**l), ceil(width / 2**l))``."""
    height, width = config.image_size
    return tuple((-(-height // 2**level), -(-width // 2**level)) for level in config.levels)


def generate_fpn_anchors(config: FpnAnchorConfig) -> list[np.ndarray]:
    """Anchors of every FPN level.

    At cell (row i, col j) of level l (stride ``s = 2 ** l``), anchor a is centred at
    ``((j + 0.5) * s, (i + 0.5) * s)`` with ``w = size / sqrt(r_a)``, ``h = size * sqrt(r_a)``
    (so ``w * h = size ** 2`` and ``h / w = r_a``). Anchors are not clipped to the image.

    Args:
        config: anchor configuration.

    Returns:
        One array per level, ``(H_l * W_l * A, 4)`` float32 ``[x0, y0, x1, y1]`` input pixels,
        ordered (row, col, aspect ratio) with the aspect ratio fastest: the order of a conv
        output ``(H_l, W_l, A)`` reshaped to ``(H_l * W_l * A,)``.
    """
    ratios = np.asarray(config.aspect_ratios, np.float64)
    anchors = []
    for level, size, (rows, cols) in zip(config.levels, config.sizes_px, fpn_feature_map_sizes(config)):
        stride = float(2**level)
        half_wh = 0.5 * size * np.stack([1.0 / np.sqrt(ratios), np.sqrt(ratios)], axis=1)  # (A, 2)
        cy, cx = np.meshgrid((np.arange(rows) + CELL_CENTER_OFFSET) * stride,
                             (np.arange(cols) + CELL_CENTER_OFFSET) * stride, indexing="ij")
        centres = np.stack([cx, cy], axis=-1)[:, :, None, :]  # (H, W, 1, 2) [x, y]
        boxes = np.concatenate(np.broadcast_arrays(centres - half_wh, centres + half_wh), axis=-1)
        anchors.append(boxes.reshape(-1, 4).astype(np.float32))
    return anchors


@dataclasses.dataclass(frozen=True)
class RpnProposalConfig:
    """RPN proposal selection; every default is a named constant above.

    Attributes:
        pre_nms_top_k: best-scoring anchors kept per level before NMS (>= 1).
        post_nms_top_k: proposals kept per image after NMS (>= 0).
        iou_threshold: NMS suppresses IoU strictly above this, in ``[0, 1]``.
        min_size_px: proposals need width and height strictly above this (>= 0, input pixels).
        variances: ``(v_cx, v_cy, v_w, v_h)`` of the RPN box coding (1 / detectron2's weights).
    """

    pre_nms_top_k: int = DEFAULT_RPN_PRE_NMS_TOP_K
    post_nms_top_k: int = DEFAULT_RPN_POST_NMS_TOP_K
    iou_threshold: float = DEFAULT_RPN_IOU_THRESHOLD
    min_size_px: float = DEFAULT_RPN_MIN_SIZE_PX
    variances: Variances = RPN_VARIANCES

    def __post_init__(self) -> None:
        owner = "RpnProposalConfig"
        if self.pre_nms_top_k < 1 or self.post_nms_top_k < 0:
            raise ValueError(f"{owner} needs pre_nms_top_k >= 1 and post_nms_top_k >= 0, got "
                             f"{self.pre_nms_top_k}, {self.post_nms_top_k}")
        if not 0.0 <= self.min_size_px < math.inf:
            raise ValueError(f"{owner}.min_size_px must be finite and >= 0, got {self.min_size_px}")
        object.__setattr__(self, "variances", _checked_nms_coding(owner, self.iou_threshold, self.variances))


def generate_proposals(
    objectness: list[np.ndarray], deltas: list[np.ndarray], anchors_xyxy: list[np.ndarray],
    config: RpnProposalConfig, image_height: float, image_width: float,
) -> tuple[np.ndarray, np.ndarray]:
    """RPN outputs to proposals, as detectron2's ``find_top_rpn_proposals`` at inference.

    1. per level, the ``pre_nms_top_k`` anchors with the highest objectness logit (ties by
       ascending index); decode their deltas (``config.variances``);
    2. drop rows with a non-finite logit or box; clip boxes to ``[0, W] x [0, H]``; drop boxes whose
       width or height is not strictly above ``min_size_px`` (after the top-k, like detectron2);
    3. NMS per level (``batched_nms`` with the level as class: levels never suppress each other),
       merged by descending logit; keep the first ``post_nms_top_k``.

    Args:
        objectness: per level, ``(H_l * W_l * A,)`` float objectness logits.
        deltas: per level, ``(H_l * W_l * A, 4)`` float ``(dx, dy, dw, dh)``.
        anchors_xyxy: per level, ``(H_l * W_l * A, 4)`` float ``[x0, y0, x1, y1]`` input pixels
            (``generate_fpn_anchors``); all three lists share one (row, col, aspect) order.
        config: selection thresholds.
        image_height: model input height in pixels.
        image_width: model input width in pixels.

    Returns:
        ``(boxes_xyxy, scores)`` by descending score: ``(P, 4)`` float32 ``[x0, y0, x1, y1]`` input
        pixels, clipped; ``(P,)`` float32 objectness *logits* (``sigmoid`` for a probability;
        logits rank without float32 saturation ties). ``P <= post_nms_top_k``.
    """
    if not len(objectness) == len(deltas) == len(anchors_xyxy):
        raise ValueError(f"objectness, deltas, anchors_xyxy need one entry per level, got "
                         f"{len(objectness)}, {len(deltas)}, {len(anchors_xyxy)}")
    boxes, scores, levels = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
    for level, (logits, level_deltas, anchors) in enumerate(zip(objectness, deltas, anchors_xyxy)):
        logits = np.asarray(logits, np.float32)
        level_deltas, anchors = np.asarray(level_deltas, np.float32), np.asarray(anchors, np.float32)
        count = anchors.shape[0] if anchors.ndim == 2 else -1
        if anchors.shape != (count, 4) or logits.shape != (count,) or level_deltas.shape != (count, 4):
            raise ValueError(f"level {level}: need objectness (A,), deltas (A, 4), anchors (A, 4), got "
                             f"{logits.shape}, {level_deltas.shape}, {anchors.shape}")
        top = np.argsort(-logits, kind="stable")[: config.pre_nms_top_k]
        decoded = decode_cxcywh(level_deltas[top], xyxy_to_cxcywh(anchors[top]), config.variances)
        boxes.append(decoded.astype(np.float32))
        scores.append(logits[top])
        levels.append(np.full(top.size, level, np.int64))
    boxes_all, scores_all, levels_all = (np.concatenate(parts) for parts in (boxes, scores, levels))
    finite = np.isfinite(scores_all) & np.all(np.isfinite(boxes_all), axis=1)
    boxes_all = clip_xyxy(boxes_all[finite], image_height, image_width)
    scores_all, levels_all = scores_all[finite], levels_all[finite]
    min_size = np.float32(config.min_size_px)
    large = (boxes_all[:, 2] - boxes_all[:, 0] > min_size) & (boxes_all[:, 3] - boxes_all[:, 1] > min_size)
    boxes_all, scores_all, levels_all = boxes_all[large], scores_all[large], levels_all[large]
    keep = batched_nms(boxes_all, scores_all, levels_all, config.iou_threshold, max_detections=config.post_nms_top_k)
    return boxes_all[keep], scores_all[keep]


@dataclasses.dataclass(frozen=True)
class BoxHeadConfig:
    """Box-head decoding thresholds; every default is a named constant above.

    Attributes:
        score_threshold: keep class probabilities strictly above this.
        iou_threshold: class-aware NMS IoU threshold in ``[0, 1]``.
        max_detections: at most this many detections per image (>= 0).
        variances: ``(v_cx, v_cy, v_w, v_h)`` of the box-head coding (1 / detectron2's weights).
    """

    score_threshold: float = DEFAULT_BOX_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_BOX_IOU_THRESHOLD
    max_detections: int = DEFAULT_MAX_DETECTIONS
    variances: Variances = BOX_HEAD_VARIANCES

    def __post_init__(self) -> None:
        owner = "BoxHeadConfig"
        if self.max_detections < 0:
            raise ValueError(f"{owner}.max_detections must be >= 0, got {self.max_detections}")
        object.__setattr__(self, "variances", _checked_nms_coding(owner, self.iou_threshold, self.variances))


def decode_box_head(
    class_logits: np.ndarray, box_deltas: np.ndarray, proposals_xyxy: np.ndarray,
    config: BoxHeadConfig, image_height: float, image_width: float,
) -> Detections:
    """Box-head outputs to detections, as detectron2's ``fast_rcnn_inference_single_image``.

    Softmax over the ``C + 1`` logits (index 0 = background, index ``k + 1`` = class k, the tfsp
    convention); each proposal's class-k deltas decode against the proposal and are clipped to the
    image; (proposal, class) pairs with a non-finite box or a probability not strictly above
    ``score_threshold`` are dropped; class-aware NMS keeps at most ``max_detections``.

    Args:
        class_logits: ``(R, C + 1)`` float logits, C >= 1.
        box_deltas: ``(R, C, 4)`` float per-class ``(dx, dy, dw, dh)``, or ``(R, 1, 4)`` for
            class-agnostic regression (shared by every class).
        proposals_xyxy: ``(R, 4)`` float ``[x0, y0, x1, y1]`` input pixels (``generate_proposals``).
        config: thresholds.
        image_height: model input height in pixels.
        image_width: model input width in pixels.

    Returns:
        ``Detections`` by descending score: boxes in input pixels, clipped; scores the softmax
        probabilities; class_ids in ``[0, C)``.
    """
    class_logits = np.asarray(class_logits, np.float32)
    box_deltas = np.asarray(box_deltas, np.float32)
    proposals = np.asarray(proposals_xyxy, np.float32)
    if proposals.ndim != 2 or proposals.shape[1] != 4:
        raise ValueError(f"proposals_xyxy must have shape (R, 4), got {proposals.shape}")
    count = proposals.shape[0]
    if class_logits.ndim != 2 or class_logits.shape[0] != count or class_logits.shape[1] < 2:
        raise ValueError(f"class_logits must have shape ({count}, C + 1) with C >= 1, got {class_logits.shape}")
    num_classes = class_logits.shape[1] - 1
    if box_deltas.shape not in ((count, num_classes, 4), (count, 1, 4)):
        raise ValueError(f"box_deltas must have shape ({count}, {num_classes} or 1, 4), got {box_deltas.shape}")
    probabilities = softmax(class_logits)[:, 1:]  # (R, C)
    boxes = decode_cxcywh(box_deltas, xyxy_to_cxcywh(proposals)[:, None, :], config.variances)
    boxes = clip_xyxy(np.broadcast_to(boxes, (count, num_classes, 4)), image_height, image_width)
    candidates = (probabilities > np.float32(config.score_threshold)) & np.all(np.isfinite(boxes), axis=2)
    rows, class_ids = np.nonzero(candidates)  # row-major: proposal, then class
    boxes, scores = boxes[rows, class_ids].astype(np.float32), probabilities[rows, class_ids]
    keep = batched_nms(boxes, scores, class_ids, config.iou_threshold, max_detections=config.max_detections)
    return Detections.create(boxes[keep], scores[keep], class_ids[keep])
