"""Tests for ``python -m edge_demo`` on a tiny exported SSD (in-process via ``main`` and as a subprocess)."""

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_demo import app
from edge_demo.sources import FrameReader, SourceError, SourceKind, parse_source
from tfsp.spec import Task
from tfsp.viz import draw_detections

REPO = Path(__file__).resolve().parents[2]
SCORE = 0.1
"""Low display threshold: the untrained tiny model scores about 1 / (C + 1) = 0.25 everywhere."""
"""Rows at the top of an annotated image that the timing overlay may cover."""
FRAME_LINE = re.compile(r"^\[(\d+)\] (\S+): preprocess (\d+\.\d\d) ms  inference (\d+\.\d\d) ms  "
                        r"postprocess (\d+\.\d\d) ms  total (\d+\.\d\d) ms  (\d+) detections$", re.M)
SUMMARY_LINE = re.compile(r"^  (\w+) +mean +(\d+\.\d\d) ms  median +(\d+\.\d\d) ms$", re.M)
VIDEO_FRAMES, VIDEO_FPS = 5, 10.0
EDGE_DRAWN_FRACTION = 0.5
"""Share of a box's bottom-edge pixels that must differ from the input (labels of other boxes may cover some)."""
FOOTER_MIN_CONTRAST = 100.0
"""Mean absolute difference (0..255) an overlay makes in its region, far above mp4 compression noise."""


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def _expected(model_path: Path, image: np.ndarray, score: float = SCORE):
    """Detections of the in-process pipeline and the drawing the demo must have written."""
    model = app.load_model(model_path, threads=1, score_threshold=score)
    detections, _ = model.pipeline(image)
    return detections, draw_detections(image, detections, model.spec.class_names)


def _frame_lines(stdout: str) -> list[tuple]:
    return [(int(m[0]), m[1], *map(float, m[2:6]), int(m[6])) for m in FRAME_LINE.findall(stdout)]


def _check_annotated(output: np.ndarray, image: np.ndarray, model_path: Path) -> None:
    """Above the timing footer the output is exactly the pipeline's boxes drawn on the input."""
    detections, expected = _expected(model_path, image)
    assert len(detections) > 0
    assert output.shape[1:] == image.shape[1:] and output.shape[0] > image.shape[0]  # + the timing footer
    np.testing.assert_array_equal(output[:len(expected)], expected)
    height, width = image.shape[:2]
    checked = 0
    for x0, _, x1, y1 in detections.boxes_xyxy:  # the bottom edge of every box is drawn
        row, c0, c1 = min(math.ceil(y1), height) - 1, max(math.floor(x0), 0), min(math.ceil(x1), width)
        if c1 > c0:
            assert np.any(output[row, c0:c1] != image[row, c0:c1], axis=-1).mean() > EDGE_DRAWN_FRACTION
            checked += 1
    assert checked > 0, "no box edge to check"


def test_directory_in_process(tiny_exports, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = app.main(["--model", str(tiny_exports.int8), "--source", str(image_dir), "--out", str(out),
                     "--threads", "1", "--score", str(SCORE)])
    stdout = capsys.readouterr().out
    assert code == app.EXIT_OK
    inputs = sorted(image_dir.iterdir())
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in inputs]
    for path in inputs:
        _check_annotated(_read_rgb(out / path.name), _read_rgb(path), tiny_exports.int8)
    frames = _frame_lines(stdout)
    assert [(f[0], f[1]) for f in frames] == [(k, p.name) for k, p in enumerate(inputs)]
    for _, _, pre, inference, post, total, count in frames:
        assert min(pre, inference, post) >= 0 and total == pytest.approx(pre + inference + post, abs=0.02)
        assert 0 < count <= 3
    summary = {name: (float(mean), float(median)) for name, mean, median in SUMMARY_LINE.findall(stdout)}
    assert list(summary) == [*app.STAGE_NAMES, "total"]
    for column, name in zip((2, 3, 4, 5), summary):
        values = [f[column] for f in frames]
        assert summary[name][1] == pytest.approx(statistics.median(values), abs=0.011)
        assert summary[name][0] == pytest.approx(statistics.fmean(values), abs=0.011)
    assert "summary: 3 frames" in stdout and "skipped" not in stdout


def test_corrupt_image_in_directory_is_skipped_and_counted(tiny_exports, image_dir, tmp_path, capsys):
    (image_dir / "000_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (image_dir / "notes.txt").write_text("not an image, not counted")
    out = tmp_path / "out"
    code = app.main(["--model", str(tiny_exports.int8), "--source", str(image_dir), "--out", str(out),
                     "--score", str(SCORE)])
    stdout = capsys.readouterr().out
    assert code == app.EXIT_OK
    assert "[1] 000_broken.jpg: skipped (cannot decode image)" in stdout
    assert "summary: 3 frames, 1 skipped (cannot decode: 000_broken.jpg)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png"]
    assert len(_frame_lines(stdout)) == 3


def test_subprocess_single_image_matches_in_process(tiny_exports, image_dir, tmp_path):
    image = image_dir / "002.png"
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edge_demo", "--model", str(tiny_exports.int8), "--source",
                             str(image), "--out", str(out), "--threads", "1", "--score", str(SCORE)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [(f[0], f[1]) for f in _frame_lines(result.stdout)] == [(0, "002.png")]
    assert "INT8" in result.stdout and SUMMARY_LINE.search(result.stdout)
    _check_annotated(_read_rgb(out / "002.png"), _read_rgb(image), tiny_exports.int8)


def test_score_threshold_one_draws_no_boxes(tiny_exports, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert app.main(["--model", str(tiny_exports.fp32), "--source", str(image_dir / "000.png"), "--out", str(out),
                     "--score", "1"]) == app.EXIT_OK
    assert _frame_lines(capsys.readouterr().out)[0][-1] == 0
    image, output = _read_rgb(image_dir / "000.png"), _read_rgb(out / "000.png")
    np.testing.assert_array_equal(output[:len(image)], image)
    assert np.any(output[len(image):] == 255)  # white FPS / timing text on the black footer


def test_video_round_trip(tiny_exports, scene, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    frames = [scene(k) for k in range(VIDEO_FRAMES)]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), VIDEO_FPS, (width, height))
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()
    out = tmp_path / "out"
    code = app.main(["--model", str(tiny_exports.int8), "--source", str(video), "--out", str(out),
                     "--score", str(SCORE)])
    stdout = capsys.readouterr().out
    assert code == app.EXIT_OK
    assert [f[1] for f in _frame_lines(stdout)] == [f"frame_{k:06d}" for k in range(VIDEO_FRAMES)]
    assert [p.name for p in out.iterdir()] == ["clip.mp4"]
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(VIDEO_FPS)
    annotated = []
    while (read := capture.read())[0]:
        annotated.append(read[1][..., ::-1])
    capture.release()
    assert len(annotated) == VIDEO_FRAMES
    for frame, output in zip(frames, annotated):
        assert output.shape[1:] == frame.shape[1:] and output.shape[0] > frame.shape[0]
        footer = output[len(frame):].astype(float)
        assert footer.max() - footer.mean() > FOOTER_MIN_CONTRAST  # light text on the dark timing footer


def test_max_frames_stops_early(tiny_exports, image_dir, tmp_path, capsys):
    assert app.main(["--model", str(tiny_exports.int8), "--source", str(image_dir), "--out", str(tmp_path / "o"),
                     "--max-frames", "2"]) == app.EXIT_OK
    assert len(_frame_lines(capsys.readouterr().out)) == 2


def test_spec_option_and_missing_spec_message(tiny_exports, tmp_path, image_dir, capsys):
    lone = tmp_path / "lone.tflite"
    shutil.copy(tiny_exports.int8, lone)
    assert app.main(["--model", str(lone), "--source", str(image_dir), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err
    assert f"expected {tmp_path / 'lone.json'}" in error and "python -m export" in error and "--spec" in error
    assert app.main(["--model", str(lone), "--spec", str(tiny_exports.int8.with_suffix(".json")), "--source",
                     str(image_dir), "--out", str(tmp_path / "o")]) == app.EXIT_OK


def _write_spec(tmp_path: Path, model: Path, **changes) -> Path:
    data = json.loads(model.with_suffix(".json").read_text())
    data.update(changes)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing_model", "model not found"),
    ("keras_model", "runs .tflite models"),
    ("missing_source", "source not found"),
    ("empty_dir", "holds no images"),
    ("unknown_suffix", "unknown file type '.xyz'"),
    ("corrupt_image", "cannot decode image"),
    ("corrupt_video", "cannot open video"),
    ("unsupported_task", "no pipeline for task DETECTION; supported: POSE, DENSE, ATTRIBUTES, INSTANCE_SEGMENTATION"),
    ("rcnn_spec_on_one_graph", "ModelSpec.rcnn is required for Task.INSTANCE_SEGMENTATION"),
    ("wrong_input_size", "input size"),
])
def test_clear_errors(tiny_exports, tmp_path, image_dir, capsys, monkeypatch, case, expected):
    model, spec, source = tiny_exports.int8, None, str(image_dir)
    if case == "missing_model":
        model = tmp_path / "nope.tflite"
    elif case == "keras_model":
        model = tmp_path / "model.keras"
        model.write_bytes(b"zip")
    elif case == "missing_source":
        source = str(tmp_path / "nowhere")
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        source = str(tmp_path / "empty")
    elif case in ("unknown_suffix", "corrupt_image", "corrupt_video"):
        path = tmp_path / {"unknown_suffix": "a.xyz", "corrupt_image": "a.png", "corrupt_video": "a.mp4"}[case]
        path.write_bytes(b"garbage")
        source = str(path)
    elif case == "unsupported_task":
        monkeypatch.delitem(app.TASKS, Task.DETECTION)
        spec = _write_spec(tmp_path, model)
    elif case == "rcnn_spec_on_one_graph":
        spec = _write_spec(tmp_path, model, task="INSTANCE_SEGMENTATION")
    elif case == "wrong_input_size":
        spec = _write_spec(tmp_path, model, input_size=32)
    argv = ["--model", str(model), "--source", source, "--out", str(tmp_path / "out")]
    assert app.main(argv + (["--spec", str(spec)] if spec else [])) == app.EXIT_ERROR
    error = capsys.readouterr().err
    assert error.startswith("edge_demo: error: ") and expected in error
    named = {"missing_model": model, "keras_model": model, "unsupported_task": spec, "wrong_input_size": spec,
             "rcnn_spec_on_one_graph": spec}
    assert str(named.get(case, source)) in error  # the message names the offending file


@pytest.mark.parametrize("argv, hint", [  # the parser's own cases are in tests/test_cli.py
    (["--modle", "m.tflite", "--source", "x"], "--modle (did you mean --model?)"),
    (["--model", "m.tflite", "--sorce", "x"], "--sorce (did you mean --source?)"),
])
def test_unknown_options_get_suggestions(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(argv)
    assert exit_info.value.code == 2
    assert hint in capsys.readouterr().err


def test_show_without_gui_falls_back_to_files(tiny_exports, image_dir, tmp_path, monkeypatch, capsys):
    if app._gui_available():
        pytest.skip("this OpenCV build has a GUI")
    monkeypatch.chdir(tmp_path)
    assert app.main(["--model", str(tiny_exports.int8), "--source", str(image_dir), "--show"]) == app.EXIT_OK
    assert "no GUI" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / app.DEFAULT_OUT_DIR).iterdir()) == ["000.png", "001.png", "002.png"]


def test_output_must_not_overwrite_input(tiny_exports, image_dir, capsys):
    assert app.main(["--model", str(tiny_exports.int8), "--source", str(image_dir), "--out", str(image_dir)]) == 1
    assert "would overwrite the input" in capsys.readouterr().err


def test_parse_source_kinds(image_dir, tmp_path):
    assert parse_source("0").kind is SourceKind.CAMERA and parse_source("3").camera_index == 3
    assert parse_source(str(image_dir)).paths == tuple(sorted(image_dir.iterdir()))
    assert parse_source(str(image_dir / "001.png")).kind is SourceKind.IMAGE
    (tmp_path / "v.MP4").write_bytes(b"")
    assert parse_source(str(tmp_path / "v.MP4")).kind is SourceKind.VIDEO
    with pytest.raises(SourceError, match="cannot open camera 97"):
        FrameReader(parse_source("97"))


def test_every_task_entry_is_complete():
    assert Task.DETECTION in app.TASKS and Task.POSE in app.TASKS
    for handlers in app.TASKS.values():
        assert callable(handlers.make_pipeline) and callable(handlers.draw) and callable(handlers.describe)
