"""``python -m training.demo``: the main job behind ``make demo``, end to end on the embedded data.

    python -m training.demo --task ssd|pose|dense|attributes|maskrcnn [--data data/synth] [--runs runs]
        [--exports exports] [--outputs outputs]

For each task: contact sheet of the data set -> train the task's config in ``training/configs`` (resumes
an interrupted run, reuses a finished one) -> export fp32 and int8 TFLite -> evaluation (bbox AP for
``ssd``, keypoint AP for ``pose``, mIoU and depth delta < 1.25 for ``dense``, attribute mAP for
``attributes``, mask, box and keypoint AP for ``maskrcnn``) of the Keras model and both TFLite files
through the device pipeline -> edge demo on val images -> interleaved fp32/int8 latency -> one summary
table, also written as ``OUTPUTS/TASK_summary.json``. The attribute model classifies the boxes of the SSD
chain's int8 detector on the device, so ``attributes`` first runs (or reuses) the ``ssd`` chain. Mask R-CNN runs as four graphs
(``NAME.tflite`` plus ``NAME.box_head.tflite`` ...): sizes are of all of them, and the latency JSON holds
the per-step milliseconds (each graph and numpy step). Every step is the same CLI a user would run; the
commands are printed as they run.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tfsp.cli import SuggestingParser
from tfsp.runtime.graph_chain import HEAD_GRAPHS, head_path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
EDGE_DEMO_FRAMES = 16  # val images annotated by the edge demo
LATENCY_ROUNDS = 50  # rounds of the interleaved fp32/int8 benchmark
EXIT_OK, EXIT_ERROR = 0, 1


class DemoTask(enum.Enum):
    """Tasks ``make demo TASK=...`` knows."""

    SSD = "ssd"
    POSE = "pose"
    DENSE = "dense"
    ATTRIBUTES = "attributes"
    MASKRCNN = "maskrcnn"


@dataclasses.dataclass(frozen=True)
class DemoChain:
    """What differs between the tasks' chains.

    Attributes:
        name: prefix of the run directory, exported files and outputs (``runs/NAME``, ``NAME_int8.tflite``).
        config: training config file name in ``training/configs``.
        title: what is trained, for the step titles.
        detector: the chain whose int8 detector finds the boxes this model classifies on the device.
    """

    name: str
    config: str
    title: str
    detector: DemoTask | None = None


CHAINS: dict[DemoTask, DemoChain] = {
    DemoTask.SSD: DemoChain("ssd", "ssd_synth.yaml", "SSD"),
    DemoTask.POSE: DemoChain("pose", "openpose_synth.yaml", "OpenPose"),
    DemoTask.DENSE: DemoChain("dense", "dense_synth.yaml", "dense segmentation + depth"),
    DemoTask.ATTRIBUTES: DemoChain("attributes", "attributes_synth.yaml", "attributes", detector=DemoTask.SSD),
    DemoTask.MASKRCNN: DemoChain("maskrcnn", "mask_rcnn_synth.yaml", "Mask R-CNN"),
}


class StepFailed(RuntimeError):
    """A demo step's CLI returned a non-zero exit code."""


def _step(title: str, prog: str, main: Callable[[list[str]], int], argv: Sequence[str]) -> None:
    """Runs one CLI in-process, printing the equivalent shell command first."""
    argv = [str(a) for a in argv]
    print(f"\n=== {title}\n$ python -m {prog} {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    code = main(argv)
    if code:
        raise StepFailed(f"step '{title}' failed (exit code {code}); rerun the command above to see why")
    print(f"=== {title}: done in {time.perf_counter() - started:.0f} s", flush=True)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def model_size_bytes(path: Path) -> int:
    """Size of a model file plus the head graphs beside it (``tfsp.runtime.graph_chain.head_path``)."""
    files = [path, *(head_path(path, name) for name in HEAD_GRAPHS)]
    return sum(file.stat().st_size for file in files if file.is_file())


def _summary_rows(evals: dict[str, Path], latency: dict, exports: dict[str, Path]) -> tuple[str, list[dict]]:
    """(metric name, one row per model: its headline stats, file size (all graphs) and latency)."""
    by_model = {Path(entry["model"]).name: entry for entry in latency.get("models", [])}
    rows, metric = [], ""
    for name, path in evals.items():
        result = _read_json(path)
        metric = result["metric"]
        row = {"model": name, **{stat: result[metric][stat] for stat in result["headline"]}}
        if name in exports:
            timing = by_model.get(exports[name].name, {})
            row["size_mb"] = model_size_bytes(exports[name]) / 2**20
            row["inference_ms"] = timing.get("inference_ms", {}).get("median")
            row["postprocess_ms"] = timing.get("postprocess_ms", {}).get("median")
            row["inference_ratio"] = timing.get("inference_ratio")
            if "steps_ms" in timing:
                row["steps_ms"] = timing["steps_ms"]
        rows.append(row)
    return metric, rows


SHORT_METRIC_NAMES = {"bbox": "bbox", "keypoints": "kp", "attributes": "attr", "instances": ""}
"""Prefix of the first stat's column header (``kp AP``; none for stats named with their kind, ``mask_AP``)."""


def _format_rows(rows: list[dict], metric: str, headline: Sequence[str]) -> str:
    def cell(value, fmt):
        return format("-", ">" + fmt.split(".")[0]) if value is None else format(value, fmt)

    names = [f"{SHORT_METRIC_NAMES.get(metric, metric)} {headline[0]}".strip(), *headline[1:]]
    widths = [max(8, len(name)) for name in names]
    header = " ".join(f"{name:>{width}}" for name, width in zip(names, widths))
    lines = [f"{'model':<12} {header} {'size MB':>8} {'infer ms':>9} {'ratio':>6} {'post ms':>8}"]
    for r in rows:
        stats = " ".join(f"{r[stat]:>{width}.3f}" for stat, width in zip(headline, widths))
        lines.append(f"{r['model']:<12} {stats} "
                     f"{cell(r.get('size_mb'), '8.2f')} {cell(r.get('inference_ms'), '9.2f')} "
                     f"{cell(r.get('inference_ratio'), '6.2f')} {cell(r.get('postprocess_ms'), '8.2f')}")
    return "\n".join(lines)


def run_chain(task: DemoTask, data: Path, runs: Path, exports: Path, outputs: Path,
              config: Path | None = None, detector_config: Path | None = None) -> dict:
    """One task's chain; returns the summary written to ``outputs/NAME_summary.json``.

    ``config`` replaces the task's config in ``training/configs`` (the tests use a tiny one);
    ``detector_config`` the config of the detector chain, when the task has one.
    """
    chain = CHAINS[task]
    detector_args = []
    if chain.detector is not None:
        detector = exports / f"{CHAINS[chain.detector].name}_int8.tflite"
        if detector.is_file():
            print(f"\n=== detector: reusing {detector} (delete it to rebuild it)")
        else:
            print(f"\n=== detector: {detector} is missing; running the {chain.detector.value} chain first", flush=True)
            run_chain(chain.detector, data, runs, exports, outputs, detector_config)
        detector_args = ["--detector", detector]
    from edge_demo import app as edge_app
    from edge_demo import benchmark as edge_benchmark
    from export import cli as export_cli
    from tfsp.data import preview
    from tfsp.fileio import write_text_atomic
    from training import __main__ as train_cli
    from training import evaluate as evaluate_cli

    run_dir = runs / chain.name
    _step("contact sheet of the data set", "tfsp.data.preview", preview.main,
          ["--data", data, "--split", "val", "--out", outputs / "synth_contact_sheet.png"])
    if (run_dir / "metrics.json").is_file():
        print(f"\n=== train: reusing the finished run in {run_dir} (delete it to train again)")
    else:
        resume = ["--resume"] if (run_dir / "checkpoints").is_dir() else []
        _step(f"train {chain.title} (resumes if interrupted)", "training", train_cli.main,
              ["--config", config or CONFIGS_DIR / chain.config, "--out", run_dir, "--data", data, "--verbose", "2", *resume])
    tflite = {}
    for quant in ("fp32", "int8"):
        name = f"{chain.name}_{quant}"
        _step(f"export {quant}", "export", export_cli.main,
              ["--run", run_dir, "--quant", quant, "--data", data, "--out", exports, "--name", name])
        tflite[quant] = exports / f"{name}.tflite"
    evals = {}
    for label, model in (("keras", run_dir / "model.keras"), ("fp32", tflite["fp32"]), ("int8", tflite["int8"])):
        evals[label] = outputs / f"{chain.name}_eval_{label}.json"
        _step(f"evaluate {label} on val", "training.evaluate", evaluate_cli.main,
              ["--model", model, "--data", data, "--split", "val", "--out", evals[label]])
    _step("edge demo (int8) on val images", "edge_demo", edge_app.main,
          ["--model", tflite["int8"], "--source", data / "images" / "val", "--out", outputs / f"{chain.name}_edge_demo",
           "--max-frames", EDGE_DEMO_FRAMES, *detector_args])
    latency_json = outputs / f"{chain.name}_latency.json"
    _step("latency fp32 vs int8 (interleaved)", "edge_demo.benchmark", edge_benchmark.main,
          ["--models", tflite["fp32"], tflite["int8"], "--source", data / "images" / "val",
           "--runs", LATENCY_ROUNDS, "--json", latency_json, *detector_args])
    metric, rows = _summary_rows(evals, _read_json(latency_json), tflite)
    headline = _read_json(evals["keras"])["headline"]
    by_model = {row["model"]: row for row in rows}
    summary = {"task": task.value, "metric": metric, "headline": headline, "data": str(data), "run": str(run_dir),
               "rows": rows,
               "int8_minus_float_points": {stat: 100 * (by_model["int8"][stat] - by_model["keras"][stat])
                                           for stat in headline},
               "int8_over_fp32_size": model_size_bytes(tflite["int8"]) / model_size_bytes(tflite["fp32"])}
    summary_json = outputs / f"{chain.name}_summary.json"
    write_text_atomic(summary_json, json.dumps(summary, indent=2) + "\n")
    print("\n" + _format_rows(rows, metric, headline))
    drops = ", ".join(f"{stat} {points:+.2f}" for stat, points in summary["int8_minus_float_points"].items())
    print(f"\nint8 - float ({metric}, points): {drops}; "
          f"int8 / fp32 file size: {summary['int8_over_fp32_size']:.2f}x")
    steps = by_model["int8"].get("steps_ms")
    if steps:
        print("int8 median ms per step: " + ", ".join(f"{step} {ms:.2f}" for step, ms in steps.items()))
    print(f"outputs: run {run_dir}/ (model.keras, metrics.json, loss.png, tb/), exports {exports}/, "
          f"annotated images {outputs / f'{chain.name}_edge_demo'}/, contact sheet {outputs / 'synth_contact_sheet.png'}, "
          f"summary {summary_json}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo; returns the process exit code."""
    parser = SuggestingParser(prog="python -m training.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--task", default=DemoTask.SSD.value, choices=[t.value for t in DemoTask],
                        help="which chain to run")
    parser.add_argument("--data", type=Path, default=Path("data/synth"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--exports", type=Path, default=Path("exports"))
    parser.add_argument("--outputs", type=Path, default=Path("outputs"))
    parser.add_argument("--config", type=Path, help="training config (default: the task's config in training/configs)")
    parser.add_argument("--detector-config", type=Path,
                        help="attributes: training config of the detector chain (default: its config in training/configs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    try:
        run_chain(DemoTask(args.task), args.data, args.runs, args.exports, args.outputs, args.config,
                  args.detector_config)
    except StepFailed as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
