"""``python -m edge_demo`` on a pose ``.tflite`` whose outputs are the rendered fields of two known people.

The tiny graph ignores its input and returns fixed ``heatmaps`` and ``pafs`` (rendered with
``tfsp.data.pose_fields``), so the demo must find exactly those people, in original pixels, on
every image, and draw them with ``tfsp.viz.draw_poses``.
"""

import re

import cv2
import numpy as np
import pytest

from edge_demo import app
from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.data.pose_fields import render_heatmaps, render_pafs
from tfsp.runtime.preprocess import ResizeMode, fit_letterbox
from tfsp.viz import draw_poses

INPUT_SIZE, MAP_SIZE = 256, 32
STRIDE = INPUT_SIZE // MAP_SIZE
CLASS_NAMES, CATEGORY_IDS = ("person", "circle"), (1, 2)
TOLERANCE_PX = 1.0
PEOPLE_LINE = re.compile(r"^\[\d+\] \S+: .* total \d+\.\d\d ms  (\d+) people$", re.M)
# A stick figure in map cells (j, i), COCO keypoint order, joints on cell centres; it fits the
# letterboxed content of the 240 x 320 test images (256 x 192 input px = 32 x 24 cells).
FIGURE_CELLS = np.array([
    (8, 2), (9, 1), (7, 1), (10, 2), (6, 2),  # nose, eyes, ears
    (11, 5), (5, 5), (12, 9), (4, 9), (13, 13), (3, 13),  # shoulders, elbows, wrists
    (10, 13), (6, 13), (10, 17), (6, 17), (10, 22), (6, 22),  # hips, knees, ankles
], np.float32)
OFFSETS_CELLS = ((1, 0), (17, 0))
EARS = (3, 4)


def _people_input_px() -> np.ndarray:
    """(2, 17, 3) ``[x, y, v]`` in input pixels; the second person has no ears."""
    people = np.stack([np.concatenate([(FIGURE_CELLS + offset + 0.5) * STRIDE, np.full((NUM_KEYPOINTS, 1), 2.0)], 1)
                       for offset in OFFSETS_CELLS]).astype(np.float32)
    people[1, EARS] = 0
    return people


@pytest.fixture(scope="module")
def pose_tflite(tmp_path_factory):
    """fp32 ``.tflite`` (+ ``.json`` pose spec) of a graph returning the fields of ``_people_input_px``."""
    import keras

    from export.convert import export_model
    from tfsp.spec import QuantMode
    from tfsp.spec_builders import pose_spec

    class ConstantField(keras.layers.Layer):
        """(B, S, S, 3) images -> (B, F, F, C) copies of a fixed field (the image only sets the batch)."""

        def __init__(self, field, **kwargs):
            super().__init__(**kwargs)
            self.field = np.asarray(field, np.float32)[None]

        def call(self, images):
            side = self.field.shape[1]
            return images[:, :side, :side, :1] * 0.0 + keras.ops.convert_to_tensor(self.field)

    people = _people_input_px()
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    model = keras.Model(inputs, {"heatmaps": ConstantField(render_heatmaps(people, MAP_SIZE, STRIDE))(inputs),
                                 "pafs": ConstantField(render_pafs(people, MAP_SIZE, STRIDE))(inputs)})
    spec = pose_spec(INPUT_SIZE, MAP_SIZE, CLASS_NAMES, CATEGORY_IDS)
    return export_model(model, spec, QuantMode.FP32, tmp_path_factory.mktemp("pose_exports"), "pose_fp32").tflite_path


def _read_rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def test_pose_demo_finds_and_draws_the_known_people(pose_tflite, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert app.main(["--model", str(pose_tflite), "--source", str(image_dir), "--out", str(out),
                     "--score", "0"]) == app.EXIT_OK
    stdout = capsys.readouterr().out
    assert "POSE" in stdout and PEOPLE_LINE.findall(stdout) == ["2", "2", "2"]
    model = app.load_model(pose_tflite, score_threshold=0.0)
    people = _people_input_px()
    for path in sorted(image_dir.iterdir()):
        image = _read_rgb(path)
        poses, _ = model.pipeline(image)
        found = poses.keypoints[np.argsort(poses.keypoints[:, 0, 0])]
        letterbox = fit_letterbox(*image.shape[:2], INPUT_SIZE, ResizeMode.LETTERBOX)
        present = people[..., 2] > 0
        np.testing.assert_array_equal(found[..., 2] > 0, present)
        np.testing.assert_allclose(found[..., :2][present], letterbox.to_original_xy(people[..., :2])[present],
                                   atol=TOLERANCE_PX)
        output = _read_rgb(out / path.name)
        expected = draw_poses(image, poses)
        np.testing.assert_array_equal(output[:len(expected)], expected)
        assert np.any(output[:len(image)] != image)  # the skeletons are drawn


def test_pose_score_filters_people_by_person_score(pose_tflite, image_dir, tmp_path, capsys):
    image = _read_rgb(image_dir / "000.png")
    scores = app.load_model(pose_tflite, score_threshold=None).pipeline(image)[0].scores
    assert len(scores) == 2 and np.all(scores > 0)
    lowest = float(scores.min())
    kept = app.load_model(pose_tflite, score_threshold=lowest).pipeline(image)[0]
    assert len(kept) == 1 and kept.scores[0] == scores.max()  # strictly above the threshold
    out = tmp_path / "out"
    assert app.main(["--model", str(pose_tflite), "--source", str(image_dir / "000.png"), "--out", str(out),
                     "--score", "1"]) == app.EXIT_OK
    assert PEOPLE_LINE.findall(capsys.readouterr().out) == ["0"]
    np.testing.assert_array_equal(_read_rgb(out / "000.png")[:len(image)], image)

