"""Keras and TFLite runners behind one interface: names, shapes, (de)quantisation, parity."""

import keras
import numpy as np
import pytest

from export.convert import convert_model
from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors, num_anchors_per_location
from tfsp.postprocess.ssd import SsdPostprocessConfig, decode_ssd
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.runner import Runner, check_images, open_runner
from tfsp.runtime.tflite_runner import TFLiteRunner, dequantize, flex_operators, list_operators, quantize
from tfsp.spec import DYNAMIC_DIM, QuantMode, TensorInfo

SIZE = 64
NUM_CLASSES = 3
ANCHORS = SsdAnchorConfig(image_size=SIZE, feature_map_sizes=(8, 4), min_scale=0.2, max_scale=0.8,
                          aspect_ratios=((2.0,), (2.0,)))
RAW_ATOL = 1e-4  # Keras vs TFLite fp32, raw outputs
BOX_RTOL = 1e-3  # Keras vs TFLite fp32, decoded boxes (relative)
# Low threshold so many (anchor, class) pairs survive and NMS has work to do.
POSTPROCESS = SsdPostprocessConfig(score_threshold=0.2, iou_threshold=0.45, max_detections=50)
FEATURE_SHAPE = (5, 5, 6)  # RoI-feature-like input: not an image
INT8_MIN_CORRELATION = 0.99  # int8 vs Keras float, per output of the tiny feature graph


def _tiny_ssd() -> keras.Model:
    """SSD-shaped functional model: image (64, 64, 3) 0..255 -> box_deltas, class_logits."""
    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(image)
    maps = []
    for channels in (8, 16, 16, 16):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(x)
        maps.append(x)
    boxes, logits = [], []
    for feature, k in zip(maps[2:], num_anchors_per_location(ANCHORS)):
        for depth, out in ((4, boxes), (NUM_CLASSES + 1, logits)):
            y = keras.layers.Conv2D(k * depth, 3, padding="same")(feature)
            out.append(keras.layers.Reshape((-1, depth))(y))
    outputs = {"box_deltas": keras.layers.Concatenate(axis=1, name="box_deltas")(boxes),
               "class_logits": keras.layers.Concatenate(axis=1, name="class_logits")(logits)}
    return keras.Model(image, outputs)


def _tiny_feature_model() -> keras.Model:
    """Feature-input functional model: rois (R, 5, 5, 6) signed floats -> logits (R, 3), maps (R, 5, 5, 2)."""
    keras.utils.set_random_seed(0)
    rois = keras.Input(FEATURE_SHAPE, name="rois")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(rois)
    maps = keras.layers.Conv2D(2, 1, name="maps")(x)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(x))
    return keras.Model(rois, {"logits": logits, "maps": maps})


def _features(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (count, *FEATURE_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runners")
    model = _tiny_ssd()
    model.save(folder / "tiny.keras")
    (folder / "tiny.tflite").write_bytes(convert_model(model, QuantMode.FP32))
    return folder / "tiny.keras", folder / "tiny.tflite"


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)


def test_both_runners_share_the_interface(models):
    keras_runner, tflite_runner = open_runner(models[0]), open_runner(models[1], num_threads=1)
    assert isinstance(keras_runner, KerasRunner) and isinstance(tflite_runner, TFLiteRunner)
    for runner in (keras_runner, tflite_runner):
        assert isinstance(runner, Runner)
        assert runner.input_size == SIZE
        assert sorted(runner.output_names) == ["box_deltas", "class_logits"]


def test_tflite_signature_describes_tensors(models):
    runner = TFLiteRunner(models[1])
    assert runner.inputs == (TensorInfo("image", "float32", (1, SIZE, SIZE, 3)),)
    shapes = {info.name: info.shape for info in runner.outputs}
    assert shapes == {"box_deltas": (1, 320, 4), "class_logits": (1, 320, NUM_CLASSES + 1)}
    assert "CONV_2D" in list_operators(models[1]) and flex_operators(models[1]) == ()


def test_fp32_parity_raw_and_decoded(models, images):
    expected, actual = KerasRunner(models[0])(images), TFLiteRunner(models[1], num_threads=1)(images)
    anchors = generate_ssd_anchors(ANCHORS)
    for name in ("box_deltas", "class_logits"):
        assert actual[name].shape == expected[name].shape and actual[name].dtype == np.float32
        assert np.abs(expected[name]).max() > 0.1  # non-trivial outputs
        np.testing.assert_allclose(actual[name], expected[name], atol=RAW_ATOL)
    for i in range(len(images)):  # batch of 2 through a batch-1 graph: per-image invocations
        want = decode_ssd(expected["box_deltas"][i], expected["class_logits"][i], anchors, POSTPROCESS)
        got = decode_ssd(actual["box_deltas"][i], actual["class_logits"][i], anchors, POSTPROCESS)
        assert len(want) > 5
        np.testing.assert_array_equal(got.class_ids, want.class_ids)
        np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, rtol=BOX_RTOL, atol=1e-6)
        np.testing.assert_allclose(got.scores, want.scores, atol=RAW_ATOL)


def test_tflite_runner_accepts_bytes(models, images):
    from_bytes = TFLiteRunner(models[1].read_bytes())(images[:1])
    np.testing.assert_array_equal(from_bytes["box_deltas"], TFLiteRunner(models[1])(images[:1])["box_deltas"])


def test_quantize_dequantize_golden():
    info = TensorInfo("t", "int8", (3,), scale=0.5, zero_point=3)
    q = quantize(np.array([0.0, 1.26, -100.0, 100.0], np.float32), info)
    np.testing.assert_array_equal(q, np.array([3, 6, -128, 127], np.int8))  # round(x / 0.5) + 3, saturated
    np.testing.assert_allclose(dequantize(q, info), [0.0, 1.5, -65.5, 62.0])
    pixels = TensorInfo("image", "uint8", (1,), scale=1.0, zero_point=0)
    np.testing.assert_array_equal(quantize(np.array([0.0, 114.0, 255.0], np.float32), pixels), [0, 114, 255])


def test_input_validation(models):
    runner = KerasRunner(models[0])
    with pytest.raises(ValueError, match="float32"):
        runner(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\)"):
        check_images(np.zeros((SIZE, SIZE, 3), np.float32), SIZE)


def test_open_runner_rejects_unknown_files(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown model extension '.onnx'"):
        open_runner(tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError):
        open_runner(tmp_path / "missing.tflite")


def test_feature_input_graph_runs_on_both_runners():
    model = _tiny_feature_model()
    keras_runner = KerasRunner(model)
    fp32 = TFLiteRunner(convert_model(model, QuantMode.FP32), num_threads=1)
    int8 = TFLiteRunner(convert_model(model, QuantMode.INT8, _features(8, seed=1)), num_threads=1)
    assert keras_runner.input_size is fp32.input_size is int8.input_size is None
    assert fp32.inputs == (TensorInfo("rois", "float32", (DYNAMIC_DIM, *FEATURE_SHAPE)),)
    (rois,) = int8.inputs
    assert (rois.name, rois.dtype, rois.shape) == ("rois", "int8", (DYNAMIC_DIM, *FEATURE_SHAPE))
    assert 0.0 < rois.scale < 0.5  # calibrated on N(0, 1) features, not the images' scale 1
    assert all(info.dtype == "int8" for info in int8.outputs)
    for count in (1, 3):  # dynamic RoI axis
        features = _features(count, seed=count)
        expected = keras_runner.run_features(features)
        got, quantised = fp32.run_features(features), int8.run_features(features)
        assert set(expected) == set(got) == set(quantised) == {"logits", "maps"}
        for name in expected:
            assert got[name].shape == expected[name].shape and got[name].dtype == np.float32
            assert expected[name].std() > 0.05, name  # non-trivial outputs
            np.testing.assert_allclose(got[name], expected[name], atol=RAW_ATOL, rtol=RAW_ATOL, err_msg=name)
            correlation = np.corrcoef(quantised[name].ravel(), expected[name].ravel())[0, 1]
            assert correlation > INT8_MIN_CORRELATION, (name, correlation)


def test_feature_input_validation():
    model = _tiny_feature_model()
    for runner in (KerasRunner(model), TFLiteRunner(convert_model(model, QuantMode.FP32))):
        with pytest.raises(ValueError, match="run_features"):
            runner(np.zeros((1, 5, 5, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(B, 5, 5, 6\)"):
            runner.run_features(np.zeros((1, 5, 5, 3), np.float32))
        with pytest.raises(ValueError, match="float32"):
            runner.run_features(np.zeros((1, *FEATURE_SHAPE), np.float64))


def test_keras_feature_batches_are_padded_without_changing_any_row():
    model = _tiny_feature_model()
    runner = KerasRunner(model)
    features = _features(5, seed=3)  # padded to 8 rows for the graph call
    got = runner.run_features(features)
    direct = model.predict_on_batch(features)
    for name in got:
        assert got[name].shape[0] == 5
        np.testing.assert_allclose(got[name], np.asarray(direct[name]), atol=1e-6, err_msg=name)
