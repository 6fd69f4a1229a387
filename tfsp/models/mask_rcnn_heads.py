"""Mask R-CNN heads on RoI features (Keras 3): the box head (stage 2), the mask and keypoint heads (stage 3).

Each takes RoI features ``(R, s, s, F)`` cut from the FPN maps of :func:`tfsp.models.mask_rcnn.build_stage1`
by :func:`tfsp.postprocess.roi_align.multilevel_roi_align` (R, the number of RoIs, is the batch axis); see
:mod:`tfsp.models.mask_rcnn` for the whole split-graph chain and the output conventions.
"""

from __future__ import annotations

import keras

from tfsp.models.mask_rcnn import (
    MASK_UPSAMPLE,
    UPSAMPLE_FACTOR,
    MaskRcnnConfig,
    normal_initializer,
    roi_feature_channels,
)
from tfsp.postprocess.rcnn import BOX_COORDS, BOX_ROIS_INPUT
from tfsp.postprocess.rcnn_masks import KEYPOINT_LOGITS, KEYPOINT_ROIS_INPUT, MASK_LOGITS, MASK_ROIS_INPUT
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS

KEYPOINT_DECONV_KERNEL = 4  # detectron2's KRCNNConvDeconvUpsampleHead
CLASS_LOGITS_INIT_STD = 0.01
BOX_DELTAS_INIT_STD = 0.001
MASK_LOGITS_INIT_STD = 0.001


def _roi_input(config: MaskRcnnConfig, size: int, name: str) -> keras.KerasTensor:
    return keras.Input((size, size, roi_feature_channels(config)), name=name)


def build_box_head(config: MaskRcnnConfig) -> keras.Model:
    """Builds stage 2: the box head on RoIAligned proposals.

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``box_rois`` (R, s, s, F) float32 (s = box_roi_size) and dict
        outputs ``class_logits`` (R, C + 1) float32 (index 0 background, ``k + 1`` class k) and
        ``box_deltas`` (R, 4C) float32 (reshape to (R, C, 4): class k's ``(dx, dy, dw, dh)``).
    """
    rois = _roi_input(config, config.box_roi_size, BOX_ROIS_INPUT)
    x = keras.layers.Flatten(name="box_flatten")(rois)
    for index in range(2):
        x = keras.layers.Dense(config.box_fc, activation="relu", name=f"box_fc{index}")(x)
    logits = keras.layers.Dense(config.num_logits, kernel_initializer=normal_initializer(CLASS_LOGITS_INIT_STD),
                                name=CLASS_LOGITS)(x)
    deltas = keras.layers.Dense(BOX_COORDS * config.num_classes, kernel_initializer=normal_initializer(BOX_DELTAS_INIT_STD),
                                name=BOX_DELTAS)(x)
    return keras.Model(rois, {CLASS_LOGITS: logits, BOX_DELTAS: deltas}, name="mask_rcnn_box_head")


def _conv_stack(x, channels: int, count: int, prefix: str):
    for index in range(count):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                                name=f"{prefix}_conv{index}")(x)
    return x


def build_mask_head(config: MaskRcnnConfig) -> keras.Model:
    """Builds the mask head (stage 3a) on RoIAligned detections.

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``mask_rois`` (R, s, s, F) float32 (s = mask_roi_size) and dict
        output ``mask_logits`` (R, 2s, 2s, C) float32 per-class mask logits (class k in channel k).
    """
    rois = _roi_input(config, config.mask_roi_size, MASK_ROIS_INPUT)
    x = _conv_stack(rois, config.mask_head_channels, config.mask_head_convs, "mask")
    x = keras.layers.Conv2DTranspose(config.mask_head_channels, MASK_UPSAMPLE, strides=MASK_UPSAMPLE,
                                     activation="relu", kernel_initializer="he_normal", name="mask_deconv")(x)
    logits = keras.layers.Conv2D(config.num_classes, 1, kernel_initializer=normal_initializer(MASK_LOGITS_INIT_STD),
                                 name=MASK_LOGITS)(x)
    return keras.Model(rois, {MASK_LOGITS: logits}, name="mask_rcnn_mask_head")


def build_keypoint_head(config: MaskRcnnConfig) -> keras.Model:
    """Builds the keypoint head (stage 3b) on RoIAligned person detections.

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``keypoint_rois`` (R, s, s, F) float32 (s = keypoint_roi_size)
        and dict output ``keypoint_logits`` (R, 4s, 4s, K) float32 heatmap logits, channels last.
    """
    rois = _roi_input(config, config.keypoint_roi_size, KEYPOINT_ROIS_INPUT)
    x = _conv_stack(rois, config.keypoint_head_channels, config.keypoint_head_convs, "keypoint")
    x = keras.layers.Conv2DTranspose(config.num_keypoints, KEYPOINT_DECONV_KERNEL, strides=UPSAMPLE_FACTOR,
                                     padding="same", kernel_initializer="he_normal", name="keypoint_deconv")(x)
    logits = keras.layers.UpSampling2D(UPSAMPLE_FACTOR, interpolation="bilinear", name=KEYPOINT_LOGITS)(x)
    return keras.Model(rois, {KEYPOINT_LOGITS: logits}, name="mask_rcnn_keypoint_head")
