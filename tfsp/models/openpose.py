"""Bottom-up multi-person pose network (OpenPose, Cao et al. CVPR 2017) on MobileNetV2, Keras 3.

Graph, in labelled sections of :func:`build_openpose`:

1. input ``image`` (B, S, S, 3) float32 RGB in [0, 255], normalised in the graph;
2. MobileNetV2 maps at strides 8, 16 and 32 merged top-down at stride 8 (1x1 laterals, nearest
   upsampling, add, 3x3 conv): the features F (B, S/8, S/8, channels) every stage reads;
3. the initial stage: ``initial_blocks`` depthwise-separable 3x3 blocks on F, then two 1x1 heads;
4. ``num_refinement_stages`` refinement stages, each on concat(F, previous heatmaps, previous
   PAFs): a 1x1 conv, ``refinement_blocks`` residual blocks (separable 3x3, then separable 3x3
   with dilation 2 for a wider view along the limbs), and the two heads.

Every stage predicts confidence maps (17 keypoints + background) and Part Affinity Fields
(2 per limb of :data:`tfsp.data.keypoints.PAF_LIMBS`) as separate tensors, so int8 quantises
each on its own scale. The training model outputs all stages (``stage{i}_heatmaps``,
``stage{i}_pafs`` for the earlier ones; intermediate supervision); :func:`deploy_openpose` keeps
only the last stage, named ``heatmaps`` and ``pafs``, for evaluation and export. Only standard
Keras layers are used, so ``keras.models.load_model(path, compile=False)`` needs no custom objects.
"""

from __future__ import annotations

import dataclasses

import keras

from tfsp.data.keypoints import NUM_KEYPOINTS, NUM_PAF_LIMBS
from tfsp.data.pose_fields import DEFAULT_LIMB_WIDTH_PX
from tfsp.models.backbones import DEFAULT_BN_MOMENTUM, mobilenet_v2_features, normalise_image
from tfsp.models.deploy_size import rebuilt_at
from tfsp.models.pose_flip import flip_averaged
from tfsp.postprocess.paf import HEATMAPS, PAFS
from tfsp.spec import INPUT_NAME

OUTPUT_STRIDE = 8
BACKBONE_STRIDES = (8, 16, 32)
NUM_HEATMAP_CHANNELS = NUM_KEYPOINTS + 1  # + background
NUM_PAF_CHANNELS = 2 * NUM_PAF_LIMBS
RELU_MAX = 6.0
BN_EPSILON = 1e-3
REFINEMENT_DILATION = 2
SYNTH_TARGET_SIGMA_PX = 8.0  # 1 cell at 256 px; with foreground weighting, 6-8 px beat 10 px (README, pose)
# Val keypoint AP with sigma 10: 0.20 (weight 5, 20 epochs), 0.22 (15, 18), 0.26 (30, 18); plain L2: 0.001 (14).
SYNTH_FOREGROUND_LOSS_WEIGHT = 30.0
# Val keypoint AP (192 px, 17 epochs, lr 1e-2): 0.242 with heatmaps weighted 1 (the PAF loss was 3x the heatmap
# loss), 0.280 with 3, 0.286 with 8; 0.295 with 8 and lr 1.6e-2 (one run each, spread about 0.01-0.02; README: pose).
SYNTH_HEATMAP_LOSS_WEIGHT = 8.0
SYNTH_DEPLOY_INPUT_SIZE = 320
"""Trained at 256 px (the images' size), deployed at 320 px: the 256 px images are upscaled to 40 x 40 maps,
finer cells for the peaks (README: about +0.03 val keypoint AP for the same weights; 352 px and more lose)."""


@dataclasses.dataclass(frozen=True)
class OpenPoseConfig:
    """OpenPose model configuration.

    Attributes:
        input_size: square input side S in pixels, a multiple of 32 (maps are S / 8).
        alpha: MobileNetV2 width multiplier.
        channels: width of the merged features and of every stage.
        initial_blocks: separable 3x3 blocks of the initial stage.
        num_refinement_stages: refinement stages after the initial one (the paper uses 5; 2 is
            plenty for the synthetic set).
        refinement_blocks: residual blocks per refinement stage.
        bn_momentum: momentum of every batch-norm layer.
        backbone_weights: optional local MobileNetV2 ``*_no_top.h5`` weights (never downloaded).
        target_sigma_px: training targets: Gaussian sigma of the confidence maps, input pixels.
        target_limb_width_px: training targets: PAF half-width, input pixels.
        foreground_loss_weight: training loss: extra weight of foreground cells
            (``tfsp.losses.MaskedL2Loss``); 0 is the paper's plain masked L2.
        heatmap_loss_weight: training loss: weight of every stage's heatmap loss (the PAF losses
            weigh 1; the paper weighs both 1). The heatmaps limit the parse (see
            ``training.pose_diagnose``), so the synthetic default favours them.
        deploy_input_size: input side of the deployed last-stage graph (evaluated, saved and
            exported) when it differs from the training ``input_size``; a multiple of 32, the same
            weights (the network is fully convolutional), maps of ``deploy_input_size / 8`` cells.
            None: deploy at ``input_size``.
        deploy_flip_average: the deployed graph averages its maps over the image and its mirror
            image (``tfsp.models.pose_flip``; twice the inference time). Training is unchanged.
    """

    input_size: int = 256
    alpha: float = 0.35
    channels: int = 64
    initial_blocks: int = 3
    num_refinement_stages: int = 2
    refinement_blocks: int = 2
    bn_momentum: float = DEFAULT_BN_MOMENTUM
    backbone_weights: str | None = None
    target_sigma_px: float = SYNTH_TARGET_SIGMA_PX
    target_limb_width_px: float = DEFAULT_LIMB_WIDTH_PX
    foreground_loss_weight: float = SYNTH_FOREGROUND_LOSS_WEIGHT
    heatmap_loss_weight: float = SYNTH_HEATMAP_LOSS_WEIGHT
    deploy_input_size: int | None = None
    deploy_flip_average: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "deploy_input_size"):
            size = getattr(self, name)
            if size is not None and (size <= 0 or size % max(BACKBONE_STRIDES)):
                raise ValueError(f"{name} must be a positive multiple of {max(BACKBONE_STRIDES)}, got {size}")
        if not self.heatmap_loss_weight > 0:
            raise ValueError(f"heatmap_loss_weight must be > 0, got {self.heatmap_loss_weight}")
        for name in ("channels", "initial_blocks", "refinement_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"OpenPoseConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_refinement_stages < 0:
            raise ValueError(f"num_refinement_stages must be >= 0, got {self.num_refinement_stages}")

    @property
    def map_size(self) -> int:
        """Side F of the heatmaps and PAFs."""
        return self.input_size // OUTPUT_STRIDE

    @property
    def num_stages(self) -> int:
        """Stages with outputs (initial + refinement)."""
        return 1 + self.num_refinement_stages


OPENPOSE_SYNTH_CONFIG = OpenPoseConfig(deploy_input_size=SYNTH_DEPLOY_INPUT_SIZE, deploy_flip_average=True)
"""Default for the embedded synthetic data: 256 px input (the images' own size), 32 x 32 maps, 3 stages,
deployed at 320 px (40 x 40 maps) and flip-averaged (README, pose: +0.03 val keypoint AP, twice the inference time)."""


def stage_output_names(stage: int, num_stages: int) -> tuple[str, str]:
    """(heatmaps, PAFs) output names of ``stage`` (0-based); the last stage uses the plain names."""
    if stage == num_stages - 1:
        return HEATMAPS, PAFS
    return f"stage{stage}_{HEATMAPS}", f"stage{stage}_{PAFS}"


def _bn_relu(x, name: str, momentum: float):
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(RELU_MAX, name=f"{name}_relu")(x)


def _conv(x, filters: int, kernel: int, name: str, momentum: float):
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return _bn_relu(x, name, momentum)


def _separable(x, filters: int, name: str, momentum: float, dilation: int = 1):
    """Depthwise 3x3 (optionally dilated) + BN + ReLU6, then pointwise 1x1 + BN + ReLU6."""
    x = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=dilation, use_bias=False,
                                     name=f"{name}_dw")(x)
    x = _bn_relu(x, f"{name}_dw", momentum)
    return _conv(x, filters, 1, f"{name}_pw", momentum)


def _features(image, config: OpenPoseConfig):
    """Backbone maps merged top-down to stride 8 (B, S/8, S/8, channels)."""
    maps = mobilenet_v2_features(normalise_image(image), BACKBONE_STRIDES, alpha=config.alpha,
                                 weights_path=config.backbone_weights, bn_momentum=config.bn_momentum)
    momentum = config.bn_momentum
    merged = _conv(maps[-1], config.channels, 1, "merge_lateral_2", momentum)
    for i in range(len(maps) - 2, -1, -1):
        up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"merge_up_{i}")(merged)
        lateral = _conv(maps[i], config.channels, 1, f"merge_lateral_{i}", momentum)
        merged = keras.layers.Add(name=f"merge_add_{i}")([lateral, up])
        merged = _separable(merged, config.channels, f"merge_smooth_{i}", momentum)
    return merged


def _heads(x, config: OpenPoseConfig, stage: int):
    """Two 1x1 heads (1x1 conv + ReLU6, then a linear 1x1 conv) on a stage's trunk."""
    heat_name, paf_name = stage_output_names(stage, config.num_stages)
    outputs = []
    for name, depth, kind in ((heat_name, NUM_HEATMAP_CHANNELS, "heat"), (paf_name, NUM_PAF_CHANNELS, "paf")):
        y = _conv(x, config.channels, 1, f"stage{stage}_{kind}_hidden", config.bn_momentum)
        outputs.append(keras.layers.Conv2D(depth, 1, name=name)(y))
    return outputs


def build_openpose(config: OpenPoseConfig) -> keras.Model:
    """Builds the training model (all stages as outputs).

    Args:
        config: model configuration.

    Returns:
        ``keras.Model`` with input ``image`` (B, S, S, 3) float32 RGB in [0, 255] and dict outputs,
        per stage i: heatmaps (B, F, F, 18) and PAFs (B, F, F, 36) float32, F = S / 8, named by
        :func:`stage_output_names` (the last stage ``heatmaps`` and ``pafs``).
    """
    momentum = config.bn_momentum
    # 1. input
    image = keras.Input((config.input_size, config.input_size, 3), name=INPUT_NAME)
    # 2. features at stride 8
    features = _features(image, config)
    # 3. initial stage
    x = features
    for block in range(config.initial_blocks):
        x = _separable(x, config.channels, f"stage0_block{block}", momentum)
    heatmaps, pafs = _heads(x, config, 0)
    heat_name, paf_name = stage_output_names(0, config.num_stages)
    outputs = {heat_name: heatmaps, paf_name: pafs}
    # 4. refinement stages
    for stage in range(1, config.num_stages):
        x = keras.layers.Concatenate(name=f"stage{stage}_concat")([features, heatmaps, pafs])
        x = _conv(x, config.channels, 1, f"stage{stage}_in", momentum)
        for block in range(config.refinement_blocks):
            name = f"stage{stage}_block{block}"
            y = _separable(x, config.channels, f"{name}_a", momentum)
            y = _separable(y, config.channels, f"{name}_b", momentum, dilation=REFINEMENT_DILATION)
            x = keras.layers.Add(name=f"{name}_add")([x, y])
        heatmaps, pafs = _heads(x, config, stage)
        heat_name, paf_name = stage_output_names(stage, config.num_stages)
        outputs[heat_name], outputs[paf_name] = heatmaps, pafs
    return keras.Model(image, outputs, name="openpose")


def deploy_openpose(model: keras.Model) -> keras.Model:
    """The last stage only: the graph that is evaluated and exported.

    Args:
        model: a model from :func:`build_openpose` (or already a deploy model).

    Returns:
        A model sharing ``model``'s layers with outputs ``heatmaps`` and ``pafs`` only.
    """
    outputs = {HEATMAPS: model.get_layer(HEATMAPS).output, PAFS: model.get_layer(PAFS).output}
    return keras.Model(model.input, outputs, name=model.name)


def deployed_openpose_config(config: OpenPoseConfig) -> OpenPoseConfig:
    """The config of the deployed graph: ``input_size`` = the deploy size, ``deploy_input_size`` None."""
    return dataclasses.replace(config, input_size=config.deploy_input_size or config.input_size,
                               deploy_input_size=None)


def deploy_openpose_at(model: keras.Model, config: OpenPoseConfig) -> keras.Model:
    """:func:`deploy_openpose` at ``config.deploy_input_size``, flip-averaged if ``config.deploy_flip_average``.

    Args:
        model: a model from ``build_openpose(config)`` (trained).
        config: its config.

    Returns:
        ``deploy_openpose(model)`` when the deploy size is the training size; else the last-stage
        graph of ``build_openpose(deployed_openpose_config(config))`` holding a copy of the weights;
        either wrapped by ``tfsp.models.pose_flip.flip_averaged`` when ``config.deploy_flip_average``.
    """
    deployed = deployed_openpose_config(config)
    graph = rebuilt_at(deploy_openpose(model), config.input_size, deployed.input_size,
                       lambda: deploy_openpose(build_openpose(deployed)))
    return flip_averaged(graph) if config.deploy_flip_average else graph
