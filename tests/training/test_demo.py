"""The `make demo` chain end to end on a tiny data set and a tiny SSD config.

The demo runs as a subprocess, as `make demo` runs it, and must leave the data set untouched.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfsp.models.attributes import AttributeConfig
from tfsp.models.dense import DenseConfig
from tfsp.models.openpose import OpenPoseConfig
from tfsp.models.ssd import SsdConfig
from tfsp.postprocess.anchors import SsdAnchorConfig
from training.config import DataConfig, EvalConfig, ModelKind, ScheduleConfig, TrainConfig, save_config

REPO = Path(__file__).resolve().parents[2]


def _demo(argv: list[str]) -> str:
    result = subprocess.run([sys.executable, "-m", "training.demo", *argv], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout

TINY_SIZE = 64
TINY_SSD = SsdConfig(
    input_size=TINY_SIZE, num_classes=4, alpha=0.35,
    anchors=SsdAnchorConfig(image_size=TINY_SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.15,
                            max_scale=0.9, aspect_ratios=((2.0,), (2.0,), (2.0,))))
TINY_POSE = OpenPoseConfig(input_size=TINY_SIZE, channels=8, initial_blocks=1, num_refinement_stages=1,
                           refinement_blocks=1, deploy_flip_average=True)  # as the shipped config


@pytest.mark.slow
def test_demo_chain_writes_every_artefact_and_reuses_a_finished_run(synth_data, tmp_path):
    before = sorted((p.relative_to(synth_data), p.stat().st_mtime_ns) for p in synth_data.rglob("*"))
    config = tmp_path / "tiny.yaml"
    save_config(TrainConfig(ssd=TINY_SSD, data=DataConfig(root=str(synth_data), batch_size=4),
                            schedule=ScheduleConfig(epochs=2, steps_per_epoch=2, warmup_epochs=1.0),
                            eval=EvalConfig(every_epochs=2), run_eagerly=True), config)
    dirs = {name: tmp_path / name for name in ("runs", "exports", "outputs")}
    argv = ["--data", str(synth_data), "--config", str(config)] + [
        arg for name, path in dirs.items() for arg in (f"--{name}", str(path))]
    out = _demo(argv)
    assert "$ python -m training --config" in out and "$ python -m export --run" in out

    summary = json.loads((dirs["outputs"] / "ssd_summary.json").read_text())
    assert [row["model"] for row in summary["rows"]] == ["keras", "fp32", "int8"]
    for row in summary["rows"]:
        assert 0.0 <= row["AP"] <= 1.0
    fp32, int8 = summary["rows"][1], summary["rows"][2]
    assert fp32["inference_ms"] > 0 and int8["inference_ratio"] > 0
    assert 0 < summary["int8_over_fp32_size"] < 1
    assert (dirs["outputs"] / "synth_contact_sheet.png").stat().st_size > 0
    assert any((dirs["outputs"] / "ssd_edge_demo").iterdir())
    for name in ("ssd_fp32.tflite", "ssd_fp32.json", "ssd_int8.tflite", "ssd_int8.json"):
        assert (dirs["exports"] / name).stat().st_size > 0
    trained_at = (dirs["runs"] / "ssd" / "model.keras").stat().st_mtime_ns

    assert "reusing the finished run" in _demo(argv)  # a second demo does not train again
    after = sorted((p.relative_to(synth_data), p.stat().st_mtime_ns) for p in synth_data.rglob("*"))
    assert before == after, set(after) ^ set(before)
    assert (dirs["runs"] / "ssd" / "model.keras").stat().st_mtime_ns == trained_at


@pytest.mark.slow
def test_pose_demo_chain_reports_keypoint_ap(synth_data, tmp_path):
    config = tmp_path / "tiny_pose.yaml"
    save_config(TrainConfig(model=ModelKind.OPENPOSE, openpose=TINY_POSE,
                            data=DataConfig(root=str(synth_data), batch_size=4),
                            schedule=ScheduleConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0.5),
                            eval=EvalConfig(every_epochs=1), run_eagerly=True), config)
    dirs = {name: tmp_path / name for name in ("runs", "exports", "outputs")}
    out = _demo(["--task", "pose", "--data", str(synth_data), "--config", str(config)] + [
        arg for name, path in dirs.items() for arg in (f"--{name}", str(path))])
    assert "kp AP" in out
    summary = json.loads((dirs["outputs"] / "pose_summary.json").read_text())
    assert summary["task"] == "pose" and summary["metric"] == "keypoints"
    assert [row["model"] for row in summary["rows"]] == ["keras", "fp32", "int8"]
    assert all(0.0 <= row["AP"] <= 1.0 for row in summary["rows"])
    assert 0 < summary["int8_over_fp32_size"] < 1
    assert any((dirs["outputs"] / "pose_edge_demo").iterdir())
    spec = json.loads((dirs["exports"] / "pose_int8.json").read_text())
    assert spec["task"] == "POSE" and [t["name"] for t in spec["outputs"]] == ["heatmaps", "pafs"]


TINY_DENSE = DenseConfig(input_size=TINY_SIZE, decoder_channels=16)
TINY_ATTRIBUTES = AttributeConfig(image_size=TINY_SIZE, crop_size=32, canvas_px=32.0, widths=(8, 16, 16))


def _tiny(model: ModelKind, synth_data: Path, path: Path, **sections) -> Path:
    save_config(TrainConfig(model=model, data=DataConfig(root=str(synth_data), batch_size=4, max_instances=10),
                            schedule=ScheduleConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0.5),
                            eval=EvalConfig(every_epochs=1), run_eagerly=True, **sections), path)
    return path


@pytest.mark.slow
def test_dense_demo_chain_reports_miou_and_depth(synth_data, tmp_path):
    config = _tiny(ModelKind.DENSE, synth_data, tmp_path / "tiny_dense.yaml", dense=TINY_DENSE)
    dirs = {name: tmp_path / name for name in ("runs", "exports", "outputs")}
    out = _demo(["--task", "dense", "--data", str(synth_data), "--config", str(config)] + [
        arg for name, path in dirs.items() for arg in (f"--{name}", str(path))])
    assert "dense mIoU" in out and "delta1" in out
    summary = json.loads((dirs["outputs"] / "dense_summary.json").read_text())
    assert summary["metric"] == "dense" and summary["headline"] == ["mIoU", "delta1", "pixel_acc"]
    assert [row["model"] for row in summary["rows"]] == ["keras", "fp32", "int8"]
    assert all(0.0 <= row["mIoU"] <= 1.0 and 0.0 <= row["delta1"] <= 1.0 for row in summary["rows"])
    assert set(summary["int8_minus_float_points"]) == {"mIoU", "delta1", "pixel_acc"}
    assert any((dirs["outputs"] / "dense_edge_demo").iterdir())


@pytest.mark.slow
def test_attribute_demo_chain_builds_its_detector_first(synth_data, tmp_path):
    config = _tiny(ModelKind.ATTRIBUTES, synth_data, tmp_path / "tiny_attributes.yaml", attributes=TINY_ATTRIBUTES)
    detector = _tiny(ModelKind.SSD, synth_data, tmp_path / "tiny_ssd.yaml", ssd=TINY_SSD)
    dirs = {name: tmp_path / name for name in ("runs", "exports", "outputs")}
    out = _demo(["--task", "attributes", "--data", str(synth_data), "--config", str(config),
                 "--detector-config", str(detector)] + [
        arg for name, path in dirs.items() for arg in (f"--{name}", str(path))])
    assert "running the ssd chain first" in out and "--detector" in out and "attr mAP" in out
    assert (dirs["exports"] / "ssd_int8.tflite").is_file()
    summary = json.loads((dirs["outputs"] / "attributes_summary.json").read_text())
    assert summary["metric"] == "attributes" and summary["headline"] == ["mAP", "mean_F1"]
    assert all(0.0 <= row["mAP"] <= 1.0 for row in summary["rows"])
    assert any((dirs["outputs"] / "attributes_edge_demo").iterdir())
    spec = json.loads((dirs["exports"] / "attributes_int8.json").read_text())
    assert spec["task"] == "ATTRIBUTES" and len(spec["attributes"]["thresholds"]) == 13


def test_maskrcnn_chain_is_known_and_sizes_count_every_graph(tmp_path):
    from tfsp.runtime.graph_chain import head_path
    from training.demo import CHAINS, DemoTask, model_size_bytes

    assert CHAINS[DemoTask("maskrcnn")].config == "mask_rcnn_synth.yaml"
    assert DemoTask.MASKRCNN.value in (REPO / "Makefile").read_text()
    main = tmp_path / "maskrcnn_int8.tflite"
    main.write_bytes(b"x" * 100)
    assert model_size_bytes(main) == 100  # a one-graph model
    for size, head in ((10, "box_head"), (20, "mask_head"), (30, "keypoint_head")):
        head_path(main, head).write_bytes(b"x" * size)
    assert model_size_bytes(main) == 160


def test_summary_rows_of_a_maskrcnn_chain_show_the_headline_and_steps(tmp_path):
    from training.demo import _format_rows, _summary_rows

    headline = ["mask_AP", "box_AP", "kp_AP"]
    evals, exports = {}, {}
    for label, value in (("keras", 0.5), ("fp32", 0.5), ("int8", 0.25)):
        evals[label] = tmp_path / f"{label}.json"
        evals[label].write_text(json.dumps({"metric": "instances", "headline": headline,
                                            "instances": {"mask_AP": value, "box_AP": value, "kp_AP": value}}))
    for label in ("fp32", "int8"):
        exports[label] = tmp_path / f"maskrcnn_{label}.tflite"
        exports[label].write_bytes(b"x" * 2**20)
        (tmp_path / f"maskrcnn_{label}.box_head.tflite").write_bytes(b"x" * 2**20)
    latency = {"models": [{"model": str(exports["int8"]), "inference_ms": {"median": 3.0}, "inference_ratio": 0.5,
                           "postprocess_ms": {"median": 1.0}, "steps_ms": {"stage1": 2.0, "box_head": 1.0}}]}
    metric, rows = _summary_rows(evals, latency, exports)
    assert metric == "instances" and rows[2]["size_mb"] == 2.0 and rows[2]["steps_ms"]["stage1"] == 2.0
    table = _format_rows(rows, metric, headline)
    assert table.splitlines()[0].split()[:4] == ["model", "mask_AP", "box_AP", "kp_AP"]
    assert "0.250" in table.splitlines()[3]
