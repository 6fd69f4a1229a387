"""Tests for training.evaluate: oracle outputs score AP 1, the CLI matches the in-memory model."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from tfsp.data.coco import load_split
from tfsp.eval import BOX_STAT_NAMES
from tfsp.models.ssd import SsdConfig, build_ssd
from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors
from tfsp.postprocess.boxes import cxcywh_to_xyxy, encode_cxcywh, iou_xyxy
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.preprocess import fit_letterbox
from training.config import TrainConfig
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


def test_cli_errors_are_clear(tmp_path, synth_data, capsys):
    assert main(["--model", str(tmp_path / "none.keras"), "--data", str(synth_data)]) == 1
    assert "no ModelSpec" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "m.keras", "--max-image", "3"])
    assert "did you mean --max-images" in capsys.readouterr().err
