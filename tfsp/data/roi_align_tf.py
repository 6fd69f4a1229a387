"""RoIAlign for training two-stage heads (TensorFlow twin of ``tfsp.postprocess.roi_align``).

Same convention as the numpy version used at inference (read its module docstring): aligned
half-pixel sampling, ``r x r`` bilinear samples per bin averaged, samples over half a pixel
outside the map contribute 0, nearer ones replicate the edge cell; FPN levels by float32 area
thresholds. Sample positions and weights follow the numpy code (the sums run in another order); a
parity test holds the two within :data:`TF_PARITY_ATOL`.

Samples are read with ``tf.gather`` on the flattened maps, not ``tf.image.crop_and_resize``
(align-corners coordinates, no zero-beyond rule): the result is differentiable w.r.t. the
features (the gradient of a gather is a scatter-add) and NOT w.r.t. the boxes, which are
treated as constants like in Detectron2. :func:`multilevel_roi_align_tf` concatenates all levels
into one flat table, so its cost does not grow with the number of levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfsp.postprocess.roi_align import (DEFAULT_SAMPLING_RATIO, PIXEL_CENTRE, ZERO_BEYOND_CELLS, check_roi_sizes,
                                        check_levels, level_area_thresholds)

TF_PARITY_ATOL = 1e-4
"""Max abs difference between the TF and numpy RoIAlign on features of magnitude ~1."""


def assign_fpn_levels_tf(boxes_xyxy: tf.Tensor, min_level: int, max_level: int) -> tf.Tensor:
    """TF twin of :func:`tfsp.postprocess.roi_align.assign_fpn_levels` (bit-identical).

    Args:
        boxes_xyxy: (..., 4) float32 ``[x0, y0, x1, y1]`` in IMAGE pixels.
        min_level: lowest pyramid level.
        max_level: highest pyramid level.

    Returns:
        (...) int32 levels in ``[min_level, max_level]``.
    """
    thresholds = tf.constant(level_area_thresholds(min_level, max_level))
    boxes = tf.cast(boxes_xyxy, tf.float32)
    x0, y0, x1, y1 = tf.unstack(boxes, num=4, axis=-1)
    area = tf.maximum(x1 - x0, 0.0) * tf.maximum(y1 - y0, 0.0)
    steps = tf.reduce_sum(tf.cast(area[..., None] >= thresholds, tf.int32), axis=-1)
    return min_level + steps


def _sample_axis(low: tf.Tensor, high: tf.Tensor, output_size: int, offset: float, extent: tf.Tensor) -> tuple:
    """(index_lo, index_hi, weight_lo, weight_hi), each (B, N, s); ``extent`` (B, N) float32 map size."""
    start = low - PIXEL_CENTRE
    step = tf.maximum(high - low, 0.0) / float(output_size)
    grid = tf.range(output_size, dtype=tf.float32) + offset
    points = start[..., None] + grid * step[..., None]
    last = (extent - 1.0)[..., None]
    valid = (points >= -ZERO_BEYOND_CELLS) & (points <= last + ZERO_BEYOND_CELLS)
    clamped = tf.minimum(tf.maximum(points, 0.0), last)
    floor = tf.floor(clamped)
    frac = clamped - floor
    index_lo = tf.cast(floor, tf.int32)
    index_hi = tf.cast(tf.minimum(floor + 1.0, last), tf.int32)
    zeros = tf.zeros_like(frac)
    return index_lo, index_hi, tf.where(valid, 1.0 - frac, zeros), tf.where(valid, frac, zeros)


def _roi_align_flat(table: tf.Tensor, base: tf.Tensor, height: tf.Tensor, width: tf.Tensor, boxes: tf.Tensor,
                    output_size: int, sampling_ratio: int) -> tf.Tensor:
    """RoIAlign where box (b, n) reads the row-major (height, width) map at ``table[base:]``.

    All ``(s r)^2`` samples of a box, 4 corners each, are read with one gather and reduced with one
    weighted sum, so the graph's size does not grow with ``r`` (one gather and one scatter-add backward).

    Args:
        table: (P, C) float32 flattened feature maps.
        base: (B, N) int32 first row of each box's map in ``table``.
        height, width: (B, N) int32 size of each box's map.
        boxes: (B, N, 4) float32 ``[x0, y0, x1, y1]`` in that map's coordinates.
        output_size: s.
        sampling_ratio: r.

    Returns:
        (B, N, s, s, C) float32.
    """
    boxes = tf.stop_gradient(boxes)
    s, r = output_size, sampling_ratio
    # Sample m = i r + k of an axis sits at start + (m + 0.5) * extent / (s r): bin i, sample k.
    rows = _sample_axis(boxes[..., 1], boxes[..., 3], s * r, 0.5, tf.cast(height, tf.float32))
    cols = _sample_axis(boxes[..., 0], boxes[..., 2], s * r, 0.5, tf.cast(width, tf.float32))

    def corners(lo: tf.Tensor, hi: tf.Tensor) -> tf.Tensor:  # (B, N, s r) x 2 -> (B, N, s, r, 2)
        stacked = tf.stack([lo, hi], axis=-1)
        return tf.reshape(stacked, tf.concat([tf.shape(stacked)[:2], [s, r, 2]], axis=0))

    row_index, row_weight = corners(rows[0], rows[1]), corners(rows[2], rows[3])
    col_index, col_weight = corners(cols[0], cols[1]), corners(cols[2], cols[3])
    # (B, N, s_y, s_x, r_y, 2_y, r_x, 2_x): row terms broadcast over x, column terms over y.
    index = (base[:, :, None, None, None, None, None, None]
             + row_index[:, :, :, None, :, :, None, None] * width[:, :, None, None, None, None, None, None]
             + col_index[:, :, None, :, None, None, :, :])
    weight = row_weight[:, :, :, None, :, :, None, None] * col_weight[:, :, None, :, None, None, :, :]
    flat_shape = tf.concat([tf.shape(index)[:4], [4 * r * r]], axis=0)
    values = tf.gather(table, tf.reshape(index, flat_shape))  # (B, N, s, s, 4 r^2, C)
    return tf.reduce_sum(values * tf.reshape(weight, flat_shape)[..., None], axis=-2) / float(r * r)


def _check_features(features: tf.Tensor, name: str) -> None:
    if features.shape.rank != 4 or features.shape[-1] is None:
        raise ValueError(f"{name} must have shape (B, H, W, C) with a static C, got {features.shape}")


def roi_align_tf(features: tf.Tensor, boxes_xyxy: tf.Tensor, output_size: int,
                 sampling_ratio: int = DEFAULT_SAMPLING_RATIO) -> tf.Tensor:
    """RoIAlign of every box of every image on its own feature map (numpy twin: ``roi_align``).

    Args:
        features: (B, H, W, C) float32 feature maps, H, W >= 1, static C.
        boxes_xyxy: (B, N, 4) float32 ``[x0, y0, x1, y1]`` in FEATURE-map coordinates (cell
            (i, j) centred at ``(j + 0.5, i + 0.5)``); box (b, n) is cut from map b.
        output_size: s, bins per side.
        sampling_ratio: r, sample points per bin side.

    Returns:
        (B, N, s, s, C) float32; differentiable w.r.t. ``features`` only.
    """
    check_roi_sizes(output_size, sampling_ratio)
    features = tf.convert_to_tensor(features, tf.float32)
    _check_features(features, "features")
    boxes = tf.cast(boxes_xyxy, tf.float32)
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    table = tf.reshape(features, [-1, features.shape[-1]])
    box_shape = tf.shape(boxes)[:2]
    base = tf.broadcast_to((tf.range(shape[0]) * height * width)[:, None], box_shape)
    return _roi_align_flat(table, base, tf.fill(box_shape, height), tf.fill(box_shape, width), boxes,
                           output_size, sampling_ratio)


def multilevel_roi_align_tf(features: Sequence[tf.Tensor], boxes_xyxy: tf.Tensor, levels: Sequence[int],
                            output_size: int, sampling_ratio: int = DEFAULT_SAMPLING_RATIO) -> tf.Tensor:
    """RoIAlign of each box on its FPN level (numpy twin: ``multilevel_roi_align``).

    Args:
        features: one (B, H_l, W_l, C) float32 map per level, in the order of ``levels``; level
            l has stride ``2 ** l`` image pixels; one static C for all.
        boxes_xyxy: (B, N, 4) float32 ``[x0, y0, x1, y1]`` in IMAGE pixels.
        levels: the pyramid level of each map: distinct consecutive ints (any order).
        output_size: s, bins per side.
        sampling_ratio: r, sample points per bin side.

    Returns:
        (B, N, s, s, C) float32; entry (b, n) is box n of image b on its assigned level;
        differentiable w.r.t. ``features`` only.
    """
    check_roi_sizes(output_size, sampling_ratio)
    if len(features) != len(levels):
        raise ValueError(f"got {len(features)} feature maps for {len(levels)} levels")
    ordered = check_levels(levels)
    maps = [tf.convert_to_tensor(features[list(levels).index(level)], tf.float32) for level in ordered]
    for level, values in zip(ordered, maps):
        _check_features(values, f"features of level {level}")
    if len({values.shape[-1] for values in maps}) != 1:
        raise ValueError(f"every level must have the same C, got {[values.shape for values in maps]}")
    shapes = [tf.shape(values) for values in maps]
    heights = tf.stack([shape[1] for shape in shapes])
    widths = tf.stack([shape[2] for shape in shapes])
    sizes = tf.stack([shape[0] * shape[1] * shape[2] for shape in shapes])
    starts = tf.cumsum(sizes, exclusive=True)
    table = tf.concat([tf.reshape(values, [-1, values.shape[-1]]) for values in maps], axis=0)
    boxes = tf.cast(boxes_xyxy, tf.float32)
    index = assign_fpn_levels_tf(boxes, ordered[0], ordered[-1]) - ordered[0]
    height, width = tf.gather(heights, index), tf.gather(widths, index)
    image = tf.range(tf.shape(boxes)[0])[:, None]
    base = tf.gather(starts, index) + image * height * width
    scales = tf.constant([2.0 ** -level for level in ordered], tf.float32)
    scaled = boxes * tf.gather(scales, index)[..., None]
    return _roi_align_flat(table, base, height, width, scaled, output_size, sampling_ratio)
