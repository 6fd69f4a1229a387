"""The training loop: Keras `fit` with checkpoints, resume, TensorBoard and periodic evaluation.

A run directory OUT holds, when training finishes:
    OUT/config.yaml      resolved `TrainConfig` (written before the first step)
    OUT/spec.json        float32 `ModelSpec` of the model (written before the first step; rewritten at
                         the end when the recipe tunes it, e.g. attribute thresholds)
    OUT/checkpoints/     last.keras + state.json, replaced atomically after every epoch
    OUT/tb/              TensorBoard logs (losses, learning rate, validation AP)
    OUT/model.keras      final model (for split-graph models such as Mask R-CNN: the first graph,
                         with the others beside it as OUT/model.{graph}.keras)
    OUT/metrics.json     final evaluation stats, training time, losses, config
    OUT/loss.png         loss curves and validation AP over epochs
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfsp.data.coco import CocoDataset, load_split
from tfsp.data.pipeline import PipelineConfig, make_dataset
from tfsp.fileio import write_text_atomic
from tfsp.models.fused_batch_norm import fuse_batch_norm
from tfsp.runtime.graph_chain import GraphChain, head_path
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.runner import Runner
from training.callbacks import (
    EPOCH_KEY,
    CheckpointCallback,
    CocoEvalCallback,
    RunState,
    TensorBoardScalars,
    checkpoint_paths,
    read_state,
    save_model_atomic,
)
from training.config import OptimizerKind, TrainConfig, config_to_dict, save_config
from training.ema import averaged_weights, keep_averaged_weights
from training.evaluate import EvalResult, evaluate_runner
from training.plots import plot_training_curves
from training.recipes import RECIPES, build_run_spec

CONFIG_FILENAME = "config.yaml"
SPEC_FILENAME = "spec.json"
MODEL_FILENAME = "model.keras"
METRICS_FILENAME = "metrics.json"
LOSS_PLOT_FILENAME = "loss.png"
TENSORBOARD_DIRNAME = "tb"
OPTIMIZERS: dict[OptimizerKind, type[keras.optimizers.Optimizer]] = {
    OptimizerKind.ADAM: keras.optimizers.Adam,
    OptimizerKind.ADAMW: keras.optimizers.AdamW,
}
WARMUP_START_FRACTION = 0.01  # learning rate at step 0, as a fraction of the peak


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished `train` call produced.

    Attributes:
        run_dir: The run directory.
        model_path: OUT/model.keras.
        metrics: Contents of OUT/metrics.json.
        state: Final run state (epochs, loss history, evaluations, time).
    """

    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    state: RunState


def load_data(config: TrainConfig) -> tuple[CocoDataset, CocoDataset]:
    """Loads the train and val splits and prints their sizes and skipped-image counts."""
    splits = []
    for split in (config.data.train_split, config.data.val_split):
        dataset = load_split(config.data.root, split)
        print(f"data {config.data.root} [{split}]: {len(dataset)} images, "
              f"{len(dataset.skipped_images)} skipped as missing/corrupt, "
              f"{dataset.num_dropped_boxes} zero-area boxes dropped", flush=True)
        splits.append(dataset)
    return splits[0], splits[1]


def resolve_schedule(config: TrainConfig, num_train_images: int) -> TrainConfig:
    """Fills in `steps_per_epoch` and turns `total_steps` into whole epochs.

    Args:
        config: Config whose schedule may leave `steps_per_epoch` or `total_steps` open.
        num_train_images: Images in the training split.

    Returns:
        A config with `schedule.steps_per_epoch` set and `schedule.total_steps` None.

    Raises:
        ValueError: Fewer training images than one batch.
    """
    batch = config.data.batch_size
    if num_train_images < batch:
        raise ValueError(f"data.batch_size {batch} > {num_train_images} training images in "
                         f"{config.data.root}; lower data.batch_size")
    schedule = config.schedule
    steps = schedule.steps_per_epoch or num_train_images // batch
    epochs = schedule.epochs
    if schedule.total_steps is not None:
        steps = min(steps, schedule.total_steps)
        epochs = math.ceil(schedule.total_steps / steps)
    resolved = dataclasses.replace(schedule, epochs=epochs, steps_per_epoch=steps, total_steps=None)
    return dataclasses.replace(config, schedule=resolved)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Optimizer with linear warmup then cosine decay over the whole (resolved) schedule."""
    schedule, settings = config.schedule, config.optimizer
    total = schedule.epochs * schedule.steps_per_epoch
    warmup = min(int(round(schedule.warmup_epochs * schedule.steps_per_epoch)), total - 1)
    peak = settings.learning_rate
    if warmup > 0:
        rate = keras.optimizers.schedules.CosineDecay(
            peak * WARMUP_START_FRACTION, total - warmup, alpha=schedule.final_lr_fraction,
            warmup_target=peak, warmup_steps=warmup)
    else:
        rate = keras.optimizers.schedules.CosineDecay(peak, max(total, 1), alpha=schedule.final_lr_fraction)
    kwargs: dict[str, Any] = {"learning_rate": rate, "clipnorm": settings.clipnorm}
    if settings.kind is OptimizerKind.ADAMW:
        kwargs["weight_decay"] = settings.weight_decay
    if settings.ema_momentum is not None:
        kwargs.update(use_ema=True, ema_momentum=settings.ema_momentum)
    return OPTIMIZERS[settings.kind](**kwargs)


def build_or_resume(config: TrainConfig, run_dir: Path, resume: bool) -> tuple[keras.Model, RunState]:
    """Loads the last checkpoint (weights, optimizer state, epoch) or builds a fresh model.

    Args:
        config: Resolved config.
        run_dir: Run directory.
        resume: Continue from OUT/checkpoints when there is a complete checkpoint.

    Returns:
        (compiled model, state); a fresh start has `RunState()` (epoch 0).
    """
    state = read_state(run_dir)
    model_path, _ = checkpoint_paths(run_dir)
    if resume and state is not None:
        print(f"resuming {model_path} after epoch {state.epoch}", flush=True)
        model = keras.models.load_model(model_path, compile=True)
        model.run_eagerly = config.run_eagerly
        return model, state
    if resume:
        print(f"no checkpoint in {model_path.parent}; starting from scratch", flush=True)
    elif state is not None:
        print(f"{run_dir} has a checkpoint after epoch {state.epoch}; starting over "
              "(pass --resume to continue it)", flush=True)
    return build_compiled(config), RunState()


def build_compiled(config: TrainConfig) -> keras.Model:
    """A fresh model of ``config`` (seeded), compiled with its optimizer and losses."""
    recipe = RECIPES[config.model]
    keras.utils.set_random_seed(config.seed)
    model = recipe.build_model(config)
    model.compile(optimizer=make_optimizer(config), loss=recipe.losses(config), run_eagerly=config.run_eagerly)
    return model


def build_step_state(model: keras.Model, data: tf.data.Dataset) -> None:
    """Creates the optimizer's slots and the loss trackers before ``fit`` traces its train step.

    Without a distribution strategy, Keras 3.15 creates them inside the first trace, and a
    ``tf.function`` that creates variables is traced a second time (pose: 9 of 21 s of tracing).
    This runs the symbolic build Keras itself runs first under a strategy (shapes only, no data).

    Args:
        model: A compiled model (fresh or resumed); unchanged when already built.
        data: The training dataset; only its ``element_spec`` is read.
    """
    model._symbolic_build(data_batch=data.element_spec)  # noqa: SLF001 - no public equivalent in Keras 3.15


def deployed_runner(config: TrainConfig, model: keras.Model) -> Runner:
    """The in-memory runner of what a run deploys: one graph, or a `GraphChain` of its graphs."""
    recipe = RECIPES[config.model]
    main = KerasRunner(recipe.deploy_model(config, model))
    heads = recipe.deploy_heads(model)
    return GraphChain(main, {name: KerasRunner(head) for name, head in heads.items()}) if heads else main


def make_train_dataset(config: TrainConfig, train: CocoDataset, start_epoch: int = 0):
    """Endless `(image, targets)` batches for `fit` (steps per epoch come from the schedule).

    Args:
        config: The run's config; with `config.data.deterministic` the batches are a function of
            `config.seed` and `start_epoch` alone.
        train: The loaded training split.
        start_epoch: Epochs already trained (a resumed run): folded into the data seed, so the
            resumed run draws new orders instead of replaying those of its first epochs.
    """
    recipe = RECIPES[config.model]
    mask_size = recipe.mask_size(config)
    masks = {} if mask_size is None else {"with_masks": True, "mask_size": mask_size}
    if config.data.deterministic:
        tf.random.set_seed(config.seed)  # tf.data combines its op seeds with the global seed
    pipeline = PipelineConfig(
        input_size=recipe.input_size(config), resize=config.data.resize,
        max_instances=config.data.max_instances, batch_size=config.data.batch_size,
        augment=recipe.augment if config.data.augment else None, seed=config.seed + start_epoch,
        deterministic=config.data.deterministic, with_dense=recipe.with_dense, **masks)
    data = make_dataset(train, pipeline, training=True, target_fn=recipe.target_fn(config))
    return data.map(recipe.fit_targets(config)).repeat()


def _metrics(config: TrainConfig, state: RunState, result: EvalResult) -> dict[str, Any]:
    return {
        "model": config.model.value,
        "epochs": state.epoch,
        "steps_per_epoch": config.schedule.steps_per_epoch,
        "train_seconds": round(state.train_seconds, 3),
        "final_losses": {name: values[-1] for name, values in state.losses.items() if values},
        "eval": {"split": config.data.val_split, "num_images": result.num_images,
                 "num_detections": result.num_detections, "epoch": state.epoch},
        result.metric: result.stats,
        "config": config_to_dict(config),
    }


def train(
    config: TrainConfig,
    resume: bool = False,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 1,
) -> TrainResult:
    """Trains `config.model` on `config.data` and writes the run directory `config.out_dir`.

    Args:
        config: Training configuration (CLI overrides already applied).
        resume: Continue from the run directory's last checkpoint, if any.
        extra_callbacks: More Keras callbacks, run after checkpointing each epoch.
        verbose: Keras `fit` verbosity (1: progress bar, 2: one line per epoch, 0: silent).

    Returns:
        The `TrainResult`.
    """
    run_dir = Path(config.out_dir)
    train_split, val_split = load_data(config)
    config = resolve_schedule(config, len(train_split))
    spec = build_run_spec(config, train_split)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILENAME)
    spec.to_json(run_dir / SPEC_FILENAME)
    model, state = build_or_resume(config, run_dir, resume)
    fuse_batch_norm(model)  # training speed only: the saved model keeps plain BatchNormalization layers

    def evaluate(current: keras.Model) -> EvalResult:
        with averaged_weights(current):
            return evaluate_runner(deployed_runner(config, current), spec, val_split, config.eval.max_images)

    schedule = config.schedule
    checkpoint = CheckpointCallback(run_dir, state)
    periodic_eval = CocoEvalCallback(evaluate, config.eval.every_epochs, schedule.epochs)
    callbacks = [
        periodic_eval,
        checkpoint,
        TensorBoardScalars(run_dir / TENSORBOARD_DIRNAME),
        *extra_callbacks,
    ]
    if state.epoch < schedule.epochs:
        print(f"training {config.model.value}: epochs {state.epoch + 1}..{schedule.epochs}, "
              f"{schedule.steps_per_epoch} steps of {config.data.batch_size} images each", flush=True)
        data = make_train_dataset(config, train_split, state.epoch)
        build_step_state(model, data)
        model.fit(data, epochs=schedule.epochs, initial_epoch=state.epoch,
                  steps_per_epoch=schedule.steps_per_epoch, callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # make_dataset shuffles
        state = checkpoint.state
    keep_averaged_weights(model)  # fit does this when it returns; a finished run that is reloaded has not
    final = dict(periodic_eval.results).get(state.epoch)
    finalize = RECIPES[config.model].finalize_spec
    if finalize is not None:
        tuned = finalize(RECIPES[config.model].deploy_model(config, model), spec, config, train_split)
        if tuned != spec:
            spec = tuned
            spec.to_json(run_dir / SPEC_FILENAME)
            print(f"wrote the tuned {run_dir / SPEC_FILENAME}; evaluating with it", flush=True)
            final = None
    if final is None:  # not evaluated at the last epoch in this process, or the spec changed
        final = evaluate(model)
        if not state.evaluations or state.evaluations[-1][EPOCH_KEY] != state.epoch:
            entry = {EPOCH_KEY: state.epoch, **final.stats}
            state = dataclasses.replace(state, evaluations=(*state.evaluations, entry))
    return _finish(config, run_dir, model, state, final)


def _finish(config: TrainConfig, run_dir: Path, model: keras.Model, state: RunState,
            result: EvalResult) -> TrainResult:
    """Writes the final model, metrics and plot, and prints the next commands."""
    recipe = RECIPES[config.model]
    for name, head in recipe.deploy_heads(model).items():  # heads first: a main file implies its heads
        save_model_atomic(head, head_path(run_dir / MODEL_FILENAME, name))
    model_path = save_model_atomic(recipe.deploy_model(config, model), run_dir / MODEL_FILENAME)
    print(f"final {result.metric} on {config.data.val_split} ({result.num_images} images):")
    print(result.format_table(), flush=True)
    metrics = _metrics(config, state, result)
    write_text_atomic(run_dir / METRICS_FILENAME, json.dumps(metrics, indent=2))
    plot_training_curves(state.losses, state.evaluations, run_dir / LOSS_PLOT_FILENAME,
                         ap_label=result.metric, stats=result.headline[:2])
    print(f"wrote {model_path}, {run_dir / METRICS_FILENAME}, {run_dir / LOSS_PLOT_FILENAME} "
          f"({state.train_seconds:.1f} s training)")
    print("next:")
    print(f"  python -m export --run {run_dir} --quant int8 --data {config.data.root}")
    print(f"  python -m training.evaluate --model {model_path} --data {config.data.root}")
    return TrainResult(run_dir=run_dir, model_path=model_path, metrics=metrics, state=state)
