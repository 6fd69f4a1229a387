"""Tests for training.pose_parser_sweep (one model, several PAF parser settings)."""

import dataclasses

import numpy as np
import pytest

from tfsp.data.coco import load_split
from tfsp.data.pose_fields import DEFAULT_LIMB_WIDTH_PX, DEFAULT_SIGMA_PX, render_heatmaps, render_pafs
from tfsp.runtime.pose import person_category_id
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.spec_builders import pose_spec
from training import pose_diagnose, pose_parser_sweep

SIZE, MAP = 128, 32  # stride 4: the ground-truth fields parse back into the people
IMAGES = 4


class _TruthRunner:
    """Returns, call by call, the rendered ground-truth maps of the given records (a perfect model)."""

    def __init__(self, spec, dataset, records):
        person = list(dataset.category_ids).index(person_category_id(spec))
        self.maps = []
        for record in records:
            _, letterbox = preprocess_image(read_image_rgb(record.path), SIZE, spec.resize_mode)
            people = record.keypoints[(record.class_ids == person) & ~record.is_crowd]
            people = np.concatenate([letterbox.to_input_xy(people[..., :2]), people[..., 2:]], axis=-1)
            self.maps.append({"heatmaps": render_heatmaps(people, MAP, SIZE / MAP, DEFAULT_SIGMA_PX)[None],
                              "pafs": render_pafs(people, MAP, SIZE / MAP, DEFAULT_LIMB_WIDTH_PX, spec.paf.limbs)[None]})
        self.calls = 0

    def __call__(self, inputs):
        self.calls += 1
        return self.maps[self.calls - 1]


@pytest.fixture(scope="module")
def truth(synth_data):
    train = load_split(synth_data, "train")
    train = dataclasses.replace(train, records=train.records[:IMAGES])
    spec = pose_spec(SIZE, MAP, train.class_names, train.category_ids)
    return spec, train


def test_parse_setting_converts_to_the_field_type():
    assert pose_parser_sweep.parse_setting("smoothing_sigma=0,0.5") == ("smoothing_sigma", (0.0, 0.5))
    assert pose_parser_sweep.parse_setting("fill_missing=false, True") == ("fill_missing", (False, True))
    assert pose_parser_sweep.parse_setting("min_parts=3") == ("min_parts", (3,))
    with pytest.raises(ValueError, match="did you mean smoothing_sigma"):
        pose_parser_sweep.parse_setting("smoothing_sgma=1")
    with pytest.raises(ValueError, match="not a sweepable"):
        pose_parser_sweep.parse_setting("limbs=1")
    with pytest.raises(ValueError, match="'maybe' is not a bool"):
        pose_parser_sweep.parse_setting("fill_missing=maybe")
    with pytest.raises(ValueError, match="'x' is not a int"):
        pose_parser_sweep.parse_setting("min_parts=x")
    with pytest.raises(ValueError, match="FIELD=V1"):
        pose_parser_sweep.parse_setting("min_parts")


def test_sweep_runs_the_model_once_and_scores_every_combination(truth):
    spec, train = truth
    runner = _TruthRunner(spec, train, train.records)
    settings = [("min_parts", (4, 17)), ("fill_missing", (False, True))]
    rows = pose_parser_sweep.sweep(runner, spec, train, settings)
    assert runner.calls == IMAGES
    assert [(c.min_parts, c.fill_missing) for c, _ in rows] == [(4, False), (4, True), (17, False), (17, True)]
    assert all(dataclasses.replace(c, min_parts=4, fill_missing=False) == spec.paf for c, _ in rows)
    ap = [stats["AP"] for _, stats in rows]
    # Perfect maps: every person is parsed back; requiring all 17 keypoints drops the partly
    # labelled ones, so the AP falls.
    assert ap[0] >= 0.8 and ap[1] >= ap[0] - 1e-9 and ap[2] < ap[0], ap
    # The same numbers as pose_diagnose's "gt_both" row with the spec's own settings.
    diagnosed = pose_diagnose.diagnose(_TruthRunner(spec, train, train.records), spec, train)
    assert ap[0] == pytest.approx(diagnosed["gt_both"]["AP"])


def test_cli_errors(synth_data, tmp_path, capsys):
    assert pose_parser_sweep.main(["--model", str(tmp_path / "missing.keras"), "--data", str(synth_data)]) == 2
    assert "parser sweep failed" in capsys.readouterr().err
    assert pose_parser_sweep.main(["--model", "m.keras", "--set", "nope=1"]) == 2
    assert "not a sweepable" in capsys.readouterr().err


def test_cli_prints_a_row_per_combination_and_marks_the_spec(pose_run, synth_data, capsys):
    run_dir, _, _, _ = pose_run  # an untrained model: no people, AP 0 in every row
    assert pose_parser_sweep.main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data),
                                   "--split", "train", "--max-images", "2", "--set", "smoothing_sigma=0,0.5",
                                   "--set", "fill_missing=false,true"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["smoothing_sigma", "fill_missing", "AP", "AP50", "AP75"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["0.0", "False"], ["0.0", "True"], ["0.5", "False"], ["0.5", "True"]]
    assert lines[1].endswith("(spec)") and not any(line.endswith("(spec)") for line in lines[2:])
