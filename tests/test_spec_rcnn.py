"""ModelSpec.rcnn: the instance-segmentation chain (GraphInfo, RcnnChain), its builder and strict JSON."""

import dataclasses
import json

import pytest

from tfsp.models.mask_rcnn import MaskRcnnConfig
from tfsp.postprocess.rcnn import BoxHeadConfig, FpnAnchorConfig, RpnProposalConfig
from tfsp.runtime.graph_chain import HEAD_GRAPHS
from tfsp.spec import ModelSpec, SpecError, Task, TensorInfo
from tfsp.spec_builders import detection_spec, instance_segmentation_spec
from tfsp.spec_rcnn import GraphInfo, RcnnChain

CLASSES, CATEGORIES = ("circle", "person", "square"), (2, 1, 3)
CONFIG = MaskRcnnConfig(input_size=64, num_classes=3, alpha=0.35, fpn_channels=16, box_fc=32, mask_head_channels=16,
                        mask_head_convs=1, keypoint_head_channels=16, keypoint_head_convs=1)


def _spec(**kwargs) -> ModelSpec:
    return instance_segmentation_spec(CONFIG, CLASSES, CATEGORIES, **kwargs)


def test_builder_describes_stage1_and_every_head():
    spec = _spec(box_head=BoxHeadConfig(score_threshold=0.0, max_detections=7))
    assert spec.task is Task.INSTANCE_SEGMENTATION and spec.anchors is None and spec.postprocess is None
    assert spec.inputs == (TensorInfo("image", "float32", (-1, 64, 64, 3)),)
    assert spec.output_names[:3] == ("fpn_p2", "rpn_objectness_p2", "rpn_deltas_p2") and len(spec.outputs) == 15
    assert [t.shape for t in spec.outputs[-3:]] == [(-1, 1, 1, 16), (-1, 1, 1, 3), (-1, 1, 1, 12)]
    chain = spec.rcnn
    assert chain.person_class_id == 1 and chain.head_names == HEAD_GRAPHS
    assert chain.anchors == FpnAnchorConfig(64, (2, 3, 4, 5, 6), CONFIG.anchor_sizes_px, CONFIG.aspect_ratios)
    assert chain.box_head.max_detections == 7 and chain.proposals == RpnProposalConfig()
    box, mask, keypoint = chain.heads
    assert box.inputs == (TensorInfo("box_rois", "float32", (-1, 7, 7, 16)),)
    assert [(t.name, t.shape) for t in box.outputs] == [("class_logits", (-1, 4)), ("box_deltas", (-1, 12))]
    assert mask.inputs[0].shape == (-1, 14, 14, 16) and mask.outputs[0].shape == (-1, 28, 28, 3)
    assert keypoint.outputs == (TensorInfo("keypoint_logits", "float32", (-1, 56, 56, 17)),)
    without = _spec(with_keypoints=False)
    assert without.rcnn.person_class_id is None and without.rcnn.head_names == ("box_head", "mask_head")
    with pytest.raises(SpecError, match="class named 'person'"):
        instance_segmentation_spec(CONFIG, ("a", "b", "c"), (1, 2, 3))
    with pytest.raises(SpecError, match="2 class names for a model with 3"):
        instance_segmentation_spec(CONFIG, ("person", "b"), (1, 2))


@pytest.mark.parametrize("with_keypoints", [True, False])
def test_json_round_trip_keeps_nested_configs_and_null(tmp_path, with_keypoints):
    spec = _spec(with_keypoints=with_keypoints, proposals=RpnProposalConfig(pre_nms_top_k=5, iou_threshold=0.6))
    path = spec.to_json(tmp_path / "maskrcnn.json")
    data = json.loads(path.read_text())
    assert data["rcnn"]["person_class_id"] == (1 if with_keypoints else None)
    assert data["rcnn"]["anchors"]["image_size"] == [64, 64] and data["anchors"] is None
    loaded = ModelSpec.from_json(path)
    assert loaded == spec and isinstance(loaded.rcnn.heads[0], GraphInfo)
    assert isinstance(loaded.rcnn.anchors.image_size, tuple) and loaded.rcnn.proposals.pre_nms_top_k == 5


def test_other_tasks_write_rcnn_null_and_need_it(tmp_path):
    spec = detection_spec(64, _ssd_anchors(), CLASSES, CATEGORIES)
    data = spec.to_dict()
    assert data["rcnn"] is None and ModelSpec.from_dict(data) == spec
    del data["rcnn"]
    with pytest.raises(SpecError, match="x.json: rcnn: missing field"):
        ModelSpec.from_dict(data, source="x.json")


def _ssd_anchors():
    from tfsp.postprocess.anchors import SsdAnchorConfig

    return SsdAnchorConfig(64, (4,), 0.2, 0.9, ((),))


def test_strict_errors_name_the_file_and_field(tmp_path):
    data = _spec().to_dict()
    broken = json.loads(json.dumps(data))
    del broken["rcnn"]["heads"][1]["outputs"]
    with pytest.raises(SpecError, match=r"m.json: rcnn.heads\[1\].outputs: missing field"):
        ModelSpec.from_dict(broken, source="m.json")
    broken = json.loads(json.dumps(data))
    broken["rcnn"]["box_head"]["nms"] = 0.5
    with pytest.raises(SpecError, match="rcnn.box_head.nms: unknown field"):
        ModelSpec.from_dict(broken, source="m.json")
    broken = json.loads(json.dumps(data))
    broken["rcnn"]["person_class_id"] = "1"
    with pytest.raises(SpecError, match="rcnn.person_class_id: expected int, got str"):
        ModelSpec.from_dict(broken, source="m.json")
    broken = json.loads(json.dumps(data))
    broken["rcnn"] = None
    with pytest.raises(SpecError, match="rcnn is required for Task.INSTANCE_SEGMENTATION"):
        ModelSpec.from_dict(broken, source="m.json")
    broken = json.loads(json.dumps(data))
    broken["rcnn"]["person_class_id"] = None  # the keypoint head is still listed
    with pytest.raises(SpecError, match="keypoint head exactly when person_class_id is set"):
        ModelSpec.from_dict(broken, source="m.json")


def test_chain_must_fit_the_spec():
    spec = _spec()
    with pytest.raises(SpecError, match="anchors.image_size"):
        dataclasses.replace(spec, rcnn=dataclasses.replace(spec.rcnn, anchors=FpnAnchorConfig(128)))
    with pytest.raises(SpecError, match="person_class_id 5 must be < 3"):
        dataclasses.replace(spec, rcnn=dataclasses.replace(spec.rcnn, person_class_id=5))
    with pytest.raises(SpecError, match="rcnn is required"):
        dataclasses.replace(detection_spec(64, _ssd_anchors(), CLASSES, CATEGORIES), rcnn=spec.rcnn)
    with pytest.raises(SpecError, match="not one of box_head"):
        GraphInfo("head", spec.rcnn.heads[0].inputs, spec.rcnn.heads[0].outputs)
    with pytest.raises(SpecError, match="no 'keypoint_head' graph"):
        _spec(with_keypoints=False).rcnn.graph("keypoint_head")
    assert isinstance(spec.rcnn, RcnnChain) and spec.rcnn.graph("mask_head") is spec.rcnn.heads[1]
