"""Tests for tfsp.models.openpose."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfsp.models import openpose
from tfsp.postprocess.paf import HEATMAPS, PAFS

def test_synth_config_outputs_every_stage_at_stride_8():
    config = openpose.OPENPOSE_SYNTH_CONFIG
    model = openpose.build_openpose(config)
    assert config.map_size == 32 and config.num_stages == 3
    expected = {"stage0_heatmaps", "stage0_pafs", "stage1_heatmaps", "stage1_pafs", HEATMAPS, PAFS}
    assert set(model.output) == expected
    for name, tensor in model.output.items():
        channels = openpose.NUM_HEATMAP_CHANNELS if name.endswith(HEATMAPS) else openpose.NUM_PAF_CHANNELS
        assert tuple(tensor.shape) == (None, 32, 32, channels)
    assert (openpose.NUM_HEATMAP_CHANNELS, openpose.NUM_PAF_CHANNELS) == (18, 36)


def test_stage_names_put_plain_names_on_the_last_stage():
    assert openpose.stage_output_names(2, 3) == (HEATMAPS, PAFS)
    assert openpose.stage_output_names(0, 3) == ("stage0_heatmaps", "stage0_pafs")


def test_deploy_model_keeps_the_last_stage_with_shared_weights(tiny_openpose_model, random_images):
    deployed = openpose.deploy_openpose(tiny_openpose_model)
    assert set(deployed.output) == {HEATMAPS, PAFS}
    images = random_images(2, 64)
    full, last = tiny_openpose_model(images, training=False), deployed(images, training=False)
    for name in (HEATMAPS, PAFS):
        np.testing.assert_array_equal(full[name].numpy(), last[name].numpy())
    assert openpose.deploy_openpose(deployed).output.keys() == deployed.output.keys()  # idempotent


def test_refinement_stages_read_the_previous_stage(tiny_openpose_model):
    concat = tiny_openpose_model.get_layer("stage1_concat")
    producers = {tensor._keras_history.operation.name for tensor in concat.input}
    assert {"stage0_heatmaps", "stage0_pafs"} < producers


def test_deploy_model_saves_and_converts_to_builtin_tflite(tiny_openpose_model, tmp_path, random_images):
    deployed = openpose.deploy_openpose(tiny_openpose_model)
    deployed.save(tmp_path / "pose.keras")
    loaded = keras.models.load_model(tmp_path / "pose.keras", compile=False)
    image = random_images(1, 64, seed=1)
    expected = deployed(image, training=False)
    np.testing.assert_array_equal(loaded(image, training=False)[PAFS].numpy(), expected[PAFS].numpy())
    loaded.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on Flex ops
    got = Interpreter(model_content=converter.convert()).get_signature_runner()(image=image)
    assert set(got) == {HEATMAPS, PAFS}
    for name in got:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4, rtol=1e-4)


def test_config_validation(tiny_openpose_config):
    with pytest.raises(ValueError, match="multiple of 32"):
        dataclasses.replace(tiny_openpose_config, input_size=72)
    with pytest.raises(ValueError, match="channels"):
        dataclasses.replace(tiny_openpose_config, channels=0)
    with pytest.raises(ValueError, match="num_refinement_stages"):
        dataclasses.replace(tiny_openpose_config, num_refinement_stages=-1)
    with pytest.raises(ValueError, match="heatmap_loss_weight"):
        dataclasses.replace(tiny_openpose_config, heatmap_loss_weight=0.0)


def test_deploy_at_another_size_copies_the_last_stage_weights(tiny_openpose_model, tiny_openpose_config,
                                                             random_images):
    config = dataclasses.replace(tiny_openpose_config, deploy_input_size=96)
    deployed = openpose.deploy_openpose_at(tiny_openpose_model, config)
    last = openpose.deploy_openpose(tiny_openpose_model)
    assert deployed.input_shape == (None, 96, 96, 3)
    assert {name: tuple(t.shape) for name, t in deployed.output.items()} == {
        HEATMAPS: (None, 12, 12, openpose.NUM_HEATMAP_CHANNELS), PAFS: (None, 12, 12, openpose.NUM_PAF_CHANNELS)}
    assert all(np.array_equal(a, b) for a, b in zip(deployed.get_weights(), last.get_weights()))
    assert openpose.deployed_openpose_config(config).map_size == 12
    # no deploy size: the shared last stage
    same = openpose.deploy_openpose_at(tiny_openpose_model, tiny_openpose_config)
    images = random_images(1, 64)
    np.testing.assert_array_equal(same(images, training=False)[PAFS].numpy(),
                                  last(images, training=False)[PAFS].numpy())
    assert openpose.OPENPOSE_SYNTH_CONFIG.deploy_input_size == 320
    with pytest.raises(ValueError, match="deploy_input_size must be a positive multiple of 32, got 100"):
        dataclasses.replace(tiny_openpose_config, deploy_input_size=100)
