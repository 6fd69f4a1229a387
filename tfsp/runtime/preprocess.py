"""Shared image preprocessing: resize an RGB image to the square model input.

Device-safe (numpy + OpenCV, never TensorFlow). The tf.data pipeline
(:mod:`tfsp.data.pipeline`) does the same resize with TF ops; a parity test holds the two
within :data:`TF_PARITY_ATOL` grey levels.

Pixel convention: continuous coordinates, pixel ``(row i, col j)`` covers
``[j, j+1) x [i, i+1)`` with its centre at ``(j + 0.5, i + 0.5)``. Resizing is bilinear
with half-pixel centres and no antialiasing (``cv2.INTER_LINEAR`` on float32 ==
``tf.image.resize(..., "bilinear", antialias=False)``), so a point ``x`` of the original
maps exactly to ``x * scale_x + pad_x`` in the input, where ``scale_x = new_width / width``.

Letterbox placement: the resized image sits at the TOP-LEFT corner of the input and the
bottom/right remainder is filled with :data:`LETTERBOX_PAD_VALUE`; hence ``pad_x = pad_y = 0``
for both modes here. The pads stay in :class:`Letterbox` because the training pipeline
composes crops and flips into the same affine form (offsets non-zero, ``scale_x`` negative
after a horizontal flip).
"""

import enum
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Grey level (RGB, 0..255) of the letterbox padding, YOLO-style mid grey.
LETTERBOX_PAD_VALUE = 114.0
# Max abs difference (grey levels, 0..255) between preprocess_image and the tf.data resize
# for the same decoded image (float32 bilinear in both; measured ~4e-3).
TF_PARITY_ATOL = 0.01
# OpenCV interpolation matching tf.image.resize bilinear, half-pixel centres, no antialias.
RESIZE_INTERPOLATION = cv2.INTER_LINEAR
# 3-channel decode without EXIF rotation: TF's decoders (the training pipeline) never rotate, and
# COCO annotations refer to the stored pixel grid.
READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class ResizeMode(enum.Enum):
    """How an image becomes the square ``(S, S)`` model input."""

    LETTERBOX = "letterbox"  # keep aspect ratio, longer side -> S, pad bottom/right
    STRETCH = "stretch"  # resize each axis to S independently (aspect ratio changes)


def resized_size(height: int, width: int, input_size: int, mode: ResizeMode) -> tuple[int, int]:
    """Size of the resized image content inside the ``(S, S)`` input.

    Letterbox rounds ``side * S / max(height, width)`` half-up with integer arithmetic so
    the TF pipeline computes the identical size.

    Args:
        height: Original image height in pixels (> 0).
        width: Original image width in pixels (> 0).
        input_size: Model input side ``S`` in pixels.
        mode: Resize mode.

    Returns:
        ``(new_height, new_width)`` in pixels, each in ``[1, S]``.
    """
    if height <= 0 or width <= 0 or input_size <= 0:
        raise ValueError(f"sizes must be positive, got height={height} width={width} input_size={input_size}")
    if mode is ResizeMode.STRETCH:
        return input_size, input_size
    longest = max(height, width)
    new_h = max(1, (2 * height * input_size + longest) // (2 * longest))
    new_w = max(1, (2 * width * input_size + longest) // (2 * longest))
    return int(new_h), int(new_w)


@dataclass(frozen=True)
class Letterbox:
    """Affine map between original-image and model-input pixel coordinates.

    ``x_input = x_orig * scale_x + pad_x`` and ``y_input = y_orig * scale_y + pad_y`` (continuous
    pixel coordinates). ``scale_x < 0`` encodes a horizontal flip (training augmentation).

    Attributes:
        scale_x: Input pixels per original pixel along x (non-zero).
        scale_y: Input pixels per original pixel along y (> 0).
        pad_x: x offset in input pixels.
        pad_y: y offset in input pixels.
        input_size: Model input side ``S`` in pixels.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    input_size: int

    def __post_init__(self) -> None:
        if self.scale_x == 0 or self.scale_y == 0:
            raise ValueError(f"scale_x and scale_y must be non-zero, got {self.scale_x}, {self.scale_y}")
        if self.input_size <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")

    @classmethod
    def from_vector(cls, transform: np.ndarray, input_size: int) -> "Letterbox":
        """Builds from the pipeline's ``transform`` (4,) ``[scale_x, scale_y, pad_x, pad_y]``."""
        values = np.asarray(transform, dtype=np.float64).reshape(4)
        return cls(float(values[0]), float(values[1]), float(values[2]), float(values[3]), int(input_size))

    def as_vector(self) -> np.ndarray:
        """Returns ``(4,)`` float32 ``[scale_x, scale_y, pad_x, pad_y]`` (the pipeline's ``transform``)."""
        return np.array([self.scale_x, self.scale_y, self.pad_x, self.pad_y], dtype=np.float32)

    def _scale_pad(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.scale_x, self.scale_y]), np.array([self.pad_x, self.pad_y])

    def to_input_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Maps ``(..., 2)`` original ``[x, y]`` pixels to input pixels; returns float32 ``(..., 2)``."""
        scale, pad = self._scale_pad()
        return (np.asarray(points_xy, dtype=np.float64) * scale + pad).astype(np.float32)

    def to_original_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Maps ``(..., 2)`` input ``[x, y]`` pixels to original pixels; returns float32 ``(..., 2)``."""
        scale, pad = self._scale_pad()
        return ((np.asarray(points_xy, dtype=np.float64) - pad) / scale).astype(np.float32)

    def _map_xyxy(self, boxes_xyxy: np.ndarray, to_input: bool) -> np.ndarray:
        boxes = np.asarray(boxes_xyxy, dtype=np.float32)
        if boxes.shape[-1:] != (4,):
            raise ValueError(f"boxes_xyxy must have shape (..., 4), got {boxes.shape}")
        corners = boxes.reshape(boxes.shape[:-1] + (2, 2))
        mapped = self.to_input_xy(corners) if to_input else self.to_original_xy(corners)
        low, high = np.minimum(mapped[..., 0, :], mapped[..., 1, :]), np.maximum(mapped[..., 0, :], mapped[..., 1, :])
        return np.concatenate([low, high], axis=-1)

    def to_input_xyxy(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Maps ``(..., 4)`` original ``[x0, y0, x1, y1]`` boxes to input pixels (corners re-sorted)."""
        return self._map_xyxy(boxes_xyxy, to_input=True)

    def to_original_xyxy(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Maps ``(..., 4)`` input ``[x0, y0, x1, y1]`` boxes to original pixels (corners re-sorted).

        Args:
            boxes_xyxy: ``(..., 4)`` boxes in input pixels.

        Returns:
            ``(..., 4)`` float32 boxes in original-image pixels with ``x0 <= x1``, ``y0 <= y1``.
        """
        return self._map_xyxy(boxes_xyxy, to_input=False)

    def to_original_keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """Maps ``(..., K, 3)`` input ``[x, y, v_or_score]`` keypoints to original pixels.

        The third channel is copied unchanged. (After a flip the left/right order is NOT
        swapped back: inference never flips.)

        Returns:
            ``(..., K, 3)`` float32.
        """
        points = np.asarray(keypoints, dtype=np.float32)
        if points.shape[-1:] != (3,):
            raise ValueError(f"keypoints must have shape (..., K, 3), got {points.shape}")
        return np.concatenate([self.to_original_xy(points[..., :2]), points[..., 2:]], axis=-1)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Reads an image file as the training pipeline decodes it.

    Args:
        path: JPEG/PNG/BMP file.

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF orientation ignored.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded.
    """
    data = Path(path).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), READ_FLAGS) if data else None
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    return np.ascontiguousarray(image[..., ::-1])


def fit_letterbox(height: int, width: int, input_size: int, mode: ResizeMode) -> Letterbox:
    """The transform :func:`preprocess_image` applies to an image of the given size."""
    new_h, new_w = resized_size(height, width, input_size, mode)
    return Letterbox(new_w / width, new_h / height, 0.0, 0.0, input_size)


def preprocess_image(
    image_rgb: np.ndarray, input_size: int, mode: ResizeMode = ResizeMode.LETTERBOX
) -> tuple[np.ndarray, Letterbox]:
    """Resizes an RGB image to the ``(S, S, 3)`` float32 model input (values 0..255).

    Models normalise inside the graph, so this is only the geometric resize. Letterbox puts
    the resized image at the top-left and fills the rest with :data:`LETTERBOX_PAD_VALUE`.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 (or float32 0..255) RGB image; not modified.
        input_size: Model input side ``S`` in pixels.
        mode: Letterbox (keep aspect ratio) or stretch.

    Returns:
        ``(image, letterbox)``: ``(S, S, 3)`` float32 RGB in ``[0, 255]`` and the
        :class:`Letterbox` mapping original pixel coordinates to input pixel coordinates.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_rgb must have shape (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    letterbox = fit_letterbox(height, width, input_size, mode)
    new_h, new_w = resized_size(height, width, input_size, mode)
    source = image.astype(np.float32)
    resized = source if (new_h, new_w) == (height, width) else cv2.resize(
        source, (new_w, new_h), interpolation=RESIZE_INTERPOLATION
    )
    output = np.full((input_size, input_size, 3), LETTERBOX_PAD_VALUE, dtype=np.float32)
    output[:new_h, :new_w] = resized
    return output, letterbox
