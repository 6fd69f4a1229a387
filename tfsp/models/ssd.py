"""SSD detector (Liu et al., 2016) on a MobileNetV2 backbone, Keras 3.

Graph, in labelled sections of :func:`build_ssd`:

1. input ``image`` (B, S, S, 3) float32 RGB in [0, 255], normalised in the graph;
2. MobileNetV2 feature maps at ``backbone_strides`` (:mod:`tfsp.models.backbones`);
3. extra feature layers: 1x1 conv (half width) then 3x3 conv that halves the map (stride 2
   "same", or a "valid" 3x3 where the anchor config asks for it, e.g. 3 -> 1 in SSD300);
   optionally a top-down pathway (``fpn_channels``) over all maps;
4. per-map 3x3 conv heads, reshaped to (B, f*f*k, D) in (y, x, box) order and concatenated
   map by map — exactly the order of ``tfsp.postprocess.anchors.generate_ssd_anchors``.

Outputs are a dict of two raw tensors, ``box_deltas`` (B, A, 4) (``encode_cxcywh`` deltas) and
``class_logits`` (B, A, C+1) (index 0 background), decoded by :mod:`tfsp.postprocess.ssd`.
Only standard Keras layers are used, so ``keras.models.load_model(path, compile=False)`` needs
no custom objects.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from tfsp.models.backbones import (
    DEFAULT_BN_MOMENTUM,
    mobilenet_v2_features,
    normalise_image,
)
from tfsp.postprocess.anchors import (
    SSD300,
    SsdAnchorConfig,
    generate_ssd_anchors,
    num_anchors_per_location,
)
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS

from tfsp.spec import INPUT_NAME
NUM_BOX_COORDS = 4
HEAD_KERNEL_SIZE = 3
RELU_MAX = 6.0
BN_EPSILON = 1e-3
SYNTH_FOREGROUND_PRIOR = 0.01
"""``ssd_synth``'s initial foreground probability at every anchor (RetinaNet's prior, 0.01)."""


@dataclasses.dataclass(frozen=True)
class SsdConfig:
    """SSD model configuration.

    Attributes:
        input_size: square input side S in pixels; must equal ``anchors.image_size``.
        num_classes: number of foreground classes C (logits have C + 1 channels).
        anchors: default boxes; its ``feature_map_sizes`` must match the model's maps.
        alpha: MobileNetV2 width multiplier.
        backbone_strides: backbone output strides used as the first feature maps.
        extra_channels: output channels of each extra block (one per remaining map).
        bn_momentum: momentum of every batch-norm layer.
        backbone_weights: optional local MobileNetV2 ``*_no_top.h5`` weights (never downloaded).
        fpn_channels: width of an optional top-down pathway (FPN-lite: 1x1 laterals, nearest
            upsampling, add, 3x3 conv) that brings deeper semantics into the finer maps; 0 = off.
        separable_heads: SSDLite heads (3x3 depthwise + BN + ReLU6, then 1x1 conv) instead of
            full 3x3 convs; on MobileNetV2's wide maps (96-1280 channels) the full heads cost
            more multiply-adds than the backbone (yet ssd_synth trained only about 3 % faster per
            step with them on 2 CPU cores, so they are off by default).
        foreground_prior: initial probability of all foreground classes together at every
            anchor (the class heads start with a background-logit bias, RetinaNet's prior
            initialisation for a softmax), so that training does not start with every anchor a
            confident false positive; None = zero bias (uniform softmax).
        deploy_input_size: input side of the deployed model (the evaluated, saved and exported
            graph) when it differs from the training input ``input_size``; the same weights on
            the same strides, with default boxes of the same pixel sizes
            (:func:`tfsp.models.ssd_deploy.deployed_ssd_config`). Needs pixel ``anchors.min_sizes``
            and no explicit ``anchors.steps``. None: deploy at ``input_size``.
    """

    input_size: int
    num_classes: int
    anchors: SsdAnchorConfig
    alpha: float = 1.0
    backbone_strides: tuple[int, ...] = (8, 16, 32)
    extra_channels: tuple[int, ...] = ()
    bn_momentum: float = DEFAULT_BN_MOMENTUM
    backbone_weights: str | None = None
    fpn_channels: int = 0
    separable_heads: bool = False
    foreground_prior: float | None = None
    deploy_input_size: int | None = None

    def __post_init__(self) -> None:
        num_maps = len(self.anchors.feature_map_sizes)
        if self.input_size != self.anchors.image_size:
            raise ValueError(
                f"input_size {self.input_size} != anchors.image_size {self.anchors.image_size}"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.backbone_strides) + len(self.extra_channels) != num_maps:
            raise ValueError(
                f"{len(self.backbone_strides)} backbone maps + {len(self.extra_channels)} extra "
                f"maps != {num_maps} anchor feature maps"
            )
        if self.foreground_prior is not None and not 0.0 < self.foreground_prior < 1.0:
            raise ValueError(f"foreground_prior must be in (0, 1) or None, got {self.foreground_prior}")
        if self.deploy_input_size is not None:
            _check_deploy_size(self)
        object.__setattr__(self, "backbone_strides", tuple(self.backbone_strides))
        object.__setattr__(self, "extra_channels", tuple(self.extra_channels))


def _check_deploy_size(config: SsdConfig) -> None:
    """Raises ValueError unless the default boxes can move to ``deploy_input_size`` unchanged in pixels."""
    anchors, size = config.anchors, config.deploy_input_size
    if anchors.min_sizes is None or anchors.steps is not None:
        raise ValueError("deploy_input_size needs anchors in pixels (min_sizes/max_sizes) and steps null, got "
                         f"min_sizes {anchors.min_sizes}, steps {anchors.steps}")
    strides = [config.input_size / f for f in anchors.feature_map_sizes]
    if size <= 0 or any(s != int(s) or size % int(s) for s in strides):
        raise ValueError(f"deploy_input_size {size} must be a positive multiple of every feature-map stride "
                         f"{strides} (input_size {config.input_size} / feature_map_sizes)")


SSD300_CONFIG = SsdConfig(
    input_size=300,
    num_classes=20,
    anchors=SSD300,
    alpha=1.0,
    backbone_strides=(8, 16, 32),
    extra_channels=(512, 256, 256),
)
"""The paper's SSD300 geometry (maps 38, 19, 10, 5, 3, 1; 8732 boxes) on MobileNetV2, 20 VOC
classes."""

SYNTH_INPUT_SIZE = 192
SYNTH_DEPLOY_INPUT_SIZE = 256
"""The synthetic images' own size: ``ssd_synth`` trains at 192 px and deploys at 256 (README: about +0.035 val
bbox AP over deploying at 192, for the same weights)."""
SYNTH_MIN_SIZES = (12.0, 28.0, 60.0, 120.0)
SYNTH_MAX_SIZES = (28.0, 60.0, 120.0, 180.0)
SYNTH_ANCHORS = SsdAnchorConfig(
    image_size=SYNTH_INPUT_SIZE,
    feature_map_sizes=(24, 12, 6, 3),
    min_scale=SYNTH_MIN_SIZES[0] / SYNTH_INPUT_SIZE,
    max_scale=SYNTH_MAX_SIZES[-1] / SYNTH_INPUT_SIZE,
    aspect_ratios=((2.0, 3.0),) * 4,
    min_sizes=SYNTH_MIN_SIZES,
    max_sizes=SYNTH_MAX_SIZES,
)
"""Anchors for the synthetic set at 192 px input (strides 8, 16, 32, 64; 4590 anchors).

Its 256 px images hold objects of 7-180 px (square root of the box area; 5-95th percentile
15-150 px), so 5-135 px at 192 px input, with box h/w from 0.4 to 3.7 (people, truncation).
Ratio-1 boxes of 12, 18, 28, 41, 60, 85, 120 and 147 px (about x1.45 apart) plus ratio 2 and 3
boxes at 12, 28, 60 and 120 px give every box of 9-135 px a concentric anchor with IoU >= 0.5
up to h/w 2 (>= 0.44 at h/w 3)."""

SSD_SYNTH_CONFIG = SsdConfig(
    input_size=SYNTH_INPUT_SIZE,
    num_classes=4,
    anchors=SYNTH_ANCHORS,
    alpha=0.5,
    backbone_strides=(8, 16, 32),
    extra_channels=(128,),
    foreground_prior=SYNTH_FOREGROUND_PRIOR,
    deploy_input_size=SYNTH_DEPLOY_INPUT_SIZE,
)
"""Small default for the embedded synthetic data (person, circle, square, triangle): trained at 192 px,
deployed at the images' own 256 px."""


def ssd_anchors(config: SsdConfig) -> np.ndarray:
    """The model's default boxes: (A, 4) float32 normalised ``[cx, cy, w, h]``, output order."""
    return generate_ssd_anchors(config.anchors)


def _extra_geometry(in_size: int, out_size: int) -> tuple[int, str]:
    """(stride, padding) of the 3x3 conv taking an ``in_size`` map to ``out_size``."""
    if math.ceil(in_size / 2) == out_size:
        return 2, "same"
    if in_size - 2 == out_size:
        return 1, "valid"
    if in_size >= 3 and (in_size - 3) // 2 + 1 == out_size:
        return 2, "valid"
    raise ValueError(f"no 3x3 conv maps a {in_size}px feature map to {out_size}px")


def _conv_bn_relu(x, filters: int, kernel: int, strides: int, padding: str, name: str, momentum):
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(RELU_MAX, name=f"{name}_relu")(x)


def _top_down(features, channels: int, momentum: float):
    """FPN-lite: each map plus the upsampled (nearest) merged map below it, then a 3x3 conv."""
    lateral = [
        _conv_bn_relu(f, channels, 1, 1, "same", f"fpn_lateral_{i}", momentum) for i, f in enumerate(features)
    ]
    merged = [lateral[-1]]
    for i in range(len(features) - 2, -1, -1):
        factor, remainder = divmod(int(lateral[i].shape[1]), int(merged[0].shape[1]))
        if remainder:
            raise ValueError(f"fpn_channels needs each map to be a multiple of the next: "
                             f"{lateral[i].shape[1]} vs {merged[0].shape[1]}")
        up = keras.layers.UpSampling2D(factor, interpolation="nearest", name=f"fpn_up_{i}")(merged[0])
        x = keras.layers.Add(name=f"fpn_add_{i}")([lateral[i], up])
        merged.insert(0, _conv_bn_relu(x, channels, 3, 1, "same", f"fpn_smooth_{i}", momentum))
    return merged


def _background_bias(anchors_per_location: int, num_classes: int, prior: float) -> list[float]:
    """Class-head bias: softmax(bias) gives background 1 - prior, each class an equal share of prior."""
    background = math.log((1.0 - prior) * num_classes / prior)
    return [background, *[0.0] * num_classes] * anchors_per_location


def _head(features, anchors_per_location, depth: int, prefix: str, output_name: str, separable: bool,
          momentum: float, num_classes: int | None = None, prior: float | None = None):
    """Per-map 3x3 conv predicting ``depth`` values per box, flattened to (B, f*f*k, depth).

    ``separable`` (SSDLite): a 3x3 depthwise conv + BN + ReLU6, then a 1x1 conv, instead of a
    full 3x3 conv (about 9x fewer multiply-adds on wide maps). ``num_classes`` marks a class head
    (depth C + 1): with a ``prior`` its bias starts at that foreground probability.
    """
    flat = []
    for i, (x, k) in enumerate(zip(features, anchors_per_location)):
        if separable:
            x = keras.layers.DepthwiseConv2D(HEAD_KERNEL_SIZE, padding="same", use_bias=False,
                                             name=f"{prefix}_head_{i}_dw")(x)
            x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=momentum, name=f"{prefix}_head_{i}_bn")(x)
            x = keras.layers.ReLU(RELU_MAX, name=f"{prefix}_head_{i}_relu")(x)
        bias = "zeros"
        if num_classes is not None and prior is not None:
            bias = keras.initializers.Constant(_background_bias(k, num_classes, prior))
        y = keras.layers.Conv2D(
            k * depth, 1 if separable else HEAD_KERNEL_SIZE, padding="same", bias_initializer=bias,
            name=f"{prefix}_head_{i}",
        )(x)
        cells = x.shape[1] * x.shape[2]
        name = output_name if len(features) == 1 else f"{prefix}_flat_{i}"
        flat.append(keras.layers.Reshape((cells * k, depth), name=name)(y))
    if len(flat) == 1:
        return flat[0]
    return keras.layers.Concatenate(axis=1, name=output_name)(flat)


def build_ssd(config: SsdConfig) -> keras.Model:
    """Builds the SSD functional model.

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``image`` (B, S, S, 3) float32 RGB in [0, 255] and dict
        outputs ``box_deltas`` (B, A, 4) float32 and ``class_logits`` (B, A, C+1) float32, A
        anchors in :func:`ssd_anchors` order.

    Raises:
        ValueError: the feature maps do not match ``config.anchors.feature_map_sizes``.
    """
    size = config.input_size
    # 1. Input and in-graph normalisation.
    image = keras.Input(shape=(size, size, 3), dtype="float32", name=INPUT_NAME)
    x = normalise_image(image)

    # 2. Backbone feature maps.
    features = mobilenet_v2_features(
        x, config.backbone_strides, config.alpha, config.backbone_weights, config.bn_momentum
    )

    # 3. Extra feature layers.
    map_sizes = config.anchors.feature_map_sizes
    x = features[-1]
    for i, channels in enumerate(config.extra_channels):
        in_size = x.shape[1]
        stride, padding = _extra_geometry(in_size, map_sizes[len(features)])
        x = _conv_bn_relu(x, channels // 2, 1, 1, "same", f"extra_{i}_reduce", config.bn_momentum)
        x = _conv_bn_relu(x, channels, 3, stride, padding, f"extra_{i}", config.bn_momentum)
        features.append(x)
    actual = tuple(int(f.shape[1]) for f in features)
    if actual != map_sizes or any(f.shape[1] != f.shape[2] for f in features):
        raise ValueError(f"feature maps {actual} do not match anchor feature_map_sizes {map_sizes}")
    if config.fpn_channels:
        features = _top_down(features, config.fpn_channels, config.bn_momentum)

    # 4. Heads, flattened in anchor order.
    per_location = num_anchors_per_location(config.anchors)
    heads = {"separable": config.separable_heads, "momentum": config.bn_momentum}
    box_deltas = _head(features, per_location, NUM_BOX_COORDS, "box", BOX_DELTAS, **heads)
    class_logits = _head(features, per_location, config.num_classes + 1, "class", CLASS_LOGITS, **heads,
                         num_classes=config.num_classes, prior=config.foreground_prior)
    return keras.Model(
        image, {BOX_DELTAS: box_deltas, CLASS_LOGITS: class_logits}, name="ssd_mobilenet_v2"
    )
