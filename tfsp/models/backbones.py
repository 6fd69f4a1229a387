"""Backbones returning multi-scale feature maps (Keras 3).

The backbone layers are built directly on the caller's graph (no nested sub-model), so the
resulting detector is one flat functional model: simple to save, convert and quantise.
"""

from __future__ import annotations

import os

import keras

# Pixel normalisation expected by MobileNetV2: x / 127.5 - 1 maps [0, 255] to [-1, 1].
MOBILENET_V2_SCALE = 1.0 / 127.5
MOBILENET_V2_OFFSET = -1.0

# Output stride -> MobileNetV2 layer tapped for that stride. The stride-16 and stride-32 taps
# are the ones used by the TF Object Detection API SSD-MobileNetV2 feature extractor.
MOBILENET_V2_TAPS: dict[int, str] = {
    4: "block_3_expand_relu",
    8: "block_6_expand_relu",
    16: "block_13_expand_relu",
    32: "out_relu",
}

# Keras' MobileNetV2 uses batch-norm momentum 0.999, tuned for long ImageNet schedules; 0.9 lets the
# moving statistics follow short from-scratch schedules (0.99 left them stale after ~500 steps).
DEFAULT_BN_MOMENTUM = 0.9


def normalise_image(image: keras.KerasTensor, name: str = "normalise") -> keras.KerasTensor:
    """Maps a float32 RGB image in [0, 255] to MobileNetV2's [-1, 1] range inside the graph.

    Args:
        image: (B, S, S, 3) float32 RGB in [0, 255].
        name: layer name.

    Returns:
        (B, S, S, 3) float32 in [-1, 1].
    """
    return keras.layers.Rescaling(MOBILENET_V2_SCALE, offset=MOBILENET_V2_OFFSET, name=name)(image)


def mobilenet_v2_features(
    image_normalised: keras.KerasTensor,
    strides: tuple[int, ...],
    alpha: float = 1.0,
    weights_path: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
) -> list[keras.KerasTensor]:
    """Builds MobileNetV2 on ``image_normalised`` and returns the feature maps at ``strides``.

    Never downloads anything: weights are random (``weights_path=None``) or loaded from a local
    Keras applications ``*_no_top.h5`` file of the same ``alpha``.

    Args:
        image_normalised: (B, S, S, 3) float32 in [-1, 1] (see :func:`normalise_image`).
        strides: output strides to return, each a key of :data:`MOBILENET_V2_TAPS`, increasing.
        alpha: width multiplier.
        weights_path: optional local weights file.
        bn_momentum: momentum assigned to every backbone batch-norm layer.

    Returns:
        One (B, ceil(S/stride), ceil(S/stride), C_i) float32 tensor per stride, in order.

    Raises:
        ValueError: unknown or unsorted strides, or a missing weights file.
    """
    unknown = [s for s in strides if s not in MOBILENET_V2_TAPS]
    if unknown or list(strides) != sorted(set(strides)):
        raise ValueError(
            f"strides must be increasing values of {sorted(MOBILENET_V2_TAPS)}, got {strides}"
        )
    if weights_path is not None and not os.path.isfile(weights_path):
        raise ValueError(f"weights_path does not exist: {weights_path}")
    base = keras.applications.MobileNetV2(
        input_tensor=image_normalised,
        alpha=alpha,
        include_top=False,
        weights=weights_path,
    )
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return [base.get_layer(MOBILENET_V2_TAPS[s]).output for s in strides]
