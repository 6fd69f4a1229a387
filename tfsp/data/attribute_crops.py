"""Attribute-model training inputs: object crops cut with TensorFlow, multi-hot targets + weights.

:func:`crop_boxes_tf` is the TF twin of :func:`tfsp.postprocess.attributes.crop_boxes` (same
windows, same bilinear sampling with half-pixel centres, same ``LETTERBOX_PAD_VALUE`` border,
the same float32 arithmetic in the same order); a parity test holds the two within
:data:`TF_PARITY_ATOL` grey levels. It gathers pixels with ``tf.gather`` rather than
``tf.image.crop_and_resize``, whose align-corners box coordinates would need a rescale by
``(S - 1)`` that costs float32 precision (about 1e-2 grey levels on noisy images).

:func:`make_attribute_fit_targets` turns a batch of :func:`tfsp.data.pipeline.make_dataset`
into ``(crops, {ATTRIBUTE_LOGITS: targets ++ weight})`` for ``model.fit`` with
:class:`tfsp.attribute_losses.MaskedBinaryCrossEntropy`. Map it on the BATCHED data set (it
flattens the B images x M instance slots into B * M crops), not as the pipeline's per-example
``target_fn``.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS, PAD_BORDER_PX, PIXEL_CENTRE, AttributeCropConfig
from tfsp.runtime.preprocess import LETTERBOX_PAD_VALUE

TF_PARITY_ATOL = 1e-3
"""Max abs difference (grey levels, 0..255) between ``crop_boxes_tf`` and the numpy ``crop_boxes``."""

NUM_CHANNELS = 3


def crop_windows_tf(boxes_xyxy: tf.Tensor, config: AttributeCropConfig) -> tf.Tensor:
    """TF twin of :func:`tfsp.postprocess.attributes.crop_windows_xyxy`.

    Args:
        boxes_xyxy: (..., 4) float32 ``[x0, y0, x1, y1]`` in model-input pixels.
        config: crop settings.

    Returns:
        (..., 4) float32 square windows ``[x0, y0, x1, y1]`` in model-input pixels.
    """
    boxes = tf.cast(boxes_xyxy, tf.float32)
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    centre_x, centre_y = (x0 + x1) * 0.5, (y0 + y1) * 0.5
    longest = tf.maximum(tf.maximum(x1 - x0, y1 - y0), 0.0)
    side = tf.maximum(tf.constant(config.canvas_px, tf.float32),
                      tf.constant(1.0 + 2.0 * config.context, tf.float32) * longest)
    half = side * 0.5
    return tf.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], axis=-1)


def _sample_axis(low: tf.Tensor, high: tf.Tensor, crop_size: int, limit: tf.Tensor) -> tuple:
    """(index0, index1, frac), each (..., crop_size), in padded-image indices (numpy twin's order)."""
    grid = tf.range(crop_size, dtype=tf.float32) + PIXEL_CENTRE
    step = (high - low) / float(crop_size)
    points = low[..., None] + grid * step[..., None]
    padded = points + float(PAD_BORDER_PX - PIXEL_CENTRE)
    floor = tf.floor(padded)
    frac = padded - floor
    limit = tf.cast(limit, tf.float32)
    index0 = tf.cast(tf.clip_by_value(floor, 0.0, limit), tf.int32)
    index1 = tf.cast(tf.clip_by_value(floor + 1.0, 0.0, limit), tf.int32)
    return index0, index1, frac


def crop_boxes_tf(images: tf.Tensor, boxes_xyxy: tf.Tensor, config: AttributeCropConfig) -> tf.Tensor:
    """Cuts attribute crops for every box of every image (see ``tfsp.postprocess.attributes``).

    Args:
        images: (B, H, W, 3) float32 RGB in [0, 255] (letterboxed model inputs, H = W = S).
        boxes_xyxy: (B, M, 4) float32 ``[x0, y0, x1, y1]`` in pixels of the images.
        config: crop settings.

    Returns:
        (B, M, crop_size, crop_size, 3) float32 RGB in [0, 255]; outside the image
        ``LETTERBOX_PAD_VALUE``.
    """
    images = tf.cast(images, tf.float32)
    border = PAD_BORDER_PX
    padded = tf.pad(images, [[0, 0], [border, border], [border, border], [0, 0]],
                    constant_values=LETTERBOX_PAD_VALUE)
    shape = tf.shape(padded)
    height, width = shape[1], shape[2]
    windows = crop_windows_tf(boxes_xyxy, config)
    size = config.crop_size
    y0, y1, fy = _sample_axis(windows[..., 1], windows[..., 3], size, height - 1)
    x0, x1, fx = _sample_axis(windows[..., 0], windows[..., 2], size, width - 1)
    flat = tf.reshape(padded, [-1, NUM_CHANNELS])
    base = (tf.range(shape[0]) * height * width)[:, None, None, None]

    def pixels(rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat, base + rows[..., :, None] * width + cols[..., None, :])

    fx, fy = fx[..., None, :, None], fy[..., :, None, None]
    top = pixels(y0, x0) * (1.0 - fx) + pixels(y0, x1) * fx
    bottom = pixels(y1, x0) * (1.0 - fx) + pixels(y1, x1) * fx
    return top * (1.0 - fy) + bottom * fy


def make_attribute_fit_targets(config: AttributeCropConfig,
                               num_attributes: int) -> Callable[[dict], tuple[tf.Tensor, dict]]:
    """Builds the batch -> ``(crops, targets)`` map for training the attribute model.

    Args:
        config: crop settings (``AttributeConfig.crop_config``).
        num_attributes: A, the attribute vocabulary size (must match the batch's ``attributes``).

    Returns:
        ``fn(batch)`` for a batch of ``make_dataset`` (keys ``image`` (B,S,S,3), ``boxes_xyxy``
        (B,M,4), ``class_ids`` (B,M) with -1 padding, ``is_crowd`` (B,M), ``attributes`` (B,M,A),
        ``num_instances`` (B,)) returning ``crops`` (B*M, crop, crop, 3) float32 0..255 and
        ``{ATTRIBUTE_LOGITS: (B*M, A+1) float32}``: the multi-hot targets followed by a weight,
        1 for real non-crowd instances and 0 for padding slots and crowd regions. Row
        ``b * M + m`` is instance slot m of image b.
    """
    size = config.crop_size

    def fit_targets(batch: dict) -> tuple[tf.Tensor, dict]:
        attributes = tf.cast(batch["attributes"], tf.float32)
        if attributes.shape[-1] is not None and attributes.shape[-1] != num_attributes:
            raise ValueError(f"batch has {attributes.shape[-1]} attributes, expected {num_attributes}")
        slots = tf.shape(batch["class_ids"])[1]
        real = tf.range(slots)[None, :] < tf.cast(batch["num_instances"], tf.int32)[:, None]
        keep = real & (batch["class_ids"] >= 0) & tf.logical_not(tf.cast(batch["is_crowd"], tf.bool))
        crops = tf.reshape(crop_boxes_tf(batch["image"], batch["boxes_xyxy"], config), [-1, size, size, NUM_CHANNELS])
        weight = tf.reshape(tf.cast(keep, tf.float32), [-1, 1])
        targets = tf.concat([tf.reshape(attributes, [-1, num_attributes]), weight], axis=-1)
        return crops, {ATTRIBUTE_LOGITS: targets}

    return fit_targets
