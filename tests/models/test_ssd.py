"""Tests for tfsp.models.ssd."""

import dataclasses
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfsp.models import ssd
from tfsp.postprocess.anchors import SsdAnchorConfig, num_anchors_per_location

TINY_SIZE = 64
TINY_ANCHORS = SsdAnchorConfig(
    image_size=TINY_SIZE,
    feature_map_sizes=(8, 4, 2, 1),
    min_scale=0.1,
    max_scale=0.9,
    aspect_ratios=((2.0,), (2.0, 3.0), (2.0,), (2.0,)),
)
TINY_CONFIG = ssd.SsdConfig(
    input_size=TINY_SIZE, num_classes=3, anchors=TINY_ANCHORS, alpha=0.35, extra_channels=(32,)
)
TINY_NUM_ANCHORS = 64 * 4 + 16 * 6 + 4 * 4 + 1 * 4


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return ssd.build_ssd(TINY_CONFIG)


def _images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def test_ssd300_outputs_8732_boxes():
    model = ssd.build_ssd(ssd.SSD300_CONFIG)
    outputs = model(_images(2, 300), training=False)
    assert outputs["box_deltas"].shape == (2, 8732, 4)
    assert outputs["class_logits"].shape == (2, 8732, 21)
    assert ssd.ssd_anchors(ssd.SSD300_CONFIG).shape == (8732, 4)


def test_synth_config_shapes_and_anchor_count():
    config = ssd.SSD_SYNTH_CONFIG
    model = ssd.build_ssd(config)
    assert model.input.shape == (None, 192, 192, 3)
    assert model.output["box_deltas"].shape == (None, 4590, 4)
    assert model.output["class_logits"].shape == (None, 4590, config.num_classes + 1)
    assert ssd.ssd_anchors(config).shape == (4590, 4)
    assert config.num_classes == 4


def _best_concentric_iou(w, h, anchor_wh):
    inter = np.minimum(w, anchor_wh[:, 0]) * np.minimum(h, anchor_wh[:, 1])
    return np.max(inter / (w * h + anchor_wh[:, 0] * anchor_wh[:, 1] - inter))


@pytest.mark.parametrize(
    ("aspect", "min_iou"), [(1.0, 0.55), (2.0, 0.5), (0.5, 0.5), (3.0, 0.44), (1 / 3, 0.44)]
)
def test_synth_anchor_shapes_cover_object_sizes(aspect, min_iou):
    """Synthetic objects (12-180 px at 256 px, so 9-135 px at 192) have a well-shaped anchor."""
    config = ssd.SSD_SYNTH_CONFIG
    anchor_wh = np.unique(ssd.ssd_anchors(config)[:, 2:], axis=0) * config.input_size
    for side in np.geomspace(9.0, 135.0, 40):
        w, h = side / np.sqrt(aspect), side * np.sqrt(aspect)
        assert _best_concentric_iou(w, h, anchor_wh) >= min_iou, (w, h)


def test_output_order_matches_anchor_order(tiny_model):
    """Flattened outputs are (map, y, x, box) ordered, and so are the anchors."""
    per_location = num_anchors_per_location(TINY_ANCHORS)
    maps = TINY_ANCHORS.feature_map_sizes
    heads = [tiny_model.get_layer(f"box_head_{i}").output for i in range(len(maps))]
    probe = keras.Model(tiny_model.input, heads + [tiny_model.output["box_deltas"]])
    *head_values, flat = (t.numpy() for t in probe(_images(2, TINY_SIZE), training=False))
    anchors = ssd.ssd_anchors(TINY_CONFIG)
    index = 0
    for f, k, head in zip(maps, per_location, head_values):
        assert head.shape == (2, f, f, 4 * k)
        for y, x, box in itertools.product(range(f), range(f), range(k)):
            np.testing.assert_array_equal(flat[:, index], head[:, y, x, 4 * box : 4 * box + 4])
            centre = [(x + 0.5) / f, (y + 0.5) / f]
            np.testing.assert_allclose(anchors[index, :2], centre, atol=1e-6)
            first_cell_box = anchors[index - (y * f + x) * k]
            np.testing.assert_array_equal(anchors[index, 2:], first_cell_box[2:])
            index += 1
    assert index == flat.shape[1] == TINY_NUM_ANCHORS


def test_class_logits_follow_head_bias_layout(tiny_model):
    """With zero kernels, logits of anchor (map m, box b) equal the head bias slice for b."""
    model = ssd.build_ssd(TINY_CONFIG)
    depth = TINY_CONFIG.num_classes + 1
    expected = []
    per_location = num_anchors_per_location(TINY_ANCHORS)
    for i, (f, k) in enumerate(zip(TINY_ANCHORS.feature_map_sizes, per_location)):
        layer = model.get_layer(f"class_head_{i}")
        bias = (100 * i + np.arange(k * depth)).astype(np.float32)
        layer.set_weights([np.zeros_like(layer.get_weights()[0]), bias])
        expected.append(np.tile(bias.reshape(k, depth), (f * f, 1)))
    logits = model(_images(1, TINY_SIZE), training=False)["class_logits"].numpy()[0]
    np.testing.assert_array_equal(logits, np.concatenate(expected))


def test_fresh_class_heads_start_at_the_foreground_prior():
    """Every anchor starts near background 1 - prior, the classes sharing the rest; no prior: zero bias."""
    keras.utils.set_random_seed(0)
    model = ssd.build_ssd(dataclasses.replace(TINY_CONFIG, foreground_prior=0.02))
    probs = keras.ops.softmax(model(_images(2, TINY_SIZE, seed=4), training=False)["class_logits"]).numpy()
    np.testing.assert_allclose(probs[..., 0], 0.98, atol=2e-3)
    np.testing.assert_allclose(probs[..., 1:], 0.02 / TINY_CONFIG.num_classes, atol=2e-3)
    assert not np.any(ssd.build_ssd(TINY_CONFIG).get_layer("class_head_0").get_weights()[1])
    assert ssd.SSD_SYNTH_CONFIG.foreground_prior == ssd.SYNTH_FOREGROUND_PRIOR
    with pytest.raises(ValueError, match="foreground_prior"):
        dataclasses.replace(TINY_CONFIG, foreground_prior=1.0)


def test_save_load_round_trip_without_custom_objects(tiny_model, tmp_path):
    path = tmp_path / "ssd.keras"
    tiny_model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    images = _images(2, TINY_SIZE, seed=1)
    before, after = tiny_model(images, training=False), loaded(images, training=False)
    for name in ("box_deltas", "class_logits"):
        np.testing.assert_array_equal(before[name].numpy(), after[name].numpy())


def test_converts_to_builtin_tflite_fp32(tiny_model, tmp_path):
    tiny_model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on Flex ops
    interpreter = Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and not any(op.startswith("Flex") for op in ops)
    image = _images(1, TINY_SIZE, seed=2)
    got = interpreter.get_signature_runner()(image=image)
    expected = tiny_model(image, training=False)
    assert set(got) == {"box_deltas", "class_logits"}
    for name in got:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant, marker", [({"fpn_channels": 8}, "fpn_up_"),
                                             ({"separable_heads": True}, "class_head_0_dw")])
def test_variants_round_trip_and_convert_to_builtin_tflite(tmp_path, variant, marker):
    """The top-down pathway and SSDLite heads keep shapes and anchor count, save without custom
    objects, and stay builtin-only."""
    keras.utils.set_random_seed(0)
    model = ssd.build_ssd(dataclasses.replace(TINY_CONFIG, **variant))
    assert any(layer.name.startswith(marker) for layer in model.layers)
    image = _images(1, TINY_SIZE, seed=3)
    expected = model(image, training=False)
    assert expected["box_deltas"].shape == (1, TINY_NUM_ANCHORS, 4)
    model.save(tmp_path / "fpn.keras")
    loaded = keras.models.load_model(tmp_path / "fpn.keras", compile=False)
    np.testing.assert_array_equal(loaded(image, training=False)["class_logits"].numpy(),
                                  expected["class_logits"].numpy())
    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    got = Interpreter(model_content=converter.convert()).get_signature_runner()(image=image)
    for name in got:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4, rtol=1e-4)


def test_config_validation():
    with pytest.raises(ValueError, match="image_size"):
        dataclasses.replace(TINY_CONFIG, input_size=96)
    with pytest.raises(ValueError, match="extra"):
        dataclasses.replace(TINY_CONFIG, extra_channels=())
    with pytest.raises(ValueError, match="num_classes"):
        dataclasses.replace(TINY_CONFIG, num_classes=0)


def test_mismatched_feature_maps_raise():
    anchors = dataclasses.replace(TINY_ANCHORS, feature_map_sizes=(7, 4, 2, 1))
    with pytest.raises(ValueError, match="feature_map_sizes"):
        ssd.build_ssd(dataclasses.replace(TINY_CONFIG, anchors=anchors))
