"""DensePipeline: maps on the letterboxed input grid come back on the original pixels; errors."""

import dataclasses

import numpy as np
import pytest

from tfsp.postprocess.dense import DenseHead
from tfsp.postprocess.paf import PafParserConfig
from tfsp.runtime.dense import DensePipeline, DensePrediction
from tfsp.spec import Task
from tfsp.spec_builders import dense_spec
from tfsp.structures import DenseKind, DenseMap

SIZE, MAP_SIZE = 64, 16
STRIDE = SIZE // MAP_SIZE
CLASS_NAMES, CATEGORY_IDS = ("person", "circle", "square"), (1, 2, 3)
HEIGHT, WIDTH = 40, 80  # letterbox scale 64 / 80 = 0.8: content rows 0..32 of the input, then padding
SPLIT_CELL = 8  # cells left of it (input x < 32, original x < 40) are label 1, the rest label 3
LOGIT = 10.0
DEPTH_M = 2.5


class FakeRunner:
    """Runner returning fixed one-hot logits and a constant depth for every image."""

    input_size = SIZE
    output_names = ("semantic_logits", "depth")

    def __init__(self):
        labels = np.where(np.arange(MAP_SIZE)[None, :] < SPLIT_CELL, 1, 3) * np.ones((MAP_SIZE, 1), np.int64)
        self.logits = (np.eye(len(CLASS_NAMES) + 1, dtype=np.float32)[labels] * LOGIT)[None]
        self.depth = np.full((1, MAP_SIZE, MAP_SIZE, 1), DEPTH_M, np.float32)
        self.calls = []

    def __call__(self, images):
        self.calls.append(images)
        return {"semantic_logits": self.logits, "depth": self.depth}


def _spec():
    return dense_spec(SIZE, MAP_SIZE, CLASS_NAMES, CATEGORY_IDS)


def test_maps_come_back_on_the_original_grid():
    runner = FakeRunner()
    image = np.full((HEIGHT, WIDTH, 3), 77, np.uint8)
    prediction, timings = DensePipeline(runner, _spec()).detect_timed(image)
    assert runner.calls[0].shape == (1, SIZE, SIZE, 3)
    labels = prediction.semantic.values
    assert labels.shape == (HEIGHT, WIDTH) and prediction.depth.values.shape == (HEIGHT, WIDTH)
    # Original x < 40 maps to input x < 32 = cell 8: label 1 left of the split, 3 right of it.
    # Pixel 39's centre (39.5 -> input 31.6) lies between cell centres 30 and 34: bilinear logits still favour 1.
    assert np.all(labels[:, :40] == 1) and np.all(labels[:, 40:] == 3)
    np.testing.assert_allclose(prediction.depth.values, DEPTH_M, rtol=1e-6)
    assert timings.total_ms >= 0 and min(timings.preprocess_ms, timings.inference_ms, timings.postprocess_ms) >= 0


def test_call_returns_the_prediction_without_timings():
    prediction = DensePipeline(FakeRunner(), _spec())(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert isinstance(prediction, DensePrediction) and prediction.semantic.kind is DenseKind.LABELS


def test_pipeline_checks_spec_and_runner():
    runner = FakeRunner()
    with pytest.raises(ValueError, match="Task.DENSE"):
        DensePipeline(runner, dataclasses.replace(_spec(), task=Task.POSE, paf=PafParserConfig()))
    other = dense_spec(SIZE * 2, MAP_SIZE, CLASS_NAMES, CATEGORY_IDS)
    with pytest.raises(ValueError, match="input size"):
        DensePipeline(runner, other)
    runner.output_names = ("semantic_logits",)
    with pytest.raises(ValueError, match="lacks outputs"):
        DensePipeline(runner, _spec())


def test_prediction_needs_matching_label_and_depth_maps():
    labels = DenseMap(np.zeros((4, 5), np.int32), DenseKind.LABELS)
    with pytest.raises(ValueError, match="differ in shape"):
        DensePrediction(labels, DenseMap(np.zeros((4, 4), np.float32), DenseKind.DEPTH))
    with pytest.raises(ValueError, match="LABELS and a DEPTH"):
        DensePrediction(labels, labels)


def test_a_depth_only_graph_gives_depth_only():
    spec = dense_spec(SIZE, MAP_SIZE, CLASS_NAMES, CATEGORY_IDS, heads=(DenseHead.DEPTH,))
    assert spec.output_names == ("depth",)
    runner = FakeRunner()
    runner.output_names = ("depth",)
    pipeline = DensePipeline(runner, spec)
    prediction = pipeline(np.full((HEIGHT, WIDTH, 3), 77, np.uint8))
    assert pipeline.heads == (DenseHead.DEPTH,) and prediction.semantic is None
    np.testing.assert_allclose(prediction.depth.values, DEPTH_M, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one map"):
        DensePrediction(None, None)
