"""Tests for training.pose_diagnose (predicted maps vs ground-truth fields swapped in)."""

import dataclasses

import numpy as np

from tfsp.data.keypoints import KEYPOINT_NAMES
from tfsp.data.pose_fields import DEFAULT_LIMB_WIDTH_PX, DEFAULT_SIGMA_PX, render_heatmaps, render_pafs
from tfsp.eval import KEYPOINT_STAT_NAMES
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.pose import person_category_id
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from training import pose_diagnose
SIZE, MAP = 128, 32  # as POSE_SIZE, POSE_MAP of the pose_run fixture (conftest.py)


def test_ground_truth_rows_score_high_and_untrained_maps_low(pose_run):
    _, model, spec, train = pose_run
    stats = pose_diagnose.diagnose(KerasRunner(model), spec, train)
    assert tuple(stats) == pose_diagnose.COMBINATIONS
    assert all(tuple(values) == KEYPOINT_STAT_NAMES for values in stats.values())
    assert stats["gt_both"]["AP"] >= 0.8, stats["gt_both"]
    assert stats["predicted"]["AP"] <= 0.0 and stats["gt_pafs"]["AP"] <= 0.0  # no peaks: no people
    assert stats["gt_heatmaps"]["AP"] > 0.0  # true peaks find keypoints even with meaningless PAFs
    assert np.isfinite([stats[name]["AP"] for name in stats]).all()


def test_cli_prints_the_four_rows_and_fails_clearly_on_a_missing_model(pose_run, synth_data, capsys, tmp_path):
    run_dir, _, _, _ = pose_run
    assert pose_diagnose.main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data),
                               "--split", "train", "--max-images", "3"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in pose_diagnose.COMBINATIONS)
    assert pose_diagnose.main(["--model", str(tmp_path / "missing.keras"), "--data", str(synth_data)]) == 2
    assert "pose diagnosis failed" in capsys.readouterr().err


class _TruthRunner:
    """Returns the rendered ground-truth maps of the one image it is given (a perfect model)."""

    def __init__(self, spec, people):
        self.heatmaps = render_heatmaps(people, MAP, SIZE / MAP, DEFAULT_SIGMA_PX)[np.newaxis]
        self.pafs = render_pafs(people, MAP, SIZE / MAP, DEFAULT_LIMB_WIDTH_PX, spec.paf.limbs)[np.newaxis]

    def __call__(self, inputs):
        return {"heatmaps": self.heatmaps, "pafs": self.pafs}


def test_peak_errors_are_sub_pixel_for_true_maps_and_far_without_peaks(pose_run):
    _, model, spec, train = pose_run
    record = next(r for r in train.records if (r.keypoints[..., 2] > 0).sum() >= 10)
    one = dataclasses.replace(train, records=(record,))
    _, letterbox = preprocess_image(read_image_rgb(record.path), SIZE, spec.resize_mode)
    person = list(train.category_ids).index(person_category_id(spec))
    people = record.keypoints[(record.class_ids == person) & ~record.is_crowd]
    people = np.concatenate([letterbox.to_input_xy(people[..., :2]), people[..., 2:]], axis=-1)
    truth = pose_diagnose.peak_errors(_TruthRunner(spec, people), spec, one)
    assert sum(error.count for error in truth.values()) == int((people[..., 2] > 0).sum())
    assert set(truth) <= set(KEYPOINT_NAMES) and list(truth) == [n for n in KEYPOINT_NAMES if n in truth]
    for error in truth.values():
        assert error.median_px < 1.0 and error.beyond_one_cell <= 0.5, error
    untrained = pose_diagnose.peak_errors(KerasRunner(model), spec, one)  # heatmaps below the threshold
    assert untrained.keys() == truth.keys()
    assert all(e.median_px == e.p90_px == np.inf and e.beyond_one_cell == 1.0 for e in untrained.values())


def test_cli_per_keypoint_prints_a_row_per_labelled_type(pose_run, synth_data, capsys):
    run_dir, _, _, _ = pose_run
    assert pose_diagnose.main(["--model", str(run_dir / "model.keras"), "--data", str(synth_data),
                               "--split", "train", "--max-images", "2", "--per-keypoint"]) == 0
    printed = capsys.readouterr().out
    assert "left_wrist" in printed and "predicted peaks vs labelled keypoints" in printed
