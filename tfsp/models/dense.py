"""Dense pixel-to-pixel network: semantic segmentation + depth on MobileNetV2 (Keras 3).

Graph, in labelled sections of :func:`build_dense`:

1. input ``image`` (B, S, S, 3) float32 RGB in [0, 255], normalised in the graph;
2. encoder: MobileNetV2 maps at strides 4, 8, 16 and 32 (``MOBILENET_V2_TAPS``);
3. decoder (FPN / U-Net style): from stride 32 down to stride 4, each step a 1x1 lateral on the
   skip map, 2x bilinear upsampling of the coarser features, add, and a depthwise-separable 3x3;
   for ``output_stride`` 2 one more step uses a stride-2 3x3 conv on the normalised image as skip
   (MobileNetV2 has no tap at stride 2);
4. two separate heads on the decoder features D (B, F, F, decoder_channels), F = S / output_stride,
   each a separable 3x3 then a 1x1 conv: ``semantic_logits`` (B, F, F, C + 1) raw logits (channel 0
   background, k + 1 class id k) and ``depth`` (B, F, F, 1) = ``sigmoid(z) * max_depth_m`` metres.

The two outputs stay separate tensors so int8 quantises each on its own scale. Only standard Keras
layers (conv, depthwise conv, batch norm, ReLU6, add, bilinear upsampling, sigmoid, rescaling) are
used: ``keras.models.load_model(path, compile=False)`` needs no custom objects and the TFLite graph
has builtin ops only. Decoding: :mod:`tfsp.postprocess.dense`; losses: :mod:`tfsp.dense_losses`;
targets: :mod:`tfsp.data.dense_targets`.
"""

from __future__ import annotations

import dataclasses

import keras

from tfsp.models.backbones import DEFAULT_BN_MOMENTUM, mobilenet_v2_features, normalise_image
from tfsp.postprocess.dense import ALL_HEADS, DEPTH, SEMANTIC_LOGITS, DenseHead
from tfsp.spec import INPUT_NAME

BACKBONE_STRIDES = (4, 8, 16, 32)
OUTPUT_STRIDES = (2, 4)  # supported output strides: F = S / output_stride
STEM_STRIDE = 2  # the image-level skip used for output stride 2
UPSAMPLE_FACTOR = 2
RELU_MAX = 6.0
BN_EPSILON = 1e-3
SYNTH_NUM_CLASSES = 4  # person, circle, square, triangle (COCO category ids 1..4)
SYNTH_MAX_DEPTH_M = 12.0  # synthetic depth: objects 1-8 m, background 10 m; sigmoid keeps headroom
DEFAULT_DEPTH_LOSS_WEIGHT = 1.0
DEFAULT_SEMANTIC_LOSS_WEIGHT = 1.0


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """Dense model configuration.

    Attributes:
        input_size: square input side S in pixels, a multiple of 32.
        num_classes: foreground classes C; the logits have C + 1 channels (channel 0 background).
        alpha: MobileNetV2 width multiplier.
        decoder_channels: width of the decoder and of both heads.
        output_stride: input pixels per output cell, one of :data:`OUTPUT_STRIDES`.
        max_depth_m: the depth output is ``sigmoid * max_depth_m`` metres (exclusive upper bound).
        bn_momentum: momentum of every batch-norm layer.
        backbone_weights: optional local MobileNetV2 ``*_no_top.h5`` weights (never downloaded).
        depth_loss_weight: training loss: weight of :class:`tfsp.dense_losses.DepthLoss`.
        semantic_loss_weight: training loss: weight of :class:`tfsp.dense_losses.SemanticCrossEntropy`.
        heads: which heads the graph carries (segmentation, depth or both); each adds its output.
    """

    input_size: int = 128
    num_classes: int = SYNTH_NUM_CLASSES
    alpha: float = 0.35
    decoder_channels: int = 48
    output_stride: int = 4
    max_depth_m: float = SYNTH_MAX_DEPTH_M
    bn_momentum: float = DEFAULT_BN_MOMENTUM
    backbone_weights: str | None = None
    depth_loss_weight: float = DEFAULT_DEPTH_LOSS_WEIGHT
    semantic_loss_weight: float = DEFAULT_SEMANTIC_LOSS_WEIGHT
    heads: tuple[DenseHead, ...] = ALL_HEADS

    def __post_init__(self) -> None:
        if not self.heads or len(set(self.heads)) != len(self.heads) or not all(
                isinstance(head, DenseHead) for head in self.heads):
            raise ValueError(f"DenseConfig.heads must be distinct DenseHead values, at least one, got {self.heads}")
        if self.input_size <= 0 or self.input_size % max(BACKBONE_STRIDES):
            raise ValueError(f"DenseConfig.input_size must be a positive multiple of {max(BACKBONE_STRIDES)}, "
                             f"got {self.input_size}")
        if self.num_classes < 1:
            raise ValueError(f"DenseConfig.num_classes must be >= 1, got {self.num_classes}")
        if self.alpha <= 0:
            raise ValueError(f"DenseConfig.alpha must be positive, got {self.alpha}")
        if self.decoder_channels < 1:
            raise ValueError(f"DenseConfig.decoder_channels must be >= 1, got {self.decoder_channels}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"DenseConfig.output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")
        if not self.max_depth_m > 0:
            raise ValueError(f"DenseConfig.max_depth_m must be positive, got {self.max_depth_m}")
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"DenseConfig.bn_momentum must be in [0, 1), got {self.bn_momentum}")
        for name in ("depth_loss_weight", "semantic_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"DenseConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def map_size(self) -> int:
        """Side F of both outputs (S / output_stride)."""
        return self.input_size // self.output_stride

    @property
    def num_logits(self) -> int:
        """Channels of ``semantic_logits``: C + 1 (background first)."""
        return self.num_classes + 1


DENSE_SYNTH_CONFIG = DenseConfig()
"""Default for the embedded synthetic data (256 px images, 4 classes, depth 1-10 m): 128 px input,
32 x 32 outputs (stride 4), decoder 48 channels, MobileNetV2 alpha 0.35, 0.50 M parameters.

Measured on the 2 shared CPU cores of the development machine, batch 16, compiled
``train_on_batch`` with AdamW and :func:`tfsp.dense_losses.dense_losses`: 90-98 ms per step when
the cores are free, 165-175 ms while another job uses them (decoder 32: 89-94 ms; 64: 100-114 ms;
160 px input: 229-290 ms contended). With the tf.data pipeline (augmented, ``with_dense``) 1000
steps took 157 s. Oracle mIoU of 32 x 32 maps upsampled to the 256 px labels: 0.92 (48 x 48: 0.96).
Quality probes (AdamW, 100 warmup steps then cosine decay, augmented, 100 val images): 1000 steps
at peak learning rate 5e-3: mIoU 0.47, delta1 0.87; at 1e-2: mIoU 0.53, delta1 0.87; 2000 steps at
1e-2 (247 s with the pipeline): mIoU 0.68 (square 0.55, triangle 0.50 IoU), delta1 0.87, abs_rel
0.13. The 10-minute budget allows about 4000 steps."""


def _bn_relu(x, name: str, momentum: float):
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(RELU_MAX, name=f"{name}_relu")(x)


def _conv(x, filters: int, kernel: int, name: str, momentum: float, strides: int = 1):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    return _bn_relu(x, name, momentum)


def _separable(x, filters: int, name: str, momentum: float):
    """Depthwise 3x3 + BN + ReLU6, then pointwise 1x1 + BN + ReLU6."""
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = _bn_relu(x, f"{name}_dw", momentum)
    return _conv(x, filters, 1, f"{name}_pw", momentum)


def _merge(coarse, skip, name: str, config: DenseConfig):
    """One decoder step: 2x bilinear upsampling of ``coarse``, add a 1x1 lateral of ``skip``, smooth."""
    momentum = config.bn_momentum
    up = keras.layers.UpSampling2D(UPSAMPLE_FACTOR, interpolation="bilinear", name=f"{name}_up")(coarse)
    lateral = _conv(skip, config.decoder_channels, 1, f"{name}_lateral", momentum)
    merged = keras.layers.Add(name=f"{name}_add")([lateral, up])
    return _separable(merged, config.decoder_channels, f"{name}_smooth", momentum)


def build_dense(config: DenseConfig) -> keras.Model:
    """Builds the dense model (training, evaluation and export use the same graph).

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``image`` (B, S, S, 3) float32 RGB in [0, 255] and dict outputs,
        one per head in ``config.heads``: ``semantic_logits`` (B, F, F, C + 1) float32 raw logits
        (channel 0 background) and ``depth`` (B, F, F, 1) float32 metres in (0, max_depth_m),
        F = S / output_stride.
    """
    momentum, channels = config.bn_momentum, config.decoder_channels
    # 1. input
    image = keras.Input((config.input_size, config.input_size, 3), name=INPUT_NAME)
    normalised = normalise_image(image)
    # 2. encoder
    maps = mobilenet_v2_features(normalised, BACKBONE_STRIDES, alpha=config.alpha,
                                 weights_path=config.backbone_weights, bn_momentum=momentum)
    # 3. decoder: stride 32 -> 4 (-> 2)
    x = _conv(maps[-1], channels, 1, "decoder_top", momentum)
    for skip, stride in zip(maps[-2::-1], BACKBONE_STRIDES[-2::-1]):
        x = _merge(x, skip, f"decoder_s{stride}", config)
    if config.output_stride == STEM_STRIDE:
        stem = _conv(normalised, channels, 3, "decoder_stem", momentum, strides=STEM_STRIDE)
        x = _merge(x, stem, f"decoder_s{STEM_STRIDE}", config)
    # 4. heads
    outputs = {}
    if DenseHead.SEGMENTATION in config.heads:
        semantic = _separable(x, channels, "semantic_head", momentum)
        outputs[SEMANTIC_LOGITS] = keras.layers.Conv2D(config.num_logits, 1, name=SEMANTIC_LOGITS)(semantic)
    if DenseHead.DEPTH in config.heads:
        depth = _separable(x, channels, "depth_head", momentum)
        depth = keras.layers.Conv2D(1, 1, activation="sigmoid", name="depth_sigmoid")(depth)
        outputs[DEPTH] = keras.layers.Rescaling(config.max_depth_m, name=DEPTH)(depth)
    return keras.Model(image, outputs, name="dense")
