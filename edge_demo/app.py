"""``python -m edge_demo``: run an exported ``.tflite`` model on images, a video or a camera.

    python -m edge_demo --model exports/ssd_int8.tflite --source IMAGE|DIR|VIDEO|CAMERA_INDEX
        [--spec PATH] [--out DIR] [--threads N] [--score 0.4] [--max-frames N] [--show]
    python -m edge_demo --model exports/attributes_int8.tflite --detector exports/ssd_int8.tflite --source ...
    python -m edge_demo --model exports/maskrcnn_int8.tflite --source ...  # heads: maskrcnn_int8.box_head.tflite ...

Needs only ``requirements-edge.txt`` (numpy, OpenCV, LiteRT). The ``ModelSpec`` JSON
beside the model says which task it solves; ``TASKS`` maps the task to its pipeline and
its drawing function (``edge_demo.tasks``), so new tasks plug in with one entry. Every frame's per-stage
milliseconds are printed, then a mean/median summary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_demo.sources import AnnotatedWriter, FrameReader, SourceError, parse_source
from edge_demo.tasks import TASKS, EdgeDemoError, ProfiledPipeline, TaskHandlers, TimedPipeline, detector_pipeline
from tfsp.cli import SuggestingParser, positive_int, probability
from tfsp.runtime.graph_chain import head_path
from tfsp.runtime.runner import TFLITE_SUFFIX, Runner, open_runner
from tfsp.runtime.timing import MS_PER_S, StageTimings
from tfsp.spec import ModelSpec, SpecError, Task
from tfsp.viz import draw_timing

DEFAULT_OUT_DIR = Path("outputs/edge_demo")
DEFAULT_SCORE_THRESHOLD = 0.4
"""Display threshold (the spec's own threshold is the low one used for mAP evaluation)."""
SPEC_SUFFIX = ".json"
STAGE_NAMES = ("preprocess", "inference", "postprocess")
FPS_SMOOTHING = 0.9
"""Weight of the previous value in the moving average of the pipeline time (pre + inference + post) shown as FPS."""
QUIT_KEYS = (ord("q"), 27)  # q, Esc
WINDOW_NAME = "edge_demo"
DESCRIPTION = "Run an exported .tflite model on an image, an image directory, a video or a camera."
EXIT_OK, EXIT_ERROR = 0, 1

@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A ready-to-run model.

    Attributes:
        path: the ``.tflite`` file.
        spec: its ``ModelSpec``.
        handlers: the task's pipeline and drawing functions.
        pipeline: image -> (result, timings).
        profiled: image -> (result, timings, per-step milliseconds) for tasks that time their steps
            (Mask R-CNN: each graph and numpy step), else None.
        files: the model's ``.tflite`` files: ``path``, then the head graphs of a split-graph model.
    """

    path: Path
    spec: ModelSpec
    handlers: TaskHandlers
    pipeline: TimedPipeline
    profiled: ProfiledPipeline | None = None
    files: tuple[Path, ...] = ()

    @property
    def size_bytes(self) -> int:
        """Total size of the model's files (every graph of a split-graph model)."""
        return sum(path.stat().st_size for path in (self.files or (self.path,)))


def _open(model: Path, spec_path: Path | None, threads: int | None) -> tuple[Runner, ModelSpec, Path]:
    """Checks the files and opens the runner (a ``GraphChain`` for split graphs) and spec (errors say what to do)."""
    model = Path(model)
    if not model.is_file():
        raise EdgeDemoError(f"model not found: {model}")
    if model.suffix.lower() != TFLITE_SUFFIX:
        raise EdgeDemoError(f"{model}: the edge demo runs {TFLITE_SUFFIX} models; export one with "
                            f"`python -m export --run RUN_DIR --quant int8`")
    spec_path = Path(spec_path) if spec_path is not None else model.with_suffix(SPEC_SUFFIX)
    if not spec_path.is_file():
        raise EdgeDemoError(f"model spec not found: expected {spec_path} beside the model (or pass --spec PATH); "
                            f"`python -m export --run RUN_DIR --quant int8 --out {model.parent}` writes the "
                            ".tflite and its .json together")
    try:
        return open_runner(model, num_threads=threads), ModelSpec.from_json(spec_path), spec_path
    except (SpecError, ValueError) as error:
        raise EdgeDemoError(f"cannot use {model} with {spec_path}: {error}") from None


def load_model(model: Path, spec_path: Path | None = None, threads: int | None = None,
               score_threshold: float | None = None, detector: Path | None = None) -> LoadedModel:
    """Opens a ``.tflite`` model and its spec and builds the task's pipeline.

    Args:
        model: the ``.tflite`` file (of a split-graph model: the main file, heads beside it as
            ``NAME.box_head.tflite`` ...).
        spec_path: its ``ModelSpec`` JSON (default: ``model`` with suffix ``.json``).
        threads: LiteRT CPU threads (None: LiteRT's default).
        score_threshold: detection (also the detector of an attribute model): override of the
            spec's score threshold; pose: keep people whose person score is above it; Mask R-CNN:
            override of the box head's score threshold (None: the spec's own settings).
        detector: a detection ``.tflite`` (spec beside it) whose boxes an attribute model classifies.

    Raises:
        EdgeDemoError: missing or wrong model file, missing or invalid spec, unsupported
            task, or a spec that does not match the graph.
    """
    runner, spec, spec_path = _open(model, spec_path, threads)
    handlers = TASKS.get(spec.task)
    if handlers is None:
        raise EdgeDemoError(f"{spec_path}: the edge demo has no pipeline for task {spec.task.name}; "
                            f"supported: {', '.join(task.name for task in TASKS)}")
    boxes = None
    if detector is not None:
        detector_runner, detector_spec, detector_spec_path = _open(detector, None, threads)
        if detector_spec.task is not Task.DETECTION:
            raise EdgeDemoError(f"--detector {detector}: {detector_spec_path} is a {detector_spec.task.name} model, "
                                "not a detector")
        boxes = detector_pipeline(detector_runner, detector_spec, score_threshold)
    try:
        pipeline = handlers.make_pipeline(runner, spec, score_threshold, boxes)
    except (SpecError, ValueError) as error:
        raise EdgeDemoError(f"cannot use {model} with {spec_path}: {error}") from None
    profiled = pipeline if handlers.profiled else None
    if profiled is not None:
        pipeline = _without_steps(profiled)
    heads = getattr(runner, "heads", {})
    files = (Path(model), *(head_path(model, name) for name in heads))
    return LoadedModel(Path(model), spec, handlers, pipeline, profiled, files)


def _without_steps(profiled: ProfiledPipeline) -> TimedPipeline:
    def timed(image_rgb: np.ndarray) -> tuple[Any, StageTimings]:
        result, timings, _ = profiled(image_rgb)
        return result, timings

    return timed


def stage_values(timings: StageTimings) -> dict[str, float]:
    """Per-stage milliseconds in ``STAGE_NAMES`` order."""
    return dict(zip(STAGE_NAMES, (timings.preprocess_ms, timings.inference_ms, timings.postprocess_ms)))


def format_timings(timings: StageTimings) -> str:
    """``"preprocess 1.23 ms  inference 4.56 ms  postprocess 0.78 ms  total 6.57 ms"``."""
    parts = [f"{name} {ms:.2f} ms" for name, ms in stage_values(timings).items()]
    return "  ".join(parts + [f"total {timings.total_ms:.2f} ms"])


def summarize(timings: Sequence[StageTimings]) -> dict[str, dict[str, float]]:
    """``{stage or "total": {"mean": ms, "median": ms}}`` over frames (empty when no frames)."""
    if not timings:
        return {}
    columns = {name: [stage_values(t)[name] for t in timings] for name in STAGE_NAMES}
    columns["total"] = [t.total_ms for t in timings]
    return {name: {"mean": statistics.fmean(v), "median": statistics.median(v)} for name, v in columns.items()}


def annotate(image_rgb: np.ndarray, result: Any, model: LoadedModel, fps: float | None,
             timings: StageTimings) -> np.ndarray:
    """The task's drawing with the FPS and per-stage footer below it (``tfsp.viz.draw_timing``)."""
    drawn = model.handlers.draw(image_rgb, result, model.spec)
    return draw_timing(drawn, fps, stage_values(timings))


def _gui_available() -> bool:
    try:
        cv2.namedWindow(WINDOW_NAME)
    except cv2.error:
        return False
    return True


def run(model: LoadedModel, source_text: str, out_dir: Path | None, show: bool = False,
        max_frames: int | None = None, stdout=None) -> list[StageTimings]:
    """Runs the demo loop: read, infer, draw, write/show, print per-frame and summary lines.

    Args:
        model: from ``load_model``.
        source_text: ``--source`` (image, directory, video or camera index).
        out_dir: where annotated files go (None: write nothing).
        show: display frames in a window (needs an OpenCV build with a GUI).
        max_frames: stop after this many frames.
        stdout: text stream for the report (default ``sys.stdout``).

    Returns:
        The per-stage timings of every processed frame.

    Raises:
        EdgeDemoError: unreadable source or output.
    """
    stdout = stdout or sys.stdout
    timings: list[StageTimings] = []
    skipped: list[str] = []
    writer = None
    frame_ms = None  # exponential moving average of the pipeline time, shown as FPS
    try:
        source = parse_source(source_text)
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(FrameReader(source, max_frames))
            if out_dir is not None:
                writer = stack.enter_context(AnnotatedWriter(source, out_dir, reader.fps))
            try:
                for frame in reader:
                    if frame.image_rgb is None:
                        skipped.append(frame.name)
                        print(f"[{frame.index}] {frame.name}: skipped (cannot decode image)", file=stdout)
                        continue
                    result, timing = model.pipeline(frame.image_rgb)
                    timings.append(timing)
                    frame_ms = timing.total_ms if frame_ms is None else (
                        FPS_SMOOTHING * frame_ms + (1.0 - FPS_SMOOTHING) * timing.total_ms)
                    annotated = annotate(frame.image_rgb, result, model, MS_PER_S / frame_ms, timing)
                    if writer is not None:
                        writer.write(frame, annotated)
                    print(f"[{frame.index}] {frame.name}: {format_timings(timing)}  "
                          f"{model.handlers.describe(result)}", file=stdout, flush=True)
                    if show and _show(annotated, wait_ms=1 if source.is_stream else 0):
                        break
            except KeyboardInterrupt:
                print("interrupted", file=stdout)
    except SourceError as error:
        raise EdgeDemoError(str(error)) from None
    _print_summary(timings, skipped, writer.written if writer is not None else [], out_dir, stdout)
    return timings


def _show(image_rgb: np.ndarray, wait_ms: int) -> bool:
    """Displays a frame; returns whether a quit key was pressed."""
    cv2.imshow(WINDOW_NAME, np.ascontiguousarray(image_rgb[..., ::-1]))
    return cv2.waitKey(wait_ms) & 0xFF in QUIT_KEYS


def _print_summary(timings: list[StageTimings], skipped: list[str], written: list[Path], out_dir: Path | None,
                   stdout) -> None:
    note = f", {len(skipped)} skipped (cannot decode: {', '.join(skipped)})" if skipped else ""
    print(f"summary: {len(timings)} frames{note}", file=stdout)
    for name, stats in summarize(timings).items():
        print(f"  {name:<12} mean {stats['mean']:8.2f} ms  median {stats['median']:8.2f} ms", file=stdout)
    if written:
        print(f"wrote {len(written)} file(s) to {out_dir}", file=stdout)


def build_parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    parser = SuggestingParser(prog="python -m edge_demo", description=DESCRIPTION)
    parser.add_argument("--model", type=Path, required=True, metavar="PATH", help="exported .tflite model")
    parser.add_argument("--source", required=True, metavar="SOURCE",
                        help="image file, image directory, video file or camera index")
    parser.add_argument("--spec", type=Path, metavar="PATH",
                        help="ModelSpec JSON (default: beside the model, same stem)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"output directory (default {DEFAULT_OUT_DIR}, none with --show)")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="LiteRT CPU threads (default: LiteRT's)")
    parser.add_argument("--detector", type=Path, metavar="PATH",
                        help="attribute models: detection .tflite whose boxes are classified")
    parser.add_argument("--score", type=probability, default=DEFAULT_SCORE_THRESHOLD,
                        help=f"display score threshold: boxes, or people by person score "
                             f"(default {DEFAULT_SCORE_THRESHOLD})")
    parser.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames (default: all)")
    parser.add_argument("--show", action="store_true", help="display frames in a window (q or Esc quits)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    show = args.show
    if show and not _gui_available():
        print("--show: this OpenCV build has no GUI (opencv-python-headless); writing files instead",
              file=sys.stderr)
        show = False
    out_dir = args.out if args.out is not None or show else DEFAULT_OUT_DIR
    try:
        model = load_model(args.model, args.spec, args.threads, args.score, args.detector)
        print(f"model {model.path} ({model.spec.task.name}, {model.spec.quantization.name}, "
              f"input {model.spec.input_size} px), threads {args.threads or 'default'}, score > {args.score}")
        run(model, args.source, out_dir, show, args.max_frames)
        print(f"next: python -m edge_demo.benchmark --models {model.path} [OTHER.tflite ...] --source {args.source}")
    except EdgeDemoError as error:
        print(f"edge_demo: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if show:
            cv2.destroyAllWindows()
    return EXIT_OK
