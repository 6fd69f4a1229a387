"""Mask R-CNN with a keypoint head (He et al. ICCV 2017) on MobileNetV2 + FPN, as split graphs (Keras 3).

The two-stage model runs as four plain convolutional graphs with numpy in between
(``tfsp.postprocess.rcnn``, ``roi_align``, ``rcnn_masks``), so each graph exports to TFLite with
builtin ops only, in fp32 and full int8::

    image --build_stage1--> fpn_p{l}, rpn_objectness_p{l}, rpn_deltas_p{l}
          --numpy: anchors, generate_proposals, multilevel_roi_align (7 x 7)-->
    box_rois --build_box_head--> class_logits, box_deltas
          --numpy: decode_box_head, multilevel_roi_align (14 x 14) of the detections-->
    mask_rois --build_mask_head--> mask_logits          keypoint_rois --build_keypoint_head--> keypoint_logits

Stage 1 (:func:`build_stage1`), in labelled sections:

1. input ``image`` (B, S, S, 3) float32 RGB in [0, 255], normalised in the graph;
2. MobileNetV2 maps C2..C5 at strides 4, 8, 16, 32 (``MOBILENET_V2_TAPS``);
3. FPN top-down (Lin et al. 2017, detectron2's ``FPN``): 1x1 laterals, nearest 2x upsampling, add,
   3x3 smoothing conv -> P2..P5 (with ``fpn_activation_bound``, every lateral and every sum clipped to
   ``[-bound, bound]`` by :func:`hard_clamp`); P6 = stride-2 subsampling of P5 (1x1 max-pool, detectron2's
   ``LastLevelMaxPool``); every level has ``fpn_channels`` channels, level l stride ``2 ** l``;
4. the RPN head, its weights shared by every level: 3x3 conv + ReLU, then a 1x1 conv to A
   objectness logits and a 1x1 conv to 4A box deltas;
5. the RPN outputs soft-clamped (:func:`soft_clamp`, ``bound * tanh(x / bound)``: ``LOGIT_BOUND``,
   ``DELTA_BOUND``) so that full-integer int8 keeps a fine per-tensor scale.

Anchor order: at level l (map ``H_l x W_l``, ``H_l = S / 2 ** l``), objectness channel a is aspect
ratio ``config.aspect_ratios[a]`` and deltas channel ``4 * a + k`` is coordinate k of
``(dx, dy, dw, dh)`` for that aspect. So, per image, ``objectness.reshape(-1)`` (H_l * W_l * A,)
and ``deltas.reshape(-1, 4)`` (H_l * W_l * A, 4) are in the (row, col, aspect) order, aspect
fastest, of :func:`tfsp.postprocess.rcnn.generate_fpn_anchors` with :func:`fpn_anchor_config`.

Heads (:mod:`tfsp.models.mask_rcnn_heads`) take RoI features ``(R, s, s, F)`` cut from the FPN maps by
:func:`tfsp.postprocess.roi_align.multilevel_roi_align` (R, the number of RoIs, is the batch axis):

* box head (:func:`~tfsp.models.mask_rcnn_heads.build_box_head`): Flatten, 2 x Dense(``box_fc``) + ReLU, then ``class_logits``
  (R, C + 1), index 0 background and ``k + 1`` class k, and ``box_deltas`` (R, 4C), class k's
  ``(dx, dy, dw, dh)`` at ``4k .. 4k + 3``: ``box_deltas.reshape(R, C, 4)`` is what
  :func:`tfsp.postprocess.rcnn.decode_box_head` takes;
* mask head (:func:`~tfsp.models.mask_rcnn_heads.build_mask_head`): ``mask_head_convs`` x (3x3 conv + ReLU), a 2x2 stride-2
  transposed conv + ReLU and a 1x1 conv to ``mask_logits`` (R, 2s, 2s, C) (class k in channel k; the
  detection's class channel, through a sigmoid, is the (N, M, M) input of ``paste_masks``);
* keypoint head (:func:`~tfsp.models.mask_rcnn_heads.build_keypoint_head`): ``keypoint_head_convs`` x (3x3 conv + ReLU), a 4x4
  stride-2 transposed conv to K channels and a 2x bilinear resize, as detectron2's
  ``KRCNNConvDeconvUpsampleHead``: ``keypoint_logits`` (R, 4s, 4s, K); transpose with
  ``(0, 3, 1, 2)`` for :func:`tfsp.postprocess.rcnn_masks.decode_keypoint_heatmaps`.

The mask and keypoint heads (the paper's "stage 3") are two separate graphs, each with one input,
so each converts and quantises on its own. Only standard Keras layers are used
(``keras.models.load_model(path, compile=False)`` needs no custom objects). Training (the
``rpn_*``, ``roi_*``, ``train_*`` fields): :class:`tfsp.models.mask_rcnn_train.MaskRcnnTrainModel`.
"""

from __future__ import annotations

import keras

from tfsp.models.backbones import mobilenet_v2_features, normalise_image
from tfsp.models.deploy_size import rebuilt_at
from tfsp.models.mask_rcnn_config import (  # noqa: F401 (re-exported: the config lives beside the graphs)
    BACKBONE_LEVELS,
    EXTRA_LEVEL,
    KEYPOINT_UPSAMPLE,
    MASK_RCNN_SYNTH_CONFIG,
    MASK_UPSAMPLE,
    SUPPORTED_LEVELS,
    MaskRcnnConfig,
    deployed_mask_rcnn_config,
    fpn_anchor_config,
    roi_feature_channels,
    stage1_output_names,
)
from tfsp.postprocess.rcnn import BOX_COORDS, FPN_OUTPUT, RPN_DELTAS_OUTPUT, RPN_OBJECTNESS_OUTPUT
from tfsp.spec import INPUT_NAME

P6_POOL_SIZE = 1  # detectron2's LastLevelMaxPool: max_pool2d(kernel_size=1, stride=2)
UPSAMPLE_FACTOR = 2
# Output-layer initialisation as detectron2 (normal std): box-head class scores, box deltas and the
# RPN/mask predictors, so untrained deltas are near 0 and untrained logits near uniform.
RPN_INIT_STD = 0.01
# int8: the RPN outputs are soft-clamped (``soft_clamp``) so that their ranges stay bounded by
# construction. Without it the RPN's easy negatives drove objectness logits to +-1000 and, through
# them, FPN values to 700 (typical magnitudes 4-20); full-integer calibration took those extremes as
# the per-tensor range and the int8 stage 1 cost 14-19 AP points. (An output range penalty in the loss
# instead slowed training down a lot; clipping only at export recovered a third of the loss. A clamp
# on the FPN maps too made LiteRT's XNNPACK delegate abort on small untrained int8 graphs.)
LOGIT_BOUND = 16.0  # RPN objectness logits (probability 1 - 1e-7 at the bound)
DELTA_BOUND = 10.0  # RPN box deltas (matched targets stay within ~4)


def soft_clamp(x: keras.KerasTensor, bound: float, name: str) -> keras.KerasTensor:
    """``bound * tanh(x / bound)`` from standard layers (TFLite MUL, TANH, MUL): about ``x`` for
    ``|x| << bound``, never beyond ``bound``; the last layer is named ``name``."""
    x = keras.layers.Rescaling(1.0 / bound, name=f"{name}_in")(x)
    x = keras.layers.Activation("tanh", name=f"{name}_tanh")(x)
    return keras.layers.Rescaling(bound, name=name)(x)


def hard_clamp(x: keras.KerasTensor, bound: float, name: str) -> keras.KerasTensor:
    """``x`` clipped to ``[-bound, bound]`` as ``bound / 3 * relu6(3 * x / bound + 3) - bound`` from standard
    layers; the last layer is named ``name``.

    The TFLite converter folds the first rescaling into a preceding conv and fuses the ReLU6 into it
    (or into a preceding ADD), and XNNPACK runs them inside its partitions: the synthetic Mask R-CNN's
    int8 stage 1 took 4.07-4.37 ms in ``make demo TASK=maskrcnn``'s benchmark, as unbounded; written as
    ``x + bound``, ``ReLU(max_value=2 * bound)``, ``- bound`` the clip became MINIMUM and RELU ops outside
    them (7.22 ms; README, Mask R-CNN).
    """
    x = keras.layers.Rescaling(3.0 / bound, offset=3.0, name=f"{name}_in")(x)
    x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return keras.layers.Rescaling(bound / 3.0, offset=-bound, name=name)(x)


def normal_initializer(std: float) -> keras.initializers.Initializer:
    """Zero-mean normal kernel initialiser with standard deviation ``std`` (detectron2's predictor init)."""
    return keras.initializers.RandomNormal(stddev=std)


def _fpn(maps: list, config: MaskRcnnConfig) -> dict:
    """Top-down FPN on C2..C5; returns level -> (B, S / 2**l, S / 2**l, F) for ``config.levels``."""
    channels, bound = config.fpn_channels, config.fpn_activation_bound
    inner = None
    outputs = {}
    for level, feature in zip(BACKBONE_LEVELS[::-1], maps[::-1]):
        lateral = keras.layers.Conv2D(channels, 1, name=f"fpn_lateral_p{level}")(feature)
        if bound is not None:
            lateral = hard_clamp(lateral, bound, f"fpn_lateral_p{level}_clamp")
        if inner is not None:
            up = keras.layers.UpSampling2D(UPSAMPLE_FACTOR, interpolation="nearest", name=f"fpn_up_p{level}")(inner)
            lateral = keras.layers.Add(name=f"fpn_add_p{level}")([lateral, up])
            if bound is not None:
                lateral = hard_clamp(lateral, bound, f"fpn_add_p{level}_clamp")
        inner = lateral
        if level >= config.levels[0]:
            outputs[level] = keras.layers.Conv2D(channels, 3, padding="same", name=FPN_OUTPUT.format(level))(inner)
        if level == config.levels[0]:
            break
    if EXTRA_LEVEL in config.levels:
        outputs[EXTRA_LEVEL] = keras.layers.MaxPooling2D(P6_POOL_SIZE, strides=UPSAMPLE_FACTOR,
                                                         name=FPN_OUTPUT.format(EXTRA_LEVEL))(outputs[EXTRA_LEVEL - 1])
    return outputs


def build_stage1(config: MaskRcnnConfig) -> keras.Model:
    """Builds stage 1: backbone + FPN + RPN.

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``image`` (B, S, S, 3) float32 RGB in [0, 255] and dict outputs,
        per level l of ``config.levels`` (H_l = W_l = S / 2**l): ``fpn_p{l}`` (B, H_l, W_l, F),
        ``rpn_objectness_p{l}`` (B, H_l, W_l, A) logits and ``rpn_deltas_p{l}`` (B, H_l, W_l, 4A),
        all float32; see the module docstring for the anchor order.
    """
    # 1. input
    image = keras.Input((config.input_size, config.input_size, 3), name=INPUT_NAME)
    # 2. backbone
    strides = tuple(2**level for level in BACKBONE_LEVELS)
    maps = mobilenet_v2_features(normalise_image(image), strides, alpha=config.alpha,
                                 weights_path=config.backbone_weights, bn_momentum=config.bn_momentum)
    # 3. FPN
    pyramid = _fpn(maps, config)
    # 4. RPN head, shared by every level
    anchors = config.num_anchors
    rpn_conv = keras.layers.Conv2D(config.fpn_channels, 3, padding="same", activation="relu",
                                   kernel_initializer=normal_initializer(RPN_INIT_STD), name="rpn_conv")
    rpn_objectness = keras.layers.Conv2D(anchors, 1, kernel_initializer=normal_initializer(RPN_INIT_STD), name="rpn_objectness")
    rpn_deltas = keras.layers.Conv2D(BOX_COORDS * anchors, 1, kernel_initializer=normal_initializer(RPN_INIT_STD), name="rpn_deltas")
    outputs = {}
    for level in config.levels:
        hidden = rpn_conv(pyramid[level])
        outputs[FPN_OUTPUT.format(level)] = pyramid[level]
        for name, layer, bound in ((RPN_OBJECTNESS_OUTPUT, rpn_objectness, LOGIT_BOUND),
                                   (RPN_DELTAS_OUTPUT, rpn_deltas, DELTA_BOUND)):
            name = name.format(level)
            outputs[name] = (soft_clamp(layer(hidden), bound, name) if config.rpn_soft_clamp
                             else keras.layers.Identity(name=name)(layer(hidden)))
    return keras.Model(image, outputs, name="mask_rcnn_stage1")


def deploy_stage1(stage1: keras.Model, config: MaskRcnnConfig) -> keras.Model:
    """Stage 1 at ``config.deploy_input_size``.

    Args:
        stage1: a graph from ``build_stage1(config)`` (trained).
        config: its config.

    Returns:
        ``stage1`` when the deploy size is the training size; else ``build_stage1`` of
        ``deployed_mask_rcnn_config(config)`` holding a copy of the weights.
    """
    deployed = deployed_mask_rcnn_config(config)
    return rebuilt_at(stage1, config.input_size, deployed.input_size, lambda: build_stage1(deployed))
