"""``python -m training``: train a model from a YAML config (see `training.trainer`).

    python -m training --config training/configs/ssd_synth.yaml [--out runs/ssd]
        [--epochs N | --steps N] [--resume] [--data data/synth]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from tfsp.cli import SuggestingParser, positive_int

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
RUN_CONFIG_FILENAME = "config.yaml"  # the resolved config a run writes (training.trainer)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = SuggestingParser(prog="python -m training",
                              description="Train a tfsp model (Keras fit, checkpoints, COCO evaluation).")
    parser.add_argument("--config", type=Path,
                        help="YAML config (default: built-in defaults; with --resume: OUT/config.yaml)")
    parser.add_argument("--out", type=Path, help="run directory (default: the config's out_dir)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="number of epochs")
    length.add_argument("--steps", type=positive_int, help="total optimizer steps, rounded up to whole epochs")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoints (weights, optimizer state, epoch); the learning-rate "
                             "schedule keeps the length it was created with")
    parser.add_argument("--data", type=Path, help="data set root (default: the config's data.root)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity: 1 progress bar (default), 2 one line per epoch, 0 silent")
    return parser


def resolve_config(args: argparse.Namespace):
    """The config file (or defaults, or a resumed run's config) with the CLI overrides applied."""
    from training.config import TrainConfig, load_config

    saved = Path(args.out or TrainConfig().out_dir) / RUN_CONFIG_FILENAME
    if args.config is not None:
        config = load_config(args.config)
    elif args.resume and saved.is_file():
        config = load_config(saved)
    else:
        config = TrainConfig()
    schedule, data = config.schedule, config.data
    if args.epochs is not None:
        schedule = dataclasses.replace(schedule, epochs=args.epochs, total_steps=None)
    if args.steps is not None:
        schedule = dataclasses.replace(schedule, total_steps=args.steps)
    if args.data is not None:
        data = dataclasses.replace(data, root=str(args.data))
    out_dir = str(args.out) if args.out is not None else config.out_dir
    return dataclasses.replace(config, schedule=schedule, data=data, out_dir=out_dir)


def main(argv: list[str] | None = None) -> int:
    """Runs the training CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from training.config import ConfigError  # Heavy imports after argument checking.

    try:
        config = resolve_config(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"training failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    from training.trainer import train

    try:
        train(config, resume=args.resume, verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m training --out {config.out_dir} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"training failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
