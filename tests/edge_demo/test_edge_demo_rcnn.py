"""Edge demo and benchmark on a tiny untrained Mask R-CNN chain exported to fp32 and int8 TFLite (four graphs)."""

import json
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge_demo import app, benchmark
from edge_demo.tasks import TASKS
from tfsp.runtime.graph_chain import HEAD_GRAPHS, head_path
from tfsp.runtime.mask_rcnn import GRAPH_STEPS, STEP_NAMES, MaskRcnnResult
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.spec import QuantMode, Task
from tfsp.structures import Detections, InstanceMasks, Poses

SCORE = "0.05"  # the untrained box head scores about 1 / (C + 1): a low threshold keeps detections
FRAME_LINE = re.compile(r"^\[\d+\] (\S+): preprocess [\d.]+ ms  inference [\d.]+ ms  postprocess [\d.]+ ms  "
                        r"total [\d.]+ ms  (\d+) instances?, (\d+) (?:person|people)$", re.M)


@pytest.fixture(scope="module")
def rcnn_exports(tiny_rcnn, tmp_path_factory) -> SimpleNamespace:
    """``fp32`` and ``int8`` main files of the tiny chain (heads and spec beside each)."""
    from export.rcnn import export_chain

    images = [read_image_rgb(record.path) for record in tiny_rcnn.dataset.records]
    calibration = np.stack([preprocess_image(image, tiny_rcnn.spec.input_size)[0] for image in images])
    out = tmp_path_factory.mktemp("rcnn_exports")
    fp32 = export_chain(tiny_rcnn.stage1, tiny_rcnn.heads, tiny_rcnn.spec, QuantMode.FP32, out, "tiny_rcnn_fp32")
    int8 = export_chain(tiny_rcnn.stage1, tiny_rcnn.heads, tiny_rcnn.spec, QuantMode.INT8, out, "tiny_rcnn_int8",
                        calibration)
    return SimpleNamespace(fp32=fp32.tflite_paths["stage1"], int8=int8.tflite_paths["stage1"])


def test_demo_writes_annotated_images_and_stage_timings(rcnn_exports, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert app.main(["--model", str(rcnn_exports.int8), "--source", str(image_dir), "--out", str(out),
                     "--score", SCORE, "--threads", "1"]) == app.EXIT_OK
    stdout = capsys.readouterr().out
    lines = FRAME_LINE.findall(stdout)
    assert [name for name, _, _ in lines] == sorted(p.name for p in image_dir.iterdir())
    assert sum(int(count) for _, count, _ in lines) > 0  # the permissive threshold keeps detections
    assert "summary: 3 frames" in stdout and "inference" in stdout.split("summary:")[1]
    for name, count, _ in lines:
        written = cv2.imread(str(out / name))
        source = cv2.imread(str(image_dir / name))
        assert written.shape[1:] == source.shape[1:] and (int(count) == 0 or np.any(written[:len(source)] != source))


def test_score_threshold_overrides_the_box_head_threshold(rcnn_exports, image_dir):
    image = read_image_rgb(next(image_dir.iterdir()))
    low = app.load_model(rcnn_exports.fp32, score_threshold=0.05).pipeline(image)[0]
    none = app.load_model(rcnn_exports.fp32, score_threshold=0.999).pipeline(image)[0]
    assert len(low.detections) > 0 and len(none.detections) == 0 and len(none.masks) == 0


def test_drawing_puts_masks_boxes_and_skeletons_on_a_copy():
    image = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 10:20, 30:40] = True
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, :, :2], keypoints[0, :, 2] = (8.0, 30.0), 0.5
    result = MaskRcnnResult(Detections.create([[2, 2, 20, 36]], [0.9], [0]),
                            InstanceMasks.create(mask, [0.9], [0]), Poses.create(keypoints, [0.9]), np.array([0]))
    spec = SimpleNamespace(class_names=("person",))
    handlers = TASKS[Task.INSTANCE_SEGMENTATION]
    drawn = handlers.draw(image, result, spec)
    assert np.all(image == 100) and drawn.shape == image.shape
    assert np.any(drawn[18, 38] != 100) and np.all(drawn[35, 50] == 100)  # mask pixels, not the rest
    assert np.any(drawn[30, 8] != 100)  # the joint
    assert handlers.describe(result) == "1 instance, 1 person"


def test_benchmark_reports_per_step_milliseconds_side_by_side(rcnn_exports, image_dir, tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert benchmark.main(["--models", str(rcnn_exports.fp32), str(rcnn_exports.int8), "--source", str(image_dir),
                           "--runs", "2", "--warmup", "1", "--threads", "1", "--score", SCORE,
                           "--json", str(report_path)]) == benchmark.EXIT_OK
    stdout = capsys.readouterr().out
    assert "median ms per step:" in stdout
    header = stdout.split("median ms per step:\n")[1].splitlines()[0].split()
    assert header == ["step", "tiny_rcnn_fp32", "tiny_rcnn_int8", "ratio"]
    report = json.loads(report_path.read_text())
    for model in report["models"]:
        assert list(model["steps_ms"]) == list(STEP_NAMES)
        assert all(model["steps_ms"][step] > 0 for step in ("stage1", "proposals", "box_head"))
        main = rcnn_exports.fp32 if model["quantization"] == "FP32" else rcnn_exports.int8
        files = [main, *(head_path(main, name) for name in HEAD_GRAPHS)]
        assert model["size_bytes"] == sum(path.stat().st_size for path in files)
        graphs = sum(model["steps_ms"][step] for step in GRAPH_STEPS)
        assert graphs == pytest.approx(model["inference_ms"]["median"], rel=0.5)
    fp32, int8 = report["models"]
    assert int8["size_bytes"] < fp32["size_bytes"]


def test_evaluate_cli_runs_the_int8_chain(rcnn_exports, synth_data, tmp_path, capsys):
    from training import evaluate

    out = tmp_path / "stats.json"
    assert evaluate.main(["--model", str(rcnn_exports.int8), "--data", str(synth_data), "--max-images", "2",
                          "--threads", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    payload = json.loads(out.read_text())
    assert payload["spec"] == str(rcnn_exports.int8.with_suffix(".json")) and payload["metric"] == "instances"
    assert payload["headline"] == ["mask_AP", "box_AP", "kp_AP"] and payload["num_detections"] > 0
