"""OpenPose training targets computed inside ``tf.data`` (TensorFlow).

Per example, :func:`make_pose_target_fn` renders the confidence maps and Part Affinity Fields of
the example's people exactly as the numpy reference :mod:`tfsp.data.pose_fields` defines them
(same grid: cell ``(i, j)`` stands for the input point ``((j + 0.5) * s, (i + 0.5) * s)``), plus a
loss mask. Every instance and limb is handled at once (no Python loop over either), so the cost
grows with the number of people, not with the padding.

People are the instances with ``class_ids == person_class_id`` that are not crowd; padded rows
(``class_ids == -1``) never count. The loss mask (OpenPose's mask for unannotated people and
crowd regions) is 0 at cells whose centre lies inside (borders included) the box of a crowd
instance of any class or of a person without any labelled keypoint (all ``v == 0``), 1 elsewhere.

For Keras ``fit``, :func:`pose_fit_targets` packs the mask as the last channel of both targets:
``heatmaps`` (..., F, F, 18 + MASK_CHANNELS) and ``pafs`` (..., F, F, 36 + MASK_CHANNELS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfsp.data.keypoints import NUM_KEYPOINTS, PAF_LIMBS
from tfsp.data.pose_fields import (
    DEFAULT_LIMB_WIDTH_PX,
    DEFAULT_SIGMA_PX,
    DEFAULT_STRIDE,
    MIN_LIMB_LENGTH_PX,
    cell_centres,
)
from tfsp.postprocess.paf import HEATMAPS, PAFS

PERSON_CLASS_ID = 0  # the person class of the embedded synthetic data set (COCO category 1)
PAD_CLASS_ID = -1
POSE_MASK = "pose_mask"  # example key of the (F, F, MASK_CHANNELS) loss mask
MASK_CHANNELS = 1  # channels the loss mask adds, last, to each fit target
NUM_HEATMAP_CHANNELS = NUM_KEYPOINTS + 1  # 17 keypoints + background
PAF_COMPONENTS = 2  # (x, y) per limb

Example = dict[str, tf.Tensor]


@dataclass(frozen=True)
class PoseTargetConfig:
    """Target rendering settings (units: input pixels).

    Attributes:
        input_size: Model input side ``S``; the maps have side ``F = S // stride``.
        stride: Input pixels per map cell; must divide ``input_size``.
        sigma_px: Gaussian sigma of a confidence-map peak.
        limb_width_px: Half-width of a limb's PAF band.
        person_class_id: Class id of people (0-based, as ``class_ids``).
        limbs: PAF ``(a, b)`` keypoint pairs; limb l occupies PAF channels ``(2l, 2l + 1)``.
    """

    input_size: int
    stride: int = DEFAULT_STRIDE
    sigma_px: float = DEFAULT_SIGMA_PX
    limb_width_px: float = DEFAULT_LIMB_WIDTH_PX
    person_class_id: int = PERSON_CLASS_ID
    limbs: tuple[tuple[int, int], ...] = PAF_LIMBS

    def __post_init__(self) -> None:
        for name in ("input_size", "stride", "sigma_px", "limb_width_px"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PoseTargetConfig.{name} must be positive, got {getattr(self, name)}")
        if self.input_size % self.stride:
            raise ValueError(f"PoseTargetConfig.input_size {self.input_size} is not divisible by stride {self.stride}")
        if self.person_class_id < 0:
            raise ValueError(f"PoseTargetConfig.person_class_id must be >= 0, got {self.person_class_id}")
        if not self.limbs:
            raise ValueError("PoseTargetConfig.limbs must not be empty")
        for a, b in self.limbs:
            if not (0 <= a < NUM_KEYPOINTS and 0 <= b < NUM_KEYPOINTS and a != b):
                raise ValueError(f"PoseTargetConfig.limbs: bad pair {(a, b)}")

    @property
    def map_size(self) -> int:
        """Map side ``F = input_size // stride``."""
        return self.input_size // self.stride

    @property
    def num_paf_channels(self) -> int:
        """``2 * len(limbs)``."""
        return PAF_COMPONENTS * len(self.limbs)


def _cell_centres(config: PoseTargetConfig) -> tf.Tensor:
    """(F,) float32 input-pixel coordinates of the cell centres along one axis (``(j + 0.5) * stride``)."""
    xs, _ = cell_centres(config.map_size, config.stride)
    return tf.constant(xs[0])


def render_heatmaps_tf(keypoints: tf.Tensor, centres: tf.Tensor, sigma_px: float) -> tf.Tensor:
    """TF twin of :func:`tfsp.data.pose_fields.render_heatmaps` (same float32 op order).

    Args:
        keypoints: (P, 17, 3) float32 ``[x, y, v]`` input pixels of the people; ``v <= 0`` absent.
        centres: (F,) float32 cell-centre coordinates, input pixels.
        sigma_px: Gaussian sigma, input pixels.

    Returns:
        (F, F, 18) float32 confidence maps, channel 17 the background.
    """
    present = keypoints[:, None, :, 2] > 0.0  # (P, 1, 17)
    dx2 = tf.square(centres[None, :, None] - keypoints[:, None, :, 0])  # (P, F_j, 17)
    dy2 = tf.square(centres[None, :, None] - keypoints[:, None, :, 1])  # (P, F_i, 17)
    d2 = dx2[:, None, :, :] + dy2[:, :, None, :]  # (P, F_i, F_j, 17)
    peaks = tf.exp(-d2 / np.float32(2.0 * sigma_px**2))
    peaks = tf.where(present[:, None], peaks, 0.0)
    maps = tf.maximum(tf.reduce_max(peaks, axis=0), 0.0)  # max over no people is -inf
    background = 1.0 - tf.reduce_max(maps, axis=-1, keepdims=True)
    return tf.concat([maps, background], axis=-1)


def render_pafs_tf(
    keypoints: tf.Tensor, centres: tf.Tensor, limb_width_px: float, limbs: tuple[tuple[int, int], ...]
) -> tf.Tensor:
    """TF twin of :func:`tfsp.data.pose_fields.render_pafs` (same float32 op order).

    Args:
        keypoints: (P, 17, 3) float32 ``[x, y, v]`` input pixels of the people.
        centres: (F,) float32 cell-centre coordinates, input pixels.
        limb_width_px: Half-width of the band, input pixels.
        limbs: L ``(a, b)`` keypoint pairs.

    Returns:
        (F, F, 2L) float32: per cell and limb the mean unit vector ``(x, y)`` of the people whose
        limb band covers the cell centre, 0 where none does.
    """
    start = tf.gather(keypoints, [a for a, _ in limbs], axis=1)  # (P, L, 3)
    end = tf.gather(keypoints, [b for _, b in limbs], axis=1)
    delta = end[..., :2] - start[..., :2]
    # hypot in float64 then rounded, as numpy's float32 hypot; zero-length limbs are dropped below.
    length = tf.cast(tf.sqrt(tf.reduce_sum(tf.square(tf.cast(delta, tf.float64)), axis=-1)), tf.float32)
    drawn = (start[..., 2] > 0.0) & (end[..., 2] > 0.0) & (length >= MIN_LIMB_LENGTH_PX)  # (P, L)
    unit = delta / tf.where(drawn, length, 1.0)[..., None]  # (P, L, 2)
    ux, uy = unit[:, None, None, :, 0], unit[:, None, None, :, 1]  # (P, 1, 1, L)
    dx = centres[None, None, :, None] - start[:, None, None, :, 0]  # (P, 1, F_j, L)
    dy = centres[None, :, None, None] - start[:, None, None, :, 1]  # (P, F_i, 1, L)
    along = dx * ux + dy * uy  # (P, F_i, F_j, L)
    across = tf.abs(dx * uy - dy * ux)
    width = np.float32(limb_width_px)
    on_limb = (along >= -width) & (along <= length[:, None, None, :] + width) & (across <= width)
    on_limb = tf.cast(on_limb & drawn[:, None, None, :], tf.float32)
    total = tf.reduce_sum(on_limb[..., None] * unit[:, None, None, :, :], axis=0)  # (F, F, L, 2)
    count = tf.reduce_sum(on_limb, axis=0)  # (F, F, L)
    fields = total / tf.maximum(count, 1.0)[..., None]
    size = tf.shape(centres)[0]
    return tf.reshape(fields, [size, size, PAF_COMPONENTS * len(limbs)])


def render_pose_mask_tf(boxes_xyxy: tf.Tensor, masked: tf.Tensor, centres: tf.Tensor) -> tf.Tensor:
    """Loss mask: 0 at cell centres inside (borders included) any masked box, 1 elsewhere.

    Args:
        boxes_xyxy: (M, 4) float32 ``[x0, y0, x1, y1]`` input pixels.
        masked: (M,) bool, the boxes to mask out.
        centres: (F,) float32 cell-centre coordinates, input pixels.

    Returns:
        (F, F, 1) float32 of 0 and 1.
    """
    inside_x = (centres[None, :] >= boxes_xyxy[:, 0:1]) & (centres[None, :] <= boxes_xyxy[:, 2:3])  # (M, F_j)
    inside_y = (centres[None, :] >= boxes_xyxy[:, 1:2]) & (centres[None, :] <= boxes_xyxy[:, 3:4])  # (M, F_i)
    inside = inside_y[:, :, None] & inside_x[:, None, :] & masked[:, None, None]  # (M, F_i, F_j)
    return 1.0 - tf.cast(tf.reduce_any(inside, axis=0), tf.float32)[..., None]


def make_pose_target_fn(config: PoseTargetConfig) -> Callable[[Example], Example]:
    """Returns a per-example ``target_fn`` adding OpenPose targets (for ``make_dataset``).

    Args:
        config: Rendering settings; ``config.input_size`` must equal the examples' image side.

    Returns:
        ``fn(example) -> example``. Reads ``image`` (S, S, 3) (its static side, when known, is
        checked against ``config.input_size``), ``boxes_xyxy`` (M, 4) float32 input pixels,
        ``class_ids`` (M,) int32 (-1 padding), optional ``is_crowd`` (M,) bool and ``keypoints``
        (M, 17, 3) float32 ``[x, y, v]`` input pixels; returns a new dict that adds
        ``heatmaps`` (F, F, 18) float32, ``pafs`` (F, F, 2L) float32 and ``pose_mask``
        (F, F, 1) float32 (see the module docstring).
    """
    centres = _cell_centres(config)

    def target_fn(example: Example) -> Example:
        side = example["image"].shape[0]
        if side is not None and side != config.input_size:
            raise ValueError(f"image side {side} != PoseTargetConfig.input_size {config.input_size}")
        class_ids = tf.cast(example["class_ids"], tf.int32)
        is_crowd = tf.cast(example.get("is_crowd", tf.zeros_like(class_ids, tf.bool)), tf.bool)
        keypoints = tf.cast(example["keypoints"], tf.float32)
        boxes = tf.cast(example["boxes_xyxy"], tf.float32)
        person = (class_ids == config.person_class_id) & ~is_crowd
        unlabelled = ~tf.reduce_any(keypoints[..., 2] > 0.0, axis=-1)
        masked = (is_crowd & (class_ids != PAD_CLASS_ID)) | (person & unlabelled)
        people = tf.boolean_mask(keypoints, person & ~unlabelled)  # (P, 17, 3)
        out = dict(example)
        out[HEATMAPS] = render_heatmaps_tf(people, centres, config.sigma_px)
        out[PAFS] = render_pafs_tf(people, centres, config.limb_width_px, config.limbs)
        out[POSE_MASK] = render_pose_mask_tf(boxes, masked, centres)
        size = config.map_size
        out[HEATMAPS].set_shape([size, size, NUM_HEATMAP_CHANNELS])
        out[PAFS].set_shape([size, size, config.num_paf_channels])
        out[POSE_MASK].set_shape([size, size, MASK_CHANNELS])
        return out

    return target_fn


def pose_fit_targets(example: Example) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Maps an example (or a batch) with pose targets to Keras ``fit``'s ``(x, y)``.

    Args:
        example: dict with ``image`` (..., S, S, 3) float32 and ``heatmaps`` (..., F, F, 18),
            ``pafs`` (..., F, F, 2L) and ``pose_mask`` (..., F, F, 1) float32, as added by
            :func:`make_pose_target_fn`.

    Returns:
        ``(image, {"heatmaps": (..., F, F, 18 + 1), "pafs": (..., F, F, 2L + 1)})``: each target
        with the loss mask appended as its last ``MASK_CHANNELS`` channel(s), keyed by the
        model's output names.
    """
    mask = example[POSE_MASK]
    return example["image"], {
        HEATMAPS: tf.concat([example[HEATMAPS], mask], axis=-1),
        PAFS: tf.concat([example[PAFS], mask], axis=-1),
    }
