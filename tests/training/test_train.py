"""End-to-end training on a tiny synthetic set: artefacts, interruption and resume, CLI parsing."""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from tfsp.data.coco import load_split
from tfsp.eval import BOX_STAT_NAMES
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.models.ssd import SsdConfig, build_ssd
from tfsp.postprocess.anchors import SsdAnchorConfig
from tfsp.spec import ModelSpec
from training.__main__ import build_parser, resolve_config
from training.__main__ import main as cli_main
from training.callbacks import read_state
from training.config import (DataConfig, EvalConfig, ScheduleConfig, TrainConfig, config_to_dict, load_config,
                             save_config)
from training.evaluate import evaluate_runner
from training.evaluate import main as evaluate_main
from training.trainer import build_or_resume, load_data, resolve_schedule, train

TINY_SIZE = 64
TINY_SSD = SsdConfig(
    input_size=TINY_SIZE, num_classes=4, alpha=0.35,
    anchors=SsdAnchorConfig(image_size=TINY_SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.15,
                            max_scale=0.9, aspect_ratios=((2.0,), (2.0,), (2.0,))))
TINY_SSD_PIXEL_ANCHORS = dataclasses.replace(TINY_SSD, anchors=dataclasses.replace(
    TINY_SSD.anchors, min_sizes=(10.0, 24.0, 40.0), max_sizes=(24.0, 40.0, 58.0)))
EPOCHS, STOP_AFTER, BATCH = 3, 2, 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Interrupt(Exception):
    """Raised by `InterruptAfter`, standing in for Ctrl-C or a killed job."""


class InterruptAfter(keras.callbacks.Callback):
    """Raises `Interrupt` at the end of a given 1-based epoch (after the checkpoint is written)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Interrupt


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def tiny_config(synth_data, tmp_path_factory) -> TrainConfig:
    return TrainConfig(
        ssd=TINY_SSD,
        data=DataConfig(root=str(synth_data), batch_size=BATCH),
        schedule=ScheduleConfig(epochs=EPOCHS, steps_per_epoch=1, warmup_epochs=1.0),
        eval=EvalConfig(every_epochs=1),
        out_dir=str(tmp_path_factory.mktemp("runs") / "ssd"),
        run_eagerly=True,  # graph compilation would take most of the test's time
    )


@pytest.fixture(scope="module")
def interrupted(tiny_config):
    """Trains EPOCHS epochs but is interrupted after STOP_AFTER; returns the checkpoint's weights."""
    with pytest.raises(Interrupt):
        train(tiny_config, extra_callbacks=[InterruptAfter(STOP_AFTER)], verbose=0)
    model, state = build_or_resume(load_config(f"{tiny_config.out_dir}/config.yaml"), tiny_config.out_dir, True)
    return _weights(model), int(model.optimizer.iterations.numpy()), state


@pytest.fixture(scope="module")
def resumed(tiny_config, interrupted):
    return train(tiny_config, resume=True, verbose=0)


def test_interruption_leaves_a_resumable_checkpoint(tiny_config, interrupted):
    weights, iterations, state = interrupted
    assert state.epoch == STOP_AFTER and iterations == STOP_AFTER  # one step per epoch
    assert [e["epoch"] for e in state.evaluations] == [1, 2]
    assert len(state.losses["loss"]) == STOP_AFTER
    keras.utils.set_random_seed(tiny_config.seed)
    assert not _same(weights, _weights(build_ssd(TINY_SSD)))  # trained, not a fresh start
    assert not (Path(tiny_config.out_dir) / "model.keras").exists()  # no final model yet


def test_resume_continues_epochs_weights_and_optimizer(tiny_config, interrupted, resumed):
    weights, _, _ = interrupted
    assert resumed.state.epoch == EPOCHS
    assert [e["epoch"] for e in resumed.state.evaluations] == [1, 2, 3]
    assert len(resumed.state.losses["loss"]) == EPOCHS
    assert resumed.state.losses["loss"][:STOP_AFTER] == interrupted[2].losses["loss"]
    final = keras.models.load_model(resumed.model_path, compile=True)
    assert int(final.optimizer.iterations.numpy()) == EPOCHS  # optimizer state carried over
    assert not _same(weights, _weights(final))  # training went on after the resume
    assert read_state(tiny_config.out_dir).epoch == EPOCHS


def test_run_directory_artefacts(tiny_config, resumed):
    run = resumed.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert tuple(metrics["bbox"]) == BOX_STAT_NAMES
    assert all(-1.0 <= v <= 1.0 for v in metrics["bbox"].values())
    assert metrics["epochs"] == EPOCHS and metrics["train_seconds"] > 0
    assert metrics["eval"]["num_images"] == 4
    resolved = load_config(run / "config.yaml")
    assert resolved == resolve_schedule(tiny_config, 8)
    assert metrics["config"] == config_to_dict(resolved)
    assert ModelSpec.from_json(run / "spec.json").anchors == TINY_SSD.anchors
    assert (run / "loss.png").read_bytes()[:8] == PNG_MAGIC
    train_logs, validation_logs = _scalars(run / "tb" / "train"), _scalars(run / "tb" / "validation")
    assert train_logs["epoch_loss"] == pytest.approx(dict(enumerate(resumed.state.losses["loss"])), rel=1e-6)
    assert len(train_logs["epoch_learning_rate"]) == EPOCHS
    assert validation_logs["epoch_AP"] == pytest.approx(
        {e["epoch"] - 1: e["AP"] for e in resumed.state.evaluations}, abs=1e-6)


def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """TensorBoard scalars of every event file in a folder: tag -> {step: value}."""
    values: dict[str, dict[int, float]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_evaluate_cli_reproduces_the_device_pipeline_on_the_saved_model(resumed, tiny_config, tmp_path):
    """The CLI's stats equal the shared pipeline run on the saved model, and have the training metrics' keys.

    Exact equality with the in-training evaluation held when this file runs alone but not always in the
    full suite: this untrained tiny model's scores sit on ties, so it is checked on the saved model here.
    """
    out = tmp_path / "stats.json"
    code = evaluate_main(["--model", str(resumed.model_path), "--data", tiny_config.data.root, "--out", str(out)])
    assert code == 0
    saved = json.loads(out.read_text())
    spec = ModelSpec.from_json(resumed.run_dir / "spec.json")
    direct = evaluate_runner(KerasRunner(str(resumed.model_path)), spec, load_split(tiny_config.data.root, "val"))
    assert saved["bbox"] == pytest.approx(dict(direct.stats), abs=1e-9)
    assert saved["num_detections"] == direct.num_detections
    assert set(saved["bbox"]) == set(resumed.metrics["bbox"]) == set(BOX_STAT_NAMES)


def test_corrupt_images_are_skipped_and_counted(synth_data, tmp_path, capsys):
    root = tmp_path / "synth"
    shutil.copytree(synth_data, root)
    victim = sorted((root / "images" / "train").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:20])  # truncated JPEG
    with pytest.warns(UserWarning, match="skipped 1 of 8 images"):
        train_split, val_split = load_data(TrainConfig(data=DataConfig(root=str(root))))
    assert (len(train_split), len(val_split)) == (7, 4)
    assert "[train]: 7 images, 1 skipped as missing/corrupt" in capsys.readouterr().out


def test_resolve_schedule():
    config = TrainConfig(data=DataConfig(batch_size=4))
    assert resolve_schedule(config, 10).schedule.steps_per_epoch == 2
    by_steps = dataclasses.replace(config, schedule=ScheduleConfig(total_steps=5))
    assert resolve_schedule(by_steps, 8).schedule == dataclasses.replace(
        by_steps.schedule, epochs=3, steps_per_epoch=2, total_steps=None)
    one = dataclasses.replace(config, schedule=ScheduleConfig(total_steps=1))
    assert (resolve_schedule(one, 8).schedule.epochs, resolve_schedule(one, 8).schedule.steps_per_epoch) == (1, 1)
    with pytest.raises(ValueError, match="batch_size 4 > 3 training images"):
        resolve_schedule(config, 3)


def test_cli_trains_and_prints_next_command(tiny_config, tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    save_config(dataclasses.replace(tiny_config, eval=EvalConfig(every_epochs=0)), config_path)
    out = tmp_path / "cli_run"
    assert cli_main(["--config", str(config_path), "--out", str(out), "--steps", "1", "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"python -m export --run {out} --quant int8 --data {tiny_config.data.root}" in printed
    assert "[train]: 8 images, 0 skipped as missing/corrupt" in printed
    resolved = load_config(out / "config.yaml")
    assert (resolved.schedule.epochs, resolved.schedule.steps_per_epoch, resolved.out_dir) == (1, 1, str(out))
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_cli_overrides_and_suggestions(tmp_path, capsys):
    args = build_parser().parse_args(["--out", str(tmp_path), "--steps", "7", "--data", "d"])
    config = resolve_config(args)
    assert (config.out_dir, config.schedule.total_steps, config.data.root) == (str(tmp_path), 7, "d")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--epochs", "1", "--steps", "2"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--epoch", "3"])
    assert "did you mean --epochs" in capsys.readouterr().err


def test_a_run_with_a_deploy_size_saves_evaluates_and_describes_the_deployed_graph(synth_data, tmp_path):
    deploy = 2 * TINY_SIZE
    config = TrainConfig(ssd=dataclasses.replace(TINY_SSD_PIXEL_ANCHORS, deploy_input_size=deploy),
                         data=DataConfig(root=str(synth_data), batch_size=BATCH),
                         schedule=ScheduleConfig(epochs=1, steps_per_epoch=1), eval=EvalConfig(every_epochs=1),
                         out_dir=str(tmp_path / "ssd"), run_eagerly=True)
    result = train(config, verbose=0)
    spec = ModelSpec.from_json(result.run_dir / "spec.json")
    assert spec.input_size == deploy and spec.anchors.feature_map_sizes == (16, 8, 4)
    saved = keras.models.load_model(result.model_path, compile=False)
    assert saved.input_shape == (None, deploy, deploy, 3)
    trained, _ = build_or_resume(config, config.out_dir, True)  # the last checkpoint: the training graph
    assert trained.input_shape == (None, TINY_SIZE, TINY_SIZE, 3)
    assert _same(_weights(trained), _weights(saved))
    assert result.metrics["eval"]["num_images"] == 4
    stats = evaluate_runner(KerasRunner(saved), spec, load_split(synth_data, "val")).stats
    assert set(stats) == set(result.metrics["bbox"])
