"""Training augmentations as TF ops that keep boxes, masks and keypoints consistent.

All randomness is stateless (``tf.random.stateless_*`` with an explicit ``(2,)`` seed), so the
pipeline's deterministic mode reproduces every batch. Geometry uses continuous pixel
coordinates (pixel centres at +0.5): a horizontal flip of width ``W`` maps ``x -> W - x`` and
swaps left/right keypoints with :data:`tfsp.data.keypoints.FLIP_PERMUTATION`. Photometric
changes touch only the image, never geometry. Functions are pure: they return new tensors.
"""

import math
from dataclasses import dataclass

import tensorflow as tf

from tfsp.data.keypoints import FLIP_PERMUTATION

FLIP_PROBABILITY = 0.5
CROP_PROBABILITY = 0.5
# Crop side relative to the image side (geometric mean of the two axes), sampled uniformly.
CROP_SCALE_RANGE = (0.5, 1.0)
# Crop aspect ratio relative to the image's (w/h multiplier), sampled log-uniformly.
CROP_ASPECT_RANGE = (0.75, 4.0 / 3.0)
# An instance survives a crop when at least this fraction of its box area stays inside.
MIN_VISIBLE_FRACTION = 0.5
BRIGHTNESS_DELTA = 0.125  # fraction of the 0..255 range, added uniformly in [-d, d]
CONTRAST_RANGE = (0.75, 1.25)
SATURATION_RANGE = (0.75, 1.25)
HUE_DELTA = 0.04  # fraction of the hue circle
MAX_PIXEL_VALUE = 255.0
NUM_PHOTOMETRIC_SEEDS = 4


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (probabilities in [0, 1], ranges as ``(low, high)``)."""

    flip_probability: float = FLIP_PROBABILITY
    crop_probability: float = CROP_PROBABILITY
    crop_scale_range: tuple[float, float] = CROP_SCALE_RANGE
    crop_aspect_range: tuple[float, float] = CROP_ASPECT_RANGE
    min_visible_fraction: float = MIN_VISIBLE_FRACTION
    brightness_delta: float = BRIGHTNESS_DELTA
    contrast_range: tuple[float, float] = CONTRAST_RANGE
    saturation_range: tuple[float, float] = SATURATION_RANGE
    hue_delta: float = HUE_DELTA

    def __post_init__(self) -> None:
        low, high = self.crop_scale_range
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale_range must satisfy 0 < low <= high <= 1, got {self.crop_scale_range}")
        if not 0.0 < self.crop_aspect_range[0] <= self.crop_aspect_range[1]:
            raise ValueError(f"crop_aspect_range must satisfy 0 < low <= high, got {self.crop_aspect_range}")
        for name in ("flip_probability", "crop_probability", "min_visible_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def sample_crop_window(seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Samples a random crop window inside the image (or the whole image).

    Args:
        seed: ``(2,)`` int seed.
        height: Image height in pixels, scalar int32.
        width: Image width in pixels, scalar int32.
        config: Augmentation settings.

    Returns:
        ``(4,)`` int32 ``[y0, x0, crop_height, crop_width]`` in pixels, inside the image.
    """
    u = tf.random.stateless_uniform([5], seed, dtype=tf.float32)
    scale = config.crop_scale_range[0] + (config.crop_scale_range[1] - config.crop_scale_range[0]) * u[0]
    log_low, log_high = math.log(config.crop_aspect_range[0]), math.log(config.crop_aspect_range[1])
    sqrt_aspect = tf.sqrt(tf.exp(log_low + (log_high - log_low) * u[1]))
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    crop_w = tf.clip_by_value(tf.cast(tf.round(w_f * scale * sqrt_aspect), tf.int32), 1, width)
    crop_h = tf.clip_by_value(tf.cast(tf.round(h_f * scale / sqrt_aspect), tf.int32), 1, height)
    y0 = tf.minimum(tf.cast(u[2] * tf.cast(height - crop_h + 1, tf.float32), tf.int32), height - crop_h)
    x0 = tf.minimum(tf.cast(u[3] * tf.cast(width - crop_w + 1, tf.float32), tf.int32), width - crop_w)
    apply = u[4] < config.crop_probability
    return tf.where(apply, tf.stack([y0, x0, crop_h, crop_w]), tf.stack([0, 0, height, width]))


def sample_flip(seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Returns a scalar bool: flip this example horizontally."""
    return tf.random.stateless_uniform([], seed, dtype=tf.float32) < probability


def crop_instances(
    boxes_xyxy: tf.Tensor, keypoints: tf.Tensor, valid: tf.Tensor, window: tf.Tensor, min_visible_fraction: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Moves instances into a crop window's coordinates.

    Boxes are clipped to the window; an instance stays valid only if at least
    ``min_visible_fraction`` of its box area (and a positive area) remains. Keypoints outside
    the window (or already unlabelled) become ``[0, 0, 0]``.

    Args:
        boxes_xyxy: ``(N, 4)`` float32 boxes in image pixels.
        keypoints: ``(N, K, 3)`` float32 ``[x, y, v]`` in image pixels.
        valid: ``(N,)`` bool.
        window: ``(4,)`` int32 ``[y0, x0, crop_height, crop_width]``.
        min_visible_fraction: Kept-area threshold in ``[0, 1]``.

    Returns:
        ``(boxes_xyxy, keypoints, valid)`` in crop pixels, shapes unchanged.
    """
    window_f = tf.cast(window, tf.float32)
    origin = tf.stack([window_f[1], window_f[0]])
    limit = tf.stack([window_f[3], window_f[2]])
    shifted = boxes_xyxy - tf.tile(origin, [2])
    clipped = tf.clip_by_value(shifted, 0.0, tf.tile(limit, [2]))
    area = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    visible = (kept_area > 0.0) & (kept_area >= min_visible_fraction * area)
    points = keypoints[..., :2] - origin
    inside = tf.reduce_all((points >= 0.0) & (points <= limit), axis=-1) & (keypoints[..., 2] > 0.0)
    new_keypoints = tf.where(inside[..., None], tf.concat([points, keypoints[..., 2:]], axis=-1), 0.0)
    return clipped, new_keypoints, valid & visible


def flip_boxes_xyxy(boxes_xyxy: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Horizontally flips ``(N, 4)`` boxes in an image of ``width`` pixels: ``x -> width - x``."""
    width_f = tf.cast(width, boxes_xyxy.dtype)
    x0, y0, x1, y1 = tf.unstack(boxes_xyxy, axis=-1)
    return tf.stack([width_f - x1, y0, width_f - x0, y1], axis=-1)


def flip_keypoints(keypoints: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Horizontally flips ``(N, 17, 3)`` keypoints: ``x -> width - x`` and left/right swapped.

    Unlabelled keypoints (``v == 0``) stay ``[0, 0, 0]``.
    """
    width_f = tf.cast(width, keypoints.dtype)
    labelled = keypoints[..., 2:] > 0.0
    mirrored = tf.concat([width_f - keypoints[..., :1], keypoints[..., 1:]], axis=-1)
    mirrored = tf.where(labelled, mirrored, tf.zeros_like(keypoints))
    return tf.gather(mirrored, list(FLIP_PERMUTATION), axis=-2)


def photometric(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Random brightness, contrast, saturation and hue (in that order); geometry untouched.

    Args:
        image: ``(H, W, 3)`` float32 RGB in ``[0, 255]``.
        seed: ``(2,)`` int seed.
        config: Augmentation settings.

    Returns:
        ``(H, W, 3)`` float32 RGB clipped to ``[0, 255]``.
    """
    seeds = tf.random.experimental.stateless_split(seed, NUM_PHOTOMETRIC_SEEDS)
    unit = image / MAX_PIXEL_VALUE
    if config.brightness_delta > 0:
        unit = tf.image.stateless_random_brightness(unit, config.brightness_delta, seeds[0])
    if config.contrast_range != (1.0, 1.0):
        unit = tf.image.stateless_random_contrast(unit, *config.contrast_range, seed=seeds[1])
    unit = tf.clip_by_value(unit, 0.0, 1.0)
    if config.saturation_range != (1.0, 1.0):
        unit = tf.image.stateless_random_saturation(unit, *config.saturation_range, seed=seeds[2])
    if config.hue_delta > 0:
        unit = tf.image.stateless_random_hue(unit, config.hue_delta, seeds[3])
    return tf.clip_by_value(unit, 0.0, 1.0) * MAX_PIXEL_VALUE
