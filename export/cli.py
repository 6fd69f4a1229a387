"""``python -m export``: a trained run -> ``NAME.tflite`` + ``NAME.json`` (ModelSpec).

    python -m export --run runs/ssd --quant int8 [--data data/synth] [--out exports/] [--name NAME]
    python -m export --model path/model.keras --spec path/spec.json --quant fp16

A Mask R-CNN run (spec task INSTANCE_SEGMENTATION) also holds ``model.{head}.keras`` per head;
every graph is exported (``NAME.tflite`` + ``NAME.{head}.tflite``) with one ``NAME.json``
(``export.rcnn``).

The run directory holds ``model.keras`` and either ``spec.json`` (a float
``ModelSpec``) or the training ``config.yaml`` (``training.config.TrainConfig``),
from whose SSD section and data set the spec is built. int8 calibrates on
``--data`` (default: the run config's data root).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import keras

from export.calibration import CALIBRATION_IMAGES, calibration_images
from export.convert import QUANT_SETTINGS, ExportError, export_model
from export.rcnn import export_chain, load_chain_models
from tfsp.cli import SuggestingParser, positive_int, suggest
from tfsp.data.coco import load_split
from tfsp.spec import ModelSpec, QuantMode, SpecError, Task
from training.config import load_config
from training.recipes import build_run_spec

MODEL_FILE = "model.keras"
SPEC_FILE = "spec.json"
CONFIG_FILE = "config.yaml"
DEFAULT_OUT_DIR = "exports"
DEFAULT_QUANT = QuantMode.INT8
BYTES_PER_MB = 1024 * 1024
EXIT_ERROR = 1


@dataclasses.dataclass(frozen=True)
class RunSource:
    """What an export reads from a training run.

    Attributes:
        model_path: the float ``.keras`` model.
        spec: its float ``ModelSpec``.
        data_root: calibration data (None: not known; int8 then needs ``--data``).
    """

    model_path: Path
    spec: ModelSpec
    data_root: Path | None


def resolve_run(run: Path | None, model: Path | None, spec: Path | None, data: Path | None) -> RunSource:
    """Finds the model, its spec and the calibration data of a run.

    Spec: the ``spec`` argument, else ``spec.json`` beside the model, else the
    spec ``training.recipes.build_run_spec`` builds from ``config.yaml`` beside
    the model and the training split of its data set. Calibration data:
    ``data``, else the data root of ``config.yaml`` when there is one.

    Raises:
        FileNotFoundError: no model, no given spec file, or neither a spec nor a config.
    """
    model_path = model if model is not None else (run or Path(".")) / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path} (pass --run DIR holding {MODEL_FILE}, or --model PATH)")
    if spec is not None and not spec.is_file():
        raise FileNotFoundError(f"no spec at {spec}")
    folder = run if run is not None else model_path.parent
    spec_path, config_path = spec or folder / SPEC_FILE, folder / CONFIG_FILE
    config = load_config(config_path) if config_path.is_file() else None
    data_root = data if data is not None else (Path(config.data.root) if config is not None else None)
    if spec_path.is_file():
        return RunSource(model_path, ModelSpec.from_json(spec_path), data_root)
    if config is None:
        raise FileNotFoundError(f"no {spec_path} and no {config_path}: the export needs the model's spec "
                                "(training writes both; or pass --spec PATH)")
    dataset = load_split(data_root, config.data.train_split, check_images=False)
    return RunSource(model_path, build_run_spec(config, dataset), data_root)


def _quant_mode(text: str) -> QuantMode:
    choices = [mode.value for mode in QuantMode]
    if text.lower() in choices:
        return QuantMode(text.lower())
    raise argparse.ArgumentTypeError(f"unknown mode {text!r}{suggest(text.lower(), choices)}; "
                                     f"choose from {', '.join(choices)}")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (``--quant`` choices from ``QUANT_SETTINGS``)."""
    modes = "; ".join(f"{mode.value}: {s.description}" for mode, s in QUANT_SETTINGS.items())
    parser = SuggestingParser(
        prog="python -m export",
        description="Export a trained run to NAME.tflite (builtin ops only) + NAME.json (ModelSpec).")
    parser.add_argument("--run", type=Path, help=f"run directory with {MODEL_FILE} and {SPEC_FILE} or {CONFIG_FILE}")
    parser.add_argument("--model", type=Path, help=f"Keras model (default RUN/{MODEL_FILE})")
    parser.add_argument("--spec", type=Path, help=f"float ModelSpec JSON (default {SPEC_FILE} beside the model)")
    parser.add_argument("--quant", type=_quant_mode, default=DEFAULT_QUANT,
                        metavar="{" + ",".join(mode.value for mode in QuantMode) + "}",
                        help=f"quantisation (default {DEFAULT_QUANT.value}): {modes}")
    parser.add_argument("--data", type=Path, help="int8 calibration data: COCO-layout root or image folder")
    parser.add_argument("--calibration-images", type=positive_int, default=CALIBRATION_IMAGES,
                        help=f"int8: number of calibration images (default {CALIBRATION_IMAGES})")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT_DIR), help="output directory")
    parser.add_argument("--name", help="file stem (default RUNNAME_QUANT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the export CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run is None and args.model is None:
        parser.error("pass --run DIR or --model PATH.keras")
    try:
        source = resolve_run(args.run, args.model, args.spec, args.data)
        calibration = None
        if QUANT_SETTINGS[args.quant].full_integer:
            if source.data_root is None:
                raise ExportError(f"--quant {args.quant.value} needs calibration images: pass --data DIR")
            calibration = calibration_images(source.data_root, source.spec, args.calibration_images)
        name = args.name or f"{(args.run or source.model_path.parent).resolve().name}_{args.quant.value}"
        if source.spec.task is Task.INSTANCE_SEGMENTATION:
            stage1, heads = load_chain_models(source.model_path, source.spec)
            chain = export_chain(stage1, heads, source.spec, args.quant, args.out, name, calibration)
            files = {graph: (path, chain.sizes_bytes[graph]) for graph, path in chain.tflite_paths.items()}
            main_path, spec_path = chain.tflite_paths["stage1"], chain.spec_path
        else:
            model = keras.models.load_model(source.model_path, compile=False)
            result = export_model(model, source.spec, args.quant, args.out, name, calibration)
            files = {"model": (result.tflite_path, result.size_bytes)}
            main_path, spec_path = result.tflite_path, result.spec_path
    except (ExportError, SpecError, FileNotFoundError, ValueError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    if source.spec.task is Task.INSTANCE_SEGMENTATION:
        for head in chain.fallback_heads:
            print(f"note: {head} found no detections on the calibration images; calibrated on RoIAlign "
                  "features of random boxes instead")
    data_hint = source.data_root or "DATA_ROOT"
    for path, size in files.values():
        print(f"wrote {path} ({size / BYTES_PER_MB:.2f} MB, {args.quant.value})")
    print(f"wrote {spec_path}")
    print("next:")
    print(f"  python -m training.evaluate --model {main_path} --data {data_hint}")
    print(f"  python -m edge_demo --model {main_path} --source IMAGE_OR_VIDEO")
    return 0
