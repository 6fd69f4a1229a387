"""Tests for training.pose_diagnose (predicted maps vs ground-truth fields swapped in)."""

import keras
import numpy as np
import pytest

from tfsp.data.coco import load_split
from tfsp.eval import KEYPOINT_STAT_NAMES
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.spec_builders import pose_spec
from training import pose_diagnose

SIZE, MAP = 128, 32  # stride 4: the ground-truth fields parse back into the people


@pytest.fixture(scope="module")
def pose_run(synth_data, tmp_path_factory):
    """An untrained pose graph whose heatmaps stay below the peak threshold, saved with its spec."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.AveragePooling2D(SIZE // MAP)(keras.layers.Rescaling(1 / 255)(inputs))
    features = keras.layers.Conv2D(4, 1, activation="relu")(features)
    model = keras.Model(inputs, {"heatmaps": keras.layers.Conv2D(18, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(-10.0))(features),
                                 "pafs": keras.layers.Conv2D(36, 1, activation="tanh")(features)})
    train = load_split(synth_data, "train")
    spec = pose_spec(SIZE, MAP, train.class_names, train.category_ids)
    run_dir = tmp_path_factory.mktemp("pose_diag")
    model.save(run_dir / "model.keras")
    spec.to_json(run_dir / "spec.json")
    return run_dir, model, spec, train


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
