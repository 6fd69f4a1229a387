"""`export.quant_report`: per-tensor int8 error against fp32, checked against the runners' own outputs."""

import json

import numpy as np
import pytest

from export.calibration import calibration_images
from export.convert import export_model
from export.quant_report import format_report, main, tensor_errors
from tests.export.test_export import SIZE, SYNTH_CLASSES, TINY_SSD, _tiny_ssd, _val_images
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import ModelSpec, QuantMode
from tfsp.spec_builders import detection_spec

REPORT_RTOL = 1e-6
FLAT_GREY = 128.0  # a mis-calibrated int8 graph: calibrated on flat grey images, run on real ones
CALIBRATION_IMAGES = 8  # the synthetic train split
GOOD_INT8_ERROR = 0.1  # output rms error / output std of the well calibrated tiny SSD


@pytest.fixture(scope="module")
def exports(tmp_path_factory, synth_data):
    """fp32, int8 and mis-calibrated int8 exports of the tiny SSD, and the preprocessed val images."""
    out = tmp_path_factory.mktemp("quant_report")
    model = _tiny_ssd()
    spec = detection_spec(SIZE, TINY_SSD.anchors, SYNTH_CLASSES, (1, 2, 3, 4))
    calibration = calibration_images(synth_data, spec, CALIBRATION_IMAGES)
    export_model(model, spec, QuantMode.FP32, out, "fp32")
    export_model(model, spec, QuantMode.INT8, out, "int8", calibration)
    export_model(model, spec, QuantMode.INT8, out, "flat", np.full_like(calibration, FLAT_GREY))
    return out, _val_images(synth_data, spec)


def test_output_errors_equal_what_the_runners_return(exports):
    out, images = exports
    errors = tensor_errors(out / "fp32.tflite", out / "int8.tflite", images)
    outputs = {error.name: error for error in errors if error.is_output}
    assert set(outputs) == {"box_deltas", "class_logits"}
    assert len(errors) > 20  # the backbone's activations too, not only the outputs
    fp32, int8 = TFLiteRunner(out / "fp32.tflite"), TFLiteRunner(out / "int8.tflite")
    for name, error in outputs.items():
        expected = np.concatenate([fp32(image[np.newaxis])[name].ravel() for image in images]).astype(np.float64)
        actual = np.concatenate([int8(image[np.newaxis])[name].ravel() for image in images]).astype(np.float64)
        std = expected.std()
        np.testing.assert_allclose(error.relative_error, np.sqrt(np.mean((actual - expected) ** 2)) / std,
                                   rtol=REPORT_RTOL)
        np.testing.assert_allclose(error.max_over_std, np.abs(expected).max() / std, rtol=REPORT_RTOL)
        scale = next(info.scale for info in ModelSpec.from_json(out / "int8.json").outputs if info.name == name)
        np.testing.assert_allclose(error.steps_per_std, std / scale, rtol=REPORT_RTOL)
        assert 0 < error.relative_error < GOOD_INT8_ERROR


def test_a_mis_calibrated_graph_shows_larger_errors(exports):
    out, images = exports
    good = {e.name: e for e in tensor_errors(out / "fp32.tflite", out / "int8.tflite", images) if e.is_output}
    flat = {e.name: e for e in tensor_errors(out / "fp32.tflite", out / "flat.tflite", images) if e.is_output}
    for name in good:
        assert flat[name].relative_error > 2 * good[name].relative_error


def test_report_lists_outputs_then_the_largest_errors(exports):
    out, images = exports
    errors = tensor_errors(out / "fp32.tflite", out / "int8.tflite", images[:1])
    lines = format_report(errors, top=3).splitlines()
    assert lines[0] == "graph outputs" and lines[2].endswith("box_deltas") and lines[3].endswith("class_logits")
    inner = [error for error in errors if not error.is_output]
    worst = max(inner, key=lambda error: error.relative_error)
    assert lines[7].endswith(worst.name.split(";")[0]) and len(lines) == 7 + 3
    assert len(format_report(errors, top=None).splitlines()) == 7 + len(inner)


def test_cli_prints_and_writes_json(exports, synth_data, tmp_path, capsys):
    out, _ = exports
    json_path = tmp_path / "errors.json"
    assert main(["--fp32", str(out / "fp32.tflite"), "--int8", str(out / "int8.tflite"), "--data", str(synth_data),
                 "--images", "2", "--out", str(json_path)]) == 0
    printed = capsys.readouterr().out
    assert "2 val images" in printed and "box_deltas" in printed
    rows = json.loads(json_path.read_text())
    assert {row["name"] for row in rows if row["is_output"]} == {"box_deltas", "class_logits"}


def test_cli_names_a_missing_spec(exports, synth_data, tmp_path, capsys):
    out, _ = exports
    assert main(["--fp32", str(out / "fp32.tflite"), "--int8", str(tmp_path / "none.tflite"),
                 "--data", str(synth_data)]) == 2
    assert "none.json" in capsys.readouterr().err
