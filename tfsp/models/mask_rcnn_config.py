"""Configuration of the Mask R-CNN split graphs (``tfsp.models.mask_rcnn``): shapes, anchors, RoI sampling.

One frozen dataclass shared by the four graphs, the training model and the ModelSpec builder, plus the
helpers that derive the numpy anchors and the stage-1 output names from it, and the synthetic default.
"""

from __future__ import annotations

import dataclasses

from tfsp.data.rcnn_targets import ROI_FOREGROUND_FRACTION, RPN_BATCH_SIZE, RPN_POSITIVE_FRACTION
from tfsp.models.backbones import DEFAULT_BN_MOMENTUM
from tfsp.postprocess.rcnn import (
    DEFAULT_ASPECT_RATIOS,
    DEFAULT_FPN_SIZES_PX,
    DEFAULT_RPN_POST_NMS_TOP_K,
    DEFAULT_RPN_PRE_NMS_TOP_K,
    FPN_OUTPUT,
    RPN_DELTAS_OUTPUT,
    RPN_OBJECTNESS_OUTPUT,
    FpnAnchorConfig,
)
from tfsp.structures import NUM_KEYPOINTS

BACKBONE_LEVELS = (2, 3, 4, 5)  # MobileNetV2 taps at strides 4, 8, 16, 32
EXTRA_LEVEL = 6  # P6: stride-2 subsampling of P5 (no backbone tap)
SUPPORTED_LEVELS = (*BACKBONE_LEVELS, EXTRA_LEVEL)
MASK_UPSAMPLE = 2  # mask head: one 2x transposed conv, 14 -> 28
KEYPOINT_UPSAMPLE = 4  # keypoint head: 2x transposed conv then 2x bilinear, 14 -> 56
TRAIN_ROI_BATCH_SIZE = 512  # RoIs sampled per image (detectron2 ROI_HEADS.BATCH_SIZE_PER_IMAGE)
TRAIN_PRE_NMS_TOP_K = 2000  # per level (detectron2 RPN.PRE_NMS_TOPK_TRAIN)
TRAIN_POST_NMS_TOP_K = 1000  # per image (detectron2 RPN.POST_NMS_TOPK_TRAIN)
DEFAULT_PERSON_CLASS_ID = 0  # class 0 of the synthetic data is "person"
DEFAULT_KEYPOINT_LOSS_WEIGHT = 1.0  # detectron2 ROI_KEYPOINT_HEAD.LOSS_WEIGHT
DEFAULT_BOX_REGRESSION_LOSS_WEIGHT = 1.0  # detectron2 ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT
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
        keypoint_loss_weight: weight of the keypoint loss in the total.
        box_regression_loss_weight: weight of the box head's regression loss in the total (the
            other terms weigh 1).
        keypoint_rois_per_image: training: the keypoint head runs on ``batch * this`` of the batch's
            foreground rows, those matched to a person first (only they carry a keypoint loss, so the
            loss is unchanged while the batch has no more person rows); None: every foreground row.
        deploy_input_size: input side of the deployed stage-1 graph (evaluated, saved and
            exported) when it differs from the training ``input_size``; a multiple of
            ``2 ** max(levels)``. Stage 1 is fully convolutional and the anchors are in pixels, so
            the same weights run on the larger input (the heads take RoIs and do not change).
            None: deploy at ``input_size``.
        rpn_soft_clamp: soft-clamp the RPN outputs in the graph (``tfsp.models.mask_rcnn.soft_clamp``)
            so that int8 keeps a fine scale; False (float experiments only): raw outputs, whose
            ranges can grow until full-integer int8 loses most of its AP.
        fpn_activation_bound: clip every FPN lateral and every top-down sum to
            ``[-bound, bound]`` (``tfsp.models.mask_rcnn.hard_clamp``; the TF Object Detection API's
            bounded FPN activations, 6), so that no level's range sets a coarse int8 scale for the
            others; None: unbounded (detectron2).
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
    box_regression_loss_weight: float = DEFAULT_BOX_REGRESSION_LOSS_WEIGHT
    keypoint_rois_per_image: int | None = None
    deploy_input_size: int | None = None
    rpn_soft_clamp: bool = True
    fpn_activation_bound: float | None = None

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if (not levels or levels != tuple(range(levels[0], levels[0] + len(levels)))
                or levels[0] < min(SUPPORTED_LEVELS) or levels[-1] not in (max(BACKBONE_LEVELS), EXTRA_LEVEL)):
            raise ValueError(f"MaskRcnnConfig.levels must be consecutive within {SUPPORTED_LEVELS} and end at "
                             f"{max(BACKBONE_LEVELS)} or {EXTRA_LEVEL}, got {self.levels!r}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "anchor_sizes_px", tuple(float(s) for s in self.anchor_sizes_px))
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        for name in ("input_size", "deploy_input_size"):
            size = getattr(self, name)
            if size is not None and (size <= 0 or size % self.max_stride):
                raise ValueError(f"MaskRcnnConfig.{name} must be a positive multiple of {self.max_stride}, got {size}")
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
        for name in ("keypoint_loss_weight", "box_regression_loss_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"MaskRcnnConfig.{name} must be finite and >= 0, got {getattr(self, name)}")
        if self.keypoint_rois_per_image is not None and self.keypoint_rois_per_image < 1:
            raise ValueError(f"MaskRcnnConfig.keypoint_rois_per_image must be None or >= 1, "
                             f"got {self.keypoint_rois_per_image}")
        if self.fpn_activation_bound is not None and not 0 < self.fpn_activation_bound < float("inf"):
            raise ValueError(f"MaskRcnnConfig.fpn_activation_bound must be None or finite and > 0, "
                             f"got {self.fpn_activation_bound}")
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

    @property
    def keypoint_rows(self) -> int:
        """Keypoint-head rows per image in training (``keypoint_rois_per_image``, at most ``roi_fg_rows``)."""
        return min(self.roi_fg_rows, self.keypoint_rois_per_image or self.roi_fg_rows)

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


SYNTH_DEPLOY_INPUT_SIZE = 320
"""Trained at 256 px, stage 1 deployed at 320 px: the same weights score higher (README: about +0.02 mask, box and
keypoint AP; 384 px is no better)."""

SYNTH_KEYPOINT_ROIS_PER_IMAGE = 8
"""Of the 16 foreground rows per image about 4.6 are persons (at most 15 in 48 sampled images): the keypoint head runs
on 8 per image, person rows first, and its loss is that of all 16 rows in almost every batch (10 % faster steps)."""

SYNTH_KEYPOINT_LOSS_WEIGHT = 0.1
"""At weight 1 the keypoint loss's gradient on stage 1 is 35 times the box classification term's at the start and 7
times at the end of training (``python -m training.loss_balance``; the other terms' are smaller still), so stage 1
learned mostly for keypoints; at 0.1 float mask / box / keypoint AP rose from
0.421 / 0.423 / 0.325 to 0.519 / 0.552 / 0.368 and int8 came within 1.4 points (README, Mask R-CNN)."""

SYNTH_KEYPOINT_HEAD_CONVS = 8
"""detectron2's count (at 64 channels, not 512): four more 3x3 convs than the mask head widen the keypoint head's view
over its 14 x 14 RoI (a wrist is placed relative to its arm); one run with 4: 0.519 / 0.552 / 0.368 float mask / box /
keypoint AP in 846.5 s, with 8: 0.538 / 0.563 / 0.393 in 863.9 s (box-scored poses; README, Mask R-CNN)."""

SYNTH_FPN_ACTIVATION_BOUND = 6.0
"""FPN laterals and sums clipped to +-6 (``MaskRcnnConfig.fpn_activation_bound``). Unbounded, the range of the P5
lateral (a 1x1 conv over MobileNetV2's 1280-channel last layer) sets the int8 scale of every top-down sum and varies
from run to run; in one run the P2 and P3 laterals then had a std of 0.8 int8 steps and int8 cost 2.5 / 3.7 / 1.5
mask / box / keypoint AP points. Bounded, three runs lost at most 1.6 (README, Mask R-CNN)."""

MASK_RCNN_SYNTH_CONFIG = MaskRcnnConfig(
    input_size=256, num_classes=4, alpha=0.35, fpn_channels=64, anchor_sizes_px=SYNTH_ANCHOR_SIZES_PX, box_fc=256,
    mask_head_channels=64, keypoint_head_channels=64, keypoint_head_convs=SYNTH_KEYPOINT_HEAD_CONVS,
    roi_batch_size=64, train_pre_nms_top_k=500, train_post_nms_top_k=250, test_pre_nms_top_k=300,
    test_post_nms_top_k=150, keypoint_loss_weight=SYNTH_KEYPOINT_LOSS_WEIGHT,
    keypoint_rois_per_image=SYNTH_KEYPOINT_ROIS_PER_IMAGE, deploy_input_size=SYNTH_DEPLOY_INPUT_SIZE,
    fpn_activation_bound=SYNTH_FPN_ACTIVATION_BOUND)
"""Small default for the embedded synthetic data (4 classes, class 0 person; ~5 objects per image) on 2
CPU cores: 256 px input, P2..P6 (64 x 64 .. 4 x 4) with 16..256 px anchors, MobileNetV2 alpha 0.35,
FPN 64 channels, narrow heads, 64 sampled RoIs (16 foreground) per image: ~0.46 s per batch of 8.
At inference 300 proposals per level before NMS, 150 after (the numpy steps dominate otherwise); stage 1
deployed at 320 px (the 256 px images upscaled)."""


def deployed_mask_rcnn_config(config: MaskRcnnConfig) -> MaskRcnnConfig:
    """The config of the deployed graphs: ``input_size`` = the deploy size, ``deploy_input_size`` None."""
    return dataclasses.replace(config, input_size=config.deploy_input_size or config.input_size,
                               deploy_input_size=None)

