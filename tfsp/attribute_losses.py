"""Attribute-model training loss (Keras 3, TensorFlow backend).

Plugs into ``model.compile(loss={ATTRIBUTE_LOGITS: MaskedBinaryCrossEntropy()})`` on the model of
:func:`tfsp.models.attributes.build_attribute_model`, with targets from
:func:`tfsp.data.attribute_crops.make_attribute_fit_targets`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

MIN_NORMALISER = 1.0  # a batch without weighted crops gives loss 0, never a division by 0


@keras.saving.register_keras_serializable(package="tfsp")
class MaskedBinaryCrossEntropy(keras.losses.Loss):
    """Sigmoid cross-entropy per attribute on weighted crops, normalised by the batch's weight.

    ``y_true``: (N, A + 1) float32, the multi-hot targets (A columns, in [0, 1]) followed by the
    crop weight (1 real instance, 0 padding or crowd). ``y_pred``: (N, A) float32 raw logits.
    Per crop the loss is the mean over the A attributes of
    ``-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x))`` (computed stably from logits), times its
    weight; the batch loss is the sum over crops divided by ``max(1, sum of weights)``. ``call``
    returns (N,) float32 values already divided by that normaliser, and the reduction is
    ``"sum"``, so Keras reports exactly the batch loss. The constructor takes only ``Loss``'s own
    arguments, so the inherited ``get_config`` lists them all.
    """

    def __init__(self, name: str = "masked_binary_cross_entropy", reduction: str = "sum",
                 dtype: str | None = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        targets, weight = y_true[:, :-1], y_true[:, -1]
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=tf.cast(y_pred, tf.float32))
        per_crop = weight * tf.reduce_mean(cross_entropy, axis=-1)
        return per_crop / tf.maximum(tf.reduce_sum(weight), MIN_NORMALISER)
