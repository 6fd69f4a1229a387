"""Tests for tfsp.models.deploy_size."""

import keras
import numpy as np

from tfsp.models.deploy_size import rebuilt_at


def _conv_net(size: int) -> keras.Model:
    image = keras.Input((size, size, 3))
    return keras.Model(image, keras.layers.Conv2D(4, 3, padding="same")(image))


def test_rebuilt_at_copies_the_weights_into_the_other_size_or_keeps_the_model():
    keras.utils.set_random_seed(0)
    model = _conv_net(16)
    assert rebuilt_at(model, 16, 16, lambda: _conv_net(16)) is model
    bigger = rebuilt_at(model, 16, 32, lambda: _conv_net(32))
    assert bigger.input_shape == (None, 32, 32, 3)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), bigger.get_weights()))
    image = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    # A 3x3 conv: the interior of the 32 px output equals the 16 px model's on the same interior patch.
    np.testing.assert_allclose(bigger(image).numpy()[0, 1:15, 1:15], model(image[:, :16, :16]).numpy()[0, 1:15, 1:15],
                               atol=1e-6)
