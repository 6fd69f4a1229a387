"""Keras callbacks for the training CLI: atomic checkpoints with run state, COCO evaluation.

Run directory layout written here:
    OUT/checkpoints/last.keras   model + optimizer state after the last finished epoch
    OUT/checkpoints/state.json   `RunState`: finished epochs, loss history, evaluations, time
    OUT/tb/{train,validation}/   TensorBoard event files (`TensorBoardScalars`)

The model file is replaced first and the state file second, each atomically
(`tfsp.fileio`: a temporary file in the same directory, then `os.replace`), so an
interruption at any point leaves a loadable checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfsp.fileio import replacing, write_text_atomic
from training.evaluate import EvalResult

CHECKPOINT_DIRNAME = "checkpoints"
LAST_CHECKPOINT_FILENAME = "last.keras"
STATE_FILENAME = "state.json"
EVAL_LOG_PREFIX = "val_"
LOSS_SUFFIX = "loss"
EPOCH_KEY = "epoch"
STATE_VERSION = 1
TRAIN_LOG_DIRNAME = "train"
VALIDATION_LOG_DIRNAME = "validation"
EPOCH_TAG_PREFIX = "epoch_"
LEARNING_RATE_TAG = "epoch_learning_rate"
SCALARS_PLUGIN = "scalars"  # TensorBoard's scalar dashboard


@dataclasses.dataclass(frozen=True)
class RunState:
    """Progress of a training run, saved beside the last checkpoint.

    Attributes:
        epoch: Number of finished epochs (the `initial_epoch` of a resumed fit).
        losses: Loss name -> per-epoch mean value, epoch 1 first.
        evaluations: One dict per COCO evaluation: {"epoch": 1-based epoch, stat name: value}.
        train_seconds: Wall-clock seconds spent in finished epochs (periodic evaluation included).
    """

    epoch: int = 0
    losses: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    evaluations: tuple[Mapping[str, float], ...] = ()
    train_seconds: float = 0.0

    def to_json(self) -> str:
        """Serialises the state as JSON text."""
        payload = {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "losses": {name: list(values) for name, values in self.losses.items()},
            "evaluations": [dict(entry) for entry in self.evaluations],
            "train_seconds": self.train_seconds,
        }
        return json.dumps(payload, indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        """Parses `to_json` output."""
        payload = json.loads(text)
        return cls(
            epoch=int(payload["epoch"]),
            losses={name: tuple(values) for name, values in payload["losses"].items()},
            evaluations=tuple(payload["evaluations"]),
            train_seconds=float(payload["train_seconds"]),
        )


def checkpoint_paths(run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Returns (last checkpoint .keras path, state JSON path) of a run directory."""
    folder = Path(run_dir) / CHECKPOINT_DIRNAME
    return folder / LAST_CHECKPOINT_FILENAME, folder / STATE_FILENAME


def read_state(run_dir: str | os.PathLike[str]) -> RunState | None:
    """Returns the saved run state, or None when the run has no complete checkpoint."""
    model_path, state_path = checkpoint_paths(run_dir)
    if not (model_path.is_file() and state_path.is_file()):
        return None
    return RunState.from_json(state_path.read_text(encoding="utf-8"))


def save_model_atomic(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Saves a `.keras` file (with optimizer state) to a temporary name, then renames it.

    Args:
        model: Model to save.
        path: Destination ending in ".keras".

    Returns:
        The destination path.
    """
    with replacing(path) as temp:
        model.save(temp)
    return Path(path)


class CheckpointCallback(keras.callbacks.Callback):
    """Saves the model and the `RunState` atomically at the end of every epoch.

    Must come after `CocoEvalCallback` in the callback list so the epoch's
    evaluation (logged under "val_<stat>") is part of the saved state.
    """

    def __init__(self, run_dir: str | os.PathLike[str], state: RunState):
        super().__init__()
        self.model_path, self.state_path = checkpoint_paths(run_dir)
        self.state = state
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        losses = {name: list(values) for name, values in self.state.losses.items()}
        for name, value in logs.items():
            if name.endswith(LOSS_SUFFIX):
                losses.setdefault(name, []).append(float(value))
        evaluation = {
            name[len(EVAL_LOG_PREFIX):]: float(value)
            for name, value in logs.items()
            if name.startswith(EVAL_LOG_PREFIX) and not name.endswith(LOSS_SUFFIX)
        }
        evaluations = self.state.evaluations
        if evaluation:
            evaluations = (*evaluations, {EPOCH_KEY: epoch + 1, **evaluation})
        self.state = RunState(
            epoch=epoch + 1,
            losses={name: tuple(values) for name, values in losses.items()},
            evaluations=evaluations,
            train_seconds=self.state.train_seconds + time.perf_counter() - self._epoch_start,
        )
        save_model_atomic(self.model, self.model_path)
        write_text_atomic(self.state_path, self.state.to_json())


class CocoEvalCallback(keras.callbacks.Callback):
    """Runs the task's evaluation (COCO AP, mIoU, ...) every `every_epochs` epochs and at the last epoch.

    The stats are added to the epoch logs as "val_<stat>" (TensorBoard shows them
    under validation/epoch_<stat>) and printed on one line.
    """

    def __init__(
        self,
        evaluate_fn: Callable[[keras.Model], EvalResult],
        every_epochs: int,
        total_epochs: int,
        printed_stats: tuple[str, ...] | None = None,
    ):
        """Initialises the callback.

        Args:
            evaluate_fn: Model -> `EvalResult` (named stats).
            every_epochs: Evaluation period in epochs; 0 evaluates only at the last epoch.
            total_epochs: Last epoch of the fit (1-based).
            printed_stats: Stats shown on the progress line (None: the result's headline stats).
        """
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.every_epochs = every_epochs
        self.total_epochs = total_epochs
        self.printed_stats = printed_stats
        self.results: list[tuple[int, EvalResult]] = []  # (1-based epoch, result), this fit only

    def should_evaluate(self, epoch_number: int) -> bool:
        """Whether to evaluate after 1-based epoch `epoch_number`."""
        periodic = self.every_epochs > 0 and epoch_number % self.every_epochs == 0
        return periodic or epoch_number == self.total_epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.should_evaluate(epoch + 1) or logs is None:
            return
        start = time.perf_counter()
        result = self.evaluate_fn(self.model)
        self.results.append((epoch + 1, result))
        stats = result.stats
        for name, value in stats.items():
            logs[EVAL_LOG_PREFIX + name] = float(value)
        printed = self.printed_stats or result.headline
        shown = "  ".join(f"{name} {stats[name]:.4f}" for name in printed if name in stats)
        print(f"epoch {epoch + 1}: {result.metric} {shown}  ({time.perf_counter() - start:.1f} s)", flush=True)


class TensorBoardScalars(keras.callbacks.Callback):
    """Writes every epoch log value as a TensorBoard scalar, plus the learning rate.

    Uses only TensorFlow's core summary ops (the `tensorboard` package, which
    `keras.callbacks.TensorBoard` needs, is not a tfsp dependency). Layout and tags
    follow Keras: "val_<name>" goes to LOG_DIR/validation as "epoch_<name>", the rest
    to LOG_DIR/train as "epoch_<name>"; the step is the 0-based epoch index.
    """

    def __init__(self, log_dir: str | os.PathLike[str]):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=SCALARS_PLUGIN))

    def _write(self, subdir: str, tag: str, value: float, step: int) -> None:
        if subdir not in self._writers:
            self._writers[subdir] = tf.summary.create_file_writer(str(self.log_dir / subdir))
        with self._writers[subdir].as_default():
            tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=self._metadata)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        for name, value in (logs or {}).items():
            if name.startswith(EVAL_LOG_PREFIX):
                self._write(VALIDATION_LOG_DIRNAME, EPOCH_TAG_PREFIX + name[len(EVAL_LOG_PREFIX):], value, epoch)
            else:
                self._write(TRAIN_LOG_DIRNAME, EPOCH_TAG_PREFIX + name, value, epoch)
        if LEARNING_RATE_TAG not in (EPOCH_TAG_PREFIX + name for name in logs or {}):
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            self._write(TRAIN_LOG_DIRNAME, LEARNING_RATE_TAG, float(rate), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
