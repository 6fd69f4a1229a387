"""Which graph of a split-graph export costs the int8 AP: each graph in int8 alone, the others in fp32.

``python -m training.quant_attribution --fp32 exports/maskrcnn_fp32.tflite --int8 exports/maskrcnn_int8.tflite
--data data/synth`` evaluates the split through the device pipeline with the fp32 chain, with each
graph of the int8 chain swapped in on its own (stage 1, then every head), and with the int8 chain,
and prints the headline stats with their change from fp32 in AP points. A single-graph model gives
the first and last rows only. The graphs are the ones the export wrote (``tfsp.runtime.graph_chain``
names them beside the main file); the spec of the chain whose stage 1 runs decodes each row.
``export.quant_report`` then shows where inside a graph the error builds up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.quant_report import add_model_pair_arguments
from tfsp.cli import SuggestingParser, positive_int
from tfsp.data.coco import load_split
from tfsp.runtime.graph_chain import GraphChain
from tfsp.runtime.runner import Runner, open_runner
from tfsp.spec import ModelSpec, SpecError
from training.evaluate import EvalResult, evaluate_runner, find_spec

FP32_ROW = "fp32"
INT8_ROW = "int8"
STAGE1_ROW = "stage1"
TABLE_TITLE = "int8 graphs"
POINTS = 100.0  # AP in [0, 1] -> AP points
EXIT_ERROR = 2


def attribution_runners(fp32: Runner, int8: Runner) -> dict[str, tuple[Runner, bool]]:
    """Row name -> (runner, whether its stage 1 is the int8 one), in report order.

    Args:
        fp32: the fp32 export (a ``GraphChain`` for split-graph models).
        int8: the int8 export of the same model.

    Returns:
        ``fp32``; for chains, ``stage1`` and each head name with that graph from ``int8`` and the
        rest from ``fp32``; ``int8``.

    Raises:
        ValueError: one is a chain and the other is not, or their heads differ.
    """
    rows: dict[str, tuple[Runner, bool]] = {FP32_ROW: (fp32, False)}
    if isinstance(fp32, GraphChain) != isinstance(int8, GraphChain):
        raise ValueError("one export is a split-graph chain and the other is not")
    if isinstance(fp32, GraphChain):
        if set(fp32.heads) != set(int8.heads):
            raise ValueError(f"the exports have different heads: {sorted(fp32.heads)} vs {sorted(int8.heads)}")
        rows[STAGE1_ROW] = (GraphChain(int8.stage1, fp32.heads), True)
        for name in fp32.heads:
            rows[name] = (GraphChain(fp32.stage1, {**fp32.heads, name: int8.heads[name]}), False)
    rows[INT8_ROW] = (int8, True)
    return rows


def format_attribution(results: dict[str, EvalResult]) -> str:
    """One row per result: each headline stat and its change from the ``fp32`` row in AP points."""
    reference = results[FP32_ROW]
    names = reference.headline
    labels = {row: {FP32_ROW: "none (fp32)", INT8_ROW: "all (int8)"}.get(row, row) for row in results}
    width = max(len(label) for label in (*labels.values(), TABLE_TITLE))
    lines = [f"{TABLE_TITLE:<{width}}" + "".join(f"  {name:>8} {'change':>7}" for name in names)]
    for row, result in results.items():
        label = labels[row]
        cells = "".join(f"  {result.stats[name]:8.3f} {POINTS * (result.stats[name] - reference.stats[name]):+7.2f}"
                        for name in names)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def attribute(fp32_path: Path, int8_path: Path, data: Path, split: str, max_images: int | None = None,
              threads: int | None = None) -> dict[str, EvalResult]:
    """Evaluates every row of :func:`attribution_runners` on a split (the models are opened first).

    Args:
        fp32_path: the fp32 export's main ``.tflite`` (its spec beside it, ``find_spec``).
        int8_path: the int8 export's main ``.tflite``.
        data: COCO-layout data root.
        split: the split to evaluate.
        max_images: the first this-many images only (None: all).
        threads: TFLite interpreter threads (None: LiteRT's default).

    Returns:
        Row name -> ``EvalResult``, in report order.

    Raises:
        FileNotFoundError: a model file, its spec or the split is missing.
        ValueError: the exports do not have the same graphs.
    """
    specs = {False: ModelSpec.from_json(find_spec(fp32_path)), True: ModelSpec.from_json(find_spec(int8_path))}
    rows = attribution_runners(open_runner(fp32_path, threads), open_runner(int8_path, threads))
    dataset = load_split(data, split)
    results = {}
    for row, (runner, int8_stage1) in rows.items():
        print(f"evaluating: {row} ...", flush=True)
        results[row] = evaluate_runner(runner, specs[int8_stage1], dataset, max_images)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m training.quant_attribution", description=__doc__.split("\n\n")[0])
    add_model_pair_arguments(parser)
    parser.add_argument("--max-images", type=positive_int, help="evaluate the first N images only")
    parser.add_argument("--threads", type=positive_int, help="TFLite interpreter threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = attribute(args.fp32, args.int8, args.data, args.split, args.max_images, args.threads)
    except (OSError, ValueError, SpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.split} of {args.data}, {results[FP32_ROW].num_images} images:")
    print(format_attribution(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
