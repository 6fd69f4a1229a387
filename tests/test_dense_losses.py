"""Tests for tfsp.dense_losses: golden values, ignored cells, weights, serialisation."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from tfsp.dense_losses import DepthLoss, SemanticCrossEntropy, dense_losses
from tfsp.models.dense import DENSE_SYNTH_CONFIG
from tfsp.postprocess.dense import DEPTH, SEMANTIC_LOGITS


def _semantic_case():
    """Two images of 1 x 3 cells; image 0: CE ln 3 (uniform), ln 2 (p = 2/4), ignored; image 1: all ignored."""
    labels = np.array([[[0, 2, -1]], [[-1, -1, -1]]], np.int32)
    logits = np.zeros((2, 1, 3, 3), np.float32)
    logits[0, 0, 1, 2] = math.log(2.0)
    logits[0, 0, 2] = [9.0, -9.0, 0.0]  # ignored: would cost a lot
    return labels, logits


def test_semantic_cross_entropy_golden_per_image_and_batch_mean():
    labels, logits = _semantic_case()
    loss = SemanticCrossEntropy()
    per_image = np.asarray(loss.call(labels, logits))
    np.testing.assert_allclose(per_image, [(math.log(3.0) + math.log(2.0)) / 2, 0.0], rtol=1e-6)
    # Keras averages the per-image values over the batch; float labels (as Keras may pass them) work too.
    assert float(loss(labels.astype(np.float32), logits)) == pytest.approx(math.log(6.0) / 4, rel=1e-6)


def test_semantic_weight_scales_the_loss():
    labels, logits = _semantic_case()
    assert float(SemanticCrossEntropy(weight=2.5)(labels, logits)) == pytest.approx(2.5 * math.log(6.0) / 4,
                                                                                     rel=1e-6)


def test_depth_loss_golden_log_l1_ignoring_missing_depth():
    true = np.array([[[2.0, 0.0], [4.0, 1.0]]], np.float32)  # (1, 2, 2), 0 = no measurement
    pred = np.array([[[4.0, 7.0], [4.0, 0.5]]], np.float32)[..., None]  # (1, 2, 2, 1)
    loss = DepthLoss(weight=3.0)
    expected = 3.0 * (math.log(2.0) + 0.0 + math.log(2.0)) / 3
    np.testing.assert_allclose(np.asarray(loss.call(true, pred)), [expected], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loss.call(true[..., None], pred)), [expected], rtol=1e-6)
    assert float(DepthLoss()(np.zeros((2, 2, 2), np.float32), pred.repeat(2, axis=0))) == 0.0


def test_losses_serialise_with_their_weights():
    for loss in (SemanticCrossEntropy(weight=0.5), DepthLoss(weight=4.0)):
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.weight == loss.weight and restored.name == loss.name


def test_dense_losses_use_the_config_weights():
    config = dataclasses.replace(DENSE_SYNTH_CONFIG, semantic_loss_weight=0.25, depth_loss_weight=2.0)
    losses = dense_losses(config)
    assert set(losses) == {SEMANTIC_LOGITS, DEPTH}
    assert isinstance(losses[SEMANTIC_LOGITS], SemanticCrossEntropy) and losses[SEMANTIC_LOGITS].weight == 0.25
    assert isinstance(losses[DEPTH], DepthLoss) and losses[DEPTH].weight == 2.0
