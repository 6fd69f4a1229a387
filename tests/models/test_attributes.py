"""Tests for tfsp.models.attributes: graph contract, TFLite builtin conversion and parity, a tiny overfit."""

import dataclasses

import keras
import numpy as np
import pytest

from export.convert import convert_model
from tfsp.attribute_losses import MaskedBinaryCrossEntropy
from tfsp.attribute_metrics import attribute_metrics
from tfsp.data.synthetic_coco import ATTRIBUTE_NAMES
from tfsp.models import attributes
from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS, AttributeCropConfig, sigmoid
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import INPUT_NAME, QuantMode

TINY_CONFIG = attributes.AttributeConfig(image_size=64, crop_size=16, canvas_px=24.0, num_attributes=4,
                                         widths=(8, 12, 16), spatial_channels=4, hidden_units=16)
KERAS_TFLITE_ATOL = 1e-4  # fp32 logits, Keras vs LiteRT


def _crops(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def test_synth_config_contract():
    config = attributes.ATTRIBUTES_SYNTH_CONFIG
    assert config.num_attributes == len(ATTRIBUTE_NAMES) == 13
    assert config.crop_config == AttributeCropConfig(crop_size=64, canvas_px=128.0, context=0.15)
    assert (config.image_size, config.alpha, config.backbone_weights) == (256, None, None)
    model = attributes.build_attribute_model(config)
    assert model.input.name == INPUT_NAME and tuple(model.input.shape) == (None, 64, 64, 3)
    assert set(model.output) == {ATTRIBUTE_LOGITS}
    assert tuple(model.output[ATTRIBUTE_LOGITS].shape) == (None, 13)


def test_mobilenet_variant_builds_the_same_contract():
    config = dataclasses.replace(TINY_CONFIG, crop_size=32, alpha=0.35)
    model = attributes.build_attribute_model(config)
    logits = model(_crops(2, 32), training=False)[ATTRIBUTE_LOGITS]
    assert logits.shape == (2, 4)
    assert any(layer.name == "out_relu" for layer in model.layers)  # MobileNetV2's last layer


@pytest.mark.parametrize("changes, match", [
    ({"widths": ()}, "widths"),
    ({"num_attributes": 0}, "num_attributes"),
    ({"alpha": 0.35}, "multiple of 32"),
    ({"backbone_weights": "w.h5"}, "needs alpha"),
    ({"canvas_px": -1.0}, "canvas_px"),
])
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY_CONFIG, **changes)


def test_saves_loads_and_converts_to_builtin_tflite_with_matching_logits(tmp_path):
    keras.utils.set_random_seed(0)
    model = attributes.build_attribute_model(TINY_CONFIG)
    model.save(tmp_path / "attributes.keras")
    loaded = keras.models.load_model(tmp_path / "attributes.keras", compile=False)  # no custom objects
    crops = _crops(3, 16, seed=1)
    expected = model(crops, training=False)[ATTRIBUTE_LOGITS].numpy()
    np.testing.assert_array_equal(loaded(crops, training=False)[ATTRIBUTE_LOGITS].numpy(), expected)
    runner = TFLiteRunner(convert_model(loaded, QuantMode.FP32))  # raises on any Flex op
    assert runner.output_names == (ATTRIBUTE_LOGITS,) and runner.input_size == 16
    got = np.concatenate([runner(crop[None])[ATTRIBUTE_LOGITS] for crop in crops])
    np.testing.assert_allclose(got, expected, atol=KERAS_TFLITE_ATOL, rtol=KERAS_TFLITE_ATOL)


def _colour_size_crops(rng):
    """16 px crops with one centred square: [red, blue, small (side 4), large (side 10)] labels."""
    colours = {0: (220, 30, 30), 1: (30, 60, 220)}
    crops, labels = [], []
    for colour in (0, 1):
        for big in (False, True):
            for _ in range(8):
                crop = rng.uniform(90, 150, (16, 16, 3)).astype(np.float32)
                half = 5 if big else 2
                centre = 8 + rng.integers(-1, 2, 2)
                crop[centre[0] - half:centre[0] + half, centre[1] - half:centre[1] + half] = colours[colour]
                crops.append(crop)
                labels.append([colour == 0, colour == 1, not big, big])
    return np.stack(crops), np.array(labels, np.float32)


@pytest.mark.slow
def test_tiny_model_overfits_colour_and_size():
    keras.utils.set_random_seed(0)
    crops, labels = _colour_size_crops(np.random.default_rng(0))
    noise = _crops(8, 16, seed=2)  # weight-0 rows with wrong labels must not matter
    x = np.concatenate([crops, noise])
    y = np.concatenate([np.concatenate([labels, np.ones((32, 1), np.float32)], axis=1),
                        np.tile([[1, 1, 1, 1, 0]], (8, 1)).astype(np.float32)])
    model = attributes.build_attribute_model(TINY_CONFIG)
    model.compile(keras.optimizers.Adam(1e-2), loss={ATTRIBUTE_LOGITS: MaskedBinaryCrossEntropy()})
    history = model.fit(x, {ATTRIBUTE_LOGITS: y}, batch_size=40, epochs=60, verbose=0).history["loss"]
    scores = sigmoid(model.predict(crops, verbose=0)[ATTRIBUTE_LOGITS])
    metrics = attribute_metrics(scores, labels > 0, ("red", "blue", "small", "large"))
    assert history[-1] < 0.1 * history[0]
    assert metrics["mAP"] == 1.0 and metrics["mean_F1"] == 1.0
