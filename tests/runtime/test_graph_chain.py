"""GraphChain, head_path, and MaskRcnnPipeline.from_runner's checks (no TensorFlow: fake runners)."""

from pathlib import Path

import pytest

from tfsp.models.mask_rcnn import MaskRcnnConfig, stage1_output_names
from tfsp.runtime.graph_chain import HEAD_GRAPHS, GraphChain, head_path
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline
from tfsp.runtime.mask_rcnn_config import MaskRcnnPipelineConfig
from tfsp.spec_builders import dense_spec, instance_segmentation_spec

CONFIG = MaskRcnnConfig(input_size=64, num_classes=2, alpha=0.35, fpn_channels=16, box_fc=32)
SPEC = instance_segmentation_spec(CONFIG, ("person", "car"), (1, 3))


class _Fake:
    def __init__(self, input_size, output_names):
        self.input_size, self.output_names = input_size, tuple(output_names)

    def __call__(self, images):
        return {"called": images}


def _heads(*names):
    outputs = {"box_head": ("class_logits", "box_deltas"), "mask_head": ("mask_logits",),
               "keypoint_head": ("keypoint_logits",)}
    return {name: _Fake(None, outputs[name]) for name in names}


def test_head_path_sits_beside_the_main_file():
    assert head_path(Path("runs/x/model.keras"), "box_head") == Path("runs/x/model.box_head.keras")
    assert head_path("exports/maskrcnn_int8.tflite", "mask_head") == Path("exports/maskrcnn_int8.mask_head.tflite")
    assert HEAD_GRAPHS == ("box_head", "mask_head", "keypoint_head")
    with pytest.raises(ValueError, match="unknown head graph 'rpn'"):
        head_path("m.tflite", "rpn")


def test_chain_delegates_to_stage1_and_names_missing_heads():
    stage1 = _Fake(64, stage1_output_names(CONFIG))
    chain = GraphChain(stage1, _heads("mask_head", "box_head"), model_path="exports/m.tflite")
    assert chain.input_size == 64 and chain.output_names == stage1.output_names and chain("x") == {"called": "x"}
    assert list(chain.heads) == ["box_head", "mask_head"] and chain.stage1 is stage1
    with pytest.raises(TypeError):
        chain.heads["keypoint_head"] = None
    with pytest.raises(ValueError, match=r"no 'keypoint_head' graph \(no exports/m.keypoint_head.tflite\)"):
        chain.head("keypoint_head")
    with pytest.raises(ValueError, match="unknown head graphs"):
        GraphChain(stage1, {"rpn": stage1})


def test_from_runner_uses_the_keypoint_head_only_with_a_person_class():
    stage1 = _Fake(64, stage1_output_names(CONFIG))
    with pytest.raises(ValueError, match="needs a GraphChain"):
        MaskRcnnPipeline.from_runner(stage1, SPEC)
    with pytest.raises(ValueError, match="no 'mask_head' graph"):
        MaskRcnnPipeline.from_runner(GraphChain(stage1, _heads("box_head")), SPEC)
    chain = GraphChain(stage1, _heads(*HEAD_GRAPHS))
    assert MaskRcnnPipeline.from_runner(chain, SPEC)._keypoint_head is chain.heads["keypoint_head"]
    no_keypoints = instance_segmentation_spec(CONFIG, ("person", "car"), (1, 3), with_keypoints=False)
    assert MaskRcnnPipeline.from_runner(chain, no_keypoints)._keypoint_head is None
    config = MaskRcnnPipelineConfig.from_spec(SPEC)
    assert config.category_ids == (1, 3) and config.anchors == SPEC.rcnn.anchors and config.person_class_id == 0
    with pytest.raises(ValueError, match="needs a Task.INSTANCE_SEGMENTATION spec"):
        MaskRcnnPipelineConfig.from_spec(dense_spec(64, 16, ("person", "car"), (1, 3)))
