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
from tfsp.postprocess.rcnn import (
    BOX_COORDS,
    BOX_ROIS_INPUT,
    FPN_OUTPUT,
    RPN_DELTAS_OUTPUT,
    RPN_OBJECTNESS_OUTPUT,
    BoxHeadConfig,
    FpnAnchorConfig,
    RpnProposalConfig,
)
from tfsp.postprocess.rcnn_masks import (
    DEFAULT_MASK_THRESHOLD,
    KEYPOINT_LOGITS,
    KEYPOINT_ROIS_INPUT,
    MASK_LOGITS,
    MASK_ROIS_INPUT,
)
from tfsp.postprocess.roi_align import DEFAULT_SAMPLING_RATIO
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS, SsdPostprocessConfig
from tfsp.runtime.graph_chain import BOX_HEAD_GRAPH, KEYPOINT_HEAD_GRAPH, MASK_HEAD_GRAPH
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
from tfsp.spec_rcnn import GraphInfo, RcnnChain

PERSON_CLASS_NAME = "person"
"""Class whose detections get keypoints in an instance-segmentation spec with a keypoint head."""


def _float_spec(task: Task, input_size: int, resize_mode: ResizeMode, class_names: typing.Sequence[str],
                category_ids: typing.Sequence[int], outputs: tuple[tuple[str, tuple[int, ...]], ...],
                **decoding: typing.Any) -> ModelSpec:
    """A float32 spec with one (-1, S, S, 3) image input and ``outputs`` as ``(name, shape)``;
    ``decoding`` sets the task's decoding fields (the others are None)."""
    heads = {"anchors": None, "postprocess": None, "paf": None, "attributes": None, "rcnn": None, **decoding}
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


def _head_graph(name: str, input_name: str, input_shape: tuple[int, ...],
                outputs: tuple[tuple[str, tuple[int, ...]], ...]) -> GraphInfo:
    """A float32 head graph with a dynamic RoI axis first."""
    return GraphInfo(name, (TensorInfo(input_name, "float32", (DYNAMIC_DIM, *input_shape)),),
                     tuple(TensorInfo(out, "float32", (DYNAMIC_DIM, *shape)) for out, shape in outputs))


def instance_segmentation_spec(
    model_config: typing.Any,
    class_names: typing.Sequence[str],
    category_ids: typing.Sequence[int],
    resize_mode: ResizeMode = ResizeMode.LETTERBOX,
    with_keypoints: bool = True,
    proposals: RpnProposalConfig = RpnProposalConfig(),
    box_head: BoxHeadConfig = BoxHeadConfig(),
    mask_threshold: float = DEFAULT_MASK_THRESHOLD,
    sampling_ratio: int = DEFAULT_SAMPLING_RATIO,
) -> ModelSpec:
    """The spec of a float Mask R-CNN split-graph model (stage 1 + box, mask, optional keypoint head).

    Args:
        model_config: a ``tfsp.models.mask_rcnn.MaskRcnnConfig``, read by attribute (``input_size``,
            ``levels``, ``anchor_sizes_px``, ``aspect_ratios``, ``fpn_channels``, ``num_classes``,
            ``num_keypoints``, the three ``*_roi_size``, ``mask_size``, ``heatmap_size``).
        class_names: foreground class names by ``class_id`` (C of them, C = ``model_config.num_classes``).
        category_ids: COCO category id by ``class_id``.
        resize_mode: preprocessing resize.
        with_keypoints: whether the chain has a keypoint head (for the class named ``"person"``).
        proposals: RPN proposal selection.
        box_head: box-head decoding thresholds.
        mask_threshold: mask paste-back threshold on the probability.
        sampling_ratio: RoIAlign sample points per bin side.

    Returns:
        A float32 ``ModelSpec`` (task INSTANCE_SEGMENTATION) whose input is ``image`` (-1, S, S, 3) and
        outputs, per level l, ``fpn_p{l}`` (-1, S/2^l, S/2^l, F), ``rpn_objectness_p{l}`` (.., A),
        ``rpn_deltas_p{l}`` (.., 4A); ``rcnn.heads``: ``box_head`` (``box_rois`` (-1, s, s, F) ->
        ``class_logits`` (-1, C + 1), ``box_deltas`` (-1, 4C)), ``mask_head`` (``mask_rois`` ->
        ``mask_logits`` (-1, M, M, C)) and, with keypoints, ``keypoint_head`` (``keypoint_rois`` ->
        ``keypoint_logits`` (-1, 4s, 4s, K)).

    Raises:
        SpecError: C differs from the model's classes, or keypoints without a ``"person"`` class.
    """
    cfg, names = model_config, tuple(class_names)
    if len(names) != cfg.num_classes:
        raise SpecError(f"instance_segmentation_spec: {len(names)} class names for a model with "
                        f"{cfg.num_classes} classes")
    if with_keypoints and PERSON_CLASS_NAME not in names:
        raise SpecError(f"instance_segmentation_spec with_keypoints needs a class named {PERSON_CLASS_NAME!r}, "
                        f"got {list(names)}")
    size, channels, anchors = cfg.input_size, cfg.fpn_channels, len(cfg.aspect_ratios)
    outputs = []
    for level in cfg.levels:
        side = (DYNAMIC_DIM, size // 2**level, size // 2**level)
        outputs += [(FPN_OUTPUT.format(level), (*side, channels)),
                    (RPN_OBJECTNESS_OUTPUT.format(level), (*side, anchors)),
                    (RPN_DELTAS_OUTPUT.format(level), (*side, BOX_COORDS * anchors))]
    roi = {name: (s, s, channels) for name, s in ((BOX_HEAD_GRAPH, cfg.box_roi_size),
                                                  (MASK_HEAD_GRAPH, cfg.mask_roi_size),
                                                  (KEYPOINT_HEAD_GRAPH, cfg.keypoint_roi_size))}
    heads = [
        _head_graph(BOX_HEAD_GRAPH, BOX_ROIS_INPUT, roi[BOX_HEAD_GRAPH],
                    ((CLASS_LOGITS, (len(names) + 1,)), (BOX_DELTAS, (BOX_COORDS * len(names),)))),
        _head_graph(MASK_HEAD_GRAPH, MASK_ROIS_INPUT, roi[MASK_HEAD_GRAPH],
                    ((MASK_LOGITS, (cfg.mask_size, cfg.mask_size, len(names))),)),
    ]
    if with_keypoints:
        heads.append(_head_graph(KEYPOINT_HEAD_GRAPH, KEYPOINT_ROIS_INPUT, roi[KEYPOINT_HEAD_GRAPH],
                                 ((KEYPOINT_LOGITS, (cfg.heatmap_size, cfg.heatmap_size, cfg.num_keypoints)),)))
    chain = RcnnChain(
        anchors=FpnAnchorConfig(image_size=size, levels=cfg.levels, sizes_px=cfg.anchor_sizes_px,
                                aspect_ratios=cfg.aspect_ratios),
        proposals=proposals, box_head=box_head, box_roi_size=cfg.box_roi_size, mask_roi_size=cfg.mask_roi_size,
        keypoint_roi_size=cfg.keypoint_roi_size, sampling_ratio=sampling_ratio, mask_threshold=mask_threshold,
        person_class_id=names.index(PERSON_CLASS_NAME) if with_keypoints else None, heads=tuple(heads))
    return _float_spec(Task.INSTANCE_SEGMENTATION, size, resize_mode, names, category_ids, tuple(outputs),
                       rcnn=chain)
