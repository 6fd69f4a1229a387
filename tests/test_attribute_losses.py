"""MaskedBinaryCrossEntropy against hand-computed values."""

import math

import keras
import numpy as np

from tfsp.attribute_losses import MaskedBinaryCrossEntropy

LN2 = math.log(2.0)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Three crops, two attributes, last column of y_true the weight. BCE(x, t) = softplus(x) - t x.
Y_TRUE = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], np.float32)
LOGITS = np.array([[0.0, 2.0], [-1.0, 3.0], [-50.0, -50.0]], np.float32)  # crop 2: huge loss, weight 0
CROP0 = (LN2 + _softplus(2.0)) / 2  # t=1, x=0: ln 2; t=0, x=2: softplus(2)
CROP1 = (_softplus(-1.0) + _softplus(3.0) - 3.0) / 2  # t=0, x=-1; t=1, x=3


def test_golden_value_ignores_zero_weight_crops_and_divides_by_the_weight_sum():
    loss = MaskedBinaryCrossEntropy()
    assert math.isclose(float(loss(Y_TRUE, LOGITS)), (CROP0 + CROP1) / 2, rel_tol=1e-6)
    per_crop = loss.call(Y_TRUE, LOGITS).numpy()
    np.testing.assert_allclose(per_crop, [CROP0 / 2, CROP1 / 2, 0.0], rtol=1e-6)


def test_soft_targets_and_fractional_weights():
    y_true = np.array([[0.25, 0.5]], np.float32)  # one attribute with target 0.25, weight 0.5
    expected = 0.5 * (_softplus(1.0) - 0.25) / 1.0  # normaliser max(1, 0.5) = 1
    assert math.isclose(float(MaskedBinaryCrossEntropy()(y_true, np.array([[1.0]], np.float32))), expected,
                        rel_tol=1e-6)


def test_a_batch_without_weighted_crops_gives_zero():
    y_true = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    assert float(MaskedBinaryCrossEntropy()(y_true, LOGITS[:2])) == 0.0


def test_extreme_logits_stay_finite():
    y_true = np.array([[0, 1, 1]], np.float32)
    value = float(MaskedBinaryCrossEntropy()(y_true, np.array([[1000.0, -1000.0]], np.float32)))
    assert math.isclose(value, 1000.0, rel_tol=1e-6)  # (1000 + 1000) / 2


def test_config_round_trip_through_keras_serialisation():
    loss = MaskedBinaryCrossEntropy(name="attr_bce")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, MaskedBinaryCrossEntropy)
    assert restored.get_config() == loss.get_config() and restored.name == "attr_bce"
    assert math.isclose(float(restored(Y_TRUE, LOGITS)), (CROP0 + CROP1) / 2, rel_tol=1e-6)
