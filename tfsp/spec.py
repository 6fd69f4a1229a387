"""ModelSpec: everything a runtime needs besides the graph, as JSON beside the model.

A ``ModelSpec`` is written next to every exported model (``NAME.tflite`` +
``NAME.json``) and every training run (``spec.json`` beside ``model.keras``). It
says how to preprocess (input size, resize mode), what the graph's inputs and
outputs are (by name, dtype, shape and int8 quantisation parameters), and how to
decode the outputs (anchors and SSD thresholds, or the PAF parser settings of a
pose model; class names and COCO category ids).

Device-safe: numpy and the standard library only (plus other device-safe tfsp
modules). JSON is strict: an unknown or missing field is an error that names
the file and the field (e.g. ``exports/ssd.json: postprocess.iou_threshold:
missing field``). Enums are stored by member name.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

from tfsp import __version__
from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.fileio import write_atomic
from tfsp.postprocess.anchors import SsdAnchorConfig, num_anchors
from tfsp.postprocess.paf import HEATMAPS, PAFS, PafParserConfig
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS, SsdPostprocessConfig
from tfsp.runtime.preprocess import ResizeMode

INPUT_NAME = "image"
"""Name of the image input of every tfsp graph."""

NORMALIZATION_IN_GRAPH = "RGB float32 in [0, 255]; the graph normalises internally"
"""What every tfsp graph expects as input (int8 graphs: uint8/int8 with scale 1)."""

DYNAMIC_DIM = -1
"""Shape entry of a dimension whose size is decided at run time (the batch)."""

NOT_QUANTIZED_SCALE = 0.0
"""``TensorInfo.scale`` of a float tensor (the TFLite convention)."""

HEATMAP_CHANNELS = NUM_KEYPOINTS + 1
"""Channels of a pose graph's ``heatmaps``: one confidence map per COCO keypoint, then background."""


class SpecError(ValueError):
    """A spec file or dict that does not describe a valid ``ModelSpec``."""


class Task(enum.Enum):
    """What a model predicts (which ``tfsp.structures`` type its pipeline returns)."""

    DETECTION = "detection"
    POSE = "pose"
    INSTANCE_SEGMENTATION = "instance_segmentation"
    DENSE = "dense"
    ATTRIBUTES = "attributes"


class QuantMode(enum.Enum):
    """How an exported graph's weights and activations are stored."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    Quantised tensors hold ``q`` with ``real = scale * (q - zero_point)``.

    Attributes:
        name: signature name (e.g. ``"image"``, ``"box_deltas"``).
        dtype: numpy dtype name: ``"float32"``, ``"int8"`` or ``"uint8"``.
        shape: dimensions, ``DYNAMIC_DIM`` (-1) where decided at run time.
        scale: per-tensor quantisation scale; ``NOT_QUANTIZED_SCALE`` (0) for float.
        zero_point: per-tensor quantisation zero point (0 for float).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float = NOT_QUANTIZED_SCALE
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """Whether the tensor carries integer values with a scale."""
        return self.scale != NOT_QUANTIZED_SCALE


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything besides the graph that preprocessing and postprocessing need.

    Attributes:
        task: what the model predicts.
        tfsp_version: ``tfsp.__version__`` that wrote the spec.
        input_size: square model input side S in pixels.
        resize_mode: how images are resized to S x S (``tfsp.runtime.preprocess``).
        normalization: human-readable note on the expected input values.
        class_names: foreground class names, indexed by contiguous ``class_id``.
        category_ids: COCO category id of each ``class_id``.
        anchors: SSD default boxes of the graph (None for anchor-free tasks).
        inputs: graph inputs (one: the image).
        outputs: graph outputs, by name; raw (pre-decoding) tensors.
        quantization: storage mode of the graph.
        postprocess: SSD decoding thresholds (None for other tasks).
        paf: PAF parser settings; required for Task.POSE, None for every other task.
    """

    task: Task
    tfsp_version: str
    input_size: int
    resize_mode: ResizeMode
    normalization: str
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    anchors: SsdAnchorConfig | None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    quantization: QuantMode
    postprocess: SsdPostprocessConfig | None
    paf: PafParserConfig | None

    def __post_init__(self) -> None:
        if self.input_size <= 0:
            raise SpecError(f"ModelSpec.input_size must be positive, got {self.input_size}")
        if len(self.class_names) != len(self.category_ids):
            raise SpecError(f"ModelSpec.class_names ({len(self.class_names)}) and category_ids "
                            f"({len(self.category_ids)}) must have the same length")
        if len(self.inputs) != 1:
            raise SpecError(f"ModelSpec.inputs must hold exactly one image input, got {len(self.inputs)}")
        if self.task is Task.DETECTION and (self.anchors is None or self.postprocess is None):
            raise SpecError("ModelSpec.anchors and ModelSpec.postprocess are required for Task.DETECTION")
        if (self.task is Task.POSE) != (self.paf is not None):
            raise SpecError(f"ModelSpec.paf is required for Task.POSE and must be null for other tasks "
                            f"(task {self.task.name}, paf {'null' if self.paf is None else 'set'})")

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the graph outputs, in spec order."""
        return tuple(t.name for t in self.outputs)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes C."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums by name, tuples as lists)."""
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ModelSpec:
        """Inverse of ``to_dict``; errors name ``source`` and the field path."""
        try:
            return _from_jsonable(cls, data, "")
        except (SpecError, TypeError, ValueError) as error:
            raise SpecError(f"{source}: {error}") from None

    def to_json(self, path: str | os.PathLike) -> Path:
        """Writes the spec as JSON atomically (``tfsp.fileio.write_atomic``)."""
        return write_atomic(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelSpec:
        """Reads a spec written by ``to_json``; errors name the file and field."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise SpecError(f"{path}: not valid JSON: {error}") from None
        return cls.from_dict(data, source=str(path))


def detection_spec(
    input_size: int,
    anchors: SsdAnchorConfig,
    class_names: typing.Sequence[str],
    category_ids: typing.Sequence[int],
    resize_mode: ResizeMode = ResizeMode.LETTERBOX,
    postprocess: SsdPostprocessConfig = SsdPostprocessConfig(),
) -> ModelSpec:
    """The spec of a float SSD Keras graph (what training writes as ``spec.json``).

    Args:
        input_size: model input side S in pixels.
        anchors: the anchors the model was trained with (``SsdConfig.anchors``).
        class_names: foreground class names by ``class_id``.
        category_ids: COCO category id by ``class_id``.
        resize_mode: preprocessing resize.
        postprocess: decoding thresholds.

    Returns:
        A float32 ``ModelSpec`` with input ``image`` (-1, S, S, 3) and outputs
        ``box_deltas`` (-1, A, 4) and ``class_logits`` (-1, A, C + 1).
    """
    count, num_logits = num_anchors(anchors), len(class_names) + 1
    return ModelSpec(
        task=Task.DETECTION, tfsp_version=__version__, input_size=input_size, resize_mode=resize_mode,
        normalization=NORMALIZATION_IN_GRAPH, class_names=tuple(class_names),
        category_ids=tuple(int(c) for c in category_ids), anchors=anchors,
        inputs=(TensorInfo(INPUT_NAME, "float32", (DYNAMIC_DIM, input_size, input_size, 3)),),
        outputs=(TensorInfo(BOX_DELTAS, "float32", (DYNAMIC_DIM, count, 4)),
                 TensorInfo(CLASS_LOGITS, "float32", (DYNAMIC_DIM, count, num_logits))),
        quantization=QuantMode.FP32, postprocess=postprocess, paf=None)


def pose_spec(
    input_size: int,
    map_size: int,
    class_names: typing.Sequence[str],
    category_ids: typing.Sequence[int],
    resize_mode: ResizeMode = ResizeMode.LETTERBOX,
    parser: PafParserConfig = PafParserConfig(),
) -> ModelSpec:
    """The spec of a float bottom-up (OpenPose-style) Keras pose graph.

    Args:
        input_size: model input side S in pixels.
        map_size: side F of the output maps (S / F input pixels per map cell).
        class_names: foreground class names by ``class_id``; pose results use the
            category id of the class named ``"person"`` (``tfsp.runtime.pose``).
        category_ids: COCO category id by ``class_id``.
        resize_mode: preprocessing resize.
        parser: PAF parser settings (its ``limbs`` fix the PAF channel count).

    Returns:
        A float32 ``ModelSpec`` (task POSE, no anchors, no SSD postprocess) with input
        ``image`` (-1, S, S, 3) and outputs ``heatmaps`` (-1, F, F, 18) and ``pafs``
        (-1, F, F, 2L), L = ``len(parser.limbs)`` (36 channels for the COCO limbs).

    Raises:
        SpecError: ``map_size`` not in [1, S].
    """
    if not 0 < map_size <= input_size:
        raise SpecError(f"pose_spec map_size must be in [1, input_size={input_size}], got {map_size}")
    maps = (DYNAMIC_DIM, map_size, map_size)
    return ModelSpec(
        task=Task.POSE, tfsp_version=__version__, input_size=input_size, resize_mode=resize_mode,
        normalization=NORMALIZATION_IN_GRAPH, class_names=tuple(class_names),
        category_ids=tuple(int(c) for c in category_ids), anchors=None,
        inputs=(TensorInfo(INPUT_NAME, "float32", (DYNAMIC_DIM, input_size, input_size, 3)),),
        outputs=(TensorInfo(HEATMAPS, "float32", (*maps, HEATMAP_CHANNELS)),
                 TensorInfo(PAFS, "float32", (*maps, 2 * len(parser.limbs)))),
        quantization=QuantMode.FP32, postprocess=None, paf=parser)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    return value


def _from_jsonable(cls: type, data: Any, where: str) -> Any:
    """Builds dataclass ``cls`` from a JSON object; every field must be present."""
    if not isinstance(data, dict):
        raise SpecError(f"{where or 'top level'}: expected an object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SpecError(f"{_join(where, unknown[0])}: unknown field (known: {', '.join(names)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name in names:
        if name not in data:
            raise SpecError(f"{_join(where, name)}: missing field")
        values[name] = _convert(hints[name], data[name], _join(where, name))
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{where or cls.__name__}: {error}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Converts a JSON value to the annotated type (dataclass, Enum, tuple, scalar)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise SpecError(f"{where}: must not be null")
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if dataclasses.is_dataclass(hint):
        return _from_jsonable(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in hint.__members__:
            raise SpecError(f"{where}: {value!r} is not one of {', '.join(hint.__members__)}")
        return hint[value]
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(f"{where}: expected {len(args)} entries, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is not hint:
        raise SpecError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
