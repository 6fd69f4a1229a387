"""TFLite runner on LiteRT (``ai_edge_litert``): device-safe, no TensorFlow import.

Outputs are looked up through the model's *signature* (``serving_default``), so
they come back under the names the Keras graph gave them even though the
converter renames and reorders the underlying tensors
(``StatefulPartitionedCall_1:0`` ...). Integer graphs are fed and read in float:
the runner quantises the float32 input with the input tensor's scale and zero
point and dequantises every integer output (``real = scale * (q - zero_point)``).

Most graphs take one (B, S, S, 3) image (``__call__``); a graph whose single
input is a feature tensor (the Mask R-CNN heads' RoI features) runs through
``run_features``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tfsp.runtime.runner import check_features, check_images, is_image_shape
from tfsp.spec import DYNAMIC_DIM, NOT_QUANTIZED_SCALE, TensorInfo

SERVING_SIGNATURE = "serving_default"
"""Signature key the exporter writes (Keras ``model.export`` default)."""

FLEX_OP_PREFIX = "Flex"
"""Custom-op name prefix of TensorFlow (Select TF ops) kernels in a TFLite graph."""

_BUILTIN_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def _tensor_info(name: str, details: dict) -> TensorInfo:
    """``TensorInfo`` from a LiteRT signature tensor-details dict (per-tensor quantisation only)."""
    scales = details["quantization_parameters"]["scales"]
    if len(scales) > 1:
        raise ValueError(f"tensor {name!r} is quantised per channel ({len(scales)} scales); "
                         "graph inputs and outputs must be quantised per tensor")
    scale, zero_point = details["quantization"]
    return TensorInfo(name=name, dtype=np.dtype(details["dtype"]).name,
                      shape=tuple(int(d) for d in details["shape_signature"]),
                      scale=float(scale) if len(scales) else NOT_QUANTIZED_SCALE,
                      zero_point=int(zero_point) if len(scales) else 0)


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float to the tensor's integer dtype: ``round(x / scale) + zero_point``, saturated.

    Args:
        values: float32 array.
        info: a quantised tensor (``info.quantized``).

    Returns:
        Array of dtype ``info.dtype``, same shape.
    """
    limits = np.iinfo(info.dtype)
    q = np.round(values / np.float32(info.scale)) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Integer tensor values to float32: ``scale * (q - zero_point)``."""
    return (values.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)


def list_operators(model: str | os.PathLike | bytes) -> tuple[str, ...]:
    """Operator codes used by a ``.tflite`` flatbuffer, in the file's order.

    Builtins by schema name (``"CONV_2D"``), custom ops by custom code
    (``"FlexCropAndResize"`` for a Select-TF op).

    Args:
        model: path to a ``.tflite`` file, or its bytes.

    Returns:
        Tuple of operator names.
    """
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    root = schema.Model.GetRootAs(data, 0)
    names = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.CustomCode().decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    return tuple(names)


def flex_operators(model: str | os.PathLike | bytes) -> tuple[str, ...]:
    """The Select-TF (Flex) operators of a ``.tflite`` model; empty when it is builtin-only."""
    return tuple(name for name in list_operators(model) if name.startswith(FLEX_OP_PREFIX))


class TFLiteRunner:
    """Runs a ``.tflite`` graph through its signature; satisfies ``Runner``.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        num_threads: interpreter CPU threads (None: LiteRT's default).
        signature_key: signature to run; None picks ``serving_default`` or the
            model's only signature.

    Raises:
        ValueError: no usable signature, or it has more than one input.
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None,
                 signature_key: str | None = None) -> None:
        if isinstance(model, bytes):
            interpreter = Interpreter(model_content=model, num_threads=num_threads)
        else:
            interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        signatures = interpreter.get_signature_list()
        if signature_key is None:
            signature_key = SERVING_SIGNATURE if SERVING_SIGNATURE in signatures else None
            if signature_key is None and len(signatures) == 1:
                (signature_key,) = signatures
        if signature_key not in signatures:
            raise ValueError(f"model has signatures {sorted(signatures)}; none matches {signature_key!r} "
                             "(export with a signature so outputs keep their names)")
        self._runner = interpreter.get_signature_runner(signature_key)
        (input_name, input_details), *extra = self._runner.get_input_details().items()
        if extra:
            raise ValueError(f"expected one input, got {[input_name] + [name for name, _ in extra]}")
        self._input = _tensor_info(input_name, input_details)
        self._outputs = tuple(_tensor_info(name, d) for name, d in self._runner.get_output_details().items())

    @property
    def input_size(self) -> int | None:
        """Square input side S in pixels; None when the input is not a (B, S, S, 3) image."""
        return self._input.shape[1] if is_image_shape(self._input.shape) else None

    @property
    def output_names(self) -> tuple[str, ...]:
        """Signature output names."""
        return tuple(info.name for info in self._outputs)

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The input (image or features): name, dtype, shape and quantisation."""
        return (self._input,)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The outputs: name, dtype, shape and quantisation."""
        return self._outputs

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the graph, (de)quantising integer inputs/outputs.

        Args:
            images: (B, S, S, 3) float32 RGB in [0, 255].

        Returns:
            Output name -> float32 array with leading dimension B.

        Raises:
            ValueError: wrong images, or the graph's input is not an image (use ``run_features``).
        """
        if self.input_size is None:
            raise ValueError(f"graph input {self._input.name!r} {self._input.shape} is not a (B, S, S, 3) image; "
                             "run it with run_features")
        return self._run(check_images(images, self.input_size))

    def run_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Runs a graph on a float feature batch, (de)quantising integer inputs/outputs.

        Args:
            features: (B, ...) float32, the input's shape after the batch axis
                (e.g. (R, 7, 7, F) RoI features for a Mask R-CNN box head).

        Returns:
            Output name -> float32 array with leading dimension B.

        Raises:
            ValueError: wrong dtype or shape, or B does not fit a fixed batch.
        """
        return self._run(check_features(features, self._input.shape))

    def _run(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Feeds a checked batch whole (dynamic or equal batch) or one sample at a time (batch 1)."""
        batch = self._input.shape[0]
        if batch == DYNAMIC_DIM or batch == len(values):
            chunks = [values]
        elif batch == 1:
            chunks = [values[i : i + 1] for i in range(len(values))]
        else:
            raise ValueError(f"model has a fixed batch of {batch}, got a batch of {len(values)}")
        results = [self._invoke(chunk) for chunk in chunks]
        return {info.name: np.concatenate([r[info.name] for r in results]) for info in self._outputs}

    def _invoke(self, values: np.ndarray) -> dict[str, np.ndarray]:
        feed = quantize(values, self._input) if self._input.quantized else values
        raw = self._runner(**{self._input.name: feed})
        return {info.name: dequantize(raw[info.name], info) if info.quantized
                else np.asarray(raw[info.name], np.float32) for info in self._outputs}
