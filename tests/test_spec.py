"""ModelSpec JSON: round trips, atomic writes and errors that name the file and field."""

import dataclasses
import json

import pytest

from tfsp.fileio import write_atomic
from tfsp.data.keypoints import PAF_LIMBS
from tfsp.postprocess.anchors import SSD300, num_anchors
from tfsp.postprocess.paf import PafParserConfig
from tfsp.postprocess.ssd import SsdPostprocessConfig
from tfsp.runtime.preprocess import ResizeMode
from tfsp.postprocess.attributes import AttributeCropConfig
from tfsp.spec import DYNAMIC_DIM, AttributeHead, ModelSpec, QuantMode, SpecError, Task, TensorInfo
from tfsp.spec_builders import attribute_spec, dense_spec, detection_spec, pose_spec

CLASS_NAMES = ("person", "circle", "square", "triangle")
CATEGORY_IDS = (1, 2, 3, 4)


def _float_spec() -> ModelSpec:
    return detection_spec(300, SSD300, CLASS_NAMES, CATEGORY_IDS, resize_mode=ResizeMode.STRETCH,
                          postprocess=SsdPostprocessConfig(score_threshold=0.3, max_detections=50))


def _int8_spec() -> ModelSpec:
    return dataclasses.replace(
        _float_spec(), quantization=QuantMode.INT8,
        inputs=(TensorInfo("image", "uint8", (1, 300, 300, 3), scale=1.0, zero_point=0),),
        outputs=(TensorInfo("box_deltas", "int8", (1, 8732, 4), scale=0.0421, zero_point=-3),
                 TensorInfo("class_logits", "int8", (1, 8732, 5), scale=0.125, zero_point=17)))


def _pose_spec(parser: PafParserConfig = PafParserConfig()) -> ModelSpec:
    return pose_spec(368, 46, CLASS_NAMES, CATEGORY_IDS, parser=parser)


def test_detection_spec_describes_the_float_graph():
    spec = _float_spec()
    assert spec.task is Task.DETECTION and spec.quantization is QuantMode.FP32
    assert spec.output_names == ("box_deltas", "class_logits")
    assert [t.shape for t in spec.outputs] == [(DYNAMIC_DIM, 8732, 4), (DYNAMIC_DIM, 8732, 5)]
    assert spec.inputs[0].shape == (DYNAMIC_DIM, 300, 300, 3) and not spec.inputs[0].quantized
    assert num_anchors(spec.anchors) == 8732 and spec.num_classes == 4
    assert spec.paf is None and spec.to_dict()["paf"] is None  # always written, null for detection


def test_pose_spec_describes_the_float_graph():
    spec = _pose_spec()
    assert spec.task is Task.POSE and spec.anchors is None and spec.postprocess is None
    assert spec.output_names == ("heatmaps", "pafs")
    assert [(t.dtype, t.shape) for t in spec.outputs] == [("float32", (DYNAMIC_DIM, 46, 46, 18)),
                                                            ("float32", (DYNAMIC_DIM, 46, 46, 36))]
    assert spec.paf == PafParserConfig() and spec.paf.limbs == PAF_LIMBS
    fewer = _pose_spec(dataclasses.replace(PafParserConfig(), limbs=PAF_LIMBS[:16]))
    assert fewer.outputs[1].shape[-1] == 32
    with pytest.raises(SpecError, match="map_size"):
        pose_spec(368, 0, CLASS_NAMES, CATEGORY_IDS)


def test_pose_spec_json_round_trip(tmp_path):
    spec = _pose_spec()
    path = spec.to_json(tmp_path / "pose.json")
    loaded = ModelSpec.from_json(path)
    assert loaded == spec
    assert isinstance(loaded.paf.limbs, tuple) and loaded.paf.limbs[0] == PAF_LIMBS[0]
    data = json.loads(path.read_text())
    assert data["anchors"] is None and data["postprocess"] is None and data["paf"]["limbs"][0] == list(PAF_LIMBS[0])


def test_paf_is_required_for_pose_only(tmp_path):
    data = _pose_spec().to_dict()
    data["paf"] = None
    path = _write(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}: .*paf is required for Task.POSE"):
        ModelSpec.from_json(path)
    data = _pose_spec().to_dict()
    del data["paf"]
    with pytest.raises(SpecError, match=r"paf: missing field"):
        ModelSpec.from_json(_write(tmp_path, data))
    with pytest.raises(SpecError, match="must be null for other tasks"):
        dataclasses.replace(_float_spec(), paf=PafParserConfig())


@pytest.mark.parametrize("make", [_float_spec, _int8_spec])
def test_json_round_trip(tmp_path, make):
    spec = make()
    path = spec.to_json(tmp_path / "model.json")
    loaded = ModelSpec.from_json(path)
    assert loaded == spec
    assert loaded.anchors.min_sizes == SSD300.min_sizes and isinstance(loaded.anchors.aspect_ratios[0], tuple)
    assert json.loads(path.read_text())["quantization"] == spec.quantization.name


def test_int8_params_survive(tmp_path):
    loaded = ModelSpec.from_json(_int8_spec().to_json(tmp_path / "q.json"))
    box, logits = loaded.outputs
    assert (box.dtype, box.scale, box.zero_point) == ("int8", 0.0421, -3)
    assert logits.quantized and loaded.inputs[0].dtype == "uint8"


def test_write_is_atomic_and_replaces(tmp_path):
    target = tmp_path / "sub" / "spec.json"
    write_atomic(target, b"old")
    _float_spec().to_json(target)
    assert ModelSpec.from_json(target) == _float_spec()
    assert sorted(p.name for p in target.parent.iterdir()) == ["spec.json"]  # no temp files left


def _write(tmp_path, data) -> str:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_unknown_field_names_file_and_field(tmp_path):
    data = _float_spec().to_dict()
    data["postprocess"]["nms_threshold"] = 0.5
    path = _write(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}: postprocess\.nms_threshold: unknown field"):
        ModelSpec.from_json(path)


def test_missing_field_names_file_and_field(tmp_path):
    data = _float_spec().to_dict()
    del data["anchors"]["feature_map_sizes"]
    path = _write(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}: anchors\.feature_map_sizes: missing field"):
        ModelSpec.from_json(path)


def test_bad_enum_and_type_are_errors(tmp_path):
    data = _float_spec().to_dict()
    data["quantization"] = "INT4"
    with pytest.raises(SpecError, match=r"quantization: 'INT4' is not one of FP32, FP16, DYNAMIC, INT8"):
        ModelSpec.from_json(_write(tmp_path, data))
    data = _float_spec().to_dict()
    data["input_size"] = "300"
    with pytest.raises(SpecError, match=r"input_size: expected int, got str"):
        ModelSpec.from_json(_write(tmp_path, data))


def test_invalid_values_are_errors(tmp_path):
    data = _float_spec().to_dict()
    data["category_ids"] = [1, 2]
    with pytest.raises(SpecError, match="same length"):
        ModelSpec.from_json(_write(tmp_path, data))
    data = _float_spec().to_dict()
    data["postprocess"]["iou_threshold"] = 1.5
    with pytest.raises(SpecError, match=r"postprocess: .*iou_threshold must be in \[0, 1\]"):
        ModelSpec.from_json(_write(tmp_path, data))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="bad.json: not valid JSON"):
        ModelSpec.from_json(tmp_path / "bad.json")


# --- dense and attribute specs ------------------------------------------------------------------

ATTRIBUTE_NAMES = ("red", "blue", "filled", "small")


def _attribute_spec(thresholds=(0.5, 0.4, 0.6, 0.3)) -> ModelSpec:
    head = AttributeHead(ATTRIBUTE_NAMES, thresholds, 256, AttributeCropConfig(crop_size=48))
    return attribute_spec(head, CLASS_NAMES, CATEGORY_IDS)


def test_dense_spec_describes_the_float_graph_and_round_trips(tmp_path):
    spec = dense_spec(128, 32, CLASS_NAMES, CATEGORY_IDS)
    assert spec.task is Task.DENSE and spec.attributes is None and spec.paf is None
    assert spec.output_names == ("semantic_logits", "depth")
    assert [t.shape for t in spec.outputs] == [(DYNAMIC_DIM, 32, 32, 5), (DYNAMIC_DIM, 32, 32, 1)]
    assert ModelSpec.from_json(spec.to_json(tmp_path / "dense.json")) == spec
    with pytest.raises(SpecError, match="map_size"):
        dense_spec(128, 256, CLASS_NAMES, CATEGORY_IDS)


def test_attribute_spec_round_trips_names_thresholds_and_crop(tmp_path):
    spec = _attribute_spec()
    assert spec.task is Task.ATTRIBUTES and spec.input_size == 48
    assert spec.inputs[0].shape == (DYNAMIC_DIM, 48, 48, 3)
    assert [(t.name, t.shape) for t in spec.outputs] == [("attribute_logits", (DYNAMIC_DIM, 4))]
    loaded = ModelSpec.from_json(spec.to_json(tmp_path / "attributes.json"))
    assert loaded == spec and loaded.attributes.thresholds == (0.5, 0.4, 0.6, 0.3)
    assert isinstance(loaded.attributes.crop, AttributeCropConfig)


def test_attribute_head_is_required_for_attribute_specs_only(tmp_path):
    data = _attribute_spec().to_dict()
    data["attributes"] = None
    path = tmp_path / "a.json"
    write_atomic(path, json.dumps(data).encode())
    with pytest.raises(SpecError, match=rf"{path}: .*attributes is required for Task.ATTRIBUTES"):
        ModelSpec.from_json(path)
    with pytest.raises(SpecError, match="attributes is required"):
        dataclasses.replace(_float_spec(), attributes=_attribute_spec().attributes)
    with pytest.raises(SpecError, match="one threshold per attribute"):
        _attribute_spec(thresholds=(0.5,))
    with pytest.raises(SpecError, match="crop_size"):
        dataclasses.replace(_attribute_spec(), input_size=64)
