"""Dense training losses: per-cell semantic cross-entropy and log-depth L1 (Keras 3, TensorFlow).

Both plug into ``model.compile(loss=dense_losses(config))`` on the dict-output model of
:func:`tfsp.models.dense.build_dense`, with targets from
:func:`tfsp.data.dense_targets.make_dense_fit_targets` (labels and depth sampled at the output cell
centres, so ``y_true`` has the output grid, (B, F, F)):

* :class:`SemanticCrossEntropy`: softmax cross-entropy of the (B, F, F, C + 1) logits against
  (B, F, F) labels (0 background, k + 1 class id k), averaged per image over the scored cells;
  labels < 0 (:data:`IGNORE_LABEL`) are not scored.
* :class:`DepthLoss`: ``|log(p) - log(t)|`` over cells with a measurement (``t > 0``), averaged per
  image. The log makes it relative (an error of 10 % costs the same at 1 m and at 10 m), which is
  what ``abs_rel`` and ``delta1`` score, and it keeps the gradient of near objects (small metres)
  from drowning in the background's.

Each loss returns one value per image, already multiplied by its ``weight``; Keras then averages
over the batch. An image without any scored cell contributes 0.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfsp.models.dense import DenseConfig
from tfsp.postprocess.dense import DEPTH, HEAD_OUTPUTS, SEMANTIC_LOGITS

IGNORE_LABEL = -1  # semantic labels below 0 are not scored
MIN_LOG_DEPTH_M = 1e-3  # predictions and targets are clamped up to this (metres) before the log
MIN_SCORED_CELLS = 1.0  # per-image denominators are at least this (no division by zero)


def _per_image_mean(values: tf.Tensor, scored: tf.Tensor) -> tf.Tensor:
    """(B,) mean of ``values`` (B, F, F) over the ``scored`` cells of each image (0 if none)."""
    scored = tf.cast(scored, tf.float32)
    total = tf.reduce_sum(tf.reshape(values * scored, [tf.shape(values)[0], -1]), axis=1)
    count = tf.reduce_sum(tf.reshape(scored, [tf.shape(values)[0], -1]), axis=1)
    return total / tf.maximum(count, MIN_SCORED_CELLS)


@keras.saving.register_keras_serializable(package="tfsp")
class SemanticCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy per output cell, mean over the scored cells of each image, times ``weight``.

    ``y_true``: (B, F, F) labels (0 background, k + 1 class id k, < 0 ignored; any numeric dtype).
    ``y_pred``: (B, F, F, C + 1) float32 logits. Returns (B,) float32.
    """

    def __init__(self, weight: float = 1.0, name: str = "semantic_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.round(tf.convert_to_tensor(y_true)), tf.int32)
        logits = tf.cast(y_pred, tf.float32)
        scored = labels > IGNORE_LABEL
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(labels, 0), logits=logits)
        return self.weight * _per_image_mean(cross_entropy, scored)

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight})
        return config


@keras.saving.register_keras_serializable(package="tfsp")
class DepthLoss(keras.losses.Loss):
    """L1 on log depth over cells with a measurement, mean per image, times ``weight``.

    ``y_true``: (B, F, F) (or (B, F, F, 1)) float32 metres, ``<= 0`` = no measurement (ignored).
    ``y_pred``: (B, F, F, 1) float32 metres (> 0). Returns (B,) float32.
    """

    def __init__(self, weight: float = 1.0, name: str = "depth_log_l1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        true = tf.cast(y_true, tf.float32)
        pred = tf.cast(y_pred, tf.float32)
        if true.shape.rank == 4:
            true = true[..., 0]
        pred = pred[..., 0]
        scored = true > 0.0
        error = tf.abs(tf.math.log(tf.maximum(pred, MIN_LOG_DEPTH_M)) - tf.math.log(tf.maximum(true, MIN_LOG_DEPTH_M)))
        return self.weight * _per_image_mean(error, scored)

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight})
        return config


def dense_losses(config: DenseConfig) -> dict[str, keras.losses.Loss]:
    """Loss dict for ``model.compile(loss=...)`` on a :func:`tfsp.models.dense.build_dense` model.

    Args:
        config: the model configuration (its ``semantic_loss_weight`` and
            ``depth_loss_weight`` are used).

    Returns:
        ``{"semantic_logits": SemanticCrossEntropy, "depth": DepthLoss}``, restricted to the
        outputs of ``config.heads``.
    """
    losses = {SEMANTIC_LOGITS: SemanticCrossEntropy(config.semantic_loss_weight),
              DEPTH: DepthLoss(config.depth_loss_weight)}
    return {HEAD_OUTPUTS[head]: losses[HEAD_OUTPUTS[head]] for head in config.heads}
