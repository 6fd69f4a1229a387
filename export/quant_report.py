"""Where int8 loses precision: every tensor of an int8 TFLite graph against the fp32 export of the same model.

``python -m export.quant_report --fp32 exports/maskrcnn_fp32.tflite --int8 exports/maskrcnn_int8.tflite
--data data/synth`` runs both graphs on the same images, keeping every intermediate tensor
(LiteRT's ``experimental_preserve_all_tensors``), pairs the tensors the converter named alike
(quantised in the int8 graph, same shape; the graph outputs by their signature names), and prints
for each pair:

* ``rel_err``: ``rms(int8 - fp32) / std(fp32)``, the error that has built up by that tensor
  (rounding there, plus everything inherited from the tensors before it);
* ``std/scale``: how many int8 steps the fp32 values' spread covers (a tensor whose range is set
  by rare extremes has few, so its rounding alone costs ``0.29 / (std/scale)`` of its spread);
* ``max/std``: how heavy the tails are.

Image-input graphs only (for the Mask R-CNN heads, ``training.quant_attribution`` measures what
each graph costs in AP). Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tfsp.cli import SuggestingParser, positive_int
from tfsp.fileio import write_text_atomic
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.runtime.runner import is_image_shape
from tfsp.runtime.tflite_runner import SERVING_SIGNATURE
from tfsp.spec import ModelSpec, SpecError

DEFAULT_DATA_ROOT = "data/synth"
DEFAULT_SPLIT = "val"
DEFAULT_IMAGES = 8
"""Images of the split compared by default (errors are averaged over all their values)."""
DEFAULT_TOP = 12
"""Tensors listed by default after the outputs: the largest relative errors."""
EXIT_ERROR = 2
_TINY_STD = 1e-12  # a constant tensor has no spread to compare against


@dataclasses.dataclass(frozen=True)
class TensorError:
    """Error of one int8 tensor against the same tensor of the fp32 graph.

    Attributes:
        name: the tensor's name (a graph output: its signature name).
        index: its tensor index in the int8 graph (about execution order).
        is_output: whether it is a graph output.
        relative_error: ``rms(int8 - fp32) / std(fp32)`` over every value of every image.
        steps_per_std: ``std(fp32) / scale`` of the int8 tensor.
        max_over_std: ``max |fp32| / std(fp32)``.
    """

    name: str
    index: int
    is_output: bool
    relative_error: float
    steps_per_std: float
    max_over_std: float


@dataclasses.dataclass
class _Sums:
    """Running sums of one tensor pair over images."""

    scale: float
    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    error_squares: float = 0.0
    max_abs: float = 0.0

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        reference = reference.astype(np.float64)
        self.count += reference.size
        self.total += float(reference.sum())
        self.squares += float(np.square(reference).sum())
        self.error_squares += float(np.square(quantized - reference).sum())
        self.max_abs = max(self.max_abs, float(np.abs(reference).max()))

    def result(self, name: str, index: int, is_output: bool) -> TensorError:
        mean = self.total / self.count
        std = max(np.sqrt(max(self.squares / self.count - mean * mean, 0.0)), _TINY_STD)
        return TensorError(name=name, index=index, is_output=is_output,
                           relative_error=float(np.sqrt(self.error_squares / self.count) / std),
                           steps_per_std=float(std / self.scale), max_over_std=float(self.max_abs / std))


def _open(path: Path) -> Interpreter:
    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor disables its delegate
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def _signature_outputs(interpreter: Interpreter) -> dict[int, str]:
    """Tensor index -> signature output name."""
    details = interpreter.get_signature_runner(SERVING_SIGNATURE).get_output_details()
    return {int(detail["index"]): name for name, detail in details.items()}


def _activations(path: Path) -> set[int]:
    """Indices of the tensors some operator of the main subgraph writes (not weights or constants)."""
    graph = schema.Model.GetRootAs(path.read_bytes(), 0).Subgraphs(0)
    return {int(index) for i in range(graph.OperatorsLength()) for index in graph.Operators(i).OutputsAsNumpy()}


def _pairs(fp32: Interpreter, int8: Interpreter, activations: set[int]) -> list[tuple[str, int, int, bool]]:
    """(name, fp32 index, int8 index, is_output) of comparable activations, in int8 index order."""
    fp32_details = {detail["name"]: detail for detail in fp32.get_tensor_details()}
    fp32_outputs = {name: index for index, name in _signature_outputs(fp32).items()}
    int8_outputs = _signature_outputs(int8)
    pairs = []
    for detail in int8.get_tensor_details():
        index, scale = int(detail["index"]), float(detail["quantization"][0])
        if scale <= 0 or index not in activations:
            continue  # not quantised (int32 shapes, float twins) or not an activation
        if index in int8_outputs:
            name = int8_outputs[index]
            pairs.append((name, fp32_outputs[name], index, True))
            continue
        twin = fp32_details.get(detail["name"])
        if twin is not None and tuple(twin["shape"]) == tuple(detail["shape"]) and twin["dtype"] == np.float32:
            pairs.append((detail["name"], int(twin["index"]), index, False))
    return pairs


def _dequantized(interpreter: Interpreter, index: int, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return (interpreter.get_tensor(index).astype(np.float64) - zero_point) * scale


def _set_input(interpreter: Interpreter, image: np.ndarray) -> None:
    """Feeds a (1, S, S, 3) float32 image, quantised where the graph takes integers."""
    detail = interpreter.get_input_details()[0]
    values = image
    if np.issubdtype(detail["dtype"], np.integer):
        scale, zero_point = detail["quantization"]
        limits = np.iinfo(detail["dtype"])
        values = np.clip(np.round(image / scale) + zero_point, limits.min, limits.max)
    interpreter.set_tensor(detail["index"], values.astype(detail["dtype"]))


def tensor_errors(fp32_path: str | Path, int8_path: str | Path, images: Sequence[np.ndarray]) -> tuple[TensorError, ...]:
    """Per-tensor error of the int8 graph against the fp32 graph on ``images``.

    Args:
        fp32_path: fp32 ``.tflite`` of the model.
        int8_path: int8 ``.tflite`` of the same model (same converter, so intermediate names match).
        images: (S, S, 3) float32 RGB 0..255 preprocessed images.

    Returns:
        One ``TensorError`` per comparable tensor, in int8 tensor-index order.

    Raises:
        ValueError: a graph does not take one (1, S, S, 3) image, or no images.
    """
    fp32, int8 = _open(Path(fp32_path)), _open(Path(int8_path))
    for path, interpreter in ((fp32_path, fp32), (int8_path, int8)):
        inputs = interpreter.get_input_details()
        if len(inputs) != 1 or not is_image_shape(tuple(inputs[0]["shape"])):
            raise ValueError(f"{path}: expected one (1, S, S, 3) image input, got "
                             f"{[tuple(detail['shape']) for detail in inputs]}")
    if not len(images):
        raise ValueError("no images to compare on")
    pairs = _pairs(fp32, int8, _activations(Path(int8_path)))
    int8_details = {int(detail["index"]): detail for detail in int8.get_tensor_details()}
    sums = {int8_index: _Sums(scale=float(int8_details[int8_index]["quantization"][0]))
            for _, _, int8_index, _ in pairs}
    for image in images:
        for interpreter in (fp32, int8):
            _set_input(interpreter, np.asarray(image, np.float32)[np.newaxis])
            interpreter.invoke()
        for _, fp32_index, int8_index, _ in pairs:
            sums[int8_index].add(fp32.get_tensor(fp32_index),
                                 _dequantized(int8, int8_index, int8_details[int8_index]))
    return tuple(sums[int8_index].result(name, int8_index, is_output) for name, _, int8_index, is_output in pairs)


def format_report(errors: Sequence[TensorError], top: int | None) -> str:
    """The outputs, then the ``top`` largest errors among the other tensors (None: all, in order)."""
    header = f"{'rel_err':>8} {'std/scale':>9} {'max/std':>8}  tensor"

    def row(error: TensorError) -> str:
        return (f"{error.relative_error:8.3f} {error.steps_per_std:9.1f} {error.max_over_std:8.1f}  "
                f"{error.name.split(';')[0]}")  # a fused op's tensor lists every op: the first names it

    outputs = [error for error in errors if error.is_output]
    inner = [error for error in errors if not error.is_output]
    if top is not None:
        inner = sorted(inner, key=lambda error: -error.relative_error)[:top]
    title = "all tensors, in graph order" if top is None else f"the {len(inner)} largest errors before the outputs"
    return "\n".join(["graph outputs", header, *map(row, outputs), "", title, header, *map(row, inner)])


def _images(spec: ModelSpec, data: Path, split: str, count: int) -> list[np.ndarray]:
    directory = data / "images" / split
    files = sorted(path for path in directory.glob("*") if path.is_file())[:count]
    if not files:
        raise FileNotFoundError(f"no images in {directory}")
    return [preprocess_image(read_image_rgb(path), spec.input_size, spec.resize_mode)[0] for path in files]


def add_model_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fp32``, ``--int8``, ``--data`` and ``--split``, as the int8 diagnosis tools share them."""
    parser.add_argument("--fp32", type=Path, required=True, help="fp32 .tflite (the main file of a chain)")
    parser.add_argument("--int8", type=Path, required=True, help="int8 .tflite of the same model")
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA_ROOT), help="COCO-layout data root")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="split to use (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m export.quant_report", description=__doc__.split("\n\n")[0])
    add_model_pair_arguments(parser)
    parser.add_argument("--images", type=positive_int, default=DEFAULT_IMAGES, help="images to compare")
    parser.add_argument("--top", type=positive_int, default=DEFAULT_TOP,
                        help="inner tensors listed, largest error first (default %(default)s)")
    parser.add_argument("--all", action="store_true", help="list every tensor in graph order instead")
    parser.add_argument("--out", type=Path, help="also write every tensor's figures here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = ModelSpec.from_json(args.int8.with_suffix(".json"))
        errors = tensor_errors(args.fp32, args.int8, _images(spec, args.data, args.split, args.images))
    except (OSError, ValueError, SpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.int8} against {args.fp32}, {args.images} {args.split} images of {args.data}:")
    print(format_report(errors, None if args.all else args.top))
    if args.out is not None:
        write_text_atomic(args.out, json.dumps([dataclasses.asdict(error) for error in errors], indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
