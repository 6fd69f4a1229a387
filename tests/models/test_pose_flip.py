"""Tests for tfsp.models.pose_flip (flip-averaged pose maps)."""

import dataclasses

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from export.convert import convert_model
from tfsp.data.keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS
from tfsp.data.pose_fields import render_heatmaps, render_pafs
from tfsp.models import openpose, pose_flip
from tfsp.postprocess.paf import HEATMAPS, PAFS
from tfsp.spec import QuantMode

MAP_SIZE, STRIDE = 12, 8
MAX_ERROR = 1e-5


@pytest.fixture(scope="module")
def tiny_deployed(tiny_openpose_model):
    return openpose.deploy_openpose(tiny_openpose_model)


def _people(seed=0, count=3):
    rng = np.random.default_rng(seed)
    people = np.zeros((count, NUM_KEYPOINTS, 3), np.float32)
    people[..., :2] = rng.uniform(4, MAP_SIZE * STRIDE - 4, (count, NUM_KEYPOINTS, 2))
    people[..., 2] = rng.random((count, NUM_KEYPOINTS)) < 0.85  # some keypoints absent
    return people


def _mirrored_people(people):
    mirrored = people[:, list(FLIP_PERMUTATION)].copy()
    mirrored[..., 0] = MAP_SIZE * STRIDE - mirrored[..., 0]
    return mirrored


def test_mirroring_the_fields_matches_the_targets_of_mirrored_people():
    people = _people()
    mirrored = _mirrored_people(people)
    np.testing.assert_allclose(pose_flip.mirror_heatmaps(render_heatmaps(people, MAP_SIZE, STRIDE)),
                               render_heatmaps(mirrored, MAP_SIZE, STRIDE), atol=MAX_ERROR)
    expected = render_pafs(mirrored, MAP_SIZE, STRIDE)
    assert np.abs(expected).max() > 0.5  # the people's limbs drew fields
    np.testing.assert_allclose(pose_flip.mirror_pafs(render_pafs(people, MAP_SIZE, STRIDE)), expected, atol=MAX_ERROR)


def test_paf_flip_channels_turn_limbs_held_the_other_way():
    index, sign = pose_flip.paf_flip_channels(((5, 6), (5, 7), (6, 8)))
    # (5, 6) mirrors to (6, 5): the same limb pointing the other way, so (x, y) -> (x, -y)
    # (5, 7) mirrors to (6, 8): the other limb, (x, y) -> (-x, y)
    np.testing.assert_array_equal(index, [0, 1, 4, 5, 2, 3])
    np.testing.assert_array_equal(sign, [1, -1, -1, 1, -1, 1])
    with pytest.raises(ValueError, match=r"limb \(5, 7\) mirrors to \(6, 8\), which is not in the PAF graph"):
        pose_flip.paf_flip_channels(((5, 7),))


def test_flip_averaged_graph_is_the_mean_of_both_views_and_flip_consistent(tiny_deployed, random_images):
    averaged = pose_flip.flip_averaged(tiny_deployed)
    assert averaged.input_shape == tiny_deployed.input_shape
    assert {name: tuple(t.shape) for name, t in averaged.output.items()} == {
        name: tuple(t.shape) for name, t in tiny_deployed.output.items()}
    images = random_images(2, 64)
    mirror_images = images[:, :, ::-1].copy()
    plain = {k: v.numpy() for k, v in tiny_deployed(images, training=False).items()}
    seen_mirrored = {k: v.numpy() for k, v in tiny_deployed(mirror_images, training=False).items()}
    got = {k: v.numpy() for k, v in averaged(images, training=False).items()}
    mean_heatmaps = (plain[HEATMAPS] + pose_flip.mirror_heatmaps(seen_mirrored[HEATMAPS])) / 2
    np.testing.assert_allclose(got[HEATMAPS], mean_heatmaps, atol=MAX_ERROR)
    mean_pafs = (plain[PAFS] + pose_flip.mirror_pafs(seen_mirrored[PAFS])) / 2
    np.testing.assert_allclose(got[PAFS], mean_pafs, atol=MAX_ERROR)
    on_mirror = {k: v.numpy() for k, v in averaged(mirror_images, training=False).items()}
    np.testing.assert_allclose(on_mirror[HEATMAPS], pose_flip.mirror_heatmaps(got[HEATMAPS]), atol=MAX_ERROR)
    np.testing.assert_allclose(on_mirror[PAFS], pose_flip.mirror_pafs(got[PAFS]), atol=MAX_ERROR)


def test_deploy_config_wraps_and_the_graph_saves_and_converts_with_builtin_ops(
        tiny_openpose_model, tiny_openpose_config, random_images, tmp_path):
    config = dataclasses.replace(tiny_openpose_config, deploy_input_size=96, deploy_flip_average=True)
    averaged = openpose.deploy_openpose_at(tiny_openpose_model, config)
    plain = openpose.deploy_openpose_at(tiny_openpose_model, dataclasses.replace(config, deploy_flip_average=False))
    image = random_images(1, 96, seed=1)
    assert not np.allclose(averaged(image)[HEATMAPS].numpy(), plain(image)[HEATMAPS].numpy())
    averaged.save(tmp_path / "pose.keras")
    loaded = keras.models.load_model(tmp_path / "pose.keras", compile=False)  # no custom objects
    expected = {k: v.numpy() for k, v in averaged(image, training=False).items()}
    np.testing.assert_array_equal(loaded(image, training=False)[PAFS].numpy(), expected[PAFS])
    got = Interpreter(model_content=convert_model(loaded, QuantMode.FP32)).get_signature_runner()(image=image)
    assert set(got) == {HEATMAPS, PAFS}
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, rtol=1e-4)
    # builtin ops only, or convert_model raises
    int8 = convert_model(loaded, QuantMode.INT8, calibration=random_images(4, 96, seed=2))
    runner = Interpreter(model_content=int8).get_signature_runner()
    outputs = runner(image=image.astype(np.uint8))
    assert {name: value.shape for name, value in outputs.items()} == {
        name: value.shape for name, value in expected.items()}
