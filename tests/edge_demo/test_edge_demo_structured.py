"""``python -m edge_demo`` on dense and attribute ``.tflite`` models (tiny, untrained, seeded).

Dense: the annotated frame is the segmentation overlay and the depth heat map side by side, exactly
what ``tfsp.viz.draw_dense`` draws for the pipeline's maps. Attributes: the detector's boxes are
classified; every box gets one attribute row and the frame shows the boxes and the tags.
"""

import re

import cv2
import numpy as np
import pytest

from edge_demo import app
from edge_demo.tasks import DEPTH_DISPLAY_RANGE_M
from tfsp.viz import draw_attributes, draw_dense, draw_detections

DENSE_SIZE, CROP = 64, 32
CLASS_NAMES, CATEGORY_IDS = ("person", "circle", "square"), (1, 2, 3)
ATTRIBUTE_NAMES = ("red", "green", "blue", "filled")
OBJECTS_LINE = re.compile(r"^\[\d+\] \S+: .* total \d+\.\d\d ms  (\d+) objects with attributes$", re.M)
SEED = 0


@pytest.fixture(scope="module")
def dense_tflite(tmp_path_factory):
    import keras

    from export.convert import export_model
    from tfsp.models.dense import DenseConfig, build_dense
    from tfsp.spec import QuantMode
    from tfsp.spec_builders import dense_spec

    keras.utils.set_random_seed(SEED)
    config = DenseConfig(input_size=DENSE_SIZE, num_classes=len(CLASS_NAMES))
    spec = dense_spec(DENSE_SIZE, DENSE_SIZE // config.output_stride, CLASS_NAMES, CATEGORY_IDS)
    out = tmp_path_factory.mktemp("dense_exports")
    return export_model(build_dense(config), spec, QuantMode.FP32, out, "dense_fp32").tflite_path


@pytest.fixture(scope="module")
def attribute_tflite(tmp_path_factory):
    import keras

    from export.convert import export_model
    from tfsp.models.attributes import AttributeConfig, build_attribute_model
    from tfsp.spec import AttributeHead, QuantMode
    from tfsp.spec_builders import attribute_spec

    keras.utils.set_random_seed(SEED)
    config = AttributeConfig(image_size=DENSE_SIZE, crop_size=CROP, canvas_px=32.0,
                             num_attributes=len(ATTRIBUTE_NAMES), widths=(8, 8, 8))
    head = AttributeHead(ATTRIBUTE_NAMES, (0.3, 0.4, 0.5, 0.6), DENSE_SIZE, config.crop_config)
    spec = attribute_spec(head, CLASS_NAMES, CATEGORY_IDS)
    out = tmp_path_factory.mktemp("attribute_exports")
    return export_model(build_attribute_model(config), spec, QuantMode.FP32, out, "attributes_fp32").tflite_path


def _read_rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def test_dense_demo_draws_segmentation_and_depth_side_by_side(dense_tflite, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert app.main(["--model", str(dense_tflite), "--source", str(image_dir), "--out", str(out)]) == app.EXIT_OK
    stdout = capsys.readouterr().out
    assert "DENSE" in stdout and stdout.count("foreground, depth") == len(list(image_dir.iterdir()))
    model = app.load_model(dense_tflite)
    for path in sorted(image_dir.iterdir()):
        image = _read_rgb(path)
        prediction, _ = model.pipeline(image)
        assert prediction.semantic.values.shape == image.shape[:2]
        expected = np.concatenate([draw_dense(image, prediction.semantic),
                                   draw_dense(image, prediction.depth, alpha=1.0, depth_range=DEPTH_DISPLAY_RANGE_M)],
                                  axis=1)
        output = _read_rgb(out / path.name)
        assert output.shape[1:] == (2 * image.shape[1], 3) and output.shape[0] > image.shape[0]  # + timing footer
        np.testing.assert_array_equal(output[:len(expected)], expected)


def test_attribute_demo_classifies_the_detectors_boxes(attribute_tflite, tiny_exports, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(attribute_tflite), "--detector", str(tiny_exports.fp32), "--source", str(image_dir),
            "--out", str(out), "--score", "0.01"]
    assert app.main(argv) == app.EXIT_OK
    counts = [int(n) for n in OBJECTS_LINE.findall(capsys.readouterr().out)]
    detector = app.load_model(tiny_exports.fp32, score_threshold=0.01)
    model = app.load_model(attribute_tflite, detector=tiny_exports.fp32, score_threshold=0.01)
    for count, path in zip(counts, sorted(image_dir.iterdir())):
        image = _read_rgb(path)
        detections, _ = detector.pipeline(image)
        result, _ = model.pipeline(image)
        assert count == len(detections) == len(result.attributes) > 0
        np.testing.assert_array_equal(result.detections.boxes_xyxy, detections.boxes_xyxy)
        assert result.attributes.names == ATTRIBUTE_NAMES
        expected = draw_attributes(draw_detections(image, detections, CLASS_NAMES), detections, result.attributes)
        np.testing.assert_array_equal(_read_rgb(out / path.name)[:len(expected)], expected)
    assert len(counts) == len(list(image_dir.iterdir()))


def test_attribute_demo_needs_a_detection_model(attribute_tflite, dense_tflite, image_dir, tmp_path, capsys):
    assert app.main(["--model", str(attribute_tflite), "--source", str(image_dir), "--out", str(tmp_path)]) == 1
    assert "pass --detector" in capsys.readouterr().err
    assert app.main(["--model", str(attribute_tflite), "--detector", str(dense_tflite), "--source", str(image_dir),
                     "--out", str(tmp_path / "o")]) == 1
    assert "is a DENSE model, not a detector" in capsys.readouterr().err
