"""DetectionPipeline: boxes back in original pixels through the letterbox, timings, COCO results."""

import dataclasses

import cv2
import numpy as np
import pytest

from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors
from tfsp.postprocess.boxes import encode_cxcywh
from tfsp.postprocess.ssd import SsdPostprocessConfig
from tfsp.runtime.detection import DetectionPipeline, detect_coco
from tfsp.runtime.preprocess import ResizeMode
from tfsp.spec import Task
from tfsp.spec_builders import detection_spec

SIZE = 64
# One 1x1 map with ratio 2: four anchors all centred on the input.
ANCHORS = SsdAnchorConfig(image_size=SIZE, feature_map_sizes=(1,), min_scale=0.3, max_scale=0.6,
                          aspect_ratios=((2.0,),))
# Target boxes in normalised input coordinates and their classes (two foreground classes).
TARGETS = np.array([[0.25, 0.25, 0.5, 0.5], [0.5, 0.125, 0.75, 0.375]], np.float32)
TARGET_CLASSES = (1, 0)


class FakeRunner:
    """Runner returning fixed SSD outputs: anchor i predicts TARGETS[i] with class TARGET_CLASSES[i]."""

    input_size = SIZE
    output_names = ("box_deltas", "class_logits")

    def __init__(self):
        self.calls = []
        anchors = generate_ssd_anchors(ANCHORS)
        self.deltas = np.zeros((len(anchors), 4), np.float32)
        self.deltas[:2] = encode_cxcywh(TARGETS, anchors[:2])
        self.logits = np.tile(np.array([[8.0, 0.0, 0.0]], np.float32), (len(anchors), 1))
        for anchor, class_id in enumerate(TARGET_CLASSES):
            self.logits[anchor] = [0.0, 0.0, 0.0]
            self.logits[anchor, class_id + 1] = 8.0

    def __call__(self, images):
        self.calls.append(images)
        return {"box_deltas": self.deltas[None], "class_logits": self.logits[None]}


def _spec(resize_mode=ResizeMode.LETTERBOX):
    return detection_spec(SIZE, ANCHORS, ("circle", "square"), (2, 3), resize_mode=resize_mode,
                          postprocess=SsdPostprocessConfig(score_threshold=0.5))


def test_boxes_come_back_in_original_pixels():
    runner = FakeRunner()
    image = np.zeros((50, 100, 3), np.uint8)  # H=50, W=100: letterbox scale 0.64, content 64 x 32 top-left
    det = DetectionPipeline(runner, _spec())(image)
    # Input pixels TARGETS * 64 = [16, 16, 32, 32] and [32, 8, 48, 24]; divided by 0.64.
    np.testing.assert_allclose(det.boxes_xyxy, [[25, 25, 50, 50], [50, 12.5, 75, 37.5]], rtol=1e-5)
    np.testing.assert_array_equal(det.class_ids, TARGET_CLASSES)
    assert runner.calls[0].shape == (1, SIZE, SIZE, 3) and runner.calls[0].dtype == np.float32


def test_stretch_mode_and_clipping():
    image = np.zeros((32, 128, 3), np.uint8)  # stretch: input x * 2, input y / 2
    det = DetectionPipeline(FakeRunner(), _spec(ResizeMode.STRETCH))(image)
    np.testing.assert_allclose(det.boxes_xyxy, [[32, 8, 64, 16], [64, 4, 96, 12]], rtol=1e-5)
    # A box in the letterbox padding is clipped to the original image.
    tall = np.zeros((64, 16, 3), np.uint8)  # letterbox scale 1, content 16 px wide
    det = DetectionPipeline(FakeRunner(), _spec())(tall)
    assert det.boxes_xyxy[:, [0, 2]].max() <= 16 and det.boxes_xyxy[:, [1, 3]].max() <= 64


def test_timings_are_reported():
    det, timings = DetectionPipeline(FakeRunner(), _spec()).detect_timed(np.zeros((40, 40, 3), np.uint8))
    assert len(det) == 2
    assert min(timings.preprocess_ms, timings.inference_ms, timings.postprocess_ms) >= 0
    assert timings.total_ms == pytest.approx(timings.preprocess_ms + timings.inference_ms + timings.postprocess_ms)


@dataclasses.dataclass
class Record:
    image_id: int
    path: str


def test_detect_coco_returns_coco_results(tmp_path):
    records = []
    for image_id, (height, width) in ((7, (50, 100)), (9, (64, 64))):
        path = tmp_path / f"{image_id}.png"
        cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
        records.append(Record(image_id, str(path)))
    results, timings = detect_coco(DetectionPipeline(FakeRunner(), _spec()), records)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(7, 3), (7, 2), (9, 3), (9, 2)]
    np.testing.assert_allclose(results[0]["bbox"], [25, 25, 25, 25], rtol=1e-5)  # [x, y, w, h]
    np.testing.assert_allclose(results[2]["bbox"], [16, 16, 16, 16], rtol=1e-5)
    assert timings.total_ms >= 0


def test_spec_and_runner_must_agree():
    with pytest.raises(ValueError, match="input size"):
        DetectionPipeline(FakeRunner(), dataclasses.replace(_spec(), input_size=32, anchors=dataclasses.replace(
            ANCHORS, image_size=32)))
    runner = FakeRunner()
    runner.output_names = ("box_deltas",)
    with pytest.raises(ValueError, match="lacks outputs"):
        DetectionPipeline(runner, _spec())
    with pytest.raises(ValueError, match="Task.DETECTION"):
        DetectionPipeline(FakeRunner(), dataclasses.replace(_spec(), task=Task.DENSE))
