"""AttributePipeline: boxes -> crops cut from the letterboxed image -> scores per box; detector composition."""

import dataclasses

import numpy as np
import pytest

from tfsp.postprocess.attributes import AttributeCropConfig, crop_boxes
from tfsp.runtime.attributes import AttributedDetections, AttributePipeline
from tfsp.runtime.preprocess import preprocess_image
from tfsp.runtime.timing import StageTimings
from tfsp.spec import AttributeHead, Task
from tfsp.spec_builders import attribute_spec
from tfsp.structures import Attributes, Detections

IMAGE_SIZE, CROP = 64, 16
NAMES = ("red", "blue")
THRESHOLDS = (0.5, 0.7)
RED, BLUE = (220, 20, 20), (20, 20, 220)
LOGIT_SCALE = 0.05  # logit of "red" = (mean R - mean B) * scale over the crop


class ColourRunner:
    """Crop runner: "red" and "blue" logits from the mean colour of each crop."""

    input_size = CROP
    output_names = ("attribute_logits",)

    def __init__(self):
        self.calls = []

    def __call__(self, crops):
        self.calls.append(crops)
        mean = crops.mean(axis=(1, 2))
        red = (mean[:, 0] - mean[:, 2]) * LOGIT_SCALE
        return {"attribute_logits": np.stack([red, -red], axis=1).astype(np.float32)}


def _spec():
    head = AttributeHead(NAMES, THRESHOLDS, IMAGE_SIZE, AttributeCropConfig(crop_size=CROP, canvas_px=24.0))
    return attribute_spec(head, ("circle", "square"), (2, 3))


def _image():
    """128 x 96 image (letterboxed to 64 x 48): a red square on the left, a blue one on the right."""
    image = np.full((96, 128, 3), 128, np.uint8)
    image[30:60, 10:40] = RED
    image[30:60, 80:110] = BLUE
    return image


BOXES = np.array([[10, 30, 40, 60], [80, 30, 110, 60]], np.float32)


def test_scores_follow_the_objects_in_box_order():
    runner = ColourRunner()
    attributes, timings = AttributePipeline(runner, _spec()).classify_timed(_image(), BOXES)
    assert attributes.names == NAMES and attributes.thresholds.tolist() == pytest.approx(THRESHOLDS)
    assert attributes.scores[0, 0] > 0.9 and attributes.scores[1, 1] > 0.9
    assert attributes.present.tolist() == [[True, False], [False, True]]
    assert timings.total_ms >= 0


def test_crops_are_cut_from_the_letterboxed_image_in_input_pixels():
    runner = ColourRunner()
    AttributePipeline(runner, _spec()).classify_timed(_image(), BOXES)
    letterboxed, letterbox = preprocess_image(_image(), IMAGE_SIZE)
    expected = crop_boxes(letterboxed, letterbox.to_input_xyxy(BOXES), _spec().attributes.crop)
    np.testing.assert_array_equal(runner.calls[0], expected)


def test_no_boxes_gives_no_rows_and_skips_the_graph():
    runner = ColourRunner()
    attributes, _ = AttributePipeline(runner, _spec()).classify_timed(_image(), np.zeros((0, 4), np.float32))
    assert attributes.scores.shape == (0, 2) and runner.calls == []


class FakeDetector:
    def __init__(self, boxes):
        self.boxes = boxes

    def detect_timed(self, image_rgb):
        detections = Detections.create(self.boxes, np.array([0.9, 0.8]), np.array([0, 1]))
        return detections, StageTimings(1.0, 2.0, 3.0)


def test_detector_then_attributes_sums_the_stage_times():
    pipeline = AttributePipeline(ColourRunner(), _spec(), detector=FakeDetector(BOXES))
    result, timings = pipeline.detect_timed(_image())
    assert isinstance(result, AttributedDetections) and len(result.detections) == len(result.attributes) == 2
    np.testing.assert_array_equal(result.detections.boxes_xyxy, BOXES)
    assert result.attributes.present[0, 0] and result.attributes.present[1, 1]
    assert timings.preprocess_ms >= 1.0 and timings.inference_ms >= 2.0 and timings.postprocess_ms >= 3.0
    assert isinstance(pipeline(_image()), AttributedDetections)


def test_errors_are_clear():
    runner = ColourRunner()
    with pytest.raises(ValueError, match="needs a detector"):
        AttributePipeline(runner, _spec()).detect_timed(_image())
    with pytest.raises(ValueError, match="crop size"):
        AttributePipeline(runner, dataclasses.replace(
            _spec(), input_size=32,
            attributes=dataclasses.replace(_spec().attributes, crop=AttributeCropConfig(crop_size=32))))
    runner.output_names = ("logits",)
    with pytest.raises(ValueError, match="attribute_logits"):
        AttributePipeline(runner, _spec())
    detections = Detections.create(BOXES, np.array([0.9, 0.8]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 detections but 1 attribute rows"):
        AttributedDetections(detections, Attributes.create(np.zeros((1, 2)), NAMES, 0.5))
    assert Task.ATTRIBUTES is _spec().task
