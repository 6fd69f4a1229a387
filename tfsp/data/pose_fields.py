"""Reference (numpy) rendering of OpenPose confidence maps and Part Affinity Fields.

Device-safe: numpy only. This is the definition the TensorFlow targets
(:mod:`tfsp.data.pose_targets`) are tested against, and what parser tests render known
skeletons with.

Grid convention: a map of side ``F`` at ``stride`` s covers an input of side ``F * s``; cell
``(i, j)`` stands for the input point ``((j + 0.5) * s, (i + 0.5) * s)`` (continuous pixel
coordinates, pixel centres at +0.5). Hence a map coordinate ``u`` is the input coordinate
``u * s`` and the centre of cell ``j`` is ``u = j + 0.5``.
"""

from __future__ import annotations

import numpy as np

from tfsp.data.keypoints import NUM_KEYPOINTS, PAF_LIMBS

DEFAULT_STRIDE = 8
DEFAULT_SIGMA_PX = 6.0  # Gaussian sigma of a confidence-map peak, input pixels
DEFAULT_LIMB_WIDTH_PX = 8.0  # half-width of a limb's PAF band, input pixels
MIN_LIMB_LENGTH_PX = 1e-3  # shorter limbs have no direction and draw no PAF


def cell_centres(map_size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel coordinates of the cell centres.

    Returns:
        ``(xs, ys)``, each (F, F) float32: ``xs[i, j] = (j + 0.5) * stride``, ``ys[i, j] = (i + 0.5) * stride``.
    """
    centres = (np.arange(map_size, dtype=np.float32) + 0.5) * np.float32(stride)
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return xs, ys


def render_heatmaps(
    keypoints: np.ndarray, map_size: int, stride: int = DEFAULT_STRIDE, sigma_px: float = DEFAULT_SIGMA_PX
) -> np.ndarray:
    """Confidence maps with a background channel.

    Args:
        keypoints: (M, 17, 3) float ``[x, y, v]`` in input pixels; keypoints with ``v <= 0`` are absent.
        map_size: map side F.
        stride: input pixels per cell.
        sigma_px: Gaussian sigma in input pixels.

    Returns:
        (F, F, 18) float32: channel k < 17 is ``max_m exp(-|c - p_mk|^2 / (2 sigma^2))`` over the
        people m where keypoint k is present (0 where none); channel 17 (background) is
        ``1 - max_k`` of channels 0..16.
    """
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    xs, ys = cell_centres(map_size, stride)
    maps = np.zeros((map_size, map_size, NUM_KEYPOINTS + 1), np.float32)
    for k in range(NUM_KEYPOINTS):
        for x, y, v in keypoints[:, k]:
            if v > 0:
                d2 = (xs - x) ** 2 + (ys - y) ** 2
                maps[:, :, k] = np.maximum(maps[:, :, k], np.exp(-d2 / np.float32(2.0 * sigma_px**2)))
    maps[:, :, NUM_KEYPOINTS] = 1.0 - maps[:, :, :NUM_KEYPOINTS].max(axis=-1)
    return maps


def render_pafs(
    keypoints: np.ndarray,
    map_size: int,
    stride: int = DEFAULT_STRIDE,
    limb_width_px: float = DEFAULT_LIMB_WIDTH_PX,
    limbs: tuple[tuple[int, int], ...] = PAF_LIMBS,
) -> np.ndarray:
    """Part Affinity Fields, averaged where people overlap.

    A cell centre c lies on limb (a, b) of a person when both keypoints are present, the limb is
    at least ``MIN_LIMB_LENGTH_PX`` long, ``-w <= (c - p_a) . u <= |p_b - p_a| + w`` and
    ``|(c - p_a) x u| <= w`` with ``u = (p_b - p_a) / |p_b - p_a|`` and ``w = limb_width_px``: a
    band around the segment, extended by ``w`` past both joints (as OpenPose's rectangle around
    the limb) so that limbs shorter than a cell, such as the face's, still cover cells.

    Args:
        keypoints: (M, 17, 3) float ``[x, y, v]`` in input pixels.
        map_size: map side F.
        stride: input pixels per cell.
        limb_width_px: half-width of the band, input pixels.
        limbs: (a, b) keypoint pairs; limb l occupies channels (2l, 2l + 1) = (x, y).

    Returns:
        (F, F, 2L) float32: at each cell the mean of the unit vectors ``u`` of the people whose
        limb covers it, 0 where none does.
    """
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    xs, ys = cell_centres(map_size, stride)
    fields = np.zeros((map_size, map_size, 2 * len(limbs)), np.float32)
    for index, (a, b) in enumerate(limbs):
        total = np.zeros((map_size, map_size, 2), np.float32)
        count = np.zeros((map_size, map_size), np.float32)
        for person in keypoints:
            (xa, ya, va), (xb, yb, vb) = person[a], person[b]
            length = float(np.hypot(xb - xa, yb - ya))
            if va <= 0 or vb <= 0 or length < MIN_LIMB_LENGTH_PX:
                continue
            ux, uy = (xb - xa) / length, (yb - ya) / length
            along = (xs - xa) * ux + (ys - ya) * uy
            across = np.abs((xs - xa) * uy - (ys - ya) * ux)
            on_limb = (along >= -limb_width_px) & (along <= length + limb_width_px) & (across <= limb_width_px)
            total[on_limb] += np.array([ux, uy], np.float32)
            count[on_limb] += 1.0
        fields[:, :, 2 * index : 2 * index + 2] = total / np.maximum(count, 1.0)[:, :, None]
    return fields
