"""Keras 3 model -> ``.tflite`` + ``ModelSpec`` JSON, with one table of quantisation modes.

How the output names survive: the model is saved with ``model.export(...,
format="tf_saved_model")``, whose ``serving_default`` signature maps the Keras
output-dict keys (``box_deltas``, ``class_logits``) to tensors; the converter
keeps that signature, and ``TFLiteRunner`` reads outputs through it, so the
renamed and reordered flatbuffer tensors (``StatefulPartitionedCall_1:0`` ...)
never matter. The export checks the converted signature has exactly the spec's
output names.

Image graphs (one (None, S, S, 3) input) export with a static batch of
``EXPORT_BATCH_SIZE`` and the input named ``INPUT_NAME``; full int8 takes uint8
pixels at scale 1. Feature graphs (any other single input, e.g. the Mask R-CNN
heads' RoI features) keep their input's name and a dynamic leading axis; full
int8 takes int8 features at the scale calibrated on the given feature arrays.

Graphs must run on builtin TFLite ops only. A graph that needs Select-TF
(Flex) kernels is refused with ``UnsupportedOpsError`` naming the ops (found by
converting once more with Select-TF allowed and reading the flatbuffer's
operator codes); every successful conversion is also checked for Flex ops.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python.convert_phase import ConverterError

from tfsp import __version__
from tfsp.fileio import write_atomic
from tfsp.runtime.runner import is_image_shape
from tfsp.runtime.tflite_runner import TFLiteRunner, flex_operators
from tfsp.spec import INPUT_NAME, ModelSpec, QuantMode, TensorInfo

EXPORT_BATCH_SIZE = 1
"""Static batch of exported image graphs (on-device inference is one image at a time)."""

INT8_INPUT_TYPE = tf.uint8
"""int8 image graphs take uint8 pixels: with input scale 1 and zero point 0, 0..255 images are exact."""

INT8_FEATURE_INPUT_TYPE = tf.int8
"""int8 feature graphs take signed int8 features at their calibrated scale and zero point."""

INT8_OUTPUT_TYPE = tf.int8
"""int8 graphs return int8 outputs, each with its own per-tensor scale (dequantised by the runner)."""

INPUT_RANGE = (0.0, 255.0)
"""Pixel range the calibration pins on the input so its quantisation is exactly scale 1."""

INPUT_SCALE_TOLERANCE = 1e-3
"""Largest accepted deviation of the int8 input scale from 1."""

ERROR_LINES = 12
"""Lines of a converter error message repeated in ``ExportError``."""


class ExportError(RuntimeError):
    """An export that cannot produce a valid builtin-only TFLite model."""


class UnsupportedOpsError(ExportError):
    """The graph needs Select-TF (Flex) ops, which tfsp exports never contain.

    Attributes:
        operators: the Flex operator names, e.g. ``("FlexCropAndResize",)``.
    """

    def __init__(self, operators: tuple[str, ...]) -> None:
        self.operators = operators
        super().__init__(
            f"graph needs TensorFlow (Flex / SELECT_TF_OPS) kernels, which tfsp exports never contain: "
            f"{', '.join(operators)}. Replace these ops with builtin-friendly layers or move them to "
            "numpy postprocessing (tfsp.postprocess).")


@dataclasses.dataclass(frozen=True)
class ConverterSettings:
    """How one ``QuantMode`` configures ``tf.lite.TFLiteConverter``.

    Attributes:
        optimize: set ``optimizations = [tf.lite.Optimize.DEFAULT]`` (weight quantisation).
        float16_weights: store weights as float16 (``supported_types = [tf.float16]``).
        full_integer: int8 weights and activations with integer input and output,
            calibrated on a representative data set; builtin int8 kernels only.
        description: one line for the CLI help.
    """

    optimize: bool
    float16_weights: bool
    full_integer: bool
    description: str


QUANT_SETTINGS: dict[QuantMode, ConverterSettings] = {
    QuantMode.FP32: ConverterSettings(False, False, False, "float32 weights and activations"),
    QuantMode.FP16: ConverterSettings(True, True, False, "float16 weights, float32 activations"),
    QuantMode.DYNAMIC: ConverterSettings(True, False, False, "int8 weights, float activations (dynamic range)"),
    QuantMode.INT8: ConverterSettings(True, False, True,
                                      "full integer: int8 weights and activations, uint8 image in, int8 out "
                                      "(needs calibration images)"),
}
"""The only table of quantisation modes; the CLI's ``--quant`` choices come from it."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Files written by ``export_model``.

    Attributes:
        tflite_path: the ``.tflite`` file.
        spec_path: its ``ModelSpec`` JSON.
        size_bytes: size of the ``.tflite`` file in bytes.
        spec: the written spec.
    """

    tflite_path: Path
    spec_path: Path
    size_bytes: int
    spec: ModelSpec


def _calibration_samples(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Yields one-image batches; the first has two pixels pinned to ``INPUT_RANGE``."""
    for index, image in enumerate(images):
        sample = np.array(image, np.float32)[np.newaxis]
        if index == 0:
            sample[0, 0, 0] = INPUT_RANGE[0]
            sample[0, 0, 1] = INPUT_RANGE[1]
        yield [sample]


def _feature_calibration_samples(features: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Yields one-sample batches of the feature arrays as they are (the range is calibrated, not pinned)."""
    for feature in features:
        yield [np.array(feature, np.float32)[np.newaxis]]


def _convert_saved_model(directory: str, settings: ConverterSettings, calibration: np.ndarray | None,
                         allow_flex: bool = False, image: bool = True) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(directory)
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if settings.full_integer else tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins] + ([tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else [])
    if settings.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.float16_weights:
        converter.target_spec.supported_types = [tf.float16]
    if settings.full_integer:
        samples = _calibration_samples if image else _feature_calibration_samples
        converter.representative_dataset = lambda: samples(calibration)
        converter.inference_input_type = INT8_INPUT_TYPE if image else INT8_FEATURE_INPUT_TYPE
        converter.inference_output_type = INT8_OUTPUT_TYPE
    return converter.convert()


def convert_model(model: keras.Model, mode: QuantMode, calibration: np.ndarray | None = None) -> bytes:
    """Converts a Keras model with one input and dict outputs to TFLite bytes.

    An input of shape (None, S, S, 3) is an image: the graph gets a static
    batch of ``EXPORT_BATCH_SIZE``, its input is named ``INPUT_NAME`` and full
    int8 takes uint8 pixels (scale 1, zero point 0). Any other input is a
    feature tensor: it keeps its name and a dynamic leading axis, and full int8
    takes int8 values at the scale and zero point calibrated on ``calibration``.

    Args:
        model: Keras 3 model with one float32 input: an image (None, S, S, 3)
            RGB 0..255, or features (None, ...).
        mode: quantisation mode (``QUANT_SETTINGS``).
        calibration: required for ``QuantMode.INT8``, ignored otherwise.
            Image graphs: (N, S, S, 3) float32 RGB 0..255 preprocessed images.
            Feature graphs: (N, ...) float32 samples of the input (e.g. RoI
            features from RoIAlign on stage-1 FPN maps).

    Returns:
        The ``.tflite`` flatbuffer (builtin ops only, signature ``serving_default``).

    Raises:
        UnsupportedOpsError: the graph needs Flex ops.
        ExportError: not one input, missing calibration data, or the converter failed.
    """
    settings = QUANT_SETTINGS[mode]
    if len(model.inputs) != 1:
        raise ExportError(f"expected a model with one input, got {[tensor.name for tensor in model.inputs]}")
    shape = tuple(model.inputs[0].shape)
    image = is_image_shape(shape)
    if settings.full_integer and (calibration is None or len(calibration) == 0):
        what = "calibration images (pass --data DIR)" if image else f"calibration samples of {shape[1:]} features"
        raise ExportError(f"--quant {mode.value} needs {what}")
    if image:
        size = int(shape[1])
        signature = [tf.TensorSpec((EXPORT_BATCH_SIZE, size, size, 3), tf.float32, name=INPUT_NAME)]
    else:
        signature = [tf.TensorSpec((None, *shape[1:]), tf.float32, name=model.inputs[0].name)]
    with tempfile.TemporaryDirectory(prefix="tfsp_export_") as directory:
        model.export(directory, format="tf_saved_model", input_signature=signature, verbose=False)
        try:
            data = _convert_saved_model(directory, settings, calibration, image=image)
        except ConverterError as error:
            try:  # Name the Flex ops, if that is the problem, from a Select-TF conversion.
                flex = flex_operators(_convert_saved_model(directory, QUANT_SETTINGS[QuantMode.FP32], None, True))
            except ConverterError:
                flex = ()
            if flex:
                raise UnsupportedOpsError(flex) from None
            lines = "\n".join(str(error).splitlines()[:ERROR_LINES])
            raise ExportError(f"TFLite conversion ({mode.value}) failed:\n{lines}") from error
    flex = flex_operators(data)
    if flex:
        raise UnsupportedOpsError(flex)
    return data


def check_converted(runner: TFLiteRunner, spec: ModelSpec, mode: QuantMode) -> tuple[TensorInfo, ...]:
    """Checks names, shapes and the int8 input scale; returns the outputs in spec order."""
    if set(runner.output_names) != set(spec.output_names):
        raise ExportError(f"converted outputs {sorted(runner.output_names)} != spec outputs "
                          f"{sorted(spec.output_names)}")
    if runner.input_size != spec.input_size:
        raise ExportError(f"converted input size {runner.input_size} != spec input size {spec.input_size}")
    (image,) = runner.inputs
    if QUANT_SETTINGS[mode].full_integer and (abs(image.scale - 1.0) > INPUT_SCALE_TOLERANCE or image.zero_point):
        raise ExportError(f"int8 input quantisation is scale {image.scale}, zero point {image.zero_point}; "
                          "expected scale 1, zero point 0 (uint8 pixels)")
    by_name = {info.name: info for info in runner.outputs}
    for expected in spec.outputs:  # e.g. the spec's anchors or classes do not fit the model
        if by_name[expected.name].shape[1:] != expected.shape[1:]:
            raise ExportError(f"output {expected.name!r} has shape {by_name[expected.name].shape[1:]} per image, "
                              f"the spec says {expected.shape[1:]}")
    return tuple(by_name[name] for name in spec.output_names)


def export_model(model: keras.Model, spec: ModelSpec, mode: QuantMode, out_dir: str | os.PathLike, name: str,
                 calibration_images: np.ndarray | None = None) -> ExportResult:
    """Converts ``model`` and writes ``out_dir/NAME.tflite`` and ``out_dir/NAME.json`` atomically.

    Args:
        model: the float Keras model the spec describes.
        spec: its float ``ModelSpec`` (e.g. the run's ``spec.json``).
        mode: quantisation mode.
        out_dir: output directory (created).
        name: file stem.
        calibration_images: (N, S, S, 3) float32 0..255, required for INT8.

    Returns:
        The written files and spec (inputs/outputs with the converted dtypes,
        shapes and quantisation parameters).
    """
    data = convert_model(model, mode, calibration_images)
    runner = TFLiteRunner(data)
    outputs = check_converted(runner, spec, mode)
    exported = dataclasses.replace(spec, inputs=runner.inputs, outputs=outputs, quantization=mode,
                                   tfsp_version=__version__)
    out_dir = Path(out_dir)
    tflite_path = write_atomic(out_dir / f"{name}.tflite", data)
    spec_path = exported.to_json(out_dir / f"{name}.json")
    return ExportResult(tflite_path, spec_path, len(data), exported)
