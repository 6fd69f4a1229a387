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
from pathlib import Path
from typing import Any

from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.fileio import write_atomic
from tfsp.postprocess.anchors import SsdAnchorConfig
from tfsp.postprocess.attributes import AttributeCropConfig
from tfsp.postprocess.paf import PafParserConfig
from tfsp.postprocess.ssd import SsdPostprocessConfig
from tfsp.runtime.preprocess import ResizeMode
from tfsp.spec_json import SpecError, from_jsonable, to_jsonable
from tfsp.spec_rcnn import GraphInfo, RcnnChain
from tfsp.spec_tensor import DYNAMIC_DIM, NOT_QUANTIZED_SCALE, TensorInfo

INPUT_NAME = "image"
"""Name of the image input of every tfsp graph."""

NORMALIZATION_IN_GRAPH = "RGB float32 in [0, 255]; the graph normalises internally"
"""What every tfsp graph expects as input (int8 graphs: uint8/int8 with scale 1)."""

HEATMAP_CHANNELS = NUM_KEYPOINTS + 1
"""Channels of a pose graph's ``heatmaps``: one confidence map per COCO keypoint, then background."""


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
class AttributeHead:
    """What an attribute graph needs besides its crops.

    Attributes:
        names: the A attribute names, in graph output order.
        thresholds: (A,) per-attribute decision thresholds on the sigmoid score.
        image_size: side S of the letterboxed image the crops are cut from (input pixels).
        crop: how a box becomes a crop (``tfsp.postprocess.attributes.crop_boxes``).
    """

    names: tuple[str, ...]
    thresholds: tuple[float, ...]
    image_size: int
    crop: AttributeCropConfig

    def __post_init__(self) -> None:
        if len(self.names) != len(self.thresholds) or not self.names:
            raise SpecError(f"AttributeHead needs one threshold per attribute name, got {len(self.names)} names "
                            f"and {len(self.thresholds)} thresholds")
        if self.image_size <= 0:
            raise SpecError(f"AttributeHead.image_size must be positive, got {self.image_size}")


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
        attributes: attribute names, thresholds and cropping; required for Task.ATTRIBUTES,
            None for every other task (the graph input is then one crop, ``input_size`` its side).
        rcnn: the Mask R-CNN chain (numpy steps and head graphs); required for
            Task.INSTANCE_SEGMENTATION, None for every other task (``inputs``/``outputs`` then
            describe stage 1, the main file).
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
    attributes: AttributeHead | None = None
    rcnn: RcnnChain | None = None

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
        if (self.task is Task.ATTRIBUTES) != (self.attributes is not None):
            raise SpecError(f"ModelSpec.attributes is required for Task.ATTRIBUTES and must be null for other "
                            f"tasks (task {self.task.name}, attributes "
                            f"{'null' if self.attributes is None else 'set'})")
        if (self.task is Task.INSTANCE_SEGMENTATION) != (self.rcnn is not None):
            raise SpecError(f"ModelSpec.rcnn is required for Task.INSTANCE_SEGMENTATION and must be null for "
                            f"other tasks (task {self.task.name}, rcnn {'null' if self.rcnn is None else 'set'})")
        if self.rcnn is not None:
            if self.rcnn.anchors.image_size != (self.input_size, self.input_size):
                raise SpecError(f"ModelSpec.rcnn.anchors.image_size {self.rcnn.anchors.image_size} must be "
                                f"(input_size, input_size) = ({self.input_size}, {self.input_size})")
            if self.rcnn.person_class_id is not None and self.rcnn.person_class_id >= self.num_classes:
                raise SpecError(f"ModelSpec.rcnn.person_class_id {self.rcnn.person_class_id} must be < "
                                f"{self.num_classes} (the number of classes)")
        if self.attributes is not None and self.attributes.crop.crop_size != self.input_size:
            raise SpecError(f"ModelSpec.input_size {self.input_size} of an attribute graph must equal "
                            f"attributes.crop.crop_size {self.attributes.crop.crop_size}")

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
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ModelSpec:
        """Inverse of ``to_dict``; errors name ``source`` and the field path."""
        try:
            return from_jsonable(cls, data, "")
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
