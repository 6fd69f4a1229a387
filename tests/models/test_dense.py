"""Tests for tfsp.models.dense: names, shapes, ranges, save/load, builtin TFLite parity, overfitting."""

import dataclasses

import keras
import numpy as np
import pytest

from export.convert import convert_model
from tfsp.data.coco import load_split
from tfsp.data.dense_targets import make_dense_fit_targets
from tfsp.data.pipeline import PipelineConfig, make_dataset
from tfsp.dense_losses import dense_losses
from tfsp.models import dense
from tfsp.postprocess.dense import DEPTH, SEMANTIC_LOGITS, DenseHead
from tfsp.runtime.tflite_runner import TFLiteRunner, list_operators
from tfsp.spec import INPUT_NAME, QuantMode

TINY_CONFIG = dense.DenseConfig(input_size=64, num_classes=4, alpha=0.35, decoder_channels=8, output_stride=4)
HEAD_OUTPUT_STD = 2.0  # head kernels rescaled so an untrained model's outputs vary visibly
FP32_ATOL = 1e-4  # Keras vs TFLite fp32, logits and metres
OVERFIT_STEPS = 30  # the first step (tracing) takes most of the ~15 s
OVERFIT_LOSS_RATIO = 0.5  # each loss on the 8 training images must at least halve (measured ~0.35)
FORBIDDEN_OPS = ("FLEX", "CUSTOM")


def _images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    """The real graph at 64 px with the heads' last convs rescaled to outputs of std ~2."""
    keras.utils.set_random_seed(0)
    model = dense.build_dense(TINY_CONFIG)
    images = _images(4, 64, seed=1)
    logits = model.get_layer(SEMANTIC_LOGITS)
    logits.kernel.assign(logits.kernel * (HEAD_OUTPUT_STD / model.predict_on_batch(images)[SEMANTIC_LOGITS].std()))
    sigmoid = model.get_layer("depth_sigmoid")
    pre_sigmoid = keras.Model(model.input, sigmoid.input).predict_on_batch(images)
    sigmoid.kernel.assign(sigmoid.kernel * (HEAD_OUTPUT_STD / pre_sigmoid.std()))
    return model


@pytest.mark.parametrize("output_stride", [2, 4])
def test_outputs_are_named_and_shaped(output_stride):
    config = dataclasses.replace(TINY_CONFIG, output_stride=output_stride)
    model = dense.build_dense(config)
    size = 64 // output_stride
    assert model.input.name == INPUT_NAME and tuple(model.input.shape) == (None, 64, 64, 3)
    assert set(model.output) == {SEMANTIC_LOGITS, DEPTH}
    assert tuple(model.output[SEMANTIC_LOGITS].shape) == (None, size, size, 5)
    assert tuple(model.output[DEPTH].shape) == (None, size, size, 1)
    assert config.map_size == size and config.num_logits == 5
    if output_stride == 2:
        assert model.get_layer("decoder_stem_conv").strides == (2, 2)


def test_synth_config_maps():
    config = dense.DENSE_SYNTH_CONFIG
    assert config.num_classes == 4 and config.max_depth_m > 10.0  # background depth is 10 m
    assert config.map_size == config.input_size // config.output_stride


def test_depth_lies_in_range_and_logits_are_float32(tiny_model):
    outputs = tiny_model.predict_on_batch(_images(2, 64, seed=2))
    depth = outputs[DEPTH]
    assert depth.dtype == np.float32 and outputs[SEMANTIC_LOGITS].dtype == np.float32
    assert np.all(depth > 0) and np.all(depth < TINY_CONFIG.max_depth_m)
    assert depth.std() > 0.1 and outputs[SEMANTIC_LOGITS].std() > 0.5  # the rescaled heads really vary


def test_saves_loads_and_converts_to_builtin_tflite(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "dense.keras")
    loaded = keras.models.load_model(tmp_path / "dense.keras", compile=False)  # no custom objects
    image = _images(1, 64, seed=3)
    expected = tiny_model.predict_on_batch(image)
    np.testing.assert_array_equal(loaded.predict_on_batch(image)[DEPTH], expected[DEPTH])
    data = convert_model(loaded, QuantMode.FP32)  # raises on Flex ops
    assert not any(op.startswith(FORBIDDEN_OPS) for op in list_operators(data))
    got = TFLiteRunner(data)(image)
    assert set(got) == {SEMANTIC_LOGITS, DEPTH}
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], atol=FP32_ATOL, rtol=FP32_ATOL)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 32"):
        dataclasses.replace(TINY_CONFIG, input_size=72)
    with pytest.raises(ValueError, match="output_stride"):
        dataclasses.replace(TINY_CONFIG, output_stride=8)
    with pytest.raises(ValueError, match="num_classes"):
        dataclasses.replace(TINY_CONFIG, num_classes=0)
    with pytest.raises(ValueError, match="max_depth_m"):
        dataclasses.replace(TINY_CONFIG, max_depth_m=0.0)
    with pytest.raises(ValueError, match="depth_loss_weight"):
        dataclasses.replace(TINY_CONFIG, depth_loss_weight=-1.0)


@pytest.mark.slow
def test_overfits_eight_synthetic_images(synth_data):
    """Loss, pipeline targets and model fit together: both losses on 8 images at least halve."""
    config = dataclasses.replace(TINY_CONFIG, decoder_channels=16)
    pipeline = PipelineConfig(input_size=64, batch_size=8, with_dense=True, deterministic=True)
    batch = next(iter(make_dataset(load_split(synth_data, "train"), pipeline, training=False)))
    image, targets = make_dense_fit_targets(config)(batch)
    keras.utils.set_random_seed(0)
    model = dense.build_dense(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=dense_losses(config))
    first = model.train_on_batch(image, targets, return_dict=True)
    for _ in range(OVERFIT_STEPS):
        last = model.train_on_batch(image, targets, return_dict=True)
    for name in (f"{SEMANTIC_LOGITS}_loss", f"{DEPTH}_loss"):
        assert last[name] < OVERFIT_LOSS_RATIO * first[name], name


@pytest.mark.parametrize("heads, names", [((DenseHead.DEPTH,), {DEPTH}), ((DenseHead.SEGMENTATION,), {SEMANTIC_LOGITS})])
def test_heads_are_pluggable_model_losses_and_targets_follow(heads, names, synth_data):
    config = dataclasses.replace(TINY_CONFIG, heads=heads)
    model = dense.build_dense(config)
    assert set(model.output_names) == names and set(dense_losses(config)) == names
    train = load_split(synth_data, "train")
    pipeline = PipelineConfig(input_size=config.input_size, batch_size=2, with_dense=True)
    batch = next(iter(make_dataset(train, pipeline, training=False)))
    _, targets = make_dense_fit_targets(config)(batch)
    assert set(targets) == names
    outputs = model(batch["image"])
    assert {name: tuple(value.shape[:3]) for name, value in outputs.items()} == {
        name: (2, config.map_size, config.map_size) for name in names}
    with pytest.raises(ValueError, match="heads"):
        dataclasses.replace(TINY_CONFIG, heads=())
    with pytest.raises(ValueError, match="heads"):
        dataclasses.replace(TINY_CONFIG, heads=(DenseHead.DEPTH, DenseHead.DEPTH))
