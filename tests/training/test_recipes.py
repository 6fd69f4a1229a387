"""The recipes: run specs (deployed sizes, dense and attribute models, the data sets they refuse), pose loss weights."""

import dataclasses

import pytest

from tfsp.data.coco import load_split
from tfsp.models.attributes import AttributeConfig
from tfsp.postprocess.paf import HEATMAPS, PafParserConfig
from tfsp.spec import Task
from training.config import ModelKind, TrainConfig
from training.recipes import POSE_SMOOTHING_SIGMA, RECIPES, build_run_spec


def test_dense_run_spec_has_the_data_sets_classes_and_the_output_grid(synth_data):
    train = load_split(synth_data, "train", check_images=False)
    spec = build_run_spec(TrainConfig(model=ModelKind.DENSE), train)
    assert spec.task is Task.DENSE and spec.class_names == train.class_names
    assert spec.outputs[0].shape[1:] == (32, 32, train.num_classes + 1)  # 128 px input, stride 4


def test_dense_training_refuses_non_contiguous_category_ids(synth_data):
    train = load_split(synth_data, "train", check_images=False)
    gappy = dataclasses.replace(train, category_ids=(1, 2, 3, 7))
    with pytest.raises(ValueError, match=r"must be 1\.\.4; .* category ids \[1, 2, 3, 7\]"):
        build_run_spec(TrainConfig(model=ModelKind.DENSE), gappy)


def test_attribute_run_spec_names_the_data_sets_attributes(synth_data):
    train = load_split(synth_data, "train", check_images=False)
    spec = build_run_spec(TrainConfig(model=ModelKind.ATTRIBUTES), train)
    assert spec.attributes.names == train.attribute_names and set(spec.attributes.thresholds) == {0.5}
    assert spec.input_size == spec.attributes.crop.crop_size == 64 and spec.attributes.image_size == 256
    wrong = TrainConfig(model=ModelKind.ATTRIBUTES, attributes=AttributeConfig(num_attributes=5))
    with pytest.raises(ValueError, match="attributes.num_attributes is 5 but .* 13 attributes"):
        build_run_spec(wrong, train)


def test_pose_losses_weigh_every_stages_heatmaps_and_leave_pafs_at_one():
    config = TrainConfig(model=ModelKind.OPENPOSE)
    config = dataclasses.replace(config, openpose=dataclasses.replace(config.openpose, heatmap_loss_weight=2.5))
    losses = RECIPES[ModelKind.OPENPOSE].losses(config)
    assert len(losses) == 2 * config.openpose.num_stages
    assert {name: loss.scale for name, loss in losses.items()} == {
        name: 2.5 if name.endswith(HEATMAPS) else 1.0 for name in losses}
    assert all(loss.background_last == name.endswith(HEATMAPS) for name, loss in losses.items())


@pytest.mark.parametrize("kind, trained, deployed, maps", [
    (ModelKind.SSD, 192, 256, (32, 16, 8, 4)), (ModelKind.OPENPOSE, 256, 320, (40,)),
    (ModelKind.MASK_RCNN, 256, 320, (80,))])
def test_synthetic_run_specs_describe_the_deployed_size_not_the_training_one(synth_data, kind, trained, deployed,
                                                                             maps):
    train = load_split(synth_data, "train", check_images=False)
    config = TrainConfig(model=kind)
    spec = build_run_spec(config, train)
    assert RECIPES[kind].input_size(config) == trained  # the training pipeline's size
    assert spec.input_size == deployed
    grid = spec.anchors.feature_map_sizes if kind is ModelKind.SSD else (spec.outputs[0].shape[1],)  # P2 first
    assert tuple(grid) == maps


def test_pose_run_spec_parses_with_smoothing_and_fills_missing_keypoints(synth_data):
    spec = build_run_spec(TrainConfig(model=ModelKind.OPENPOSE), load_split(synth_data, "train", check_images=False))
    assert spec.paf.fill_missing and spec.paf.smoothing_sigma == POSE_SMOOTHING_SIGMA > 0
    assert dataclasses.replace(spec.paf, fill_missing=False, smoothing_sigma=0.0) == PafParserConfig()
