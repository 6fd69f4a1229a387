"""Tests for training.evaluate: oracle outputs score AP 1 (boxes) or high keypoint AP (pose fields), the CLI
matches the in-memory model."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from tfsp.data.coco import load_split
from tfsp.data.pose_fields import render_heatmaps, render_pafs
from tfsp.eval import BOX_STAT_NAMES, KEYPOINT_STAT_NAMES, IouType
from tfsp.models.ssd import SsdConfig, build_ssd
from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors
from tfsp.postprocess.boxes import cxcywh_to_xyxy, encode_cxcywh, iou_xyxy
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.preprocess import fit_letterbox
from tfsp.spec import ModelSpec, QuantMode
from tfsp.spec_builders import pose_spec
from training.config import TrainConfig
from training.eval_tasks import MISSING_STAT, detection_per_category
from training.evaluate import evaluate_runner, find_spec, main
from training.recipes import build_run_spec

TINY_SIZE = 64
TINY_ANCHORS = SsdAnchorConfig(image_size=TINY_SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.15,
                               max_scale=0.9, aspect_ratios=((2.0,), (2.0,), (2.0,)))
TINY_SSD = SsdConfig(input_size=TINY_SIZE, num_classes=4, anchors=TINY_ANCHORS, alpha=0.35)
ORACLE_LOGIT = 20.0  # softmax probability ~1 for the true class


class OracleRunner:
    """Returns, image by image in split order, the raw SSD outputs that decode to the ground truth.

    Each non-crowd box is encoded exactly (`encode_cxcywh`) on its best still-free anchor, whose
    class logit (of class `class_id + class_shift`, modulo C) is set high; every other anchor is
    confidently background.
    """

    output_names = ("box_deltas", "class_logits")

    def __init__(self, dataset, spec, class_shift=0):
        self.input_size = spec.input_size
        anchors = generate_ssd_anchors(spec.anchors)
        self._outputs = []
        for record in dataset.records:
            letterbox = fit_letterbox(record.height, record.width, spec.input_size, spec.resize_mode)
            keep = ~record.is_crowd
            boxes = letterbox.to_input_xyxy(record.boxes_xyxy[keep]) / spec.input_size
            deltas = np.zeros((len(anchors), 4), np.float32)
            logits = np.zeros((len(anchors), spec.num_classes + 1), np.float32)
            logits[:, 0] = ORACLE_LOGIT
            iou = iou_xyxy(boxes.astype(np.float32), cxcywh_to_xyxy(anchors).astype(np.float32))
            for box, class_id, row in zip(boxes, record.class_ids[keep], iou):
                anchor = int(np.argmax(np.where(logits[:, 0] > 0, row, -1.0)))
                deltas[anchor] = encode_cxcywh(box[None], anchors[anchor:anchor + 1])[0]
                logits[anchor] = 0.0
                logits[anchor, (class_id + class_shift) % spec.num_classes + 1] = ORACLE_LOGIT
            self._outputs.append({"box_deltas": deltas[None], "class_logits": logits[None]})
        self._outputs.reverse()

    def __call__(self, images):
        assert images.shape == (1, self.input_size, self.input_size, 3)
        return self._outputs.pop()


@pytest.fixture(scope="module")
def tiny_run(synth_data, tmp_path_factory):
    """An untrained tiny SSD saved as a run directory (model.keras + spec.json)."""
    config = dataclasses.replace(TrainConfig(), ssd=TINY_SSD)
    val = load_split(synth_data, "val")
    spec = build_run_spec(config, load_split(synth_data, "train"))
    keras.utils.set_random_seed(0)
    model = build_ssd(TINY_SSD)
    run_dir = tmp_path_factory.mktemp("run")
    model.save(run_dir / "model.keras")
    spec.to_json(run_dir / "spec.json")
    return run_dir, model, spec, val


def test_oracle_outputs_score_perfect_ap(tiny_run):
    _, _, spec, val = tiny_run
    num_boxes = sum(int((~r.is_crowd).sum()) for r in val.records)
    assert num_boxes > 0
    result = evaluate_runner(OracleRunner(val, spec), spec, val)
    assert tuple(result.stats) == BOX_STAT_NAMES
    assert result.num_images == len(val) and result.num_detections == num_boxes
    assert result.stats["AP"] == pytest.approx(1.0, abs=1e-6)
    assert result.stats["AP50"] == pytest.approx(1.0, abs=1e-6)
    # Half the images: the other half's ground truth is not counted as missed.
    half = evaluate_runner(OracleRunner(val, spec), spec, val, max_images=len(val) // 2)
    assert half.num_images == len(val) // 2 and half.stats["AP"] == pytest.approx(1.0, abs=1e-6)
    # Negative control: exact boxes with the wrong class match nothing.
    wrong = evaluate_runner(OracleRunner(val, spec, class_shift=1), spec, val)
    assert wrong.num_detections == num_boxes and wrong.stats["AP50"] == 0.0


def test_cli_on_keras_model_matches_in_memory_model(tiny_run, synth_data, capsys):
    run_dir, model, spec, val = tiny_run
    out = run_dir / "stats.json"
    assert main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "COCO bbox:" in printed
    for name in BOX_STAT_NAMES:
        assert f"\n  {name} " in printed
    saved = json.loads(out.read_text())
    expected = evaluate_runner(KerasRunner(model), spec, val)
    assert saved["bbox"] == pytest.approx(dict(expected.stats), abs=1e-9)
    assert saved["num_detections"] == expected.num_detections > 0
    assert saved["num_images"] == len(val) and saved["split"] == "val"


def test_find_spec_locations(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "spec.json").write_text("{}")
    (tmp_path / "ssd_int8.json").write_text("{}")
    assert find_spec(tmp_path / "model.keras") == tmp_path / "spec.json"
    assert find_spec(tmp_path / "checkpoints" / "last.keras") == tmp_path / "spec.json"
    assert find_spec(tmp_path / "ssd_int8.tflite") == tmp_path / "ssd_int8.json"
    with pytest.raises(FileNotFoundError, match="pass --spec"):
        find_spec(tmp_path / "checkpoints" / "nested" / "x.tflite")


def test_per_class_stats_of_the_oracle_are_perfect_and_of_a_wrong_class_zero(tiny_run):
    _, _, spec, val = tiny_run
    per_class = detection_per_category(OracleRunner(val, spec), spec, val, val.records)
    names = np.asarray(val.class_names)
    present = {name for record in val.records for name in names[record.class_ids[~record.is_crowd]]}
    assert list(per_class) == list(val.class_names) and len(present) > 1
    for name, stats in per_class.items():
        assert tuple(stats) == BOX_STAT_NAMES
        assert stats["AP"] == (pytest.approx(1.0, abs=1e-6) if name in present else MISSING_STAT)
    wrong = detection_per_category(OracleRunner(val, spec, class_shift=1), spec, val, val.records)
    assert all(wrong[name]["AP50"] == 0.0 for name in present)


def test_cli_per_class_table_and_json_average_to_the_overall_ap(tiny_run, synth_data, capsys):
    run_dir, _, _, val = tiny_run
    out = run_dir / "per_class.json"
    assert main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data), "--per-class",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per class:" in printed and all(f"\n  {name} " in printed for name in val.class_names)
    saved = json.loads(out.read_text())
    assert list(saved["per_class"]) == list(val.class_names)
    measured = [stats["AP"] for stats in saved["per_class"].values() if stats["AP"] != MISSING_STAT]
    assert np.mean(measured) == pytest.approx(saved["bbox"]["AP"], abs=1e-9)


def test_cli_errors_are_clear(tmp_path, synth_data, capsys):
    assert main(["--model", str(tmp_path / "none.keras"), "--data", str(synth_data)]) == 1
    assert "no ModelSpec" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "m.keras", "--max-image", "3"])
    assert "did you mean --max-images" in capsys.readouterr().err


# --- pose: keypoint AP through PosePipeline ---------------------------------------------------

ORACLE_POSE_SIZE, ORACLE_POSE_MAP = 384, 96
"""Oracle fields at 4 input px per cell; a 96 px synthetic image is upscaled 4x, so a cell is 1 original px."""
ORACLE_MIN_AP50, ORACLE_MIN_AP = 0.95, 0.85
"""Not 1: the greedy parser mis-assigns a few joints where synthetic people overlap."""
SHIFT_PX = 2.0
"""Negative control: every oracle keypoint moved this far right (original pixels)."""
SHIFTED_MAX_AP = 0.5
TINY_POSE_SIZE, TINY_POSE_MAP = 64, 8


class OraclePoseRunner:
    """Returns, image by image in split order, the fields `tfsp.data.pose_fields` renders for the ground truth."""

    output_names = ("heatmaps", "pafs")

    def __init__(self, dataset, spec, shift_px=0.0):
        self.input_size = spec.input_size
        stride = spec.input_size // spec.outputs[0].shape[1]
        self._outputs = []
        for record in dataset.records:
            letterbox = fit_letterbox(record.height, record.width, spec.input_size, spec.resize_mode)
            people = record.keypoints[(record.class_ids == 0) & ~record.is_crowd]
            xy = letterbox.to_input_xy(people[..., :2] + np.array([shift_px, 0.0], np.float32))
            keypoints = np.concatenate([xy, people[..., 2:]], axis=-1)
            self._outputs.append({"heatmaps": render_heatmaps(keypoints, ORACLE_POSE_MAP, stride)[None],
                                  "pafs": render_pafs(keypoints, ORACLE_POSE_MAP, stride)[None]})
        self._outputs.reverse()

    def __call__(self, images):
        assert images.shape == (1, self.input_size, self.input_size, 3)
        return self._outputs.pop()


@pytest.fixture(scope="module")
def synth_val(synth_data):
    return load_split(synth_data, "val")


def test_pose_oracle_fields_score_high_keypoint_ap(synth_data):
    train = load_split(synth_data, "train")  # more people (17) than the 4 val images hold
    assert train.class_names[0] == "person"
    spec = pose_spec(ORACLE_POSE_SIZE, ORACLE_POSE_MAP, train.class_names, train.category_ids)
    result = evaluate_runner(OraclePoseRunner(train, spec), spec, train)
    assert result.metric == IouType.KEYPOINTS.value and tuple(result.stats) == KEYPOINT_STAT_NAMES
    num_people = sum(int(((r.class_ids == 0) & ~r.is_crowd).sum()) for r in train.records)
    assert result.num_images == len(train) and result.num_detections == num_people > 10
    assert result.stats["AP50"] >= ORACLE_MIN_AP50 and result.stats["AP"] >= ORACLE_MIN_AP, result.stats
    assert "keypoints" in result.to_dict() and "OKS 0.50:0.95" in result.format_table()
    shifted = evaluate_runner(OraclePoseRunner(train, spec, SHIFT_PX), spec, train)
    assert shifted.stats["AP"] <= SHIFTED_MAX_AP, shifted.stats


@pytest.fixture(scope="module")
def tiny_pose_run(synth_val, tmp_path_factory, tiny_pose_model):
    """An untrained tiny pose graph (outputs heatmaps (8, 8, 18) and pafs (8, 8, 36)) saved as a run."""
    model = tiny_pose_model(TINY_POSE_SIZE, TINY_POSE_MAP, 8)
    spec = pose_spec(TINY_POSE_SIZE, TINY_POSE_MAP, synth_val.class_names, synth_val.category_ids)
    run_dir = tmp_path_factory.mktemp("pose_run")
    model.save(run_dir / "model.keras")
    spec.to_json(run_dir / "spec.json")
    return run_dir, model, spec


def test_cli_on_pose_model_prints_keypoint_ap(tiny_pose_run, synth_data, synth_val, capsys):
    run_dir, model, spec = tiny_pose_run
    out = run_dir / "pose_stats.json"
    assert main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "COCO keypoints:" in printed and " poses" in printed
    for name in KEYPOINT_STAT_NAMES:
        assert f"\n  {name} " in printed
    saved = json.loads(out.read_text())
    expected = evaluate_runner(KerasRunner(model), spec, synth_val)
    assert saved["keypoints"] == pytest.approx(dict(expected.stats), abs=1e-9) and "bbox" not in saved
    assert saved["num_detections"] == expected.num_detections > 0 and saved["num_images"] == len(synth_val)


def test_cli_on_pose_tflite(tiny_pose_run, synth_data, synth_val, capsys):
    from export.convert import export_model

    run_dir, model, spec = tiny_pose_run
    exported = export_model(model, spec, QuantMode.FP32, run_dir / "exports", "pose_fp32")
    assert ModelSpec.from_json(exported.spec_path).paf == spec.paf
    out = run_dir / "pose_tflite_stats.json"
    assert main(["--model", str(exported.tflite_path), "--data", str(synth_data), "--out", str(out)]) == 0
    assert "COCO keypoints:" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    expected = evaluate_runner(KerasRunner(model), spec, synth_val)  # fp32: the same poses as Keras
    assert saved["keypoints"] == pytest.approx(dict(expected.stats), abs=1e-6)
    assert saved["num_detections"] == expected.num_detections and saved["spec"] == str(exported.spec_path)


PARITY_MAX_PX = 0.5  # the bound: Keras and TFLite fp32 keypoints after the shared parser


@pytest.mark.parametrize("trained_parser, flip", [(False, False), (True, False), (True, True)],
                         ids=["paper_parser", "trained_parser", "trained_parser_flip_averaged"])
def test_pose_keras_and_tflite_fp32_give_the_same_people(tiny_pose_run, synth_val, trained_parser, flip):
    """Every val image: the same people, every keypoint within 0.5 px, after the shared parser
    (the paper's settings, and those of trained specs: smoothing and filling absent keypoints),
    also for a flip-averaged graph (``tfsp.models.pose_flip``, what trained synthetic specs deploy).

    (int8 is checked on a trained model by its AP, see the README: on this untrained graph's random
    fields near-ties decide the parse, so a per-keypoint int8 comparison would test noise.)
    """
    from export.convert import export_model
    from tfsp.models.pose_flip import flip_averaged
    from tfsp.runtime.pose import PosePipeline
    from tfsp.runtime.preprocess import read_image_rgb
    from tfsp.runtime.tflite_runner import TFLiteRunner

    from training.recipes import TRAINED_POSE_PARSER

    run_dir, model, spec = tiny_pose_run
    if trained_parser:
        spec = dataclasses.replace(spec, paf=TRAINED_POSE_PARSER)
    if flip:
        model = flip_averaged(model)
    exported = export_model(model, spec, QuantMode.FP32, run_dir / f"parity_{trained_parser}_{flip}", "pose_fp32")
    keras_pipeline = PosePipeline(KerasRunner(model), spec)
    tflite_pipeline = PosePipeline(TFLiteRunner(exported.tflite_path), ModelSpec.from_json(exported.spec_path))
    people = incomplete = 0
    for record in synth_val.records:
        image = read_image_rgb(record.path)
        expected, got = keras_pipeline(image), tflite_pipeline(image)
        people += len(expected)
        assert len(got) == len(expected), record.path
        found = expected.keypoints[..., 2] > 0
        np.testing.assert_array_equal(got.keypoints[..., 2] > 0, found)
        assert np.abs(got.keypoints[..., :2] - expected.keypoints[..., :2])[found].max(initial=0.0) <= PARITY_MAX_PX
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
        incomplete += int((~found).any(axis=1).sum())
    assert people > 0
    # The sigmoid maps are positive everywhere, so filling completes every person; the paper's parser does not.
    assert (incomplete == 0) == trained_parser, incomplete


def test_pose_evaluation_errors(synth_val, tiny_dataset, tmp_path):
    spec = pose_spec(TINY_POSE_SIZE, TINY_POSE_MAP, synth_val.class_names, synth_val.category_ids)
    moved = dataclasses.replace(synth_val, instances_json=str(tmp_path / "instances_val.json"))
    with pytest.raises(ValueError, match="pose evaluation needs .*person_keypoints_val.json"):
        evaluate_runner(OraclePoseRunner(synth_val, spec), spec, moved)
    with pytest.raises(ValueError, match="expected a file named instances_SPLIT.json"):
        evaluate_runner(OraclePoseRunner(tiny_dataset, spec), spec, tiny_dataset)
    circle_is_person = dataclasses.replace(spec, class_names=("circle", "person"), category_ids=(1, 2))
    with pytest.raises(ValueError, match="person category id 2 is not the 'person' category"):
        evaluate_runner(OraclePoseRunner(synth_val, spec), circle_is_person, synth_val)
    with pytest.raises(ValueError, match="per-class stats are for detection models; this spec's task is pose"):
        detection_per_category(OraclePoseRunner(synth_val, spec), spec, synth_val, synth_val.records)
