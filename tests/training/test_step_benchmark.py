"""Tests for training.step_benchmark: both variants time the real train step of a config."""

from tfsp.models.ssd import SsdConfig
from tfsp.postprocess.anchors import SsdAnchorConfig
from training.config import DataConfig, ScheduleConfig, TrainConfig, save_config
from training.step_benchmark import StepTimes, main, time_steps

SIZE = 64
TINY_SSD = SsdConfig(input_size=SIZE, num_classes=4, alpha=0.35,
                     anchors=SsdAnchorConfig(image_size=SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.15,
                                             max_scale=0.9, aspect_ratios=((2.0,), (2.0,), (2.0,))))


def _config_file(synth_data, tmp_path):
    config = TrainConfig(ssd=TINY_SSD, data=DataConfig(root=str(synth_data), batch_size=2),
                         schedule=ScheduleConfig(epochs=1, steps_per_epoch=1), out_dir=str(tmp_path / "run"))
    path = tmp_path / "tiny.yaml"
    save_config(config, path)
    return path


def test_time_steps_measures_both_variants(synth_data, tmp_path):
    times = time_steps(_config_file(synth_data, tmp_path), rounds=1, steps=1, show_progress=False)
    assert isinstance(times, StepTimes) and times.plain_s > 0.0 and times.fused_s > 0.0
    assert times.ratio == times.fused_s / times.plain_s
    assert not (tmp_path / "run").exists()  # nothing written


def test_cli_prints_the_ratio_and_rejects_bad_input(synth_data, tmp_path, capsys):
    assert main(["--config", str(_config_file(synth_data, tmp_path)), "--rounds", "1", "--steps", "1"]) == 0
    assert "ratio" in capsys.readouterr().out
    assert main(["--config", str(tmp_path / "missing.yaml"), "--rounds", "1"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["--config", "x.yaml", "--steps", "0"]) == 2
