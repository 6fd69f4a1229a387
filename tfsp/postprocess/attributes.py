"""Object crops for the attribute model and decoding of its logits (numpy + OpenCV only).

On the device the attribute model composes with a detector: boxes in model-input pixels of the
letterboxed ``S x S`` image -> :func:`crop_boxes` -> attribute graph (output
:data:`ATTRIBUTE_LOGITS`) -> :func:`decode_attributes` -> ``tfsp.structures.Attributes``.
Training cuts the same crops with TensorFlow (``tfsp.data.attribute_crops.crop_boxes_tf``); a
parity test holds the two together.

Crop windows are SCALE-PRESERVING up to a canvas: the window is a square centred on the box
centre with side ``max(canvas_px, (1 + 2 * context) * max(box_w, box_h))`` input pixels, resized
to ``crop_size x crop_size``. Every object whose padded box fits the canvas is therefore shown at
the fixed scale ``crop_size / canvas_px`` (its absolute size stays readable: the "small /
medium / large" attributes); larger objects are shrunk to fit.

Sampling (stated once, shared with the TF version): pixel centres at +0.5. Output pixel
``(i, j)`` has its centre at window point ``x = x0 + (j + 0.5) * (x1 - x0) / crop_size`` (y alike
with ``i``). The image is extended on every side by :data:`~tfsp.runtime.preprocess.LETTERBOX_PAD_VALUE`
(the same grey as the letterbox padding) and sampled bilinearly between the four nearest pixel
centres. So a point less than half a pixel outside the image blends its edge pixel with the pad
value linearly, and a point half a pixel or more outside is exactly the pad value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfsp.postprocess.boxes import box_list_xyxy
from tfsp.runtime.preprocess import LETTERBOX_PAD_VALUE
from tfsp.structures import Attributes

ATTRIBUTE_LOGITS = "attribute_logits"
"""Name of the attribute graph output: (B, A) float32 raw logits (sigmoid per attribute)."""

DEFAULT_CROP_SIZE = 64
DEFAULT_CANVAS_PX = 128.0  # boxes up to 128 / 1.3 = 98 px keep their scale; 160 px scored 0.01 val mAP lower (synth)
DEFAULT_CONTEXT = 0.15
PAD_BORDER_PX = 1  # border of pad value added around the image before sampling: enough for bilinear
PIXEL_CENTRE = 0.5


@dataclasses.dataclass(frozen=True)
class AttributeCropConfig:
    """How object crops are cut for the attribute model.

    Attributes:
        crop_size: side of the square crop in pixels (the attribute model's input side).
        canvas_px: smallest crop window side in model-input pixels; objects whose padded box fits
            in it are shown at the fixed scale ``crop_size / canvas_px``.
        context: margin around the box on each side, as a fraction of the box's longer side.
    """

    crop_size: int = DEFAULT_CROP_SIZE
    canvas_px: float = DEFAULT_CANVAS_PX
    context: float = DEFAULT_CONTEXT

    def __post_init__(self) -> None:
        if not isinstance(self.crop_size, (int, np.integer)) or self.crop_size < 1:
            raise ValueError(f"AttributeCropConfig.crop_size must be a positive int, got {self.crop_size!r}")
        if not np.isfinite(self.canvas_px) or self.canvas_px <= 0:
            raise ValueError(f"AttributeCropConfig.canvas_px must be positive, got {self.canvas_px!r}")
        if not np.isfinite(self.context) or self.context < 0:
            raise ValueError(f"AttributeCropConfig.context must be >= 0, got {self.context!r}")

    @property
    def fixed_scale(self) -> float:
        """Crop pixels per input pixel for every object that fits the canvas."""
        return self.crop_size / self.canvas_px


def crop_windows_xyxy(boxes_xyxy: np.ndarray, config: AttributeCropConfig) -> np.ndarray:
    """Square crop windows centred on the boxes.

    Args:
        boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in model-input pixels.
        config: crop settings.

    Returns:
        (N, 4) float32 ``[x0, y0, x1, y1]`` windows in model-input pixels with side
        ``max(canvas_px, (1 + 2 * context) * max(w, h, 0))``; may extend past the image.
    """
    boxes = box_list_xyxy(boxes_xyxy)
    centre_x = (boxes[:, 0] + boxes[:, 2]) * np.float32(0.5)
    centre_y = (boxes[:, 1] + boxes[:, 3]) * np.float32(0.5)
    longest = np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), np.float32(0.0))
    side = np.maximum(np.float32(config.canvas_px), np.float32(1.0 + 2.0 * config.context) * longest)
    half = side * np.float32(0.5)
    return np.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], axis=1)


def _sample_axis(low: np.ndarray, high: np.ndarray, crop_size: int, limit: int) -> tuple:
    """Integer neighbours and weights along one axis, in padded-image indices.

    Returns ``(index0, index1, frac)``, each (N, crop_size): ``value = v[index0] * (1 - frac) +
    v[index1] * frac``; indices are clipped to ``[0, limit]`` (the pad border).
    """
    grid = np.arange(crop_size, dtype=np.float32) + np.float32(PIXEL_CENTRE)
    step = (high - low) / np.float32(crop_size)
    points = low[:, None] + grid[None, :] * step[:, None]
    padded = points + np.float32(PAD_BORDER_PX - PIXEL_CENTRE)
    floor = np.floor(padded)
    frac = padded - floor
    index0 = np.clip(floor, 0, limit).astype(np.int64)
    index1 = np.clip(floor + 1, 0, limit).astype(np.int64)
    return index0, index1, frac


def crop_boxes(image: np.ndarray, boxes_xyxy: np.ndarray, config: AttributeCropConfig) -> np.ndarray:
    """Cuts the attribute model's input crops (bilinear, half-pixel centres; module docstring).

    Args:
        image: (H, W, 3) float32 RGB in [0, 255], the letterboxed model input (H = W = S).
        boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in pixels of ``image``.
        config: crop settings.

    Returns:
        (N, crop_size, crop_size, 3) float32 RGB in [0, 255]; points outside ``image`` take
        ``LETTERBOX_PAD_VALUE``.
    """
    pixels = np.asarray(image, np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {pixels.shape}")
    windows = crop_windows_xyxy(boxes_xyxy, config)
    border = PAD_BORDER_PX
    padded = np.pad(pixels, ((border, border), (border, border), (0, 0)), constant_values=LETTERBOX_PAD_VALUE)
    size = config.crop_size
    y0, y1, fy = _sample_axis(windows[:, 1], windows[:, 3], size, padded.shape[0] - 1)
    x0, x1, fx = _sample_axis(windows[:, 0], windows[:, 2], size, padded.shape[1] - 1)
    rows0, rows1 = y0[:, :, None], y1[:, :, None]
    cols0, cols1 = x0[:, None, :], x1[:, None, :]
    fx, fy = fx[:, None, :, None], fy[:, :, None, None]
    one = np.float32(1.0)
    top = padded[rows0, cols0] * (one - fx) + padded[rows0, cols1] * fx
    bottom = padded[rows1, cols0] * (one - fx) + padded[rows1, cols1] * fx
    return (top * (one - fy) + bottom * fy).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (never overflows: exp is only taken of -|x|).

    Args:
        logits: float32 array of any shape.

    Returns:
        float32 array of the same shape in [0, 1].
    """
    x = np.asarray(logits, np.float32)
    with np.errstate(under="ignore"):  # exp(-|x|) underflowing to 0 is exact enough: the score is 0 or 1
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def decode_attributes(logits: np.ndarray, names: Sequence[str], thresholds: float | np.ndarray) -> Attributes:
    """Turns the graph's raw logits into ``Attributes``.

    Args:
        logits: (N, A) float32 raw logits (:data:`ATTRIBUTE_LOGITS`), A = len(names).
        names: the A attribute names, in output order.
        thresholds: scalar or (A,) float32 probability thresholds (attribute present where
            ``score >= threshold``).

    Returns:
        ``Attributes`` with (N, A) float32 sigmoid scores.
    """
    values = np.asarray(logits, np.float32)
    if values.size == 0:
        values = values.reshape(0, len(names))
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"logits must have shape (N, {len(names)}) for {len(names)} names, got {values.shape}")
    return Attributes.create(sigmoid(values), names, thresholds)
