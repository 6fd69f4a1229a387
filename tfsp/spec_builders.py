"""Builders of the float32 ``ModelSpec`` each task's training writes beside its Keras model.

Exports copy these specs and fill in the quantisation of each tensor
(``export.convert``). Device-safe.
"""

from __future__ import annotations

import typing

from tfsp import __version__
from tfsp.postprocess.anchors import SsdAnchorConfig, num_anchors
from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS
from tfsp.postprocess.dense import ALL_HEADS, DEPTH, HEAD_OUTPUTS, SEMANTIC_LOGITS, DenseHead
from tfsp.postprocess.paf import HEATMAPS, PAFS, PafParserConfig
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS, SsdPostprocessConfig
from tfsp.runtime.preprocess import ResizeMode
from tfsp.spec import (
    DYNAMIC_DIM,
    HEATMAP_CHANNELS,
    INPUT_NAME,
    NORMALIZATION_IN_GRAPH,
    AttributeHead,
    ModelSpec,
    QuantMode,
    SpecError,
    Task,
    TensorInfo,
)


def _float_spec(task: Task, input_size: int, resize_mode: ResizeMode, class_names: typing.Sequence[str],
                category_ids: typing.Sequence[int], outputs: tuple[tuple[str, tuple[int, ...]], ...],
                **decoding: typing.Any) -> ModelSpec:
    """A float32 spec with one (-1, S, S, 3) image input and ``outputs`` as ``(name, shape)``;
    ``decoding`` sets the task's decoding fields (the others are None)."""
    heads = {"anchors": None, "postprocess": None, "paf": None, "attributes": None, **decoding}
    return ModelSpec(
        task=task, tfsp_version=__version__, input_size=input_size, resize_mode=resize_mode,
        normalization=NORMALIZATION_IN_GRAPH, class_names=tuple(class_names),
        category_ids=tuple(int(c) for c in category_ids),
        inputs=(TensorInfo(INPUT_NAME, "float32", (DYNAMIC_DIM, input_size, input_size, 3)),),
        outputs=tuple(TensorInfo(name, "float32", shape) for name, shape in outputs),
        quantization=QuantMode.FP32, **heads)


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
    outputs = ((BOX_DELTAS, (DYNAMIC_DIM, count, 4)), (CLASS_LOGITS, (DYNAMIC_DIM, count, num_logits)))
    return _float_spec(Task.DETECTION, input_size, resize_mode, class_names, category_ids, outputs,
                       anchors=anchors, postprocess=postprocess)


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
    outputs = ((HEATMAPS, (*maps, HEATMAP_CHANNELS)), (PAFS, (*maps, 2 * len(parser.limbs))))
    return _float_spec(Task.POSE, input_size, resize_mode, class_names, category_ids, outputs, paf=parser)


def dense_spec(
    input_size: int,
    map_size: int,
    class_names: typing.Sequence[str],
    category_ids: typing.Sequence[int],
    resize_mode: ResizeMode = ResizeMode.LETTERBOX,
    heads: tuple[DenseHead, ...] = ALL_HEADS,
) -> ModelSpec:
    """The spec of a float dense (segmentation and/or depth) Keras graph.

    Args:
        input_size: model input side S in pixels.
        map_size: side F of the output maps (S / F input pixels per cell).
        class_names: foreground class names by ``class_id`` (label k + 1 = class k, 0 = background).
        category_ids: COCO category id by ``class_id``.
        resize_mode: preprocessing resize.
        heads: the graph's heads; the outputs say which (``tfsp.postprocess.dense.heads_of``).

    Returns:
        A float32 ``ModelSpec`` (task DENSE) with input ``image`` (-1, S, S, 3) and, per head,
        output ``semantic_logits`` (-1, F, F, C + 1) or ``depth`` (-1, F, F, 1) metres.

    Raises:
        SpecError: ``map_size`` not in [1, S], or no heads.
    """
    if not 0 < map_size <= input_size:
        raise SpecError(f"dense_spec map_size must be in [1, input_size={input_size}], got {map_size}")
    maps = (DYNAMIC_DIM, map_size, map_size)
    if not heads:
        raise SpecError("dense_spec needs at least one head")
    shapes = {SEMANTIC_LOGITS: (*maps, len(class_names) + 1), DEPTH: (*maps, 1)}
    outputs = tuple((HEAD_OUTPUTS[head], shapes[HEAD_OUTPUTS[head]]) for head in ALL_HEADS if head in heads)
    return _float_spec(Task.DENSE, input_size, resize_mode, class_names, category_ids, outputs)


def attribute_spec(
    head: AttributeHead,
    class_names: typing.Sequence[str],
    category_ids: typing.Sequence[int],
    resize_mode: ResizeMode = ResizeMode.LETTERBOX,
) -> ModelSpec:
    """The spec of a float multi-label attribute Keras graph (one crop in, A logits out).

    Args:
        head: attribute names, thresholds, the letterbox side S and the crop settings.
        class_names: the data set's class names (the classes whose boxes are classified).
        category_ids: COCO category id by ``class_id``.
        resize_mode: how images are resized to S x S before cropping.

    Returns:
        A float32 ``ModelSpec`` (task ATTRIBUTES) with input ``image`` (-1, c, c, 3), c the
        crop side, and output ``attribute_logits`` (-1, A).
    """
    outputs = ((ATTRIBUTE_LOGITS, (DYNAMIC_DIM, len(head.names))),)
    return _float_spec(Task.ATTRIBUTES, head.crop.crop_size, resize_mode, class_names, category_ids, outputs,
                       attributes=head)
