"""Typed training configuration: shallow frozen dataclasses, YAML load and dump.

The dataclasses below are the only place defaults live. A YAML file is a dump of
a `TrainConfig` (see `dump_config`), and `load_config` reads one back by merging
its keys over the defaults, so a YAML file may list only the keys it changes.
Unknown keys are an error naming the file and the dotted key, with close-match
suggestions. Model selection is the explicit `ModelKind` enum; each kind has one
config section (`MODEL_SECTIONS`), the SSD section being a `tfsp.models.ssd.SsdConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tfsp.fileio import write_text_atomic
from tfsp.models.attributes import ATTRIBUTES_SYNTH_CONFIG, AttributeConfig
from tfsp.models.dense import DENSE_SYNTH_CONFIG, DenseConfig
from tfsp.models.mask_rcnn_config import MASK_RCNN_SYNTH_CONFIG, MaskRcnnConfig
from tfsp.models.openpose import OPENPOSE_SYNTH_CONFIG, OpenPoseConfig
from tfsp.models.ssd import SSD_SYNTH_CONFIG, SsdConfig
from tfsp.runtime.preprocess import ResizeMode
from training.dataclass_yaml import ConfigError, merge_dataclass, to_plain

DEFAULT_DATA_ROOT = "data/synth"
DEFAULT_OUT_DIR = "runs/ssd"
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_INSTANCES = 32
DEFAULT_LEARNING_RATE = 1.6e-2  # AdamW from scratch (ssd_synth alpha 0.35, 22 epochs: 4e-3 gave val bbox AP 0.39, 8e-3 0.45, 1.2e-2 0.47)
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_CLIPNORM = 10.0
DEFAULT_EPOCHS = 19  # 551-592 s on 2 CPU cores for ssd_synth, evaluations included (the demo budget is 600 s)
DEFAULT_WARMUP_EPOCHS = 1.0
DEFAULT_FINAL_LR_FRACTION = 0.05
DEFAULT_EVAL_EVERY_EPOCHS = 10
DEFAULT_SEED = 0

__all__ = [
    "ConfigError", "DataConfig", "EvalConfig", "MODEL_SECTIONS", "ModelKind", "OptimizerConfig",
    "OptimizerKind", "ScheduleConfig", "TrainConfig", "config_from_dict", "config_to_dict",
    "dump_config", "load_config", "save_config",
]

class ModelKind(enum.Enum):
    """Which model the training CLI builds; each kind owns one config section."""

    SSD = "ssd"
    OPENPOSE = "openpose"
    DENSE = "dense"
    ATTRIBUTES = "attributes"
    MASK_RCNN = "mask_rcnn"


class OptimizerKind(enum.Enum):
    """Optimizer family (see `training.trainer.OPTIMIZERS`)."""

    ADAM = "adam"
    ADAMW = "adamw"


MODEL_SECTIONS: dict[ModelKind, str] = {ModelKind.SSD: "ssd", ModelKind.OPENPOSE: "openpose",
                                         ModelKind.DENSE: "dense", ModelKind.ATTRIBUTES: "attributes",
                                         ModelKind.MASK_RCNN: "mask_rcnn"}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the COCO-layout data lives and how batches are formed.

    Attributes:
        root: Data set root in the `tfsp.data.synthetic` layout.
        train_split: Split name used for training.
        val_split: Split name used for COCO evaluation.
        batch_size: Images per training batch.
        resize: Resize mode from the original image to the square model input.
        max_instances: Padded number of instances per image in a batch.
        augment: Whether to apply the default training augmentation.
        deterministic: Reproducible training batches: shuffling and augmentation drawn from
            `TrainConfig.seed` (and the epoch a run starts at, so a resumed run does not replay
            its first epochs' order) in a fixed element order, so that a rerun of a config on the
            same machine and software trains the same weights. False draws fresh seeds and lets
            tf.data reorder elements for speed.
    """

    root: str = DEFAULT_DATA_ROOT
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = DEFAULT_BATCH_SIZE
    resize: ResizeMode = ResizeMode.LETTERBOX
    max_instances: int = DEFAULT_MAX_INSTANCES
    augment: bool = True
    deterministic: bool = True


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer settings (mixed precision is always off).

    Attributes:
        kind: Optimizer family.
        learning_rate: Peak learning rate reached after warmup.
        weight_decay: Decoupled weight decay (AdamW only).
        clipnorm: Per-variable gradient norm clip, or None for no clipping.
        ema_momentum: Keep an exponential moving average of the trainable weights with this
            momentum per step (in [0, 1); 0.99 averages over about the last 100 steps) and
            evaluate, save and export the averaged weights; None trains and uses the raw weights.
    """

    kind: OptimizerKind = OptimizerKind.ADAMW
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    clipnorm: float | None = DEFAULT_CLIPNORM
    ema_momentum: float | None = None

    def __post_init__(self) -> None:
        if self.ema_momentum is not None and not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1) or None, got {self.ema_momentum}")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Training length and learning-rate schedule (linear warmup, cosine decay).

    Attributes:
        epochs: Number of epochs.
        steps_per_epoch: Optimizer steps per epoch; None means one pass over the
            training split (ceil(num_images / batch_size)).
        total_steps: If set, replaces `epochs`: train this many optimizer steps,
            rounded up to whole epochs (resolved by the trainer into `epochs` and
            `steps_per_epoch` before the config is dumped).
        warmup_epochs: Linear warmup length in epochs (may be fractional).
        final_lr_fraction: Final learning rate as a fraction of the peak.
    """

    epochs: int = DEFAULT_EPOCHS
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    warmup_epochs: float = DEFAULT_WARMUP_EPOCHS
    final_lr_fraction: float = DEFAULT_FINAL_LR_FRACTION


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """COCO evaluation on the validation split during and after training.

    Attributes:
        every_epochs: Evaluate every this many epochs; 0 evaluates only at the end.
        max_images: Evaluate on at most this many validation images (None = all).
    """

    every_epochs: int = DEFAULT_EVAL_EVERY_EPOCHS
    max_images: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; dumped to OUT/config.yaml.

    Attributes:
        model: Which model to train; selects the model section below.
        ssd: SSD architecture, anchors and class count (used when model is SSD).
        openpose: OpenPose architecture and target rendering (used when model is OPENPOSE).
        dense: Segmentation + depth encoder-decoder (used when model is DENSE).
        attributes: Attribute classifier and its crops (used when model is ATTRIBUTES).
        mask_rcnn: Mask R-CNN with a keypoint head, its anchors and RoI sampling (used when model
            is MASK_RCNN).
        data: Data set and batching.
        optimizer: Optimizer settings.
        schedule: Training length and learning-rate schedule.
        eval: COCO evaluation settings.
        out_dir: Run directory (checkpoints, logs, final artefacts).
        seed: Global random seed (weights initialisation, shuffling, augmentation).
        run_eagerly: Run training steps eagerly (Keras `run_eagerly`): slower steps but
            no graph compilation, which dominates tiny runs (tests, debugging).
    """

    model: ModelKind = ModelKind.SSD
    ssd: SsdConfig = dataclasses.field(default_factory=lambda: SSD_SYNTH_CONFIG)
    openpose: OpenPoseConfig = dataclasses.field(default_factory=lambda: OPENPOSE_SYNTH_CONFIG)
    dense: DenseConfig = dataclasses.field(default_factory=lambda: DENSE_SYNTH_CONFIG)
    attributes: AttributeConfig = dataclasses.field(default_factory=lambda: ATTRIBUTES_SYNTH_CONFIG)
    mask_rcnn: MaskRcnnConfig = dataclasses.field(default_factory=lambda: MASK_RCNN_SYNTH_CONFIG)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    out_dir: str = DEFAULT_OUT_DIR
    seed: int = DEFAULT_SEED
    run_eagerly: bool = False


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Converts a config to plain YAML-safe Python values.

    Model sections of kinds other than `config.model` are left out.

    Args:
        config: The configuration.

    Returns:
        Nested dict of str, int, float, bool, None and lists.
    """
    inactive = {name for kind, name in MODEL_SECTIONS.items() if kind != config.model}
    plain = to_plain(config)
    return {key: value for key, value in plain.items() if key not in inactive}


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> TrainConfig:
    """Builds a config by merging `data` over the defaults.

    Args:
        data: Nested mapping as written by `config_to_dict` (possibly partial).
        source: Name of the file it came from, used in error messages.

    Returns:
        The merged `TrainConfig`.

    Raises:
        ConfigError: On unknown keys (with suggestions) or ill-typed values.
    """
    return merge_dataclass(TrainConfig(), data, source)


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Reads a YAML config file (see `config_from_dict`)."""
    text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return config_from_dict(data, source=str(path))


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars on one line (`[24, 12, 6, 3]`)."""


def _represent_list(dumper: yaml.SafeDumper, values: list) -> yaml.Node:
    flat = all(not isinstance(value, (list, dict)) for value in values)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", values, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def dump_config(config: TrainConfig) -> str:
    """Returns the YAML text of a config (round-trips through `load_config`)."""
    return yaml.dump(config_to_dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Writes `dump_config(config)` to `path` atomically."""
    write_text_atomic(Path(path), dump_config(config))
