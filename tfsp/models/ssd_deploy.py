"""Deploying an SSD at another input size than it was trained at.

SSD is fully convolutional: the same weights run on any input whose side is a multiple of the
feature-map strides, giving maps of ``side / stride`` cells. With the default boxes defined in
pixels (``min_sizes`` / ``max_sizes``) and anchor centres one stride apart, the boxes of each
map keep their pixel sizes and spacing, so each head output keeps its meaning. Training at a
smaller input than the deployment one is cheaper per step, and with random-crop augmentation the
objects seen in training are about as large (in pixels) as those at the larger deployment size
(Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019).
"""

from __future__ import annotations

import dataclasses

import keras

from tfsp.models.deploy_size import rebuilt_at
from tfsp.models.ssd import SsdConfig, build_ssd


def deployed_ssd_config(config: SsdConfig) -> SsdConfig:
    """The config of the deployed graph: input and default boxes at ``config.deploy_input_size``.

    Args:
        config: a (validated) SSD config.

    Returns:
        ``config`` itself without a deploy size (or when it equals ``input_size``); otherwise a
        config with ``input_size`` = the deploy size, ``deploy_input_size`` None and anchors on
        maps of ``deploy_input_size / stride`` cells with the same pixel sizes
        (``min_scale`` / ``max_scale`` re-expressed as fractions of the new side).
    """
    size = config.deploy_input_size
    if size is None or size == config.input_size:
        return dataclasses.replace(config, deploy_input_size=None)
    anchors = config.anchors
    strides = [config.input_size // f for f in anchors.feature_map_sizes]
    moved = dataclasses.replace(
        anchors, image_size=size, feature_map_sizes=tuple(size // stride for stride in strides),
        min_scale=anchors.min_scale * anchors.image_size / size, max_scale=anchors.max_scale * anchors.image_size / size)
    return dataclasses.replace(config, input_size=size, anchors=moved, deploy_input_size=None)


def deploy_ssd(model: keras.Model, config: SsdConfig) -> keras.Model:
    """The model to evaluate, save and export: ``model`` itself, or a copy at the deploy size.

    Args:
        model: an SSD built by ``build_ssd(config)`` (trained).
        config: its config.

    Returns:
        ``model`` when there is no other deploy size; else ``build_ssd(deployed_ssd_config(config))``
        holding a copy of ``model``'s weights (later training does not reach it).
    """
    deployed = deployed_ssd_config(config)
    return rebuilt_at(model, config.input_size, deployed.input_size, lambda: build_ssd(deployed))
