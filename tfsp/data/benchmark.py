"""Throughput of the training input pipeline (decode + augmentation + resize + padding).

Usage::

    python -m tfsp.data.benchmark --data data/synth --split train --size 256 --batch 16 --steps 50

Prints the images per second of :func:`tfsp.data.pipeline.make_dataset` in training mode with
the default :class:`tfsp.data.augment.AugmentConfig`, measured over ``--steps`` batches after
``--warmup`` batches (the data set is repeated so any step count works).
"""

import argparse
import sys
import time
from pathlib import Path

from tfsp.cli import SuggestingParser, non_negative_int, positive_int
from tfsp.data.augment import AugmentConfig
from tfsp.data.coco import load_split
from tfsp.data.pipeline import DEFAULT_MASK_SIZE, DEFAULT_MAX_INSTANCES, PipelineConfig, make_dataset
from tfsp.runtime.preprocess import ResizeMode

DEFAULT_SIZE = 256
DEFAULT_BATCH = 16
DEFAULT_STEPS = 50
DEFAULT_WARMUP = 5


def measure(config: PipelineConfig, dataset, steps: int, warmup: int, training: bool = True) -> float:
    """Images per second of the pipeline over ``steps`` batches after ``warmup`` batches."""
    iterator = iter(make_dataset(dataset, config, training).repeat())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
    batch["image"].numpy()  # make sure the last batch is materialised
    return steps * config.batch_size / (time.perf_counter() - start)


def _parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m tfsp.data.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="data set root (tfsp.data.synthetic layout)")
    parser.add_argument("--split", default="train", help="split to read")
    parser.add_argument("--size", type=positive_int, default=DEFAULT_SIZE, help="model input side in pixels")
    parser.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, help="batch size")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="timed batches")
    parser.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP, help="untimed batches first")
    parser.add_argument("--max-instances", type=positive_int, default=DEFAULT_MAX_INSTANCES, help="instances per image")
    parser.add_argument("--resize", choices=[m.value for m in ResizeMode], default=ResizeMode.LETTERBOX.value)
    parser.add_argument("--masks", action="store_true", help="also produce instance masks")
    parser.add_argument("--mask-size", type=positive_int, default=DEFAULT_MASK_SIZE, help="mask resolution")
    parser.add_argument("--dense", action="store_true", help="also produce semantic and depth maps")
    parser.add_argument("--no-augment", action="store_true", help="disable augmentation")
    parser.add_argument("--no-image-check", action="store_true", help="skip decoding every image at load time")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        dataset = load_split(args.data, args.split, check_images=not args.no_image_check)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"loaded {len(dataset)} images from {args.data} [{args.split}] in {time.perf_counter() - start:.1f} s")
    config = PipelineConfig(input_size=args.size, resize=ResizeMode(args.resize), max_instances=args.max_instances,
                            batch_size=args.batch, augment=None if args.no_augment else AugmentConfig(),
                            with_masks=args.masks, mask_size=args.mask_size, with_dense=args.dense)
    rate = measure(config, dataset, args.steps, args.warmup)
    print(f"images/s: {rate:.1f} (batch {args.batch}, {args.steps} steps, input {args.size}, "
          f"augment={'off' if args.no_augment else 'on'}, masks={'on' if args.masks else 'off'}, "
          f"dense={'on' if args.dense else 'off'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
