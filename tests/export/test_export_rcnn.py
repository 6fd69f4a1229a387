"""Mask R-CNN split-graph export: every graph to builtin TFLite, one spec, Keras/TFLite pipeline parity."""

import contextlib
import dataclasses
import io

import keras
import numpy as np
import pytest

from export.cli import main
from export.rcnn import head_calibration_features
from tfsp.models.mask_rcnn import MaskRcnnConfig, build_stage1
from tfsp.models.mask_rcnn_heads import build_box_head, build_keypoint_head, build_mask_head
from tfsp.postprocess.rcnn import BoxHeadConfig, RpnProposalConfig
from tfsp.runtime.graph_chain import HEAD_GRAPHS, GraphChain, head_path
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.runtime.runner import open_runner
from tfsp.runtime.tflite_runner import TFLiteRunner
from tfsp.spec import ModelSpec, QuantMode
from tfsp.spec_builders import instance_segmentation_spec

CLASSES = ("person", "circle", "square", "triangle")
CONFIG = MaskRcnnConfig(input_size=64, num_classes=len(CLASSES), alpha=0.35, fpn_channels=16, box_fc=32,
                        mask_head_channels=16, mask_head_convs=1, keypoint_head_channels=16, keypoint_head_convs=1)
# Permissive thresholds so untrained graphs detect something; few proposals keep it fast.
PROPOSALS = RpnProposalConfig(pre_nms_top_k=50, post_nms_top_k=10)
BOX_HEAD = BoxHeadConfig(score_threshold=0.0, max_detections=5)
OUTPUT_STD = 2.0  # logits rescaled so an untrained model's scores are spread (no near-ties between runtimes)
SCALED_LAYERS = {"stage1": ("rpn_objectness",), "box_head": ("class_logits",), "mask_head": ("mask_logits",)}
BOX_RTOL = 1e-3
MASK_PIXEL_FRACTION = 1e-3  # masks may differ on this fraction of pixels (probabilities at the threshold)


def _scale(model: keras.Model, layer_names: tuple[str, ...], sample: np.ndarray) -> None:
    for name in layer_names:
        layer = model.get_layer(name)
        probe = keras.Model(model.inputs, layer.output).predict_on_batch(sample)
        layer.kernel.assign(layer.kernel * (OUTPUT_STD / float(np.std(probe))))


def _models() -> dict[str, keras.Model]:
    keras.utils.set_random_seed(0)
    models = {"stage1": build_stage1(CONFIG), "box_head": build_box_head(CONFIG), "mask_head": build_mask_head(CONFIG),
              "keypoint_head": build_keypoint_head(CONFIG)}
    rng = np.random.default_rng(0)
    for name, layers in SCALED_LAYERS.items():
        shape = (2, *models[name].inputs[0].shape[1:])
        sample = rng.uniform(0, 255 if name == "stage1" else 1, shape).astype(np.float32)
        _scale(models[name], layers, sample)
    return models


@pytest.fixture(scope="module")
def rcnn_run(tmp_path_factory, synth_data):
    """runs/maskrcnn with model.keras + model.{head}.keras + spec.json, and the synthetic data root."""
    run = tmp_path_factory.mktemp("export_rcnn") / "runs" / "maskrcnn"
    run.mkdir(parents=True)
    models = _models()
    models["stage1"].save(run / "model.keras")
    for name in HEAD_GRAPHS:
        models[name].save(head_path(run / "model.keras", name))
    spec = instance_segmentation_spec(CONFIG, CLASSES, (1, 2, 3, 4), proposals=PROPOSALS, box_head=BOX_HEAD)
    spec.to_json(run / "spec.json")
    return run, synth_data, spec


@pytest.fixture(scope="module")
def fp32_export(rcnn_run, tmp_path_factory):
    run, _, _ = rcnn_run
    out, printed = tmp_path_factory.mktemp("exports_fp32"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--run", str(run), "--quant", "fp32", "--out", str(out), "--name", "maskrcnn"]) == 0
    return out, printed.getvalue()


def _val_images(data) -> list[np.ndarray]:
    return [read_image_rgb(p) for p in sorted((data / "images" / "val").iterdir())[:2]]


def test_open_runner_returns_a_keras_chain(rcnn_run):
    run, data, spec = rcnn_run
    chain = open_runner(run / "model.keras")
    assert isinstance(chain, GraphChain) and tuple(chain.heads) == HEAD_GRAPHS
    assert isinstance(chain.head("box_head"), KerasRunner) and chain.input_size == 64
    assert not isinstance(open_runner(head_path(run / "model.keras", "box_head")), GraphChain)
    result = MaskRcnnPipeline.from_runner(chain, spec)(_val_images(data)[0])
    assert len(result.detections) == BOX_HEAD.max_detections and result.poses is not None


@pytest.mark.slow
def test_fp32_chain_matches_keras(rcnn_run, fp32_export):
    run, data, spec = rcnn_run
    fp32_export, out = fp32_export
    for name in ("maskrcnn.tflite", *(f"maskrcnn.{head}.tflite" for head in HEAD_GRAPHS), "maskrcnn.json"):
        assert str(fp32_export / name) in out
    assert f"python -m edge_demo --model {fp32_export / 'maskrcnn.tflite'}" in out
    exported = ModelSpec.from_json(fp32_export / "maskrcnn.json")
    assert exported.quantization is QuantMode.FP32 and exported.output_names == spec.output_names
    assert exported.rcnn.heads[0].inputs[0].shape == (-1, 7, 7, 16)
    assert dataclasses.replace(exported.rcnn, heads=spec.rcnn.heads) == spec.rcnn
    chain = open_runner(fp32_export / "maskrcnn.tflite")
    assert isinstance(chain, GraphChain) and isinstance(chain.head("mask_head"), TFLiteRunner)
    keras_pipeline = MaskRcnnPipeline.from_runner(open_runner(run / "model.keras"), spec)
    tflite_pipeline = MaskRcnnPipeline.from_runner(chain, exported)
    for image in _val_images(data):
        expected, actual = keras_pipeline(image), tflite_pipeline(image)
        assert len(expected.detections) > 0
        np.testing.assert_array_equal(actual.detections.class_ids, expected.detections.class_ids)
        np.testing.assert_allclose(actual.detections.boxes_xyxy, expected.detections.boxes_xyxy, rtol=BOX_RTOL,
                                   atol=BOX_RTOL)
        np.testing.assert_allclose(actual.detections.scores, expected.detections.scores, rtol=BOX_RTOL)
        differing = np.mean(actual.masks.masks != expected.masks.masks)
        assert differing <= MASK_PIXEL_FRACTION, differing
        np.testing.assert_array_equal(actual.pose_detection_index, expected.pose_detection_index)


@pytest.mark.slow
def test_int8_exports_every_graph_quantised(rcnn_run, tmp_path, capsys):
    run, data, spec = rcnn_run
    assert main(["--run", str(run), "--quant", "int8", "--data", str(data), "--calibration-images", "4",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Box and mask heads calibrate on the chain's own RoIs; the keypoint head may see no person detection.
    assert "note: box_head" not in out and "note: mask_head" not in out
    assert "maskrcnn_int8.keypoint_head.tflite" in out
    exported = ModelSpec.from_json(tmp_path / "maskrcnn_int8.json")
    assert exported.inputs[0].dtype == "uint8" and exported.inputs[0].scale == pytest.approx(1.0, abs=1e-3)
    assert all(t.dtype == "int8" and t.scale > 0 for t in exported.outputs)
    for graph in exported.rcnn.heads:
        (features,) = graph.inputs
        assert features.dtype == "int8" and features.scale > 0 and features.shape[0] == -1
        assert all(t.dtype == "int8" and t.scale > 0 for t in graph.outputs), graph
    result = MaskRcnnPipeline.from_runner(open_runner(tmp_path / "maskrcnn_int8.tflite"), exported)(
        _val_images(data)[0])
    assert len(result.detections) > 0 and len(result.masks) == len(result.detections)


def test_heads_without_detections_calibrate_on_random_boxes(rcnn_run):
    run, _, spec = rcnn_run
    strict = dataclasses.replace(spec, rcnn=dataclasses.replace(spec.rcnn, box_head=BoxHeadConfig(0.999)))
    models = {name: keras.models.load_model(head_path(run / "model.keras", name), compile=False)
              for name in HEAD_GRAPHS}
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    features, fallback = head_calibration_features(keras.models.load_model(run / "model.keras", compile=False),
                                                   models, strict, images)
    assert fallback == ("mask_head", "keypoint_head")
    assert features["box_head"].shape == (2 * PROPOSALS.post_nms_top_k, 7, 7, 16)
    assert features["mask_head"].shape == (32, 14, 14, 16) and np.abs(features["mask_head"]).max() > 0
