"""Dense training targets: input-resolution labels and depth sampled at the output cell centres.

The pipeline (:func:`tfsp.data.pipeline.make_dataset` with ``PipelineConfig(with_dense=True)``)
gives ``semantic`` (S, S) int32 labels (0 background, k + 1 class id k; letterbox padding 0) and
``depth`` (S, S) float32 metres (0 = padding / no measurement). The model's outputs have side
F = S / s (s the output stride); output cell (i, j) covers input pixels ``[j s, (j + 1) s) x
[i s, (i + 1) s)`` and stands for its centre ``((j + 0.5) s, (i + 0.5) s)``. Its target is the
input pixel containing that centre, index ``floor((j + 0.5) s) = j s + s // 2`` (nearest sampling:
labels stay labels, and padding depth stays 0, so it remains ignored).

:func:`make_dense_fit_targets` is the TensorFlow version for ``tf.data``; :func:`sample_cell_centres_np`
is the numpy reference the tests hold it to.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfsp.models.dense import DenseConfig
from tfsp.postprocess.dense import DEPTH, SEMANTIC_LOGITS, DenseHead

SEMANTIC_KEY = "semantic"  # pipeline key of the (..., S, S) int32 labels
DEPTH_KEY = "depth"  # pipeline key of the (..., S, S) float32 metres
IMAGE_KEY = "image"  # pipeline key of the (..., S, S, 3) float32 RGB image

Example = dict[str, tf.Tensor]


def sample_cell_centres_np(values: np.ndarray, stride: int) -> np.ndarray:
    """Numpy reference: the value at the input pixel under each output cell centre.

    Args:
        values: (..., S, S) map at input resolution (any dtype); S a multiple of ``stride``.
        stride: input pixels per output cell.

    Returns:
        (..., S / stride, S / stride), same dtype: element (i, j) is ``values[..., i s + s // 2, j s + s // 2]``.
    """
    values = np.asarray(values)
    size = values.shape[-1]
    if values.ndim < 2 or values.shape[-2] != size or stride < 1 or size % stride:
        raise ValueError(f"values must be (..., S, S) with S a multiple of stride {stride}, got {values.shape}")
    rows = np.floor((np.arange(size // stride) + 0.5) * stride).astype(np.int64)
    return values[..., rows[:, None], rows[None, :]]


def sample_cell_centres_tf(values: tf.Tensor, stride: int) -> tf.Tensor:
    """TF twin of :func:`sample_cell_centres_np` (a strided slice of the last two axes)."""
    offset = stride // 2  # floor((j + 0.5) s) - j s for an integer stride s
    return values[..., offset::stride, offset::stride]


def make_dense_fit_targets(config: DenseConfig) -> Callable[[Example], tuple[tf.Tensor, dict[str, tf.Tensor]]]:
    """Batch (or example) -> ``(image, {"semantic_logits": labels, "depth": metres})`` for ``fit``.

    Args:
        config: the model configuration (``input_size`` and ``output_stride`` fix the grid).

    Returns:
        ``fn(batch)`` mapping a pipeline batch with ``image`` (B, S, S, 3), ``semantic`` (B, S, S)
        and ``depth`` (B, S, S) to ``image`` and ``semantic_logits`` (B, F, F) int32 labels and
        ``depth`` (B, F, F) float32 metres (0 = ignored), F = ``config.map_size``, for the heads in
        ``config.heads`` only. A single example (no batch axis) works the same way.
    """
    stride, size = config.output_stride, config.input_size

    def fit_targets(batch: Example) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        semantic, depth = batch[SEMANTIC_KEY], batch[DEPTH_KEY]
        if semantic.shape[-1] is not None and semantic.shape[-1] != size:
            raise ValueError(f"semantic has side {semantic.shape[-1]}, the model input is {size} "
                             f"(set PipelineConfig.input_size to DenseConfig.input_size)")
        targets = {}
        if DenseHead.SEGMENTATION in config.heads:
            targets[SEMANTIC_LOGITS] = tf.cast(sample_cell_centres_tf(semantic, stride), tf.int32)
        if DenseHead.DEPTH in config.heads:
            targets[DEPTH] = tf.cast(sample_cell_centres_tf(depth, stride), tf.float32)
        return batch[IMAGE_KEY], targets

    return fit_targets
