"""Training-step time of a config with Keras' batch norm and with the fused one, measured interleaved.

``python -m training.step_benchmark --config training/configs/openpose_synth.yaml`` builds the
config's training model twice from the same seed, makes the batch norm of one of them train fused
(:func:`tfsp.models.fused_batch_norm.fuse_batch_norm`, what ``python -m training`` does), and times
``train_step`` of both on the same few cached batches of the real input pipeline, alternating
rounds so that the machine's drifting speed hits both alike. It prints the median seconds per
step of each and their ratio; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfsp.cli import SuggestingParser
from tfsp.models.fused_batch_norm import fuse_batch_norm
from training import trainer
from training.config import ConfigError, load_config

DEFAULT_ROUNDS = 5
DEFAULT_STEPS = 8
CACHED_BATCHES = 4
WARMUP_STEPS = 2  # tracing, first allocations
PLAIN, FUSED = "keras batch norm", "fused batch norm"


@dataclasses.dataclass(frozen=True)
class StepTimes:
    """Median training-step seconds of the two variants over the rounds."""

    plain_s: float
    fused_s: float

    @property
    def ratio(self) -> float:
        """fused / plain (below 1: the fused variant is faster)."""
        return self.fused_s / self.plain_s


def time_steps(config_path: str | os.PathLike[str], rounds: int = DEFAULT_ROUNDS, steps: int = DEFAULT_STEPS,
               show_progress: bool = True) -> StepTimes:
    """Times the config's train step with plain and with fused batch norm (module docstring).

    Args:
        config_path: a training config YAML.
        rounds: alternating rounds; each times ``steps`` steps of each variant.
        steps: steps per variant and round.
        show_progress: progress bar on stderr.

    Returns:
        The medians over the rounds of the mean seconds per step.
    """
    config = load_config(config_path)
    train, _ = trainer.load_data(config)
    config = trainer.resolve_schedule(config, len(train))
    functions = {}
    for name in (PLAIN, FUSED):
        model = trainer.build_compiled(config)
        if name == FUSED:
            fuse_batch_norm(model)
        functions[name] = tf.function(model.train_step)
    batches = list(trainer.make_train_dataset(config, train).take(CACHED_BATCHES))
    times: dict[str, list[float]] = {name: [] for name in functions}
    for step in range(WARMUP_STEPS):
        for function in functions.values():
            function(batches[step % len(batches)])
    for _ in tqdm(range(rounds), desc="rounds", disable=not show_progress, file=sys.stderr):
        for name, function in functions.items():
            start = time.perf_counter()
            for step in range(steps):
                function(batches[step % len(batches)])
            times[name].append((time.perf_counter() - start) / steps)
    return StepTimes(plain_s=float(np.median(times[PLAIN])), fused_s=float(np.median(times[FUSED])))


def _parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m training.step_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training config YAML")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="steps per variant and round")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        print("--rounds and --steps must be >= 1", file=sys.stderr)
        return 2
    try:
        result = time_steps(args.config, args.rounds, args.steps)
    except (ConfigError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{PLAIN}: {result.plain_s:.3f} s/step   {FUSED}: {result.fused_s:.3f} s/step   "
          f"ratio {result.ratio:.2f}x   (median of {args.rounds} rounds of {args.steps} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
