"""Dense and attribute evaluation through the device pipelines, with oracle and degraded runners."""

import dataclasses

import cv2
import numpy as np
import pytest

from tfsp.data.coco import load_split
from tfsp.postprocess.attributes import AttributeCropConfig
from tfsp.postprocess.dense import DenseHead
from tfsp.spec import AttributeHead
from tfsp.spec_builders import attribute_spec, dense_spec
from training.eval_structured import semantic_labels
from training.evaluate import evaluate_runner

ORACLE_LOGIT = 20.0
DEPTH_SCALE_WRONG = 1.5  # negative control: every depth 1.5x too far -> delta1 = 0, AbsRel = 0.5


def test_semantic_labels_map_category_ids_to_class_labels():
    png = np.array([[0, 7, 3], [3, 0, 7]], np.uint8)
    np.testing.assert_array_equal(semantic_labels(png, (7, 3)), [[0, 1, 2], [2, 0, 1]])
    with pytest.raises(ValueError, match=r"category ids \[5\]"):
        semantic_labels(np.array([[5]], np.uint8), (7, 3))


class DenseOracle:
    """Returns, image by image in record order, the ground-truth maps as logits and depth (F = S)."""

    output_names = ("semantic_logits", "depth")

    def __init__(self, records, size, num_labels, depth_scale=1.0):
        self.input_size = size
        self.records = iter(records)
        self.num_labels = num_labels
        self.depth_scale = depth_scale

    def __call__(self, images):
        record = next(self.records)
        labels = semantic_labels(cv2.imread(record.semantic_path, cv2.IMREAD_UNCHANGED), (1, 2, 3, 4))
        depth = cv2.imread(record.depth_path, cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
        logits = np.eye(self.num_labels, dtype=np.float32)[labels] * ORACLE_LOGIT
        return {"semantic_logits": logits[None], "depth": (depth * self.depth_scale)[None, ..., None]}


def test_dense_oracle_scores_perfectly_and_a_scaled_depth_fails(synth_data):
    val = load_split(synth_data, "val")
    size = val.records[0].width
    spec = dense_spec(size, size, val.class_names, val.category_ids)
    result = evaluate_runner(DenseOracle(val.records, size, 5), spec, val)
    assert result.metric == "dense" and result.headline[0] == "mIoU"
    assert result.stats["mIoU"] == pytest.approx(1.0) and result.stats["pixel_acc"] == pytest.approx(1.0)
    assert result.stats["delta1"] == pytest.approx(1.0) and result.stats["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert result.num_images == len(val.records) and "IoU_person" in result.stats
    worse = evaluate_runner(DenseOracle(val.records, size, 5, DEPTH_SCALE_WRONG), spec, val)
    assert worse.stats["delta1"] == pytest.approx(0.0) and worse.stats["abs_rel"] == pytest.approx(0.5, rel=1e-4)
    assert "mIoU" in result.format_table()


def test_dense_evaluation_needs_matching_categories(synth_data):
    val = load_split(synth_data, "val")
    size = val.records[0].width
    spec = dense_spec(size, size, val.class_names, (9, 2, 3, 4))
    with pytest.raises(ValueError, match="category ids"):
        evaluate_runner(DenseOracle(val.records, size, 5), spec, val)


class AttributeOracle:
    """Returns the ground-truth multi-hot of each image's non-crowd objects as +-logits, in record order."""

    output_names = ("attribute_logits",)

    def __init__(self, records, crop, shuffle_seed=None):
        self.input_size = crop
        self.records = iter([r for r in records if (~r.is_crowd).any()])
        self.rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)

    def __call__(self, crops):
        record = next(self.records)
        truth = record.attribute_ids[~record.is_crowd]
        assert len(truth) == len(crops)
        if self.rng is not None:
            truth = self.rng.permuted(truth, axis=1)
        return {"attribute_logits": np.where(truth > 0, ORACLE_LOGIT, -ORACLE_LOGIT).astype(np.float32)}


def _attribute_spec(dataset, crop=16):
    names = dataset.attribute_names
    head = AttributeHead(names, (0.5,) * len(names), dataset.records[0].width,
                         AttributeCropConfig(crop_size=crop, canvas_px=32.0))
    return attribute_spec(head, dataset.class_names, dataset.category_ids)


def test_attribute_oracle_scores_perfectly_and_shuffled_labels_do_not(synth_data):
    val = load_split(synth_data, "val")
    spec = _attribute_spec(val)
    result = evaluate_runner(AttributeOracle(val.records, 16), spec, val)
    objects = sum(int((~r.is_crowd).sum()) for r in val.records)
    assert result.metric == "attributes" and result.num_detections == objects > 0
    assert result.stats["mAP"] == pytest.approx(1.0) and result.stats["mean_F1"] == pytest.approx(1.0)
    shuffled = evaluate_runner(AttributeOracle(val.records, 16, shuffle_seed=0), spec, val)
    assert shuffled.stats["mAP"] < 0.9 and shuffled.stats["mean_F1"] < 0.9


def test_attribute_evaluation_needs_the_same_vocabulary(synth_data):
    val = load_split(synth_data, "val")
    spec = _attribute_spec(val)
    renamed = dataclasses.replace(spec, attributes=dataclasses.replace(
        spec.attributes, names=("x",) + spec.attributes.names[1:]))
    with pytest.raises(ValueError, match="model attributes"):
        evaluate_runner(AttributeOracle(val.records, 16), renamed, val)


def test_a_segmentation_only_model_reports_segmentation_only(synth_data):
    val = load_split(synth_data, "val")
    size = val.records[0].width
    spec = dense_spec(size, size, val.class_names, val.category_ids, heads=(DenseHead.SEGMENTATION,))
    runner = DenseOracle(val.records, size, 5)
    runner.output_names = ("semantic_logits",)
    result = evaluate_runner(runner, spec, val)
    assert result.stats["mIoU"] == pytest.approx(1.0) and "delta1" not in result.stats
    assert result.headline == ("mIoU", "pixel_acc")
