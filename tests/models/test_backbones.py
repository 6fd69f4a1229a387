"""Tests for tfsp.models.backbones."""

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from tfsp.models import backbones

ALPHA = 0.35
SIZE = 64


def _features_model(size=SIZE, strides=(8, 16, 32), weights_path=None):
    image = keras.Input((size, size, 3))
    features = backbones.mobilenet_v2_features(
        backbones.normalise_image(image), strides, alpha=ALPHA, weights_path=weights_path
    )
    return keras.Model(image, features)


def test_normalise_image_maps_0_255_to_minus1_1():
    image = keras.Input((2, 2, 3))
    model = keras.Model(image, backbones.normalise_image(image))
    pixels = np.array([0.0, 127.5, 255.0, 63.75], np.float32).reshape(1, 2, 2, 1).repeat(3, -1)
    expected = np.array([-1.0, 0.0, 1.0, -0.5], np.float32).reshape(1, 2, 2, 1).repeat(3, -1)
    np.testing.assert_allclose(model(pixels).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("size", [64, 72])
def test_feature_shapes_are_ceil_of_size_over_stride(size):
    model = _features_model(size, strides=(4, 8, 16, 32))
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    sides = [-(-size // s) for s in (4, 8, 16, 32)]
    # Expanded widths of MobileNetV2-0.35 (6 x 8, 6 x 16, 6 x 32) and the fixed 1280 head.
    assert shapes == [(side, side, c) for side, c in zip(sides, (48, 96, 192, 1280))]


def test_model_is_flat_and_uses_bn_momentum():
    model = _features_model()
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(layer.momentum == backbones.DEFAULT_BN_MOMENTUM for layer in bn)


@pytest.mark.parametrize("strides", [(8, 64), (16, 8), (8, 8)])
def test_invalid_strides_raise(strides):
    with pytest.raises(ValueError, match="strides"):
        _features_model(strides=strides)


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        _features_model(weights_path=str(tmp_path / "nope.h5"))


@pytest.mark.parametrize("legacy", [False, True])
def test_loads_local_weights(tmp_path, legacy):
    reference = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=ALPHA, include_top=False, weights=None
    )
    if legacy:  # the Keras-applications download format (*_no_top.h5)
        path = tmp_path / "mobilenet_v2_no_top.h5"
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    else:
        path = tmp_path / "mobilenet_v2.weights.h5"
        reference.save_weights(path)
    model = _features_model(weights_path=str(path))
    image = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    expected = reference(image / 127.5 - 1.0)
    np.testing.assert_allclose(model(image)[-1].numpy(), expected.numpy(), atol=1e-4)
