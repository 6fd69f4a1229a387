"""Tests for tfsp.models.fused_batch_norm: the fused training path equals Keras' own batch norm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsp.models.fused_batch_norm import fuse_batch_norm

MOMENTUM = 0.9
ATOL = 1e-5  # float32 rounding of the two reductions (values ~1)
GRAD_RTOL = 1e-4


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    image = keras.Input((12, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(image)
    x = keras.layers.BatchNormalization(momentum=MOMENTUM)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization(momentum=MOMENTUM, center=False, scale=False)(x)
    flat = keras.layers.GlobalAveragePooling2D()(x)
    vector = keras.layers.BatchNormalization(momentum=MOMENTUM)(keras.layers.Dense(5)(flat))  # rank 2: not fused
    return keras.Model(image, [x, vector])


def _train_once(model: keras.Model, images: tf.Tensor) -> tuple[list, list]:
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = tf.add_n([tf.reduce_sum(tf.square(o) * tf.range(1.0, o.shape[-1] + 1.0)) for o in outputs])
    return outputs, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("run", ["eager", "graph"])
def test_fused_training_matches_keras_outputs_gradients_and_moving_stats(run):
    images = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (4, 12, 10, 3)), tf.float32)
    plain, fused = _model(), _model()
    assert fuse_batch_norm(fused) == 3 and fuse_batch_norm(fused) == 3  # idempotent; rank 2 falls back per call
    wrap = tf.function if run == "graph" else (lambda fn: fn)
    plain_out, plain_grads = wrap(lambda x: _train_once(plain, x))(images)
    fused_out, fused_grads = wrap(lambda x: _train_once(fused, x))(images)
    for a, b in zip(plain_out, fused_out):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=ATOL)
    scale = max(float(np.abs(g.numpy()).max()) for g in plain_grads)  # the conv bias's true gradient is 0
    for a, b in zip(plain_grads, fused_grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=GRAD_RTOL, atol=GRAD_RTOL * scale)
    moving = list(zip(plain.non_trainable_variables, fused.non_trainable_variables))
    assert len(moving) == 6  # mean and variance of each of the three layers
    for a, b in moving[:4]:  # the fused layers' statistics were updated by the step
        assert not np.allclose(a.numpy(), 0.0) and not np.allclose(a.numpy(), 1.0), a.path
    for a, b in moving:
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_inference_config_and_saved_file_are_those_of_plain_batch_norm(tmp_path):
    images = tf.constant(np.random.default_rng(2).normal(size=(2, 12, 10, 3)), tf.float32)
    plain, fused = _model(), _model()
    config = fused.get_config()
    fuse_batch_norm(fused)
    for a, b in zip(plain(images, training=False), fused(images, training=False)):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    assert fused.get_config() == config
    fused.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom objects
    assert {type(layer) for layer in loaded.layers if "batch" in layer.name} == {keras.layers.BatchNormalization}
    for a, b in zip(fused(images, training=False), loaded(images, training=False)):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
