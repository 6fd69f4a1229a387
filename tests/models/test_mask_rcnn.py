"""Tests for tfsp.models.mask_rcnn: names, shapes, anchor order, numpy chain, builtin TFLite fp32 parity and int8.

The heads convert with ``convert_model`` as feature graphs and run through ``TFLiteRunner.run_features``.
"""

import dataclasses

import keras
import numpy as np
import pytest

from export.convert import convert_model
from tfsp.models import mask_rcnn
from tfsp.models import mask_rcnn_heads
from tfsp.postprocess.rcnn import BOX_ROIS_INPUT, FPN_OUTPUT, RPN_DELTAS_OUTPUT, RPN_OBJECTNESS_OUTPUT
from tfsp.postprocess.rcnn_masks import KEYPOINT_LOGITS, KEYPOINT_ROIS_INPUT, MASK_LOGITS, MASK_ROIS_INPUT
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS
from tfsp.postprocess.rcnn import (BoxHeadConfig, RpnProposalConfig, decode_box_head, fpn_feature_map_sizes,
                                   generate_fpn_anchors, generate_proposals)
from tfsp.postprocess.rcnn_masks import decode_keypoint_heatmaps, paste_masks
from tfsp.postprocess.roi_align import multilevel_roi_align
from tfsp.runtime.tflite_runner import TFLiteRunner, list_operators
from tfsp.spec import DYNAMIC_DIM, INPUT_NAME, QuantMode, TensorInfo

SIZE = 64
TINY_CONFIG = mask_rcnn.MaskRcnnConfig(
    input_size=SIZE, num_classes=3, alpha=0.35, fpn_channels=8, box_fc=16, mask_head_channels=8,
    mask_head_convs=2, keypoint_head_channels=8, keypoint_head_convs=2)
HEAD_OUTPUT_STD = 1.0  # output kernels rescaled so an untrained graph's outputs vary visibly (std 1)
FP32_ATOL = 1e-4  # Keras vs TFLite fp32
FORBIDDEN_OPS = ("FLEX", "CUSTOM")
NUM_ROIS = 3
CALIBRATION_SAMPLES = 4
INT8_HEAD_MIN_CORRELATION = 0.99  # int8 vs Keras float per output, random heads (measured >= 0.998)
INT8_STAGE1_MIN_CORRELATION = 0.75  # random MobileNetV2 quantises poorly (measured 0.83-0.99)
INT8_BOUNDED_MIN_CORRELATION = 0.35  # the same with FPN clamps, which random weights saturate at P5-P6 (0.44-0.90)
# (builder, layers whose kernels are rescaled, the output each one feeds)
HEADS = {
    "box": (mask_rcnn_heads.build_box_head, {CLASS_LOGITS: CLASS_LOGITS, BOX_DELTAS: BOX_DELTAS}),
    "mask": (mask_rcnn_heads.build_mask_head, {MASK_LOGITS: MASK_LOGITS}),
    "keypoint": (mask_rcnn_heads.build_keypoint_head, {"keypoint_deconv": KEYPOINT_LOGITS}),
}


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype(np.float32)


def _features(model: keras.Model, batch: int, seed: int = 0) -> np.ndarray:
    shape = (batch, *model.input.shape[1:])
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)


def _rescale(model: keras.Model, inputs: np.ndarray, layers_to_outputs: dict[str, str]) -> keras.Model:
    """Scales each layer's kernel (biases are 0) so the output it feeds has std HEAD_OUTPUT_STD."""
    outputs = model.predict_on_batch(inputs)
    for layer_name, output_name in layers_to_outputs.items():
        layer = model.get_layer(layer_name)
        layer.kernel.assign(layer.kernel * (HEAD_OUTPUT_STD / outputs[output_name].std()))
    return model


def _set_batch_norm_statistics(model: keras.Model, inputs: np.ndarray) -> None:
    """Sets every batch norm's moving statistics to those of ``inputs`` (one training-mode pass).

    A random MobileNetV2 with the initial statistics (mean 0, variance 1) shrinks its activations
    to ~1e-11 at stride 32, which would make any parity check vacuous.
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(inputs, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


@pytest.fixture(scope="module")
def stage1() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = mask_rcnn.build_stage1(TINY_CONFIG)
    _set_batch_norm_statistics(model, _images(8, seed=8))
    return _rescale(model, _images(2, seed=1), {"rpn_objectness": RPN_OBJECTNESS_OUTPUT.format(2),
                                                "rpn_deltas": RPN_DELTAS_OUTPUT.format(2)})


def _head(kind: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    builder, layers = HEADS[kind]
    model = builder(TINY_CONFIG)
    return _rescale(model, _features(model, 4, seed=1), layers)


def _assert_builtin(data: bytes) -> None:
    assert not any(op.upper().startswith(FORBIDDEN_OPS) for op in list_operators(data))


def _assert_correlated(got: dict, expected: dict, minimum: float) -> None:
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        correlation = np.corrcoef(got[name].ravel(), expected[name].ravel())[0, 1]
        assert correlation > minimum, (name, correlation)


def test_stage1_outputs_are_named_and_shaped(stage1):
    assert stage1.input.name == INPUT_NAME and tuple(stage1.input.shape) == (None, SIZE, SIZE, 3)
    assert set(stage1.output) == set(mask_rcnn.stage1_output_names(TINY_CONFIG))
    a = TINY_CONFIG.num_anchors
    for level in (2, 3, 4, 5, 6):
        side = SIZE // 2**level
        assert TINY_CONFIG.map_size(level) == side
        assert tuple(stage1.output[FPN_OUTPUT.format(level)].shape) == (None, side, side, 8)
        assert tuple(stage1.output[RPN_OBJECTNESS_OUTPUT.format(level)].shape) == (None, side, side, a)
        assert tuple(stage1.output[RPN_DELTAS_OUTPUT.format(level)].shape) == (None, side, side, 4 * a)
        assert stage1.get_layer(FPN_OUTPUT.format(level)).name == FPN_OUTPUT.format(level)


def test_rpn_outputs_are_soft_clamped_unless_switched_off(stage1):
    raw = mask_rcnn.build_stage1(dataclasses.replace(TINY_CONFIG, rpn_soft_clamp=False))
    raw.set_weights(stage1.get_weights())  # the clamp has no weights: the same layers
    assert set(raw.output) == set(stage1.output)
    image = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    clamped, unclamped = stage1(image), raw(image)
    for level in TINY_CONFIG.levels:
        for name, bound in ((RPN_OBJECTNESS_OUTPUT, mask_rcnn.LOGIT_BOUND), (RPN_DELTAS_OUTPUT, mask_rcnn.DELTA_BOUND)):
            name = name.format(level)
            x = np.asarray(unclamped[name])
            np.testing.assert_allclose(np.asarray(clamped[name]), bound * np.tanh(x / bound), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(clamped[FPN_OUTPUT.format(level)]),
                                      np.asarray(unclamped[FPN_OUTPUT.format(level)]))


def test_hard_clamp_clips_to_the_bound():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, mask_rcnn.hard_clamp(inputs, 6.0, "clamped"))
    x = np.array([[-100.0, -6.5, -1.25, 3.0, 7.0]], np.float32)
    np.testing.assert_allclose(model(x), np.clip(x, -6.0, 6.0), atol=1e-6)  # float32: (x + 6) - 6 rounds
    assert model.layers[-1].name == "clamped" and not model.get_weights()


def test_fpn_activation_bound_clips_every_lateral_and_sum(stage1):
    bound = 6.0
    bounded = mask_rcnn.build_stage1(dataclasses.replace(TINY_CONFIG, fpn_activation_bound=bound))
    bounded.set_weights(stage1.get_weights())  # the clamps have no weights: the same layers
    data = convert_model(bounded, QuantMode.INT8, _images(CALIBRATION_SAMPLES, seed=9))
    _assert_builtin(data)
    image = _images(1, seed=10)  # runs under LiteRT's XNNPACK delegate (an earlier tanh FPN clamp made it abort)
    _assert_correlated(TFLiteRunner(data)(image), bounded.predict_on_batch(image), INT8_BOUNDED_MIN_CORRELATION)
    for level in (2, 3, 4, 5):  # large laterals, so that the bound matters
        layer = bounded.get_layer(f"fpn_lateral_p{level}")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 1e4, bias + 3.0])
    names = [f"fpn_lateral_p{level}" for level in (2, 3, 4, 5)] + [f"fpn_add_p{level}" for level in (2, 3, 4)]
    probe = keras.Model(bounded.input, {name: [bounded.get_layer(name).output,
                                               bounded.get_layer(f"{name}_clamp").output] for name in names})
    values = probe(_images(1, seed=8))
    for name, (raw, clamped) in values.items():
        raw, clamped = np.asarray(raw), np.asarray(clamped)
        assert np.abs(raw).max() > bound, name
        np.testing.assert_allclose(clamped, np.clip(raw, -bound, bound), atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="fpn_activation_bound must be None or finite and > 0"):
        dataclasses.replace(TINY_CONFIG, fpn_activation_bound=0.0)


@pytest.mark.parametrize("kind, name, shape", [
    ("box", BOX_ROIS_INPUT, {CLASS_LOGITS: (4,), BOX_DELTAS: (12,)}),
    ("mask", MASK_ROIS_INPUT, {MASK_LOGITS: (28, 28, 3)}),
    ("keypoint", KEYPOINT_ROIS_INPUT, {KEYPOINT_LOGITS: (56, 56, 17)}),
])
def test_heads_are_named_and_shaped(kind, name, shape):
    model = HEADS[kind][0](TINY_CONFIG)
    side = {"box": 7, "mask": 14, "keypoint": 14}[kind]
    assert model.input.name == name and tuple(model.input.shape) == (None, side, side, 8)
    assert {key: tuple(value.shape) for key, value in model.output.items()} == {
        key: (None, *value) for key, value in shape.items()}
    assert mask_rcnn.roi_feature_channels(TINY_CONFIG) == 8
    assert (TINY_CONFIG.num_logits, TINY_CONFIG.mask_size, TINY_CONFIG.heatmap_size) == (4, 28, 56)


def test_rpn_reshape_matches_numpy_anchor_order(stage1):
    anchor_config = mask_rcnn.fpn_anchor_config(TINY_CONFIG)
    anchors = generate_fpn_anchors(anchor_config)
    graph_sizes = tuple(tuple(stage1.output[RPN_OBJECTNESS_OUTPUT.format(level)].shape[1:3])
                        for level in TINY_CONFIG.levels)
    assert fpn_feature_map_sizes(anchor_config) == graph_sizes
    a = TINY_CONFIG.num_anchors
    for level, level_anchors, (rows, cols) in zip(TINY_CONFIG.levels, anchors, graph_sizes):
        assert len(level_anchors) == rows * cols * a
        # conv cell (i, j), channel a -> flat index (i * W + j) * A + a: centre of cell (i, j), ratio a
        grid = level_anchors.reshape(rows, cols, a, 4)
        i, j = rows - 1, cols - 1
        for aspect, ratio in enumerate(TINY_CONFIG.aspect_ratios):
            x0, y0, x1, y1 = grid[i, j, aspect]
            stride = 2**level
            np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], [(j + 0.5) * stride, (i + 0.5) * stride])
            np.testing.assert_allclose((y1 - y0) / (x1 - x0), ratio, rtol=1e-5)


def test_numpy_chain_runs_between_the_graphs(stage1):
    """stage 1 -> proposals -> RoIAlign -> box head -> detections -> RoIAlign -> mask and keypoint heads."""
    outputs = {key: value[0] for key, value in stage1.predict_on_batch(_images(1, seed=2)).items()}
    levels = TINY_CONFIG.levels
    objectness = [outputs[RPN_OBJECTNESS_OUTPUT.format(level)].reshape(-1) for level in levels]
    deltas = [outputs[RPN_DELTAS_OUTPUT.format(level)].reshape(-1, 4) for level in levels]
    anchors = generate_fpn_anchors(mask_rcnn.fpn_anchor_config(TINY_CONFIG))
    proposals, _ = generate_proposals(objectness, deltas, anchors, RpnProposalConfig(post_nms_top_k=8), SIZE, SIZE)
    assert 0 < len(proposals) <= 8
    features = {level: outputs[FPN_OUTPUT.format(level)] for level in levels}
    box_head = _head("box")
    box = box_head.predict_on_batch(multilevel_roi_align(features, proposals, TINY_CONFIG.box_roi_size))
    count = len(proposals)
    detections = decode_box_head(box[CLASS_LOGITS], box[BOX_DELTAS].reshape(count, TINY_CONFIG.num_classes, 4),
                                 proposals, BoxHeadConfig(score_threshold=0.0), SIZE, SIZE)
    assert len(detections.boxes_xyxy) > 0
    mask_rois = multilevel_roi_align(features, detections.boxes_xyxy, TINY_CONFIG.mask_roi_size)
    mask_logits = _head("mask").predict_on_batch(mask_rois)[MASK_LOGITS]
    mask_probs = 1.0 / (1.0 + np.exp(-mask_logits[np.arange(len(mask_logits)), :, :, detections.class_ids]))
    assert paste_masks(mask_probs, detections.boxes_xyxy, SIZE, SIZE).shape == (len(detections.boxes_xyxy), SIZE, SIZE)
    keypoint_rois = multilevel_roi_align(features, detections.boxes_xyxy, TINY_CONFIG.keypoint_roi_size)
    heatmaps = _head("keypoint").predict_on_batch(keypoint_rois)[KEYPOINT_LOGITS].transpose(0, 3, 1, 2)
    keypoints = decode_keypoint_heatmaps(heatmaps, detections.boxes_xyxy)
    assert keypoints.shape == (len(detections.boxes_xyxy), 17, 3)
    boxes = detections.boxes_xyxy[:, None, :]
    inside = (keypoints[..., 0] >= boxes[..., 0]) & (keypoints[..., 0] <= boxes[..., 2])
    assert np.all(inside)


def test_stage1_saves_loads_and_converts_to_builtin_fp32(stage1, tmp_path):
    stage1.save(tmp_path / "stage1.keras")
    loaded = keras.models.load_model(tmp_path / "stage1.keras", compile=False)  # no custom objects
    image = _images(1, seed=3)
    expected = stage1.predict_on_batch(image)
    data = convert_model(loaded, QuantMode.FP32)  # raises on Flex ops
    _assert_builtin(data)
    got = TFLiteRunner(data)(image)
    assert set(got) == set(expected)
    assert min(expected[name].std() for name in expected) > 0.1  # outputs vary: the check means something
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], atol=FP32_ATOL, rtol=FP32_ATOL, err_msg=name)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_head_converts_to_builtin_fp32_with_any_roi_count(kind, tmp_path):
    model = _head(kind)
    model.save(tmp_path / f"{kind}.keras")
    loaded = keras.models.load_model(tmp_path / f"{kind}.keras", compile=False)
    data = convert_model(loaded, QuantMode.FP32)  # raises on Flex ops
    _assert_builtin(data)
    runner = TFLiteRunner(data)
    assert runner.input_size is None
    assert runner.inputs == (TensorInfo(model.input.name, "float32", (DYNAMIC_DIM, *model.input.shape[1:])),)
    for count in (1, NUM_ROIS):
        features = _features(model, count, seed=count)
        expected = model.predict_on_batch(features)
        got = runner.run_features(features)
        assert set(got) == set(expected)
        for name in expected:
            assert expected[name].std() > 0.3, name
            np.testing.assert_allclose(got[name], expected[name], atol=FP32_ATOL, rtol=FP32_ATOL, err_msg=name)


def test_stage1_converts_to_builtin_int8(stage1):
    data = convert_model(stage1, QuantMode.INT8, _images(CALIBRATION_SAMPLES, seed=4))
    _assert_builtin(data)
    runner = TFLiteRunner(data)
    assert runner.inputs[0].dtype == "uint8" and all(info.dtype == "int8" for info in runner.outputs)
    image = _images(1, seed=5)
    _assert_correlated(runner(image), stage1.predict_on_batch(image), INT8_STAGE1_MIN_CORRELATION)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_head_converts_to_builtin_int8(kind):
    model = _head(kind)
    data = convert_model(model, QuantMode.INT8, _features(model, CALIBRATION_SAMPLES, seed=6))
    _assert_builtin(data)
    runner = TFLiteRunner(data)
    (features_info,) = runner.inputs
    assert features_info.name == model.input.name and features_info.shape[0] == DYNAMIC_DIM
    assert features_info.dtype == "int8" and features_info.scale != pytest.approx(1.0, abs=0.1)
    assert all(info.dtype == "int8" for info in runner.outputs)
    features = _features(model, NUM_ROIS, seed=7)
    got = runner.run_features(features)
    _assert_correlated(got, model.predict_on_batch(features), INT8_HEAD_MIN_CORRELATION)


def test_synth_config_is_small():
    config = mask_rcnn.MASK_RCNN_SYNTH_CONFIG
    assert config.input_size == 256 and config.alpha == 0.35 and config.fpn_channels == 64
    assert config.levels == (2, 3, 4, 5, 6) and config.num_anchors == 3 and config.num_keypoints == 17
    anchor_config = mask_rcnn.fpn_anchor_config(config)
    assert fpn_feature_map_sizes(anchor_config) == tuple((256 // 2**l,) * 2 for l in config.levels)


def test_levels_may_stop_at_p5():
    config = dataclasses.replace(TINY_CONFIG, input_size=96, levels=(3, 4, 5), anchor_sizes_px=(32, 64, 128))
    model = mask_rcnn.build_stage1(config)
    assert set(model.output) == set(mask_rcnn.stage1_output_names(config))
    assert tuple(model.output[FPN_OUTPUT.format(5)].shape) == (None, 3, 3, 8)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 64"):
        dataclasses.replace(TINY_CONFIG, input_size=96)
    with pytest.raises(ValueError, match="levels"):
        dataclasses.replace(TINY_CONFIG, levels=(2, 4, 5, 6))
    with pytest.raises(ValueError, match="levels"):
        dataclasses.replace(TINY_CONFIG, levels=(2, 3, 4), anchor_sizes_px=(32, 64, 128))
    with pytest.raises(ValueError, match="sizes_px"):
        dataclasses.replace(TINY_CONFIG, anchor_sizes_px=(32, 64))
    with pytest.raises(ValueError, match="aspect_ratios"):
        dataclasses.replace(TINY_CONFIG, aspect_ratios=())
    with pytest.raises(ValueError, match="num_classes"):
        dataclasses.replace(TINY_CONFIG, num_classes=0)
    with pytest.raises(ValueError, match="box_fc"):
        dataclasses.replace(TINY_CONFIG, box_fc=0)
    with pytest.raises(ValueError, match="mask_head_convs"):
        dataclasses.replace(TINY_CONFIG, mask_head_convs=-1)
    with pytest.raises(ValueError, match="alpha"):
        dataclasses.replace(TINY_CONFIG, alpha=0.0)


def test_stage1_deploys_at_another_size_with_the_same_weights(stage1):
    config = dataclasses.replace(TINY_CONFIG, deploy_input_size=2 * SIZE)
    deployed = mask_rcnn.deploy_stage1(stage1, config)
    assert tuple(deployed.input.shape) == (None, 2 * SIZE, 2 * SIZE, 3)
    assert tuple(deployed.output[FPN_OUTPUT.format(2)].shape) == (None, SIZE // 2, SIZE // 2, 8)
    assert all(np.array_equal(a, b) for a, b in zip(stage1.get_weights(), deployed.get_weights()))
    assert mask_rcnn.deploy_stage1(stage1, TINY_CONFIG) is stage1
    assert mask_rcnn.deployed_mask_rcnn_config(config).input_size == 2 * SIZE
    assert mask_rcnn.MASK_RCNN_SYNTH_CONFIG.deploy_input_size == 320
    with pytest.raises(ValueError, match="deploy_input_size must be a positive multiple of 64, got 100"):
        dataclasses.replace(TINY_CONFIG, deploy_input_size=100)
