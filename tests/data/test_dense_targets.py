"""Tests for tfsp.data.dense_targets: cell-centre sampling, TF/numpy parity, the real pipeline."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.coco import load_split
from tfsp.data.dense_targets import make_dense_fit_targets, sample_cell_centres_np, sample_cell_centres_tf
from tfsp.data.pipeline import DEPTH_MM_PER_METRE, PipelineConfig, make_dataset
from tfsp.models.dense import DenseConfig
from tfsp.postprocess.dense import DEPTH, SEMANTIC_LOGITS

SYNTH_IMAGE_SIZE = 96  # tests/conftest.py SYNTH_SIZE: input 96 px = no resize, targets read the PNGs directly


def test_cell_centre_sampling_golden():
    values = np.arange(64).reshape(8, 8)
    # stride 4: centres at pixel 2 and 6 of each axis
    np.testing.assert_array_equal(sample_cell_centres_np(values, 4), [[18, 22], [50, 54]])
    # stride 2: pixels 1, 3, 5, 7
    np.testing.assert_array_equal(sample_cell_centres_np(values, 2)[0], [9, 11, 13, 15])
    with pytest.raises(ValueError, match="multiple"):
        sample_cell_centres_np(np.zeros((6, 6)), 4)


@pytest.mark.parametrize("stride", [2, 4])
def test_tf_sampling_matches_numpy(stride):
    values = np.random.default_rng(stride).normal(size=(3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(sample_cell_centres_tf(tf.constant(values), stride).numpy(),
                                  sample_cell_centres_np(values, stride))


def _pipeline_batch(synth_data, config: DenseConfig, training: bool) -> dict:
    dataset = load_split(synth_data, "train")
    pipeline = PipelineConfig(input_size=config.input_size, batch_size=4, with_dense=True, deterministic=True)
    return next(iter(make_dataset(dataset, pipeline, training=training))), dataset


@pytest.mark.parametrize("output_stride", [2, 4])
def test_fit_targets_match_the_numpy_reference_on_pipeline_batches(synth_data, output_stride):
    config = DenseConfig(input_size=64, output_stride=output_stride)
    batch, _ = _pipeline_batch(synth_data, config, training=True)
    image, targets = make_dense_fit_targets(config)(batch)
    size = config.map_size
    assert image is batch["image"] and set(targets) == {SEMANTIC_LOGITS, DEPTH}
    assert targets[SEMANTIC_LOGITS].dtype == tf.int32 and targets[DEPTH].dtype == tf.float32
    assert targets[SEMANTIC_LOGITS].shape == (4, size, size) and targets[DEPTH].shape == (4, size, size)
    np.testing.assert_array_equal(targets[SEMANTIC_LOGITS].numpy(),
                                  sample_cell_centres_np(batch["semantic"].numpy(), output_stride))
    np.testing.assert_array_equal(targets[DEPTH].numpy(), sample_cell_centres_np(batch["depth"].numpy(), output_stride))
    assert targets[SEMANTIC_LOGITS].numpy().max() > 0  # some foreground is sampled


def test_fit_targets_read_the_dense_pngs_at_cell_centres(synth_data):
    """Input size = image size (no resize): cell (i, j) holds PNG pixel (4 i + 2, 4 j + 2)."""
    config = DenseConfig(input_size=SYNTH_IMAGE_SIZE, output_stride=4)
    batch, dataset = _pipeline_batch(synth_data, config, training=False)
    _, targets = make_dense_fit_targets(config)(batch)
    for index, record in enumerate(dataset.records[:4]):
        semantic = cv2.imread(str(record.semantic_path), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(record.depth_path), cv2.IMREAD_UNCHANGED).astype(np.float32) / DEPTH_MM_PER_METRE
        np.testing.assert_array_equal(targets[SEMANTIC_LOGITS][index].numpy(), semantic[2::4, 2::4])
        np.testing.assert_allclose(targets[DEPTH][index].numpy(), depth[2::4, 2::4], rtol=1e-6)


def _zeros_example(size: int, batch: tuple[int, ...] = ()) -> dict:
    return {"image": tf.zeros(batch + (size, size, 3)), "semantic": tf.zeros(batch + (size, size), tf.int32),
            "depth": tf.zeros(batch + (size, size))}


def test_fit_targets_work_per_example_and_refuse_another_input_size():
    fit = make_dense_fit_targets(DenseConfig(input_size=64))
    _, targets = fit(_zeros_example(64))
    assert targets[SEMANTIC_LOGITS].shape == (16, 16) and targets[DEPTH].shape == (16, 16)
    with pytest.raises(ValueError, match="input_size"):
        fit(_zeros_example(32, batch=(1,)))
