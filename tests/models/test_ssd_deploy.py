"""Tests for tfsp.models.ssd_deploy: an SSD trained at one input size, deployed at another."""

import dataclasses

import keras
import numpy as np
import pytest

from tfsp.models.ssd import SSD_SYNTH_CONFIG, SsdConfig, build_ssd
from tfsp.models.ssd_deploy import deploy_ssd, deployed_ssd_config
from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors, num_anchors_per_location

TRAIN_SIZE, DEPLOY_SIZE = 64, 96
TINY_ANCHORS = SsdAnchorConfig(image_size=TRAIN_SIZE, feature_map_sizes=(8, 4, 2), min_scale=0.15, max_scale=0.9,
                               aspect_ratios=((2.0,), (2.0, 3.0), (2.0,)), min_sizes=(10.0, 24.0, 40.0),
                               max_sizes=(24.0, 40.0, 58.0))
TINY = SsdConfig(input_size=TRAIN_SIZE, num_classes=3, anchors=TINY_ANCHORS, alpha=0.35, backbone_strides=(8, 16),
                 extra_channels=(32,),
                 deploy_input_size=DEPLOY_SIZE)


def _boxes_px(config: SsdAnchorConfig) -> list[np.ndarray]:
    """Per map: (f*f*k, 4) anchors in input pixels [cx, cy, w, h]."""
    boxes = generate_ssd_anchors(config) * config.image_size
    counts = [f * f * k for f, k in zip(config.feature_map_sizes, num_anchors_per_location(config))]
    return np.split(boxes, np.cumsum(counts)[:-1])


def test_deployed_boxes_keep_their_pixel_sizes_and_strides():
    deployed = deployed_ssd_config(TINY)
    assert deployed.input_size == DEPLOY_SIZE and deployed.deploy_input_size is None
    assert deployed.anchors.feature_map_sizes == (12, 6, 3)
    assert deployed.anchors.min_sizes == TINY_ANCHORS.min_sizes and deployed.anchors.aspect_ratios == \
        TINY_ANCHORS.aspect_ratios
    for trained, moved, size in zip(_boxes_px(TINY_ANCHORS), _boxes_px(deployed.anchors), (8, 4, 2)):
        k = len(trained) // size**2
        # The first cell's boxes are identical in pixels; centres step by the same stride.
        np.testing.assert_allclose(moved[:k], trained[:k], rtol=1e-5)
        np.testing.assert_allclose(np.unique(moved[:, 2:], axis=0), np.unique(trained[:, 2:], axis=0), rtol=1e-5)
        stride = TRAIN_SIZE / size
        np.testing.assert_allclose(np.unique(np.diff(np.unique(moved[:, 0]))), [stride], rtol=1e-5)
    synth = deployed_ssd_config(SSD_SYNTH_CONFIG)
    assert (synth.input_size, synth.anchors.feature_map_sizes) == (256, (32, 16, 8, 4))


def test_deployed_model_holds_the_trained_weights_at_the_deploy_size():
    keras.utils.set_random_seed(0)
    model = build_ssd(TINY)
    deployed = deploy_ssd(model, TINY)
    assert deployed is not model and deployed.input_shape == (None, DEPLOY_SIZE, DEPLOY_SIZE, 3)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), deployed.get_weights()))
    image = np.random.default_rng(0).uniform(0, 255, (1, DEPLOY_SIZE, DEPLOY_SIZE, 3)).astype(np.float32)
    outputs = deployed.predict(image, verbose=0)
    assert outputs["box_deltas"].shape[1] == len(generate_ssd_anchors(deployed_ssd_config(TINY).anchors))
    same_size = dataclasses.replace(TINY, deploy_input_size=None)
    assert deploy_ssd(model, same_size) is model
    assert deploy_ssd(model, dataclasses.replace(TINY, deploy_input_size=TRAIN_SIZE)) is model


def test_deploy_sizes_the_boxes_cannot_follow_are_refused():
    with pytest.raises(ValueError, match=r"deploy_input_size 100 must be a positive multiple of every "
                                         r"feature-map stride \[8.0, 16.0, 32.0\]"):
        dataclasses.replace(TINY, deploy_input_size=100)
    relative = dataclasses.replace(TINY_ANCHORS, min_sizes=None, max_sizes=None)
    with pytest.raises(ValueError, match=r"deploy_input_size needs anchors in pixels \(min_sizes/max_sizes\)"):
        dataclasses.replace(TINY, anchors=relative)
