"""``python -m edge_demo.benchmark``: interleaved latency of several models on the same inputs.

    python -m edge_demo.benchmark --models exports/ssd_fp32.tflite exports/ssd_int8.tflite \\
        --source data/synth/images/val [--runs 50] [--warmup 3] [--threads N] [--score 0.4] [--json PATH]

All models are loaded first, then timed round-robin in one process: every round runs each
model once on the same image (rounds cycle through the source's images), and the model
that goes first rotates from round to round, so drift (thermal throttling, other load)
and cache effects hit every model alike. Reports median and p90 inference milliseconds,
median preprocess and postprocess milliseconds, file sizes, and each model's median
divided by the first model's (e.g. int8 / fp32). Device-safe: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_demo.app import DEFAULT_SCORE_THRESHOLD, STAGE_NAMES, EdgeDemoError, LoadedModel, load_model, stage_values
from edge_demo.sources import FrameReader, SourceError, parse_source
from tfsp.cli import SuggestingParser, non_negative_int, positive_int, probability
from tfsp.fileio import write_text_atomic
from tfsp.runtime.timing import StageTimings

DEFAULT_RUNS = 50
"""Timed rounds (each runs every model once)."""
DEFAULT_WARMUP = 3
"""Untimed rounds first (interpreter allocation, caches)."""
P90 = 90.0
BYTES_PER_MB = 1024 * 1024
EXIT_OK, EXIT_ERROR = 0, 1
DESCRIPTION = "Interleaved (round-robin) latency of several .tflite models on the same inputs."


@dataclasses.dataclass(frozen=True)
class ModelLatency:
    """Latency of one model over the timed rounds, in milliseconds.

    Attributes:
        model: path as given.
        quantization: the spec's quantisation mode name (e.g. ``"INT8"``).
        size_bytes: ``.tflite`` file size.
        stages_ms: ``(runs, 3)`` float64 per-round preprocess, inference, postprocess.
    """

    model: str
    quantization: str
    size_bytes: int
    stages_ms: np.ndarray

    def median(self, stage: str) -> float:
        """Median milliseconds of ``stage`` (one of ``STAGE_NAMES`` or ``"total"``)."""
        return float(np.median(self._column(stage)))

    def p90(self, stage: str) -> float:
        """90th percentile milliseconds of ``stage`` (linear interpolation)."""
        return float(np.percentile(self._column(stage), P90))

    def _column(self, stage: str) -> np.ndarray:
        return self.stages_ms.sum(axis=1) if stage == "total" else self.stages_ms[:, STAGE_NAMES.index(stage)]


def round_robin_order(num_models: int, round_index: int) -> list[int]:
    """Model indices in the order they run in round ``round_index``: the start rotates every round."""
    return [(round_index + k) % num_models for k in range(num_models)]


def load_images(source_text: str, limit: int) -> tuple[list[np.ndarray], int]:
    """Up to ``limit`` decodable frames of a source (image, directory, video; a camera is read live).

    Returns:
        ``(images, skipped)``: (H, W, 3) uint8 RGB frames, and the number of undecodable files.

    Raises:
        EdgeDemoError: unreadable source, or no decodable image at all.
    """
    try:
        with FrameReader(parse_source(source_text), max_frames=limit) as reader:
            frames = list(reader)
    except SourceError as error:
        raise EdgeDemoError(str(error)) from None
    images = [f.image_rgb for f in frames if f.image_rgb is not None]
    if not images:
        raise EdgeDemoError(f"source {source_text}: no decodable image")
    return images, len(frames) - len(images)


def benchmark(models: Sequence[LoadedModel], images: Sequence[np.ndarray], runs: int,
              warmup: int = DEFAULT_WARMUP) -> list[ModelLatency]:
    """Times every model, round-robin, on the same images.

    Args:
        models: loaded models (the first is the ratio reference).
        images: (H, W, 3) uint8 RGB; round r uses ``images[r % len(images)]``.
        runs: timed rounds.
        warmup: untimed rounds before them.

    Returns:
        One ``ModelLatency`` per model, in the order given.
    """
    rows: list[list[StageTimings]] = [[] for _ in models]
    for round_index in range(warmup + runs):
        image = images[round_index % len(images)]
        for k in round_robin_order(len(models), round_index):
            _, timing = models[k].pipeline(image)
            if round_index >= warmup:
                rows[k].append(timing)
    return [ModelLatency(str(m.path), m.spec.quantization.name, m.path.stat().st_size,
                         np.array([list(stage_values(t).values()) for t in timings], np.float64))
            for m, timings in zip(models, rows)]


def to_json(results: Sequence[ModelLatency], settings: dict) -> dict:
    """JSON-ready report: settings plus, per model, size, per-stage median/p90 and the ratios to the first."""
    first = results[0]
    return {"settings": settings, "models": [{
        "model": r.model, "quantization": r.quantization, "size_bytes": r.size_bytes,
        **{f"{stage}_ms": {"median": r.median(stage), "p90": r.p90(stage)} for stage in (*STAGE_NAMES, "total")},
        "inference_ratio": r.median("inference") / first.median("inference"),
        "total_ratio": r.median("total") / first.median("total"),
    } for r in results]}


def format_table(results: Sequence[ModelLatency]) -> str:
    """The report as a text table plus one ratio line per model after the first."""
    first = results[0]
    width = max(len("model"), *(len(r.model) for r in results))
    lines = [f"{'model':<{width}}  {'quant':<7} {'MiB':>7} {'pre ms':>8} {'inf ms':>8} {'inf p90':>8} "
             f"{'post ms':>8} {'total ms':>9} {'inf ratio':>9}"]
    for r in results:
        lines.append(f"{r.model:<{width}}  {r.quantization:<7} {r.size_bytes / BYTES_PER_MB:7.2f} "
                     f"{r.median('preprocess'):8.2f} {r.median('inference'):8.2f} {r.p90('inference'):8.2f} "
                     f"{r.median('postprocess'):8.2f} {r.median('total'):9.2f} "
                     f"{r.median('inference') / first.median('inference'):9.2f}")
    for r in results[1:]:
        lines.append(f"ratio {Path(r.model).stem}/{Path(first.model).stem}: median inference "
                     f"{r.median('inference') / first.median('inference'):.2f}x, median total "
                     f"{r.median('total') / first.median('total'):.2f}x, size "
                     f"{r.size_bytes / first.size_bytes:.2f}x")
    return "\n".join(lines)


def build_parser() -> SuggestingParser:
    """The benchmark's argument parser."""
    parser = SuggestingParser(prog="python -m edge_demo.benchmark", description=DESCRIPTION)
    parser.add_argument("--models", type=Path, nargs="+", required=True, metavar="PATH",
                        help=".tflite models (spec JSON beside each); ratios are to the first")
    parser.add_argument("--source", required=True, help="image, image directory or video")
    parser.add_argument("--runs", type=positive_int, default=DEFAULT_RUNS, metavar="N",
                        help=f"timed rounds (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP, metavar="N",
                        help=f"untimed rounds first (default {DEFAULT_WARMUP})")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="LiteRT CPU threads (default: LiteRT's)")
    parser.add_argument("--score", type=probability, default=DEFAULT_SCORE_THRESHOLD,
                        help=f"score threshold, as in the demo (default {DEFAULT_SCORE_THRESHOLD})")
    parser.add_argument("--detector", type=Path, metavar="PATH",
                        help="attribute models: detection .tflite run first (its time is included in every stage)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        models = [load_model(path, threads=args.threads, score_threshold=args.score, detector=args.detector)
                  for path in args.models]
        images, skipped = load_images(args.source, args.runs)
    except EdgeDemoError as error:
        print(f"edge_demo.benchmark: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    warmup = args.warmup
    print(f"benchmark: {len(models)} models, {args.runs} rounds (+{warmup} warm-up) round-robin over "
          f"{len(images)} images{f' ({skipped} undecodable skipped)' if skipped else ''}, "
          f"threads {args.threads or 'default'}, score > {args.score}")
    results = benchmark(models, images, args.runs, warmup)
    print(format_table(results))
    if args.json is not None:
        settings = {"source": args.source, "runs": args.runs, "warmup": warmup, "threads": args.threads,
                    "score_threshold": args.score, "images": len(images),
                    "detector": None if args.detector is None else str(args.detector)}
        write_text_atomic(args.json, json.dumps(to_json(results, settings), indent=2) + "\n")
        print(f"wrote {args.json}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
