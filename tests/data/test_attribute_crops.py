"""TF attribute crops against the numpy device crops; fit targets on the tiny COCO set."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.attribute_crops import TF_PARITY_ATOL, crop_boxes_tf, crop_windows_tf, make_attribute_fit_targets
from tfsp.data.pipeline import PipelineConfig, make_dataset
from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS, AttributeCropConfig, crop_boxes, crop_windows_xyxy

SIZE = 64  # tiny set letterboxed to 64 px: image 1 (48 x 64) keeps scale 1, so boxes stay as written


def _random_boxes(rng: np.random.Generator, batch: int, count: int, size: int) -> np.ndarray:
    """Boxes of every kind: inside, partly and fully outside, tiny (< 1 px), degenerate, huge."""
    centres = rng.uniform(-0.3 * size, 1.3 * size, (batch, count, 2))
    sides = rng.choice([0.0, 0.3, 2.0, 0.2 * size, 0.6 * size, 2.0 * size], (batch, count, 1))
    sides = sides * rng.uniform(0.5, 1.0, (batch, count, 2))
    return np.concatenate([centres - sides / 2, centres + sides / 2], axis=-1).astype(np.float32)


@pytest.mark.parametrize("config", [AttributeCropConfig(crop_size=8, canvas_px=12.0, context=0.15),
                                    AttributeCropConfig(crop_size=16, canvas_px=5.0, context=0.0)])
def test_tf_crops_match_numpy_crops(config):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 40, 40, 3)).astype(np.float32)
    boxes = _random_boxes(rng, 3, 24, 40)
    got = crop_boxes_tf(tf.constant(images), tf.constant(boxes), config).numpy()
    assert got.shape == (3, 24, config.crop_size, config.crop_size, 3)
    for image, image_boxes, image_crops in zip(images, boxes, got):
        np.testing.assert_allclose(crop_windows_tf(image_boxes, config).numpy(),
                                   crop_windows_xyxy(image_boxes, config), rtol=0, atol=0)
        np.testing.assert_allclose(image_crops, crop_boxes(image, image_boxes, config), rtol=0, atol=TF_PARITY_ATOL)


def test_tf_crops_with_no_instance_slots():
    crops = crop_boxes_tf(tf.zeros((2, 16, 16, 3)), tf.zeros((2, 0, 4)), AttributeCropConfig(crop_size=4))
    assert crops.shape == (2, 0, 4, 4, 3)


@pytest.fixture(scope="module")
def tiny_batch(tiny_dataset):
    config = PipelineConfig(input_size=SIZE, max_instances=4, batch_size=3)
    return next(iter(make_dataset(tiny_dataset, config, training=False)))


def test_fit_targets_weight_real_non_crowd_instances_only(tiny_batch, tiny_dataset):
    assert tiny_dataset.attribute_names == ("filled", "red")
    crop_config = AttributeCropConfig(crop_size=8, canvas_px=24.0)
    crops, targets = make_attribute_fit_targets(crop_config, num_attributes=2)(tiny_batch)
    assert set(targets) == {ATTRIBUTE_LOGITS}
    targets = targets[ATTRIBUTE_LOGITS].numpy()
    # Rows b * 4 + m; columns [filled, red, weight]. Image 1: ann 10 red, ann 11 filled + red, ann 12
    # none (ann 13 outside and 14 zero-width are dropped); image 2 has no objects; image 3 one crowd.
    expected = np.zeros((12, 3), np.float32)
    expected[:3] = [[0, 1, 1], [1, 1, 1], [0, 0, 1]]
    np.testing.assert_array_equal(targets, expected)
    assert crops.shape == (12, 8, 8, 3) and crops.dtype == tf.float32
    images, boxes = tiny_batch["image"].numpy(), tiny_batch["boxes_xyxy"].numpy()
    np.testing.assert_allclose(boxes[0, :3], [[10, 8, 30, 20], [36, 4, 56, 44], [50, 30, 64, 48]])
    for b in range(3):
        np.testing.assert_allclose(crops.numpy()[4 * b:4 * b + 4], crop_boxes(images[b], boxes[b], crop_config),
                                   rtol=0, atol=TF_PARITY_ATOL)


def test_fit_targets_map_on_a_batched_dataset(tiny_dataset):
    config = PipelineConfig(input_size=SIZE, max_instances=2, batch_size=2)
    crop_config = AttributeCropConfig(crop_size=8)
    data = make_dataset(tiny_dataset, config, training=False).map(make_attribute_fit_targets(crop_config, 2))
    shapes = [(crops.shape, targets[ATTRIBUTE_LOGITS].shape) for crops, targets in data]
    assert shapes == [((4, 8, 8, 3), (4, 3)), ((2, 8, 8, 3), (2, 3))]  # 3 images: batches of 2 and 1


def test_fit_targets_check_the_attribute_count(tiny_batch):
    with pytest.raises(ValueError, match="expected 13"):
        make_attribute_fit_targets(AttributeCropConfig(crop_size=8), num_attributes=13)(tiny_batch)
