"""Tests for training.step_benchmark: both variants time the real train step of a config."""

from tests.training.test_train import TINY_SSD
from training.config import DataConfig, ScheduleConfig, TrainConfig, save_config
from training.step_benchmark import StepTimes, main, time_steps


def _config_file(synth_data, tmp_path):
    config = TrainConfig(ssd=TINY_SSD, data=DataConfig(root=str(synth_data), batch_size=2),
                         schedule=ScheduleConfig(epochs=1, steps_per_epoch=1), out_dir=str(tmp_path / "run"))
    path = tmp_path / "tiny.yaml"
    save_config(config, path)
    return path


def test_times_both_variants_and_rejects_bad_input(synth_data, tmp_path, capsys):
    """One timing (two traced train steps are most of this test's time), then the CLI's error paths."""
    times = time_steps(_config_file(synth_data, tmp_path), rounds=1, steps=1, show_progress=False)
    assert isinstance(times, StepTimes) and times.plain_s > 0.0 and times.fused_s > 0.0
    assert times.ratio == times.fused_s / times.plain_s
    assert not (tmp_path / "run").exists()  # nothing written
    assert main(["--config", str(tmp_path / "missing.yaml"), "--rounds", "1"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["--config", "x.yaml", "--steps", "0"]) == 2


def test_cli_prints_both_times_and_the_ratio(monkeypatch, capsys):
    monkeypatch.setattr("training.step_benchmark.time_steps", lambda path, rounds, steps: StepTimes(0.4, 0.3))
    assert main(["--config", "any.yaml", "--rounds", "2", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "0.400 s/step" in out and "0.300 s/step" in out and "ratio 0.75x" in out and "2 rounds of 3 steps" in out
