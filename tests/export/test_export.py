"""Export: every quantisation mode, Keras/TFLite parity, Flex refusal, the CLI."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from export.cli import main
from export.convert import QUANT_SETTINGS, ExportError, UnsupportedOpsError, convert_model, export_model
from tfsp.models.ssd import SsdConfig, build_ssd
from tfsp.postprocess.anchors import SsdAnchorConfig
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import ModelSpec, QuantMode
from tfsp.spec_builders import detection_spec
from training.config import DataConfig, TrainConfig, save_config

SIZE = 64
SYNTH_CLASSES = ("person", "circle", "square", "triangle")
TINY_SSD = SsdConfig(input_size=SIZE, num_classes=len(SYNTH_CLASSES), alpha=0.35,
                     anchors=SsdAnchorConfig(image_size=SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.2,
                                             max_scale=0.9, aspect_ratios=((2.0,),) * 3))
HEAD_OUTPUT_STD = 2.0  # heads rescaled so an untrained model's outputs are not ~1e-4
FP32_ATOL = 1e-4
# int8 vs Keras float on the tiny SSD: max |error| of each raw output, as a fraction of that output's range.
INT8_RANGE_FRACTION = 0.05
FP16_RTOL = 1e-2
INT8_SIZE_RATIO = 0.3


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)


def _tiny_ssd() -> keras.Model:
    """The real SSD graph at 64 px, heads scaled to outputs of std ``HEAD_OUTPUT_STD``."""
    keras.utils.set_random_seed(0)
    model = build_ssd(TINY_SSD)
    outputs = model.predict_on_batch(_images(4, seed=1))
    for prefix, name in (("box_head", "box_deltas"), ("class_head", "class_logits")):
        heads = [layer for layer in model.layers if layer.name.startswith(prefix)]
        assert heads, f"no {prefix} layers"
        for layer in heads:
            layer.kernel.assign(layer.kernel * (HEAD_OUTPUT_STD / outputs[name].std()))
    return model


def _weights_model(flex: bool = False) -> keras.Model:
    """Small input, wide 3x3 convs: weights dominate the file size. ``flex`` adds CropAndResize."""
    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(image)
    x = keras.layers.Conv2D(96, 3, strides=2, padding="same", activation="relu")(x)
    if flex:
        x = CropResize()(x)
    for _ in range(2):
        x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    boxes = keras.layers.Reshape((-1, 4), name="box_deltas")(keras.layers.Conv2D(4, 1)(x))
    logits = keras.layers.Reshape((-1, 3), name="class_logits")(keras.layers.Conv2D(3, 1)(x))
    return keras.Model(image, {"box_deltas": boxes, "class_logits": logits})


@keras.saving.register_keras_serializable(package="tfsp_tests")
class CropResize(keras.layers.Layer):
    """A layer whose TFLite conversion needs the Flex op CropAndResize."""

    def call(self, x):
        boxes = tf.constant([[0.1, 0.1, 0.9, 0.9]])
        return tf.image.crop_and_resize(x, boxes, tf.zeros([1], tf.int32), (16, 16))


def _weights_spec() -> ModelSpec:
    """A spec with 16 * 16 * 2 = 512 anchors, while ``_weights_model`` has 256 outputs."""
    return detection_spec(32, SsdAnchorConfig(32, (16,), 0.2, 0.9, ((),)), ("a", "b"), (1, 2))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_data):
    """A run dir with model.keras + spec.json, and the shared synthetic COCO root for calibration."""
    run = tmp_path_factory.mktemp("export") / "runs" / "ssd"
    run.mkdir(parents=True)
    model = _tiny_ssd()
    model.save(run / "model.keras")
    detection_spec(SIZE, TINY_SSD.anchors, SYNTH_CLASSES, (1, 2, 3, 4)).to_json(run / "spec.json")
    return run, synth_data, KerasRunner(model)


def _val_images(data, spec) -> np.ndarray:
    """The synthetic validation images, preprocessed (the calibration used the training split)."""
    paths = sorted((data / "images" / "val").iterdir())
    return np.stack([preprocess_image(read_image_rgb(p), spec.input_size, spec.resize_mode)[0] for p in paths])


def _max_error_fraction(expected: dict, actual: dict) -> dict:
    return {name: float(np.abs(actual[name] - value).max() / np.ptp(value)) for name, value in expected.items()}


def test_table_covers_every_mode():
    assert set(QUANT_SETTINGS) == set(QuantMode)
    assert [mode for mode, s in QUANT_SETTINGS.items() if s.full_integer] == [QuantMode.INT8]


@pytest.mark.slow
def test_cli_fp32_keeps_names_and_matches_keras(tiny_run, tmp_path, capsys):
    run, _, keras_runner = tiny_run
    assert main(["--run", str(run), "--quant", "fp32", "--out", str(tmp_path), "--name", "tiny"]) == 0
    out = capsys.readouterr().out
    assert f"python -m training.evaluate --model {tmp_path / 'tiny.tflite'}" in out
    assert f"python -m edge_demo --model {tmp_path / 'tiny.tflite'}" in out
    spec = ModelSpec.from_json(tmp_path / "tiny.json")
    assert spec.quantization is QuantMode.FP32 and spec.output_names == ("box_deltas", "class_logits")
    assert spec.outputs[1].shape == (1, 336, 5) and spec.class_names == SYNTH_CLASSES
    images = _images(2)
    expected, actual = keras_runner(images), TFLiteRunner(tmp_path / "tiny.tflite")(images)
    for name in spec.output_names:
        np.testing.assert_allclose(actual[name], expected[name], atol=FP32_ATOL)


@pytest.mark.slow
def test_cli_int8_from_config_yaml(tiny_run, tmp_path, capsys):
    run, data, keras_runner = tiny_run
    config_run = tmp_path / "from_config"
    config_run.mkdir()
    (config_run / "model.keras").symlink_to(run / "model.keras")
    save_config(TrainConfig(ssd=TINY_SSD, data=DataConfig(root=str(data))), config_run / "config.yaml")
    assert main(["--run", str(config_run), "--quant", "int8", "--out", str(tmp_path)]) == 0
    assert "from_config_int8.tflite" in capsys.readouterr().out
    spec = ModelSpec.from_json(tmp_path / "from_config_int8.json")
    image, (boxes, logits) = spec.inputs[0], spec.outputs
    assert (image.dtype, image.zero_point) == ("uint8", 0) and image.scale == pytest.approx(1.0, abs=1e-3)
    assert boxes.dtype == logits.dtype == "int8" and boxes.scale > 0 and logits.scale > 0
    assert spec.class_names == SYNTH_CLASSES and spec.category_ids == (1, 2, 3, 4)
    images = _val_images(data, spec)
    errors = _max_error_fraction(keras_runner(images), TFLiteRunner(tmp_path / "from_config_int8.tflite")(images))
    assert max(errors.values()) < INT8_RANGE_FRACTION, errors


def test_every_mode_converts_and_int8_is_small(tmp_path):
    model = _weights_model()
    images = _images(1)[:, :32, :32]
    expected = model.predict_on_batch(images)
    sizes = {}
    for mode in QuantMode:
        data = convert_model(model, mode, _images(8)[:, :32, :32] if mode is QuantMode.INT8 else None)
        sizes[mode] = len(data)
        actual = TFLiteRunner(data)(images)
        if mode is QuantMode.FP16:
            for name in expected:
                np.testing.assert_allclose(actual[name], expected[name], rtol=FP16_RTOL, atol=FP16_RTOL)
        elif mode is not QuantMode.FP32:
            assert max(_max_error_fraction(expected, actual).values()) < INT8_RANGE_FRACTION
    assert sizes[QuantMode.INT8] <= INT8_SIZE_RATIO * sizes[QuantMode.FP32], sizes
    assert sizes[QuantMode.DYNAMIC] <= INT8_SIZE_RATIO * sizes[QuantMode.FP32], sizes
    assert sizes[QuantMode.FP16] < 0.6 * sizes[QuantMode.FP32], sizes


def test_flex_ops_are_refused(tmp_path, capsys):
    model = _weights_model(flex=True)
    with pytest.raises(UnsupportedOpsError, match="FlexCropAndResize") as error:
        convert_model(model, QuantMode.FP32)
    assert error.value.operators == ("FlexCropAndResize",)
    run = tmp_path / "flex"
    run.mkdir()
    model.save(run / "model.keras")
    _weights_spec().to_json(run / "spec.json")
    assert main(["--run", str(run), "--quant", "fp32", "--out", str(tmp_path / "out")]) == 1
    assert "FlexCropAndResize" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_spec_that_does_not_fit_the_model_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"'box_deltas' has shape \(256, 4\) per image, the spec says \(512, 4\)"):
        export_model(_weights_model(), _weights_spec(), QuantMode.FP32, tmp_path, "mismatch")
    assert list(tmp_path.iterdir()) == []


def test_cli_suggests_close_matches(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--run", str(tmp_path), "--qaunt", "int8"])
    assert exit_info.value.code == 2 and "--qaunt (did you mean --quant?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path), "--quant", "int9"])
    assert "unknown mode 'int9' (did you mean int8?)" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path, tiny_run, capsys):
    assert main(["--run", str(tmp_path), "--quant", "fp32"]) == 1
    assert f"no model at {tmp_path / 'model.keras'}" in capsys.readouterr().err
    run, _, _ = tiny_run
    assert main(["--model", str(run / "model.keras"), "--quant", "int8", "--out", str(tmp_path)]) == 1
    assert "pass --data DIR" in capsys.readouterr().err
