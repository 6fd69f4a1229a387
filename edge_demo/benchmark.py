"""``python -m edge_demo.benchmark``: interleaved latency of several models on the same inputs.

    python -m edge_demo.benchmark --models exports/ssd_fp32.tflite exports/ssd_int8.tflite \\
        --source data/synth/images/val [--runs 50] [--warmup 3] [--threads N] [--score 0.4] [--json PATH]

All models are loaded first, then timed round-robin in one process: every round runs each
model once on the same image (rounds cycle through the source's images), and the model
that goes first rotates from round to round, so drift (thermal throttling, other load)
and cache effects hit every model alike. Reports median and p90 inference milliseconds,
median preprocess and postprocess milliseconds, file sizes (all graphs of a split-graph
model), and each model's median divided by the first model's (e.g. int8 / fp32). Models whose
pipeline times its steps (Mask R-CNN: each graph and each numpy step) also get a per-step
table of median milliseconds, the models side by side. Device-safe: no TensorFlow.
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
        size_bytes: ``.tflite`` file size (all graphs of a split-graph model).
        stages_ms: ``(runs, 3)`` float64 per-round preprocess, inference, postprocess.
        steps_ms: step name -> ``(runs,)`` float64 per-round milliseconds, in run order (empty
            unless the pipeline times its steps, e.g. Mask R-CNN's graphs and numpy steps).
    """

    model: str
    quantization: str
    size_bytes: int
    stages_ms: np.ndarray
    steps_ms: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def step_median(self, step: str) -> float:
        """Median milliseconds of pipeline step ``step`` (a key of ``steps_ms``)."""
        return float(np.median(self.steps_ms[step]))

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
    steps: list[list[dict[str, float]]] = [[] for _ in models]
    for round_index in range(warmup + runs):
        image = images[round_index % len(images)]
        for k in round_robin_order(len(models), round_index):
            if models[k].profiled is not None:
                _, timing, step_ms = models[k].profiled(image)
            else:
                (_, timing), step_ms = models[k].pipeline(image), None
            if round_index >= warmup:
                rows[k].append(timing)
                if step_ms is not None:
                    steps[k].append(step_ms)
    return [ModelLatency(str(m.path), m.spec.quantization.name, m.size_bytes,
                         np.array([list(stage_values(t).values()) for t in timings], np.float64),
                         {name: np.array([s[name] for s in model_steps], np.float64)
                          for name in (model_steps[0] if model_steps else ())})
            for m, timings, model_steps in zip(models, rows, steps)]


def to_json(results: Sequence[ModelLatency], settings: dict) -> dict:
    """JSON-ready report: settings plus, per model, size, per-stage median/p90 and the ratios to the first.

    Models that time their steps also get ``"steps_ms": {step: median ms}`` in run order.
    """
    first = results[0]
    return {"settings": settings, "models": [{
        "model": r.model, "quantization": r.quantization, "size_bytes": r.size_bytes,
        **{f"{stage}_ms": {"median": r.median(stage), "p90": r.p90(stage)} for stage in (*STAGE_NAMES, "total")},
        "inference_ratio": r.median("inference") / first.median("inference"),
        "total_ratio": r.median("total") / first.median("total"),
        **({"steps_ms": {step: r.step_median(step) for step in r.steps_ms}} if r.steps_ms else {}),
    } for r in results]}


def format_steps(results: Sequence[ModelLatency]) -> str:
    """Median milliseconds per pipeline step, one column per model that times its steps ("" if none).

    With two or more such models, a last column gives the last one's median over the first's
    (e.g. int8 / fp32 when given fp32 first).
    """
    profiled = [r for r in results if r.steps_ms]
    if not profiled:
        return ""
    names = [Path(r.model).stem for r in profiled]
    width = max(len("step"), *(len(step) for r in profiled for step in r.steps_ms))
    columns = [max(9, len(name)) for name in names]
    ratio = len(profiled) > 1
    header = f"{'step':<{width}}  " + " ".join(f"{name:>{w}}" for name, w in zip(names, columns))
    lines = ["median ms per step:", header + (f" {'ratio':>6}" if ratio else "")]
    steps = list(dict.fromkeys(step for r in profiled for step in r.steps_ms))
    for step in steps:
        values = [r.step_median(step) if step in r.steps_ms else None for r in profiled]
        cells = " ".join(f"{'-':>{w}}" if v is None else f"{v:{w}.2f}" for v, w in zip(values, columns))
        line = f"{step:<{width}}  {cells}"
        if ratio:
            first, last = values[0], values[-1]
            line += f" {last / first:6.2f}" if first and last is not None else f" {'-':>6}"
        lines.append(line)
    return "\n".join(lines)


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
    steps = format_steps(results)
    if steps:
        print(steps)
    if args.json is not None:
        settings = {"source": args.source, "runs": args.runs, "warmup": warmup, "threads": args.threads,
                    "score_threshold": args.score, "images": len(images),
                    "detector": None if args.detector is None else str(args.detector)}
        write_text_atomic(args.json, json.dumps(to_json(results, settings), indent=2) + "\n")
        print(f"wrote {args.json}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
