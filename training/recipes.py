"""What the generic trainer needs to know about each model kind: one explicit table.

`RECIPES` maps every `training.config.ModelKind` to a `ModelRecipe` (model
builder, losses, tf.data targets, ModelSpec builder). Adding a model means adding
one config section, one recipe and one `RECIPES` entry; nothing is looked up by
string.

The ModelSpec of a run is built in exactly one place, `build_run_spec`; training
writes it as OUT/spec.json beside OUT/model.keras, and `python -m export` and
`python -m training.evaluate` read that file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from tfsp.attribute_losses import MaskedBinaryCrossEntropy
from tfsp.data.augment import AugmentConfig
from tfsp.data.attribute_crops import make_attribute_fit_targets
from tfsp.data.coco import CocoDataset
from tfsp.data.dense_targets import make_dense_fit_targets
from tfsp.data.pose_targets import PERSON_CLASS_ID, PoseTargetConfig, make_pose_target_fn, pose_fit_targets
from tfsp.data.targets import make_ssd_target_fn, ssd_fit_targets
from tfsp.dense_losses import dense_losses
from tfsp.losses import MaskedL2Loss, ssd_losses
from tfsp.models.attributes import build_attribute_model
from tfsp.data.rcnn_train_targets import make_rcnn_target_fn, rcnn_fit_targets
from tfsp.models.dense import build_dense
from tfsp.models.mask_rcnn import deploy_stage1
from tfsp.models.mask_rcnn_config import deployed_mask_rcnn_config
from tfsp.models.mask_rcnn_train import MaskRcnnTrainModel
from tfsp.models.openpose import (OUTPUT_STRIDE, build_openpose, deploy_openpose_at, deployed_openpose_config,
                                  stage_output_names)
from tfsp.models.ssd import build_ssd, ssd_anchors
from tfsp.models.ssd_deploy import deploy_ssd, deployed_ssd_config
from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS
from tfsp.postprocess.paf import HEATMAPS, PAFS, PafParserConfig
from tfsp.postprocess.rcnn import RpnProposalConfig
from tfsp.spec import AttributeHead, ModelSpec
from tfsp.runtime.graph_chain import HEAD_GRAPHS
from tfsp.runtime.pose import PERSON_CLASS_NAME
from tfsp.spec_builders import attribute_spec, dense_spec, detection_spec, instance_segmentation_spec, pose_spec
from training.attribute_thresholds import DEFAULT_ATTRIBUTE_THRESHOLD, tune_attribute_thresholds
from training.config import ModelKind, TrainConfig

Example = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    """How the trainer builds, feeds and describes one model kind.

    Attributes:
        input_size: Config -> square model input side S in pixels.
        num_classes: Config -> number of foreground classes the model predicts, or None when
            the model predicts one class of a multi-class data set (pose: the person).
        build_model: Config -> uncompiled `keras.Model` (input "image" (B,S,S,3) float32
            0..255, dict of named raw outputs).
        losses: Config -> `{output name: keras.losses.Loss}` for `model.compile`, or None for
            a model whose own `train_step` computes its losses (Mask R-CNN).
        target_fn: Config -> per-example `fn(example) -> example` adding training
            targets (mapped by `tfsp.data.pipeline.make_dataset`), or None for none.
        fit_targets: Config -> batch fn `batch -> (x, y)` for `keras.Model.fit`, y keyed by
            output name.
        build_spec: (config, data set) -> float32 `ModelSpec` of the deployed graph (`deploy_model`).
        deploy_model: (config, training model) -> the model that is evaluated, saved as
            OUT/model.keras and exported (e.g. without intermediate-supervision outputs, or at
            another input size); shares the layers or holds a copy of the weights.
        deploy_heads: Training model -> the further graphs of a split-graph model by name
            (`tfsp.runtime.graph_chain.HEAD_GRAPHS`), saved beside OUT/model.keras as
            OUT/model.{name}.keras and run after it through a `GraphChain`; {} for one graph.
        with_dense: the input pipeline also loads the semantic and depth maps.
        mask_size: Config -> side of the instance masks the input pipeline adds (covering the
            whole input), or None for no masks.
        augment: the training augmentation when `data.augment` is on.
        finalize_spec: `(deployed model, spec, config, training split) -> spec` run once after
            training (e.g. attribute thresholds picked on training images), or None.
    """

    input_size: Callable[[TrainConfig], int]
    num_classes: Callable[[TrainConfig], int | None]
    build_model: Callable[[TrainConfig], keras.Model]
    losses: Callable[[TrainConfig], dict[str, keras.losses.Loss] | None]
    target_fn: Callable[[TrainConfig], Callable[[Example], Example] | None]
    fit_targets: Callable[[TrainConfig], Callable[[Example], tuple[Any, dict[str, Any]]]]
    build_spec: Callable[[TrainConfig, CocoDataset], ModelSpec]
    deploy_model: Callable[[TrainConfig, keras.Model], keras.Model] = lambda config, model: model
    deploy_heads: Callable[[keras.Model], dict[str, keras.Model]] = lambda model: {}
    with_dense: bool = False
    mask_size: Callable[[TrainConfig], int | None] = lambda config: None
    augment: AugmentConfig = AugmentConfig()
    finalize_spec: Callable[[keras.Model, ModelSpec, TrainConfig, CocoDataset], ModelSpec] | None = None


def _ssd_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    deployed = deployed_ssd_config(config.ssd)
    return detection_spec(
        deployed.input_size,
        deployed.anchors,
        dataset.class_names,
        dataset.category_ids,
        resize_mode=config.data.resize,
    )


SSD_RECIPE = ModelRecipe(
    input_size=lambda config: config.ssd.input_size,
    num_classes=lambda config: config.ssd.num_classes,
    build_model=lambda config: build_ssd(config.ssd),
    losses=lambda config: ssd_losses(),
    target_fn=lambda config: make_ssd_target_fn(ssd_anchors(config.ssd)),
    fit_targets=lambda config: ssd_fit_targets,
    build_spec=_ssd_spec,
    deploy_model=lambda config, model: deploy_ssd(model, config.ssd),
)


def _pose_targets(config: TrainConfig) -> PoseTargetConfig:
    model = config.openpose
    return PoseTargetConfig(input_size=model.input_size, stride=OUTPUT_STRIDE, sigma_px=model.target_sigma_px,
                            limb_width_px=model.target_limb_width_px, person_class_id=PERSON_CLASS_ID)


def _pose_fit_targets(config: TrainConfig) -> Callable[[Example], tuple[Any, dict[str, Any]]]:
    """Every stage is supervised with the same targets (the paper's intermediate supervision)."""
    num_stages = config.openpose.num_stages

    def fit_targets(batch: Example) -> tuple[Any, dict[str, Any]]:
        image, targets = pose_fit_targets(batch)
        y = {}
        for stage in range(num_stages):
            heat_name, paf_name = stage_output_names(stage, num_stages)
            y[heat_name], y[paf_name] = targets[HEATMAPS], targets[PAFS]
        return image, y

    return fit_targets


def _pose_losses(config: TrainConfig) -> dict[str, keras.losses.Loss]:
    num_stages = config.openpose.num_stages
    names = [name for stage in range(num_stages) for name in stage_output_names(stage, num_stages)]
    model = config.openpose
    return {name: MaskedL2Loss(model.foreground_loss_weight, background_last=name.endswith(HEATMAPS),
                               scale=model.heatmap_loss_weight if name.endswith(HEATMAPS) else 1.0)
            for name in names}


POSE_SMOOTHING_SIGMA = 0.75
"""Heatmap smoothing (cells) in the parser of trained pose models."""

TRAINED_POSE_PARSER = PafParserConfig(smoothing_sigma=POSE_SMOOTHING_SIGMA, fill_missing=True)
"""PAF parser settings written into the spec of a trained pose model: chosen with
``python -m training.pose_parser_sweep --split train --max-images 200`` on a trained synthetic
model (README, pose section); the other thresholds are the paper's."""


def _pose_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    person = PERSON_CLASS_ID
    deployed = deployed_openpose_config(config.openpose)
    return pose_spec(deployed.input_size, deployed.map_size, (dataset.class_names[person],),
                     (dataset.category_ids[person],), resize_mode=config.data.resize, parser=TRAINED_POSE_PARSER)


OPENPOSE_RECIPE = ModelRecipe(
    input_size=lambda config: config.openpose.input_size,
    num_classes=lambda config: None,
    build_model=lambda config: build_openpose(config.openpose),
    losses=_pose_losses,
    target_fn=lambda config: make_pose_target_fn(_pose_targets(config)),
    fit_targets=_pose_fit_targets,
    build_spec=_pose_spec,
    deploy_model=lambda config, model: deploy_openpose_at(model, config.openpose),
)

def _dense_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    """The dense spec; the semantic PNGs hold category ids, which training uses as labels directly."""
    model = config.dense
    contiguous = tuple(range(1, dataset.num_classes + 1))
    if tuple(dataset.category_ids) != contiguous:
        raise ValueError(f"dense training reads the semantic maps' category ids as labels, so they must be "
                         f"1..{dataset.num_classes}; {dataset.instances_json} has category ids "
                         f"{list(dataset.category_ids)} (remap the data set's category ids first)")
    return dense_spec(model.input_size, model.map_size, dataset.class_names, dataset.category_ids,
                      resize_mode=config.data.resize, heads=model.heads)


DENSE_RECIPE = ModelRecipe(
    input_size=lambda config: config.dense.input_size,
    num_classes=lambda config: config.dense.num_classes,
    build_model=lambda config: build_dense(config.dense),
    losses=lambda config: dense_losses(config.dense),
    target_fn=lambda config: None,
    fit_targets=lambda config: make_dense_fit_targets(config.dense),
    build_spec=_dense_spec,
    with_dense=True,
)


def _attribute_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    model = config.attributes
    if model.num_attributes != len(dataset.attribute_names):
        raise ValueError(f"attributes.num_attributes is {model.num_attributes} but {dataset.instances_json} has "
                         f"{len(dataset.attribute_names)} attributes {list(dataset.attribute_names)}; set "
                         f"attributes.num_attributes to {len(dataset.attribute_names)} in the config")
    names = tuple(dataset.attribute_names)
    head = AttributeHead(names, (DEFAULT_ATTRIBUTE_THRESHOLD,) * len(names), model.image_size, model.crop_config)
    return attribute_spec(head, dataset.class_names, dataset.category_ids, resize_mode=config.data.resize)


ATTRIBUTE_AUGMENT = AugmentConfig(crop_probability=0.0, hue_delta=0.0)
"""Flips and photometric jitter only: random crops rescale objects (the size attributes are in
original pixels) and hue jitter moves orange towards red or yellow. Measured on val after 4 epochs:
mAP 0.918 without them vs 0.910 with the default augmentation."""

ATTRIBUTES_RECIPE = ModelRecipe(
    input_size=lambda config: config.attributes.image_size,
    num_classes=lambda config: None,
    build_model=lambda config: build_attribute_model(config.attributes),
    losses=lambda config: {ATTRIBUTE_LOGITS: MaskedBinaryCrossEntropy()},
    target_fn=lambda config: None,
    fit_targets=lambda config: make_attribute_fit_targets(config.attributes.crop_config,
                                                          config.attributes.num_attributes),
    build_spec=_attribute_spec,
    augment=ATTRIBUTE_AUGMENT,
    finalize_spec=lambda model, spec, config, train: tune_attribute_thresholds(model, spec, train),
)

RCNN_MASK_SIZE = 128
"""Side of the whole-input instance masks the pipeline gives Mask R-CNN training (2 input px per
cell at 256 px), from which RoIAlign cuts the 28 x 28 mask targets."""


def _mask_rcnn_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    model = config.mask_rcnn
    person = model.person_class_id
    if person is not None and dataset.class_names[person] != PERSON_CLASS_NAME:
        raise ValueError(f"mask_rcnn.person_class_id {person} is class {dataset.class_names[person]!r} of "
                         f"{dataset.instances_json}, not {PERSON_CLASS_NAME!r}; set it to the person class "
                         f"({list(dataset.class_names)}) or to null for no keypoint head")
    proposals = RpnProposalConfig(pre_nms_top_k=model.test_pre_nms_top_k, post_nms_top_k=model.test_post_nms_top_k)
    return instance_segmentation_spec(deployed_mask_rcnn_config(model), dataset.class_names, dataset.category_ids,
                                      resize_mode=config.data.resize, with_keypoints=person is not None,
                                      proposals=proposals)


def _mask_rcnn_heads(model: keras.Model) -> dict[str, keras.Model]:
    graphs = model.deploy_graphs()
    return {name: graphs[name] for name in HEAD_GRAPHS if name in graphs}


MASK_RCNN_RECIPE = ModelRecipe(
    input_size=lambda config: config.mask_rcnn.input_size,
    num_classes=lambda config: config.mask_rcnn.num_classes,
    build_model=lambda config: MaskRcnnTrainModel(config.mask_rcnn),
    losses=lambda config: None,
    target_fn=lambda config: make_rcnn_target_fn(config.mask_rcnn),
    fit_targets=lambda config: rcnn_fit_targets,
    build_spec=_mask_rcnn_spec,
    deploy_model=lambda config, model: deploy_stage1(model.stage1, config.mask_rcnn),
    deploy_heads=_mask_rcnn_heads,
    mask_size=lambda config: RCNN_MASK_SIZE,
)

RECIPES: dict[ModelKind, ModelRecipe] = {
    ModelKind.SSD: SSD_RECIPE,
    ModelKind.OPENPOSE: OPENPOSE_RECIPE,
    ModelKind.DENSE: DENSE_RECIPE,
    ModelKind.ATTRIBUTES: ATTRIBUTES_RECIPE,
    ModelKind.MASK_RCNN: MASK_RCNN_RECIPE,
}


def build_run_spec(config: TrainConfig, dataset: CocoDataset) -> ModelSpec:
    """The float32 ModelSpec of a run's Keras model (written as OUT/spec.json).

    Args:
        config: The run's resolved config.
        dataset: A split of the run's data set (class names and COCO category ids).

    Returns:
        The spec; for SSD, `tfsp.spec_builders.detection_spec` of the deployed `config.ssd`
        (`tfsp.models.ssd_deploy.deployed_ssd_config`) with the data set's classes and
        `config.data.resize`.

    Raises:
        ValueError: The model's class count differs from the data set's.
    """
    recipe = RECIPES[config.model]
    if recipe.num_classes(config) not in (None, dataset.num_classes):
        section = config.model.value
        raise ValueError(
            f"{section}.num_classes is {recipe.num_classes(config)} but {dataset.instances_json} has "
            f"{dataset.num_classes} categories {dataset.class_names}; set {section}.num_classes "
            f"to {dataset.num_classes} in the config"
        )
    return recipe.build_spec(config, dataset)
