"""SSD decoding: raw named model outputs to ``Detections`` (numpy only).

The SSD graph ends at two separately named outputs (``BOX_DELTAS`` and
``CLASS_LOGITS``); everything after that happens here, identically on the
server (Keras) and the device (TFLite):

1. softmax over the ``C + 1`` logits of each anchor (index 0 = background,
   index ``k + 1`` = foreground ``class_id`` k);
2. keep the (anchor, class) pairs whose foreground probability is strictly
   greater than ``score_threshold``;
3. keep the ``pre_nms_top_k`` best pairs (descending score, ties by ascending
   anchor-major index);
4. decode their anchors' box deltas with ``tfsp.postprocess.boxes.decode_cxcywh``
   and clip them to the input image ``[0, 1] x [0, 1]``;
5. class-aware NMS (``batched_nms``), keeping at most ``max_detections``.

Output boxes are in *normalised model-input coordinates*: ``[x0, y0, x1, y1]``
with 0 the left/top edge and 1 the right/bottom edge of the ``S x S`` model
input (multiply by S for input pixels). ``tfsp.runtime.detection`` maps them to
original image pixels with the preprocessing ``Letterbox``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfsp.postprocess.boxes import BOX_VARIANCES, batched_nms, decode_cxcywh
from tfsp.structures import Detections

BOX_DELTAS = "box_deltas"
"""Name of the SSD output holding (B, A, 4) float32 encoded box offsets."""

CLASS_LOGITS = "class_logits"
"""Name of the SSD output holding (B, A, C + 1) float32 logits (0 = background)."""

SSD_OUTPUT_NAMES: tuple[str, str] = (BOX_DELTAS, CLASS_LOGITS)
"""Every output an SSD graph must have, by name."""

DEFAULT_SCORE_THRESHOLD = 0.01
"""Keep class probabilities strictly above this (low, for COCO mAP evaluation; the SSD paper
evaluates at 0.01). Demos draw above their own, higher threshold."""

DEFAULT_IOU_THRESHOLD = 0.6
"""Per-class NMS suppresses IoU strictly above this (the TF Object Detection API's SSD configs;
the paper's 0.45 cost about 0.5 AP points on the synthetic val set, where shapes overlap)."""

DEFAULT_MAX_DETECTIONS = 100
"""At most this many detections per image (COCO evaluates the top 100)."""

DEFAULT_PRE_NMS_TOP_K = 1000
"""At most this many (anchor, class) candidates enter NMS per image."""


@dataclasses.dataclass(frozen=True)
class SsdPostprocessConfig:
    """Thresholds of the SSD decoding; every default is a named constant above.

    Attributes:
        score_threshold: keep foreground probabilities strictly above this.
        iou_threshold: class-aware NMS IoU threshold in ``[0, 1]``.
        max_detections: at most this many detections per image (>= 0).
        pre_nms_top_k: at most this many candidates enter NMS (>= 1).
        variances: ``(v_cx, v_cy, v_w, v_h)`` the box deltas were encoded with.
    """

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_detections: int = DEFAULT_MAX_DETECTIONS
    pre_nms_top_k: int = DEFAULT_PRE_NMS_TOP_K
    variances: tuple[float, float, float, float] = BOX_VARIANCES

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"SsdPostprocessConfig.iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_detections < 0:
            raise ValueError(f"SsdPostprocessConfig.max_detections must be >= 0, got {self.max_detections}")
        if self.pre_nms_top_k < 1:
            raise ValueError(f"SsdPostprocessConfig.pre_nms_top_k must be >= 1, got {self.pre_nms_top_k}")
        if len(self.variances) != 4 or min(self.variances) <= 0:
            raise ValueError(f"SsdPostprocessConfig.variances must be 4 positive floats, got {self.variances}")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax.

    Args:
        logits: float array of any shape.
        axis: the axis that sums to one.

    Returns:
        float32 probabilities, same shape as ``logits``.
    """
    logits = np.asarray(logits, np.float32)
    exp = np.exp(logits - np.max(logits, axis=axis, keepdims=True))
    return exp / np.sum(exp, axis=axis, keepdims=True)


def decode_ssd(
    box_deltas: np.ndarray,
    class_logits: np.ndarray,
    anchors_cxcywh: np.ndarray,
    config: SsdPostprocessConfig = SsdPostprocessConfig(),
) -> Detections:
    """Decodes one image's SSD outputs into detections (see module docstring).

    Args:
        box_deltas: (A, 4) float encoded offsets (``encode_cxcywh`` coding).
        class_logits: (A, C + 1) float logits, index 0 = background.
        anchors_cxcywh: (A, 4) float32 ``[cx, cy, w, h]`` anchors normalised to
            ``[0, 1]`` of the model input.
        config: thresholds.

    Returns:
        ``Detections`` sorted by descending score: ``boxes_xyxy`` (N, 4)
        float32 in normalised model-input coordinates clipped to ``[0, 1]``,
        ``scores`` (N,) float32 softmax probabilities, ``class_ids`` (N,) int32
        foreground ids in ``[0, C)``.
    """
    box_deltas = np.asarray(box_deltas, np.float32)
    class_logits = np.asarray(class_logits, np.float32)
    num_anchors = len(anchors_cxcywh)
    if box_deltas.shape != (num_anchors, 4):
        raise ValueError(f"box_deltas must have shape ({num_anchors}, 4), got {box_deltas.shape}")
    if class_logits.ndim != 2 or class_logits.shape[0] != num_anchors or class_logits.shape[1] < 2:
        raise ValueError(f"class_logits must have shape ({num_anchors}, C + 1) with C >= 1, got {class_logits.shape}")
    foreground = softmax(class_logits)[:, 1:]  # (A, C)
    flat = np.flatnonzero(foreground.ravel() > np.float32(config.score_threshold))
    scores = foreground.ravel()[flat]
    order = np.argsort(-scores, kind="stable")[: config.pre_nms_top_k]
    flat, scores = flat[order], scores[order]
    anchor_ids, class_ids = np.divmod(flat, foreground.shape[1])
    boxes = decode_cxcywh(box_deltas[anchor_ids], anchors_cxcywh[anchor_ids], config.variances)
    boxes = np.clip(boxes, 0.0, 1.0).astype(np.float32)
    keep = batched_nms(boxes, scores, class_ids, config.iou_threshold, max_detections=config.max_detections)
    return Detections(boxes_xyxy=boxes[keep], scores=scores[keep].astype(np.float32),
                      class_ids=class_ids[keep].astype(np.int32))
