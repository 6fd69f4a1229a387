"""``python -m training.demo``: the main job behind ``make demo``, end to end on the embedded data.

    python -m training.demo --task ssd|pose [--data data/synth] [--runs runs] [--exports exports] [--outputs outputs]

For each task: contact sheet of the data set -> train the task's config in ``training/configs`` (resumes
an interrupted run, reuses a finished one) -> export fp32 and int8 TFLite -> COCO evaluation (bbox AP for
``ssd``, keypoint AP for ``pose``) of the Keras model and both TFLite files through the device pipeline ->
edge demo on val images -> interleaved fp32/int8 latency -> one summary table, also written as
``OUTPUTS/TASK_summary.json``. Every step is the same CLI a user would run; the commands are printed as
they run.
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

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
EDGE_DEMO_FRAMES = 16  # val images annotated by the edge demo
LATENCY_ROUNDS = 50  # rounds of the interleaved fp32/int8 benchmark
EXIT_OK, EXIT_ERROR = 0, 1


class DemoTask(enum.Enum):
    """Tasks ``make demo TASK=...`` knows."""

    SSD = "ssd"
    POSE = "pose"


@dataclasses.dataclass(frozen=True)
class DemoChain:
    """What differs between the tasks' chains.

    Attributes:
        name: prefix of the run directory, exported files and outputs (``runs/NAME``, ``NAME_int8.tflite``).
        config: training config file name in ``training/configs``.
        title: what is trained, for the step titles.
        stats_key: key of the evaluation JSON holding the COCO stats (``"bbox"`` or ``"keypoints"``).
    """

    name: str
    config: str
    title: str
    stats_key: str


CHAINS: dict[DemoTask, DemoChain] = {
    DemoTask.SSD: DemoChain("ssd", "ssd_synth.yaml", "SSD", "bbox"),
    DemoTask.POSE: DemoChain("pose", "openpose_synth.yaml", "OpenPose", "keypoints"),
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


def _summary_rows(evals: dict[str, Path], latency: dict, exports: dict[str, Path], stats_key: str) -> list[dict]:
    by_model = {Path(entry["model"]).name: entry for entry in latency.get("models", [])}
    rows = []
    for name, path in evals.items():
        stats = _read_json(path)[stats_key]
        row = {"model": name, "AP": stats["AP"], "AP50": stats["AP50"], "AP75": stats["AP75"]}
        if name in exports:
            timing = by_model.get(exports[name].name, {})
            row["size_mb"] = exports[name].stat().st_size / 2**20
            row["inference_ms"] = timing.get("inference_ms", {}).get("median")
            row["postprocess_ms"] = timing.get("postprocess_ms", {}).get("median")
            row["inference_ratio"] = timing.get("inference_ratio")
        rows.append(row)
    return rows


def _format_rows(rows: list[dict], stats_key: str) -> str:
    def cell(value, fmt):
        return format("-", ">" + fmt.split(".")[0]) if value is None else format(value, fmt)

    kind = {"bbox": "bbox", "keypoints": "kp"}.get(stats_key, stats_key)
    lines = [f"{'model':<12} {kind + ' AP':>8} {'AP50':>6} {'AP75':>6} {'size MB':>8} {'infer ms':>9} {'ratio':>6}"
             f" {'post ms':>8}"]
    for r in rows:
        lines.append(f"{r['model']:<12} {r['AP']:>8.3f} {r['AP50']:>6.3f} {r['AP75']:>6.3f} "
                     f"{cell(r.get('size_mb'), '8.2f')} {cell(r.get('inference_ms'), '9.2f')} "
                     f"{cell(r.get('inference_ratio'), '6.2f')} {cell(r.get('postprocess_ms'), '8.2f')}")
    return "\n".join(lines)


def run_chain(task: DemoTask, data: Path, runs: Path, exports: Path, outputs: Path,
              config: Path | None = None) -> dict:
    """One task's chain; returns the summary written to ``outputs/NAME_summary.json``.

    ``config`` replaces the task's config in ``training/configs`` (the tests use a tiny one).
    """
    chain = CHAINS[task]
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
           "--max-frames", EDGE_DEMO_FRAMES])
    latency_json = outputs / f"{chain.name}_latency.json"
    _step("latency fp32 vs int8 (interleaved)", "edge_demo.benchmark", edge_benchmark.main,
          ["--models", tflite["fp32"], tflite["int8"], "--source", data / "images" / "val",
           "--runs", LATENCY_ROUNDS, "--json", latency_json])
    rows = _summary_rows(evals, _read_json(latency_json), tflite, chain.stats_key)
    ap = {row["model"]: row["AP"] for row in rows}
    summary = {"task": task.value, "metric": chain.stats_key, "data": str(data), "run": str(run_dir), "rows": rows,
               "int8_minus_float_AP_points": 100 * (ap["int8"] - ap["keras"]),
               "int8_over_fp32_size": tflite["int8"].stat().st_size / tflite["fp32"].stat().st_size}
    summary_json = outputs / f"{chain.name}_summary.json"
    write_text_atomic(summary_json, json.dumps(summary, indent=2) + "\n")
    print("\n" + _format_rows(rows, chain.stats_key))
    print(f"\nint8 - float {chain.stats_key} AP: {summary['int8_minus_float_AP_points']:+.2f} points; "
          f"int8 / fp32 file size: {summary['int8_over_fp32_size']:.2f}x")
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
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    try:
        run_chain(DemoTask(args.task), args.data, args.runs, args.exports, args.outputs, args.config)
    except StepFailed as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
