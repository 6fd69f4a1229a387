"""Evaluation of a model through the same pipeline the device runs.

    python -m training.evaluate --model runs/ssd/model.keras --data data/synth
    python -m training.evaluate --model exports/ssd_int8.tflite [--spec X.json] --data data/synth \\
        [--split val] [--max-images N] [--out stats.json]

The model is opened with `tfsp.runtime.runner.open_runner` (Keras or TFLite) and
every image goes through the task's device pipeline (numpy preprocess -> runner ->
numpy decode), exactly as on the device: detection models get COCO bbox AP,
pose models COCO keypoint (OKS) AP, dense models mIoU / pixel accuracy / depth
AbsRel and delta < 1.25, attribute models mAP and F1 on the ground-truth boxes,
Mask R-CNN chains (NAME.keras/.tflite plus NAME.box_head... beside it) mask, box and
keypoint AP (`training.eval_tasks`). Training's
periodic evaluation calls `evaluate_runner` with a KerasRunner over the
in-memory model, so both report the same numbers for the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tfsp.cli import SuggestingParser, positive_int
from tfsp.data.coco import CocoDataset, load_split
from tfsp.fileio import write_text_atomic
from tfsp.runtime.runner import Runner, open_runner
from tfsp.runtime.timing import StageTimings
from tfsp.spec import ModelSpec, SpecError
from training.eval_tasks import METRIC_DESCRIPTIONS, MISSING_STAT, TASK_EVALUATIONS, detection_per_category

DEFAULT_DATA_ROOT = "data/synth"
DEFAULT_SPLIT = "val"
RUN_SPEC_FILENAME = "spec.json"  # beside OUT/model.keras (see training.trainer)
CHECKPOINT_DIRNAME = "checkpoints"  # OUT/checkpoints/last.keras -> OUT/spec.json
SPEC_SUFFIX = ".json"  # exports: NAME.tflite -> NAME.json
EXIT_ERROR = 1
PER_CLASS_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "AR100")  # --per-class table columns


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation of one model on one split.

    Attributes:
        stats: Stat name -> value (COCO: `tfsp.eval.stat_names`, in [0, 1]); `MISSING_STAT` (-1)
            where there is nothing to measure (no ground truth in the stat's range).
        num_images: Images evaluated.
        num_detections: Results (detections, poses, images or objects) produced over those images.
        timings: Mean per-image pipeline stage timings in milliseconds.
        metric: Name of the stats block ("bbox", "keypoints", "dense", "attributes", "instances").
        headline: The main stats (progress lines, plots, demo summaries), first = the main one.
    """

    stats: Mapping[str, float]
    num_images: int
    num_detections: int
    timings: StageTimings
    metric: str = "bbox"
    headline: tuple[str, ...] = ("AP", "AP50", "AP75")

    def format_table(self) -> str:
        """The stats as an aligned text table, one named stat per line."""
        lines, descriptions = [], METRIC_DESCRIPTIONS.get(self.metric, {})
        width = max([6, *(len(name) for name in self.stats)])
        for name, value in self.stats.items():
            shown = "   n/a" if value == MISSING_STAT else f"{value:.4f}"
            lines.append(f"  {name:<{width}} {shown}   {descriptions.get(name, '')}".rstrip())
        t = self.timings
        lines.append(f"  per image: preprocess {t.preprocess_ms:.1f} ms, inference {t.inference_ms:.1f} ms, "
                     f"postprocess {t.postprocess_ms:.1f} ms")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dict; the stats under the metric's name ("bbox", "keypoints", "dense", "attributes")."""
        return {"metric": self.metric, self.metric: dict(self.stats), "headline": list(self.headline), "num_images": self.num_images,
                "num_detections": self.num_detections, "timings_ms": dataclasses.asdict(self.timings)}


def evaluate_runner(runner: Runner, spec: ModelSpec, dataset: CocoDataset,
                    max_images: int | None = None) -> EvalResult:
    """Runs a split through the task's device pipeline and evaluates it.

    Detection is matched by box IoU against the instances JSON, pose by OKS against the
    split's person-keypoints JSON (both with pycocotools), dense models per pixel, attribute
    models on the ground-truth boxes (`training.eval_tasks`).

    Args:
        runner: Keras or TFLite runner of the model.
        spec: The model's ModelSpec (task, preprocessing, decoding, category ids).
        dataset: The split; only its loaded records (corrupt images skipped) are evaluated.
        max_images: Evaluate the first this-many records only (None: all).

    Returns:
        The `EvalResult`.

    Raises:
        ValueError: Unsupported task, spec and data set disagree on category ids, no
            person-keypoints JSON for a pose model, or spec and runner disagree.
    """
    task = TASK_EVALUATIONS.get(spec.task)
    if task is None:
        raise ValueError(f"evaluation of task {spec.task.value} is not supported yet; "
                         f"supported: {', '.join(t.value for t in TASK_EVALUATIONS)}")
    records = dataset.records[:max_images]
    stats, num_results, timings = task.evaluate(runner, spec, dataset, records)
    stats = {name: MISSING_STAT if math.isnan(value) else float(value) for name, value in stats.items()}
    return EvalResult(stats=stats, num_images=len(records), num_detections=num_results, timings=timings,
                      metric=task.metric, headline=tuple(name for name in task.headline if name in stats))


def find_spec(model_path: str | os.PathLike[str]) -> Path:
    """Finds the ModelSpec JSON of a model file.

    Looks for, in order: NAME.json beside NAME.tflite/NAME.keras (exports), spec.json in
    the model's folder (a training run), spec.json in the run folder above
    OUT/checkpoints/ (a checkpoint).

    Raises:
        FileNotFoundError: None of these exist.
    """
    model = Path(model_path)
    candidates = [model.with_suffix(SPEC_SUFFIX), model.parent / RUN_SPEC_FILENAME]
    if model.parent.name == CHECKPOINT_DIRNAME:
        candidates.append(model.parent.parent / RUN_SPEC_FILENAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no ModelSpec for {model} (tried {tried}); pass --spec PATH")


def format_per_class(per_class: Mapping[str, Mapping[str, float]]) -> str:
    """Per-class COCO stats as an aligned table: one row per class, columns `PER_CLASS_COLUMNS`."""
    width = max(len(name) for name in per_class)
    lines = ["per class:", f"  {'class':<{width}} " + " ".join(f"{column:>6}" for column in PER_CLASS_COLUMNS)]
    for name, stats in per_class.items():
        cells = ("   n/a" if stats[column] == MISSING_STAT else f"{stats[column]:6.3f}" for column in PER_CLASS_COLUMNS)
        lines.append(f"  {name:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def build_parser() -> SuggestingParser:
    """The CLI's argument parser."""
    parser = SuggestingParser(prog="python -m training.evaluate",
                              description="Evaluation through the device pipeline: COCO bbox AP (detection), "
                                          "keypoint AP (pose), mIoU and depth accuracy (dense), attribute mAP, "
                                          "mask/box/keypoint AP (Mask R-CNN).")
    parser.add_argument("--model", type=Path, required=True, help="model file: .keras or .tflite")
    parser.add_argument("--spec", type=Path, help="ModelSpec JSON (default: found beside the model)")
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA_ROOT),
                        help=f"COCO-layout data root (default {DEFAULT_DATA_ROOT})")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help=f"split to evaluate (default {DEFAULT_SPLIT})")
    parser.add_argument("--max-images", type=positive_int, help="evaluate the first N images only")
    parser.add_argument("--threads", type=positive_int, help="TFLite interpreter threads (default: its own)")
    parser.add_argument("--per-class", action="store_true",
                        help="detection models: also COCO bbox stats for each class on its own (runs the images twice)")
    parser.add_argument("--out", type=Path, help="write the stats as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the evaluation CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        spec_path = args.spec or find_spec(args.model)
        spec = ModelSpec.from_json(spec_path)
        dataset = load_split(args.data, args.split)
        runner = open_runner(args.model, num_threads=args.threads)
        result = evaluate_runner(runner, spec, dataset, args.max_images)
        per_class = (detection_per_category(runner, spec, dataset, dataset.records[:args.max_images])
                     if args.per_class else {})
    except (FileNotFoundError, SpecError, ValueError) as error:
        print(f"evaluation failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.model} ({spec.quantization.value}, spec {spec_path}) on {args.data} [{args.split}]: "
          f"{result.num_images} images ({len(dataset.skipped_images)} skipped as missing/corrupt), "
          f"{result.num_detections} {TASK_EVALUATIONS[spec.task].noun}")
    print(f"{TASK_EVALUATIONS[spec.task].title}:")
    print(result.format_table())
    if per_class:
        print(format_per_class(per_class))
    if args.out is not None:
        payload = {"model": str(args.model), "spec": str(spec_path), "data": str(args.data),
                   "split": args.split, **result.to_dict(), **({"per_class": per_class} if per_class else {})}
        write_text_atomic(args.out, json.dumps(payload, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
