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
   3x3 smoothing conv -> P2..P5; P6 = stride-2 subsampling of P5 (1x1 max-pool, detectron2's
   ``LastLevelMaxPool``); every level has ``fpn_channels`` channels, level l stride ``2 ** l``;
4. the RPN head, its weights shared by every level: 3x3 conv + ReLU, then a 1x1 conv to A
   objectness logits and a 1x1 conv to 4A box deltas.

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

import dataclasses

import keras

from tfsp.data.rcnn_targets import ROI_FOREGROUND_FRACTION, RPN_BATCH_SIZE, RPN_POSITIVE_FRACTION
from tfsp.models.backbones import DEFAULT_BN_MOMENTUM, mobilenet_v2_features, normalise_image
from tfsp.postprocess.rcnn import (
    BOX_COORDS,
    DEFAULT_ASPECT_RATIOS,
    DEFAULT_FPN_SIZES_PX,
    DEFAULT_RPN_POST_NMS_TOP_K,
    DEFAULT_RPN_PRE_NMS_TOP_K,
    FPN_OUTPUT,
    RPN_DELTAS_OUTPUT,
    RPN_OBJECTNESS_OUTPUT,
    FpnAnchorConfig,
)
from tfsp.spec import INPUT_NAME
from tfsp.structures import NUM_KEYPOINTS

BACKBONE_LEVELS = (2, 3, 4, 5)  # MobileNetV2 taps at strides 4, 8, 16, 32
EXTRA_LEVEL = 6  # P6: stride-2 subsampling of P5 (no backbone tap)
SUPPORTED_LEVELS = (*BACKBONE_LEVELS, EXTRA_LEVEL)
P6_POOL_SIZE = 1  # detectron2's LastLevelMaxPool: max_pool2d(kernel_size=1, stride=2)
UPSAMPLE_FACTOR = 2
MASK_UPSAMPLE = 2  # mask head: one 2x transposed conv, 14 -> 28
KEYPOINT_UPSAMPLE = 4  # keypoint head: 2x transposed conv then 2x bilinear, 14 -> 56
# Output-layer initialisation as detectron2 (normal std): box-head class scores, box deltas and the
# RPN/mask predictors, so untrained deltas are near 0 and untrained logits near uniform.
RPN_INIT_STD = 0.01
# int8: stage 1's outputs are soft-clamped (``soft_clamp``) so that their ranges stay bounded by
# construction. Without it the RPN's easy negatives drove objectness logits to +-1000 and FPN values to
# 700 (typical magnitudes 4-20), full-integer calibration took those extremes as the per-tensor range
# and the int8 stage 1 cost 14-19 AP points. (An output range penalty in the loss instead slowed
# training down a lot; clipping only at export recovered a third of the loss.)
FEATURE_BOUND = 64.0  # FPN maps
LOGIT_BOUND = 16.0  # RPN objectness logits (probability 1 - 1e-7 at the bound)
DELTA_BOUND = 10.0  # RPN box deltas (matched targets stay within ~4)
TRAIN_ROI_BATCH_SIZE = 512  # RoIs sampled per image (detectron2 ROI_HEADS.BATCH_SIZE_PER_IMAGE)
TRAIN_PRE_NMS_TOP_K = 2000  # per level (detectron2 RPN.PRE_NMS_TOPK_TRAIN)
TRAIN_POST_NMS_TOP_K = 1000  # per image (detectron2 RPN.POST_NMS_TOPK_TRAIN)
DEFAULT_PERSON_CLASS_ID = 0  # class 0 of the synthetic data is "person"
DEFAULT_KEYPOINT_LOSS_WEIGHT = 1.0  # detectron2 ROI_KEYPOINT_HEAD.LOSS_WEIGHT
SYNTH_ANCHOR_SIZES_PX = (16.0, 32.0, 64.0, 128.0, 256.0)  # P2..P6 for 256 px images with 5..100 px objects


@dataclasses.dataclass(frozen=True)
class MaskRcnnConfig:
    """Mask R-CNN (+ keypoints) configuration shared by the four graphs.

    Attributes:
        input_size: square input side S in pixels, a multiple of ``2 ** max(levels)``.
        num_classes: foreground classes C (the box head adds background at index 0).
        alpha: MobileNetV2 width multiplier.
        fpn_channels: F, channels of every FPN level, of the RPN conv and of the RoI features.
        levels: FPN levels, consecutive within 2..6 and ending at 5 or 6; level l has stride
            ``2 ** l``. Proposals and RoIAlign use the same levels.
        anchor_sizes_px: per level, the anchor side in input pixels (``FpnAnchorConfig.sizes_px``).
        aspect_ratios: anchor ratios h / w per location, in channel order; A = their count.
        box_roi_size: s of the box head's (R, s, s, F) input (7).
        box_fc: units of each of the box head's two fully connected layers.
        mask_roi_size: s of the mask head's input (14); masks are 2s (28).
        mask_head_channels: width of the mask head's convs and transposed conv.
        mask_head_convs: 3x3 convs of the mask head (4).
        keypoint_roi_size: s of the keypoint head's input (14); heatmaps are 4s (56).
        keypoint_head_channels: width of the keypoint head's convs.
        keypoint_head_convs: 3x3 convs of the keypoint head (detectron2: 8).
        num_keypoints: K, keypoint heatmap channels (17 COCO keypoints).
        bn_momentum: momentum of the backbone's batch-norm layers.
        backbone_weights: optional local MobileNetV2 ``*_no_top.h5`` weights (never downloaded).
        rpn_batch_size: anchors sampled per image for the RPN losses (detectron2: 256).
        rpn_positive_fraction: at most this fraction of them is positive (0.5).
        roi_batch_size: RoIs sampled per image for the box head (detectron2: 512); the first
            ``roi_fg_rows`` rows (every foreground one) feed the mask and keypoint heads.
        roi_fg_fraction: at most this fraction of the sampled RoIs is foreground (0.25).
        train_pre_nms_top_k: proposals kept per level before NMS while training (detectron2: 2000).
        train_post_nms_top_k: proposals kept per image after NMS while training (detectron2: 1000).
        test_pre_nms_top_k: proposals kept per level before NMS at inference (written to the spec).
        test_post_nms_top_k: proposals kept per image after NMS at inference (written to the spec).
        person_class_id: data class id (0-based) that carries keypoints; None: no keypoint loss.
        keypoint_loss_weight: weight of the keypoint loss in the total (every other term has 1).
    """

    input_size: int = 512
    num_classes: int = 4
    alpha: float = 1.0
    fpn_channels: int = 256
    levels: tuple[int, ...] = SUPPORTED_LEVELS
    anchor_sizes_px: tuple[float, ...] = DEFAULT_FPN_SIZES_PX
    aspect_ratios: tuple[float, ...] = DEFAULT_ASPECT_RATIOS
    box_roi_size: int = 7
    box_fc: int = 1024
    mask_roi_size: int = 14
    mask_head_channels: int = 256
    mask_head_convs: int = 4
    keypoint_roi_size: int = 14
    keypoint_head_channels: int = 512
    keypoint_head_convs: int = 8
    num_keypoints: int = NUM_KEYPOINTS
    bn_momentum: float = DEFAULT_BN_MOMENTUM
    backbone_weights: str | None = None
    rpn_batch_size: int = RPN_BATCH_SIZE
    rpn_positive_fraction: float = RPN_POSITIVE_FRACTION
    roi_batch_size: int = TRAIN_ROI_BATCH_SIZE
    roi_fg_fraction: float = ROI_FOREGROUND_FRACTION
    train_pre_nms_top_k: int = TRAIN_PRE_NMS_TOP_K
    train_post_nms_top_k: int = TRAIN_POST_NMS_TOP_K
    test_pre_nms_top_k: int = DEFAULT_RPN_PRE_NMS_TOP_K
    test_post_nms_top_k: int = DEFAULT_RPN_POST_NMS_TOP_K
    person_class_id: int | None = DEFAULT_PERSON_CLASS_ID
    keypoint_loss_weight: float = DEFAULT_KEYPOINT_LOSS_WEIGHT

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if (not levels or levels != tuple(range(levels[0], levels[0] + len(levels)))
                or levels[0] < min(SUPPORTED_LEVELS) or levels[-1] not in (max(BACKBONE_LEVELS), EXTRA_LEVEL)):
            raise ValueError(f"MaskRcnnConfig.levels must be consecutive within {SUPPORTED_LEVELS} and end at "
                             f"{max(BACKBONE_LEVELS)} or {EXTRA_LEVEL}, got {self.levels!r}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "anchor_sizes_px", tuple(float(s) for s in self.anchor_sizes_px))
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        if self.input_size <= 0 or self.input_size % self.max_stride:
            raise ValueError(f"MaskRcnnConfig.input_size must be a positive multiple of {self.max_stride}, "
                             f"got {self.input_size}")
        if self.alpha <= 0:
            raise ValueError(f"MaskRcnnConfig.alpha must be positive, got {self.alpha}")
        for name in ("num_classes", "fpn_channels", "box_roi_size", "box_fc", "mask_roi_size", "mask_head_channels",
                     "keypoint_roi_size", "keypoint_head_channels", "num_keypoints", "rpn_batch_size",
                     "roi_batch_size", "train_pre_nms_top_k", "train_post_nms_top_k", "test_pre_nms_top_k",
                     "test_post_nms_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"MaskRcnnConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("mask_head_convs", "keypoint_head_convs"):
            if getattr(self, name) < 0:
                raise ValueError(f"MaskRcnnConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"MaskRcnnConfig.bn_momentum must be in [0, 1), got {self.bn_momentum}")
        for name in ("rpn_positive_fraction", "roi_fg_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"MaskRcnnConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.person_class_id is not None and not 0 <= self.person_class_id < self.num_classes:
            raise ValueError(f"MaskRcnnConfig.person_class_id must be None or in [0, {self.num_classes}), "
                             f"got {self.person_class_id}")
        if not 0 <= self.keypoint_loss_weight < float("inf"):
            raise ValueError(f"MaskRcnnConfig.keypoint_loss_weight must be finite and >= 0, "
                             f"got {self.keypoint_loss_weight}")
        fpn_anchor_config(self)  # validates anchor_sizes_px (one per level) and aspect_ratios

    @property
    def max_stride(self) -> int:
        """Stride of the coarsest level, ``2 ** max(levels)``."""
        return 2 ** self.levels[-1]

    @property
    def num_anchors(self) -> int:
        """A, anchors per location (one per aspect ratio)."""
        return len(self.aspect_ratios)

    @property
    def num_logits(self) -> int:
        """Box-head classification logits: C + 1 (background first)."""
        return self.num_classes + 1

    @property
    def mask_size(self) -> int:
        """M, side of the mask logits (2 x mask_roi_size)."""
        return MASK_UPSAMPLE * self.mask_roi_size

    @property
    def heatmap_size(self) -> int:
        """Side of the keypoint heatmaps (4 x keypoint_roi_size)."""
        return KEYPOINT_UPSAMPLE * self.keypoint_roi_size

    @property
    def roi_fg_rows(self) -> int:
        """Rows per image that may be foreground (``int(roi_batch_size * roi_fg_fraction)``), >= 1."""
        return max(1, int(self.roi_batch_size * self.roi_fg_fraction))

    def map_size(self, level: int) -> int:
        """Side ``S / 2 ** level`` of the level's FPN and RPN maps."""
        return self.input_size // 2**level


def fpn_anchor_config(config: MaskRcnnConfig) -> FpnAnchorConfig:
    """The numpy anchors matching stage 1's RPN outputs (same levels, map sizes and aspect order)."""
    return FpnAnchorConfig(image_size=config.input_size, levels=config.levels,
                           sizes_px=config.anchor_sizes_px, aspect_ratios=config.aspect_ratios)


def roi_feature_channels(config: MaskRcnnConfig) -> int:
    """F, channels of the RoI features every head takes (the FPN width)."""
    return config.fpn_channels


def stage1_output_names(config: MaskRcnnConfig) -> tuple[str, ...]:
    """Every stage-1 output name: per level, FPN map, RPN objectness, RPN deltas."""
    return tuple(name.format(level) for level in config.levels
                 for name in (FPN_OUTPUT, RPN_OBJECTNESS_OUTPUT, RPN_DELTAS_OUTPUT))


MASK_RCNN_SYNTH_CONFIG = MaskRcnnConfig(
    input_size=256, num_classes=4, alpha=0.35, fpn_channels=64, anchor_sizes_px=SYNTH_ANCHOR_SIZES_PX, box_fc=256,
    mask_head_channels=64, keypoint_head_channels=64, keypoint_head_convs=4,
    roi_batch_size=64, train_pre_nms_top_k=500, train_post_nms_top_k=250, test_pre_nms_top_k=300,
    test_post_nms_top_k=150)
"""Small default for the embedded synthetic data (4 classes, class 0 person; ~5 objects per image) on 2
CPU cores: 256 px input, P2..P6 (64 x 64 .. 4 x 4) with 16..256 px anchors, MobileNetV2 alpha 0.35,
FPN 64 channels, narrow heads, 64 sampled RoIs (16 foreground) per image: ~0.46 s per batch of 8.
At inference 300 proposals per level before NMS, 150 after (the numpy steps dominate otherwise)."""


def soft_clamp(x: keras.KerasTensor, bound: float, name: str) -> keras.KerasTensor:
    """``bound * tanh(x / bound)`` from standard layers (TFLite MUL, TANH, MUL): about ``x`` for
    ``|x| << bound``, never beyond ``bound``; the last layer is named ``name``."""
    x = keras.layers.Rescaling(1.0 / bound, name=f"{name}_in")(x)
    x = keras.layers.Activation("tanh", name=f"{name}_tanh")(x)
    return keras.layers.Rescaling(bound, name=name)(x)


def normal_initializer(std: float) -> keras.initializers.Initializer:
    """Zero-mean normal kernel initialiser with standard deviation ``std`` (detectron2's predictor init)."""
    return keras.initializers.RandomNormal(stddev=std)


def _fpn(maps: list, config: MaskRcnnConfig) -> dict:
    """Top-down FPN on C2..C5; returns level -> (B, S / 2**l, S / 2**l, F) for ``config.levels``."""
    channels = config.fpn_channels
    inner = None
    outputs = {}
    for level, feature in zip(BACKBONE_LEVELS[::-1], maps[::-1]):
        lateral = keras.layers.Conv2D(channels, 1, name=f"fpn_lateral_p{level}")(feature)
        if inner is not None:
            up = keras.layers.UpSampling2D(UPSAMPLE_FACTOR, interpolation="nearest", name=f"fpn_up_p{level}")(inner)
            lateral = keras.layers.Add(name=f"fpn_add_p{level}")([lateral, up])
        inner = lateral
        if level >= config.levels[0]:
            smoothed = keras.layers.Conv2D(channels, 3, padding="same", name=f"fpn_conv_p{level}")(inner)
            outputs[level] = soft_clamp(smoothed, FEATURE_BOUND, FPN_OUTPUT.format(level))
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
        outputs[RPN_OBJECTNESS_OUTPUT.format(level)] = soft_clamp(
            rpn_objectness(hidden), LOGIT_BOUND, RPN_OBJECTNESS_OUTPUT.format(level))
        outputs[RPN_DELTAS_OUTPUT.format(level)] = soft_clamp(
            rpn_deltas(hidden), DELTA_BOUND, RPN_DELTAS_OUTPUT.format(level))
    return keras.Model(image, outputs, name="mask_rcnn_stage1")
