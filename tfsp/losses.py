"""SSD training losses (Keras 3, TensorFlow backend).

The SSD objective (Liu et al., 2016) is split into two Keras losses so it plugs straight into
``model.compile(loss={"class_logits": ..., "box_deltas": ...})`` on the dict-output model of
:func:`tfsp.models.ssd.build_ssd`, with targets from :func:`tfsp.data.targets.ssd_fit_targets`:

* :class:`SsdClassificationLoss`: softmax cross-entropy over all positive anchors plus, per image,
  the ``NEG_POS_RATIO * num_positives`` negatives with the largest background loss (hard
  negative mining); ignored anchors (class -1) never contribute.
* :class:`SsdBoxLoss`: smooth-L1 (Huber, delta 1) on the encoded deltas of positive anchors.

Both are divided by the number of positive anchors in the whole batch (at least 1), so their
sum is the paper's ``(L_conf + L_loc) / N``. Each loss returns one value per image (already
divided by the batch's N) and uses ``"sum"`` reduction.

Range penalty (for int8): each loss also adds ``RANGE_PENALTY_WEIGHT * sum(relu(|x| - bound)^2)``
over ALL anchors' outputs (``LOGIT_RANGE`` for logits, ``DELTA_RANGE`` for deltas). Without it a few
anchors on some images drift to logits of +-300 (easy negatives are outside the mined loss, and
cross-entropy keeps widening margins), full-integer calibration takes those extremes as the
per-tensor range, and the int8 model loses most of its AP (0.17 float -> 0.04 int8 measured on
the synthetic set). Inside the bounds the penalty is exactly zero, so it does not change the SSD
objective where it matters.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS

NEG_POS_RATIO = 3.0
HUBER_DELTA = 1.0
BACKGROUND_CLASS = 0
IGNORE_CLASS = -1
NUM_BOX_COORDS = 4  # the 5th channel of the box target is the positive flag
LOGIT_RANGE = 16.0  # |logit| beyond this is penalised (softmax odds up to e^32 remain possible)
DELTA_RANGE = 10.0  # |delta| beyond this is penalised (matched, variance-scaled targets stay within ~6)
RANGE_PENALTY_WEIGHT = 0.01


def range_penalty(values: tf.Tensor, bound: float, weight: float = RANGE_PENALTY_WEIGHT) -> tf.Tensor:
    """Per-image ``weight * sum(relu(|values| - bound)^2)``.

    Args:
        values: (B, ...) float32 raw outputs.
        bound: magnitude allowed for free.
        weight: penalty scale.

    Returns:
        (B,) float32.
    """
    excess = tf.nn.relu(tf.abs(tf.cast(values, tf.float32)) - bound)
    return weight * tf.reduce_sum(tf.reshape(tf.square(excess), [tf.shape(values)[0], -1]), axis=1)


def _num_positives(positive: tf.Tensor) -> tf.Tensor:
    """Number of positive anchors in the batch as float32, at least 1 (zero-positive guard)."""
    return tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)


def hard_negative_mask(
    background_loss: tf.Tensor, class_targets: tf.Tensor, neg_pos_ratio: float = NEG_POS_RATIO
) -> tf.Tensor:
    """Selects, per image, the ``neg_pos_ratio * num_pos`` negatives with the largest loss.

    Ties are broken by anchor index (stable sort). Ignored anchors are never selected.

    Args:
        background_loss: (B, A) float32, cross-entropy of each anchor against background.
        class_targets: (B, A) int32, 0 background, k+1 class k, -1 ignore.
        neg_pos_ratio: negatives kept per positive.

    Returns:
        (B, A) bool mask of the selected negatives.
    """
    negative = tf.equal(class_targets, BACKGROUND_CLASS)
    num_pos = tf.reduce_sum(tf.cast(class_targets > BACKGROUND_CLASS, tf.float32), axis=1)
    num_neg = tf.reduce_sum(tf.cast(negative, tf.float32), axis=1)
    num_keep = tf.minimum(tf.floor(neg_pos_ratio * num_pos), num_neg)
    scores = tf.where(negative, tf.stop_gradient(background_loss), -1.0)
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    return negative & (tf.cast(rank, tf.float32) < num_keep[:, None])


@keras.saving.register_keras_serializable(package="tfsp")
class SsdClassificationLoss(keras.losses.Loss):
    """Softmax cross-entropy with 3:1 hard negative mining, normalised by the batch's positives.

    ``y_true``: (B, A) class targets (0 background, k+1 class k, -1 ignore; any numeric dtype).
    ``y_pred``: (B, A, C+1) float32 logits. Returns (B,) float32 per-image losses whose sum is
    the batch loss.
    """

    def __init__(
        self,
        neg_pos_ratio: float = NEG_POS_RATIO,
        logit_range: float = LOGIT_RANGE,
        range_weight: float = RANGE_PENALTY_WEIGHT,
        name: str = "ssd_classification_loss",
        reduction: str = "sum",
        dtype: str | None = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.neg_pos_ratio = neg_pos_ratio
        self.logit_range = logit_range
        self.range_weight = range_weight

    def call(self, y_true, y_pred):
        class_targets = tf.cast(tf.round(tf.convert_to_tensor(y_true)), tf.int32)
        logits = tf.cast(y_pred, tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        background_loss = -log_probs[..., BACKGROUND_CLASS]
        positive = class_targets > BACKGROUND_CLASS
        selected = positive | hard_negative_mask(background_loss, class_targets, self.neg_pos_ratio)
        safe_targets = tf.maximum(class_targets, BACKGROUND_CLASS)
        cross_entropy = -tf.gather(log_probs, safe_targets, axis=-1, batch_dims=2)
        per_image = tf.reduce_sum(tf.where(selected, cross_entropy, 0.0), axis=1)
        per_image += range_penalty(logits, self.logit_range, self.range_weight)
        return per_image / _num_positives(positive)

    def get_config(self):
        config = super().get_config()
        config.update({"neg_pos_ratio": self.neg_pos_ratio, "logit_range": self.logit_range,
                       "range_weight": self.range_weight})
        return config


@keras.saving.register_keras_serializable(package="tfsp")
class SsdBoxLoss(keras.losses.Loss):
    """Smooth-L1 (Huber) loss on positive anchors, normalised by the batch's positives.

    ``y_true``: (B, A, 5) float32: 4 encoded target deltas and a positive flag (1.0 / 0.0).
    ``y_pred``: (B, A, 4) float32 predicted deltas. Returns (B,) float32 per-image losses.
    """

    def __init__(
        self,
        delta: float = HUBER_DELTA,
        delta_range: float = DELTA_RANGE,
        range_weight: float = RANGE_PENALTY_WEIGHT,
        name: str = "ssd_box_loss",
        reduction: str = "sum",
        dtype: str | None = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = delta
        self.delta_range = delta_range
        self.range_weight = range_weight

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        box_targets = y_true[..., :NUM_BOX_COORDS]
        positive = y_true[..., NUM_BOX_COORDS] > 0.5
        error = tf.abs(tf.cast(y_pred, tf.float32) - box_targets)
        quadratic = tf.minimum(error, self.delta)
        huber = tf.reduce_sum(0.5 * quadratic**2 + self.delta * (error - quadratic), axis=-1)
        per_image = tf.reduce_sum(tf.where(positive, huber, 0.0), axis=1)
        per_image += range_penalty(y_pred, self.delta_range, self.range_weight)
        return per_image / _num_positives(positive)

    def get_config(self):
        config = super().get_config()
        config.update({"delta": self.delta, "delta_range": self.delta_range, "range_weight": self.range_weight})
        return config


def ssd_losses() -> dict[str, keras.losses.Loss]:
    """Loss dict for ``model.compile(loss=...)`` on a :func:`tfsp.models.ssd.build_ssd` model."""
    return {BOX_DELTAS: SsdBoxLoss(), CLASS_LOGITS: SsdClassificationLoss()}


@keras.saving.register_keras_serializable(package="tfsp")
class MaskedL2Loss(keras.losses.Loss):
    """OpenPose's masked L2 loss on confidence maps or PAFs (one per stage output).

    ``y_true`` carries the loss mask as its last channel (``tfsp.data.pose_targets.pose_fit_targets``):
    (B, F, F, C + 1) = targets (C channels) + mask in {0, 1} (0 on crowd regions and unannotated
    people). ``y_pred`` is (B, F, F, C). Each cell's squared error, summed over channels, is weighted
    by ``mask * (1 + foreground_weight * f)`` with f in [0, 1] the cell's foreground: for confidence
    maps (``background_last``) one minus the background target (the largest keypoint target), for
    PAFs the largest absolute target. Per image the weighted sum over cells is divided by the number
    of cells F * F and multiplied by ``scale``; Keras then averages over the batch. With
    ``foreground_weight`` 0 this is the paper's loss; a positive weight counters the sparse targets
    (a few peak cells among F * F), which otherwise keep predictions near zero for most of a short
    schedule. ``scale`` weighs this output against the others (e.g. heatmaps against PAFs).
    """

    def __init__(self, foreground_weight: float = 0.0, background_last: bool = False, scale: float = 1.0,
                 name: str = "masked_l2", **kwargs):
        super().__init__(name=name, **kwargs)
        self.foreground_weight = foreground_weight
        self.background_last = background_last
        self.scale = scale

    def call(self, y_true, y_pred):
        targets, mask = y_true[..., :-1], y_true[..., -1:]
        if self.background_last:
            foreground = 1.0 - targets[..., -1:]
        else:
            foreground = tf.reduce_max(tf.abs(targets), axis=-1, keepdims=True)
        weight = mask * (1.0 + self.foreground_weight * foreground)
        squared = weight * tf.square(tf.cast(y_pred, tf.float32) - targets)
        cells = tf.cast(tf.shape(y_pred)[1] * tf.shape(y_pred)[2], tf.float32)
        return tf.reduce_sum(squared, axis=[1, 2, 3]) * (self.scale / cells)

    def get_config(self):
        config = super().get_config()
        config.update({"foreground_weight": self.foreground_weight, "background_last": self.background_last,
                       "scale": self.scale})
        return config
