"""PosePipeline: rendered fields of known people come back in original pixels; COCO results; errors."""

import dataclasses

import cv2
import numpy as np
import pytest

from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.data.pose_fields import render_heatmaps, render_pafs
from tfsp.runtime.pose import PosePipeline, map_to_original, pose_coco
from tfsp.runtime.preprocess import Letterbox, ResizeMode, fit_letterbox
from tfsp.spec import Task
from tfsp.spec_builders import pose_spec

SIZE, MAP_SIZE = 256, 32
STRIDE = SIZE // MAP_SIZE
CLASS_NAMES, CATEGORY_IDS = ("circle", "person"), (2, 1)  # person is not class 0: its category id is looked up
PERSON_CATEGORY = 1
TOLERANCE_PX = 1.0
# A stick figure in map cells (j, i), COCO keypoint order; every joint sits on a cell centre, so the
# rendered peaks are exact whatever sub-cell refinement the parser does.
FIGURE_CELLS = np.array([
    (8, 3), (9, 2), (7, 2), (10, 3), (6, 3),  # nose, eyes, ears
    (11, 6), (5, 6), (12, 10), (4, 10), (13, 14), (3, 14),  # shoulders, elbows, wrists
    (10, 14), (6, 14), (10, 19), (6, 19), (10, 24), (6, 24),  # hips, knees, ankles
], np.float32)
SECOND_OFFSET_CELLS = (16, 0)
EARS = (3, 4)


def _people_input_px() -> np.ndarray:
    """(2, 17, 3) ``[x, y, v]`` in input pixels: two figures side by side, the second without ears."""
    people = np.zeros((2, NUM_KEYPOINTS, 3), np.float32)
    for m, offset in enumerate(((0, 0), SECOND_OFFSET_CELLS)):
        people[m, :, :2] = (FIGURE_CELLS + offset + 0.5) * STRIDE
        people[m, :, 2] = 2
    people[1, EARS] = 0
    return people


class FakeRunner:
    """Runner returning the fields ``tfsp.data.pose_fields`` renders for the given people (input pixels)."""

    input_size = SIZE
    output_names = ("heatmaps", "pafs")

    def __init__(self, people_input_px):
        self.calls = []
        self.heatmaps = render_heatmaps(people_input_px, MAP_SIZE, STRIDE)
        self.pafs = render_pafs(people_input_px, MAP_SIZE, STRIDE)

    def __call__(self, images):
        self.calls.append(images)
        return {"heatmaps": self.heatmaps[None], "pafs": self.pafs[None]}


def _spec(resize_mode=ResizeMode.LETTERBOX):
    return pose_spec(SIZE, MAP_SIZE, CLASS_NAMES, CATEGORY_IDS, resize_mode=resize_mode)


def _by_x(keypoints: np.ndarray) -> np.ndarray:
    """People sorted by the x of their nose (keypoint 0, present in every test person)."""
    return keypoints[np.argsort(keypoints[:, 0, 0])]


@pytest.mark.parametrize("mode, shape", [(ResizeMode.LETTERBOX, (400, 500)), (ResizeMode.STRETCH, (128, 512))])
def test_people_come_back_in_original_pixels(mode, shape):
    people = _people_input_px()
    runner = FakeRunner(people)
    image = np.zeros((*shape, 3), np.uint8)
    poses = PosePipeline(runner, _spec(mode))(image)
    assert runner.calls[0].shape == (1, SIZE, SIZE, 3) and runner.calls[0].dtype == np.float32
    assert len(poses) == 2 and np.all(poses.scores > 0)
    letterbox = fit_letterbox(*shape, SIZE, mode)  # letterbox (400, 500): 0.512 x 0.5125, content 256 x 205
    expected = letterbox.to_original_xy(people[..., :2])
    found = _by_x(poses.keypoints)
    present = people[..., 2] > 0
    np.testing.assert_array_equal(found[..., 2] > 0, present)
    np.testing.assert_allclose(found[..., :2][present], expected[present], atol=TOLERANCE_PX)
    np.testing.assert_array_equal(found[1, EARS], 0.0)  # absent: x = y = score = 0


def test_map_to_original_golden_and_clipping():
    letterbox = Letterbox(0.5, 0.25, 0.0, 0.0, SIZE)  # an original pixel is 2 input px wide, 4 tall
    keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
    keypoints[0, 0] = [2.5, 1.5, 0.9]  # input (20, 12) -> original (40, 48)
    keypoints[0, 1] = [31.5, 31.5, 0.4]  # input (252, 252) -> (504, 1008), clipped to the 300 x 200 image
    keypoints[0, 2] = [3.0, 3.0, 0.0]  # absent
    before = keypoints.copy()
    mapped = map_to_original(keypoints, STRIDE, letterbox, height=200, width=300)
    assert mapped.dtype == np.float32 and mapped.shape == (1, NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(mapped[0, :3], [[40, 48, 0.9], [300, 200, 0.4], [0, 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(keypoints, before)


def test_no_people_and_timings():
    runner = FakeRunner(np.zeros((0, NUM_KEYPOINTS, 3), np.float32))
    poses, timings = PosePipeline(runner, _spec()).detect_timed(np.zeros((40, 60, 3), np.uint8))
    assert len(poses) == 0 and poses.keypoints.shape == (0, NUM_KEYPOINTS, 3)
    assert min(timings.preprocess_ms, timings.inference_ms, timings.postprocess_ms) >= 0
    assert timings.total_ms == pytest.approx(timings.preprocess_ms + timings.inference_ms + timings.postprocess_ms)


@dataclasses.dataclass
class Record:
    image_id: int
    path: str


def test_pose_coco_returns_coco_keypoint_results(tmp_path):
    records = []
    for image_id, (height, width) in ((7, (400, 500)), (9, (256, 256))):
        path = tmp_path / f"{image_id}.png"
        cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
        records.append(Record(image_id, str(path)))
    pipeline = PosePipeline(FakeRunner(_people_input_px()), _spec())
    results, timings = pose_coco(pipeline, records)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(7, PERSON_CATEGORY)] * 2 + [(9, 1)] * 2
    assert all(set(r) == {"image_id", "category_id", "keypoints", "score"} for r in results)
    square = sorted(results[2:], key=lambda r: r["keypoints"][0])  # input = original pixels (scale 1)
    first = np.array(square[0]["keypoints"]).reshape(NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(first[:, :2], _people_input_px()[0, :, :2], atol=TOLERANCE_PX)
    np.testing.assert_array_equal(first[:, 2], 2)
    second = np.array(square[1]["keypoints"]).reshape(NUM_KEYPOINTS, 3)
    np.testing.assert_array_equal(second[EARS, :], 0)  # COCO v = 0 for absent keypoints
    assert all(isinstance(r["score"], float) and r["score"] > 0 for r in results)
    assert timings.total_ms >= 0


def test_spec_and_runner_must_agree():
    with pytest.raises(ValueError, match="input size"):
        PosePipeline(FakeRunner(_people_input_px()), dataclasses.replace(_spec(), input_size=128))
    runner = FakeRunner(_people_input_px())
    runner.output_names = ("heatmaps",)
    with pytest.raises(ValueError, match=r"lacks outputs \['pafs'\]"):
        PosePipeline(runner, _spec())
    with pytest.raises(ValueError, match="Task.POSE"):
        PosePipeline(FakeRunner(_people_input_px()), dataclasses.replace(_spec(), task=Task.DENSE, paf=None))
    no_person = pose_spec(SIZE, MAP_SIZE, ("circle",), (2,))
    with pytest.raises(ValueError, match="class named 'person'"):
        PosePipeline(FakeRunner(_people_input_px()), no_person)


def test_output_shapes_are_checked():
    runner = FakeRunner(_people_input_px())
    runner.pafs = runner.pafs[:, :, :-2]  # one limb short of the spec's limbs
    with pytest.raises(ValueError, match=r"pafs \(F, F, 36\)"):
        PosePipeline(runner, _spec())(np.zeros((64, 64, 3), np.uint8))
    runner = FakeRunner(_people_input_px())
    runner.heatmaps = runner.heatmaps[:16]
    with pytest.raises(ValueError, match="per image"):
        PosePipeline(runner, _spec())(np.zeros((64, 64, 3), np.uint8))
