"""Dense pixel outputs to ``DenseMap`` on the original image (numpy only).

A dense graph (:mod:`tfsp.models.dense`) predicts, per head it carries (``DenseHead``), a map on
an F x F grid over the S x S model input (S = F * stride): ``semantic_logits`` (F, F, C + 1) raw
class logits (channel 0 background, channel k + 1 foreground class id k) and/or ``depth``
(F, F, 1) metres. Decoding brings each map
back to the original (H, W) image:

1. **Resampling.** Every original pixel centre ``(x + 0.5, y + 0.5)`` is mapped through the
   :class:`~tfsp.runtime.preprocess.Letterbox` to the input, ``u = (x + 0.5) * scale_x + pad_x``,
   then to the map, whose cell (i, j) covers input pixels ``[j s, (j + 1) s) x [i s, (i + 1) s)``
   and whose values sit at the cell centres. The map is sampled there bilinearly, edges replicated
   (half-pixel centres, as ``tf.image.resize(..., "bilinear")`` / ``cv2.INTER_LINEAR``). This is one
   exact separable interpolation, never a resize of a resize (a flip, ``scale_x < 0``, works too).
   Original pixels map inside the letterbox content region, but near its bottom/right edge the
   interpolation blends in the cells that straddle the padding, as any resize of the map would.
2. **Labels.** Logits are resampled first, then the per-pixel argmax gives the label (ties go to
   the lower label): smoother boundaries than resizing a label map.

Pixel convention: pixel (row i, col j) covers ``[j, j + 1) x [i, i + 1)``, centre ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import enum

import numpy as np

from tfsp.runtime.preprocess import Letterbox
from tfsp.structures import DenseKind, DenseMap

SEMANTIC_LOGITS = "semantic_logits"
"""Name of the dense output holding (B, F, F, C + 1) float32 class logits (channel 0 background)."""

DEPTH = "depth"
"""Name of the dense output holding (B, F, F, 1) float32 depth in metres."""



class DenseHead(enum.Enum):
    """The heads a dense graph may carry; each adds one named output."""

    SEGMENTATION = "segmentation"
    DEPTH = "depth"


HEAD_OUTPUTS: dict[DenseHead, str] = {DenseHead.SEGMENTATION: SEMANTIC_LOGITS, DenseHead.DEPTH: DEPTH}
"""The output name of each head."""

ALL_HEADS = (DenseHead.SEGMENTATION, DenseHead.DEPTH)


def heads_of(output_names: tuple[str, ...] | list[str]) -> tuple[DenseHead, ...]:
    """The heads whose outputs are among ``output_names``, in ``ALL_HEADS`` order."""
    return tuple(head for head in ALL_HEADS if HEAD_OUTPUTS[head] in output_names)


PIXEL_CENTRE = 0.5
"""Offset of a pixel (or map cell) centre from its top-left corner, in pixels (cells)."""

BACKGROUND_LABEL = 0
"""Label of background pixels; foreground class id k has label k + 1."""


def _axis_weights(size: int, scale: float, pad: float, stride: float, cells: int) -> tuple[np.ndarray, ...]:
    """Linear-interpolation taps along one axis.

    Output pixel ``p`` (0 .. size - 1) reads the map at the continuous cell index
    ``((p + 0.5) * scale + pad) / stride - 0.5``, clamped to [0, cells - 1].

    Returns:
        ``(low, high, weight_high)``: (size,) int64 cell indices and (size,) float32 weights in [0, 1].
    """
    position = ((np.arange(size, dtype=np.float64) + PIXEL_CENTRE) * scale + pad) / stride - PIXEL_CENTRE
    position = np.clip(position, 0.0, cells - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, cells - 1)
    return low, high, (position - low).astype(np.float32)


def resample_to_image(values: np.ndarray, letterbox: Letterbox, input_size: int, height: int,
                      width: int) -> np.ndarray:
    """Samples a map over the model input at every original-image pixel centre (bilinear).

    Args:
        values: (F_h, F_w) or (F_h, F_w, C) float map covering the (S, S) input; cell (i, j)
            covers input pixels ``[j s_x, (j + 1) s_x) x [i s_y, (i + 1) s_y)``, ``s = S / F``.
        letterbox: original -> input transform of the image (``preprocess_image``'s second result).
        input_size: model input side S in pixels.
        height: original image height H in pixels.
        width: original image width W in pixels.

    Returns:
        (H, W) or (H, W, C) float32, pixel (y, x) the map's bilinear interpolant at the input
        point ``((x + 0.5) * scale_x + pad_x, (y + 0.5) * scale_y + pad_y)``.

    Raises:
        ValueError: bad shapes or sizes, or ``input_size`` differing from ``letterbox.input_size``.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim not in (2, 3) or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"values must have shape (F_h, F_w) or (F_h, F_w, C), got {values.shape}")
    if input_size <= 0 or height <= 0 or width <= 0:
        raise ValueError(f"sizes must be positive, got input_size={input_size} height={height} width={width}")
    if input_size != letterbox.input_size:
        raise ValueError(f"input_size {input_size} differs from letterbox.input_size {letterbox.input_size}")
    cells_y, cells_x = values.shape[:2]
    y0, y1, wy = _axis_weights(height, letterbox.scale_y, letterbox.pad_y, input_size / cells_y, cells_y)
    x0, x1, wx = _axis_weights(width, letterbox.scale_x, letterbox.pad_x, input_size / cells_x, cells_x)
    trailing = (1,) * (values.ndim - 2)
    wy, wx = wy.reshape((-1, 1) + trailing), wx.reshape((1, -1) + trailing)
    rows = values[y0] * (1.0 - wy) + values[y1] * wy  # (H, F_w[, C])
    return (rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx).astype(np.float32)


def decode_semantic(logits: np.ndarray, letterbox: Letterbox, input_size: int, height: int,
                    width: int) -> DenseMap:
    """Semantic logits of one image -> label map on the original image.

    Args:
        logits: (F, F, C + 1) float32 raw logits (``semantic_logits`` of one image).
        letterbox: original -> input transform of the image.
        input_size: model input side S in pixels.
        height: original image height H in pixels.
        width: original image width W in pixels.

    Returns:
        ``DenseMap`` kind LABELS, (H, W) int32: 0 background, k + 1 foreground class id k.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3 or logits.shape[2] < 2:
        raise ValueError(f"logits must have shape (F, F, C + 1) with C >= 1, got {logits.shape}")
    resampled = resample_to_image(logits, letterbox, input_size, height, width)
    return DenseMap(np.argmax(resampled, axis=-1).astype(np.int32), DenseKind.LABELS)


def decode_depth(depth: np.ndarray, letterbox: Letterbox, input_size: int, height: int, width: int) -> DenseMap:
    """Depth map of one image -> depth on the original image.

    Args:
        depth: (F, F, 1) or (F, F) float32 metres (``depth`` of one image).
        letterbox: original -> input transform of the image.
        input_size: model input side S in pixels.
        height: original image height H in pixels.
        width: original image width W in pixels.

    Returns:
        ``DenseMap`` kind DEPTH, (H, W) float32 metres.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (F, F, 1) or (F, F), got {depth.shape}")
    return DenseMap(resample_to_image(depth, letterbox, input_size, height, width), DenseKind.DEPTH)
