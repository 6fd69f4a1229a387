"""tf.data pipeline: parity with the numpy preprocessing, geometry round trips, augmentation
consistency, padding, dense maps, determinism."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.augment import AugmentConfig
from tfsp.data.coco import load_coco, load_split
from tfsp.data.keypoints import FLIP_PERMUTATION
from tfsp.data.pipeline import CLASS_PAD, PipelineConfig, decode_rgb, make_dataset
from tfsp.runtime.preprocess import (
    LETTERBOX_PAD_VALUE,
    TF_PARITY_ATOL,
    Letterbox,
    ResizeMode,
    preprocess_image,
    read_image_rgb,
)

SIZE = 64
MASK_TOLERANCE_PX = 1.5  # thresholded mask extent vs box, input pixels
FLIP_ONLY = AugmentConfig(flip_probability=1.0, crop_probability=0.0)
CROP_AND_FLIP = AugmentConfig(crop_probability=1.0, crop_scale_range=(0.5, 0.9))


def _batches(dataset, config, training=False, **kwargs):
    return [{k: v.numpy() for k, v in batch.items()} for batch in make_dataset(dataset, config, training, **kwargs)]


def _examples(dataset, config, training=False, **kwargs):
    """Unbatched numpy examples."""
    return [{k: v[i] for k, v in batch.items()} for batch in _batches(dataset, config, training, **kwargs)
            for i in range(len(batch["image_id"]))]


@pytest.fixture(scope="module")
def synth_train(synth_data: Path):
    return load_split(synth_data, "train")


def test_tf_decode_matches_opencv(tiny_dataset):
    for record in tiny_dataset.records:
        decoded = decode_rgb(tf.io.read_file(record.path)).numpy()
        np.testing.assert_array_equal(decoded, read_image_rgb(record.path))


@pytest.mark.parametrize("mode", [ResizeMode.LETTERBOX, ResizeMode.STRETCH])
def test_eval_image_matches_numpy_preprocess(tiny_dataset, mode):
    config = PipelineConfig(input_size=SIZE, resize=mode, batch_size=2)
    by_id = {record.image_id: record for record in tiny_dataset.records}
    for example in _examples(tiny_dataset, config):
        expected, letterbox = preprocess_image(read_image_rgb(by_id[example["image_id"]].path), SIZE, mode)
        np.testing.assert_allclose(example["image"], expected, atol=TF_PARITY_ATOL, rtol=0)
        np.testing.assert_allclose(example["transform"], letterbox.as_vector(), rtol=1e-6)


def test_eval_boxes_and_keypoints_map_back_to_original(tiny_dataset):
    config = PipelineConfig(input_size=SIZE, batch_size=3, max_instances=5)
    for example, record in zip(_examples(tiny_dataset, config), tiny_dataset.records):
        count = example["num_instances"]
        assert count == len(record)
        letterbox = Letterbox.from_vector(example["transform"], SIZE)
        np.testing.assert_allclose(letterbox.to_original_xyxy(example["boxes_xyxy"][:count]), record.boxes_xyxy,
                                   atol=1e-4)
        labelled = record.keypoints[..., 2] > 0
        back = letterbox.to_original_keypoints(example["keypoints"][:count])
        np.testing.assert_allclose(back[labelled], record.keypoints[labelled], atol=1e-4)
        np.testing.assert_array_equal(example["class_ids"][:count], record.class_ids)
        np.testing.assert_array_equal(example["is_crowd"][:count], record.is_crowd)
        np.testing.assert_array_equal(example["attributes"][:count], record.attribute_ids)


def test_padding_negatives_and_truncation(tiny_dataset):
    examples = _examples(tiny_dataset, PipelineConfig(input_size=SIZE, batch_size=3, max_instances=2))
    assert [e["num_instances"] for e in examples] == [2, 0, 1]  # 3 instances truncated to 2; negative kept
    negative = examples[1]
    assert (negative["class_ids"] == CLASS_PAD).all() and not negative["boxes_xyxy"].any()
    assert examples[2]["class_ids"].tolist() == [1, CLASS_PAD] and not examples[2]["keypoints"][1].any()
    assert examples[0]["boxes_xyxy"].shape == (2, 4) and examples[0]["keypoints"].shape == (2, 17, 3)


def test_flip_maps_boxes_keypoints_and_masks_consistently(tiny_dataset):
    config = PipelineConfig(input_size=SIZE, batch_size=3, augment=FLIP_ONLY, with_masks=True, mask_size=SIZE,
                            deterministic=True)
    examples = sorted(_examples(tiny_dataset, config, training=True), key=lambda e: e["image_id"])
    for example, record in zip(examples, tiny_dataset.records):
        count = example["num_instances"]
        letterbox = Letterbox.from_vector(example["transform"], SIZE)
        assert letterbox.scale_x < 0  # flipped
        np.testing.assert_allclose(example["boxes_xyxy"][:count], letterbox.to_input_xyxy(record.boxes_xyxy), atol=1e-4)
        mapped = np.concatenate([letterbox.to_input_xy(record.keypoints[..., :2]), record.keypoints[..., 2:]], -1)
        mapped = np.where(record.keypoints[..., 2:] > 0, mapped, 0.0)[:, list(FLIP_PERMUTATION)]
        np.testing.assert_allclose(example["keypoints"][:count], mapped, atol=1e-4)
        _assert_masks_match_boxes(example, exact=True)
    # Flip + left/right swap keeps the anatomy: the tiny person's left keypoints stay at smaller x than its right.
    person = examples[0]["keypoints"][1]
    left, right = person[1::2], person[2::2]
    labelled = (left[:, 2] > 0) & (right[:, 2] > 0)
    assert labelled.sum() == 7 and (left[labelled, 0] < right[labelled, 0]).all()


def _assert_masks_match_boxes(example: dict, exact: bool) -> None:
    for k in range(example["num_instances"]):
        if example["is_crowd"][k]:
            continue
        rows, cols = np.nonzero(example["masks"][k] > 0.5)
        box = example["boxes_xyxy"][k]
        if len(rows) == 0:
            assert not exact and (box[2] - box[0]) * (box[3] - box[1]) < 4 * MASK_TOLERANCE_PX**2
            continue
        extent = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
        if exact:
            np.testing.assert_allclose(extent, box, atol=MASK_TOLERANCE_PX)
        else:  # a crop may clip the box where the mask has no pixels: the mask lies inside the box
            assert (extent[:2] >= box[:2] - MASK_TOLERANCE_PX).all()
            assert (extent[2:] <= box[2:] + MASK_TOLERANCE_PX).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crop_and_flip_keep_instances_consistent(tiny_dataset, synth_train, seed):
    config = PipelineConfig(input_size=SIZE, batch_size=4, augment=CROP_AND_FLIP, with_masks=True, mask_size=SIZE,
                            deterministic=True, seed=seed, max_instances=16)
    for example in _examples(tiny_dataset, config, training=True):
        _assert_masks_match_boxes(example, exact=True)  # rectangles: extent == clipped box
        count = example["num_instances"]
        for keypoints, box in zip(example["keypoints"][:count], example["boxes_xyxy"][:count]):
            visible = keypoints[keypoints[:, 2] > 0, :2]
            assert (visible >= box[:2] - 1e-4).all() and (visible <= box[2:] + 1e-4).all()
    for example in _examples(synth_train, config, training=True):
        _assert_masks_match_boxes(example, exact=False)
        count = example["num_instances"]
        boxes = example["boxes_xyxy"][:count]
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= SIZE).all()
        visible = example["keypoints"][:count][example["keypoints"][:count, :, 2] > 0]
        assert ((visible[:, :2] >= 0) & (visible[:, :2] <= SIZE)).all()  # outside the crop -> v = 0


def test_cropped_boxes_are_mostly_visible_parts_of_original_boxes(synth_train):
    config = PipelineConfig(input_size=SIZE, batch_size=4, augment=CROP_AND_FLIP, deterministic=True)
    by_id = {record.image_id: record for record in synth_train.records}
    kept = 0
    for example in _examples(synth_train, config, training=True):
        record = by_id[example["image_id"]]
        mapped = Letterbox.from_vector(example["transform"], SIZE).to_input_xyxy(record.boxes_xyxy)
        mapped_area = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
        for box, class_id in zip(example["boxes_xyxy"], example["class_ids"]):
            if class_id == CLASS_PAD:
                continue
            inside = (box[:2] >= mapped[:, :2] - 1e-3).all(1) & (box[2:] <= mapped[:, 2:] + 1e-3).all(1)
            area = (box[2] - box[0]) * (box[3] - box[1])
            match = inside & (record.class_ids == class_id) & (area >= CROP_AND_FLIP.min_visible_fraction
                                                                 * mapped_area - 1e-3)
            assert match.any()
            kept += 1
    assert kept > 0


def test_deterministic_mode_reproduces_batches_and_rerandomises_epochs(synth_train):
    config = PipelineConfig(input_size=SIZE, batch_size=4, augment=AugmentConfig(), deterministic=True, seed=3,
                            with_masks=True, mask_size=16, with_dense=True)
    first, second = make_dataset(synth_train, config, True), make_dataset(synth_train, config, True)
    epochs_a = [[{k: v.numpy() for k, v in b.items()} for b in first] for _ in range(2)]
    epochs_b = [[{k: v.numpy() for k, v in b.items()} for b in second] for _ in range(2)]
    for batches_a, batches_b in zip(epochs_a, epochs_b):
        for batch_a, batch_b in zip(batches_a, batches_b):
            assert batch_a.keys() == batch_b.keys()
            for key in batch_a:
                np.testing.assert_array_equal(batch_a[key], batch_b[key], err_msg=key)
    assert not np.array_equal(epochs_a[0][0]["image"], epochs_a[1][0]["image"])


def test_dense_maps_nearest_golden(tiny_dataset):
    config = PipelineConfig(input_size=SIZE, batch_size=3, with_dense=True)
    for example, record in zip(_examples(tiny_dataset, config), tiny_dataset.records):
        semantic = cv2.imread(record.semantic_path, cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(record.depth_path, cv2.IMREAD_UNCHANGED)
        height, width = semantic.shape
        new_h, new_w = round(example["transform"][1] * height), round(example["transform"][0] * width)
        rows = np.minimum(np.floor((np.arange(new_h) + 0.5) * height / new_h).astype(int), height - 1)
        cols = np.minimum(np.floor((np.arange(new_w) + 0.5) * width / new_w).astype(int), width - 1)
        np.testing.assert_array_equal(example["semantic"][:new_h, :new_w], semantic[np.ix_(rows, cols)])
        np.testing.assert_allclose(example["depth"][:new_h, :new_w], depth[np.ix_(rows, cols)] / 1000.0, rtol=1e-6)
        assert not example["semantic"][new_h:].any() and not example["depth"][:, new_w:].any()
        assert example["semantic"].dtype == np.int32 and example["depth"].dtype == np.float32
        assert (example["image"][new_h:] == LETTERBOX_PAD_VALUE).all()


def test_target_fn_runs_per_example_before_batching(tiny_dataset):
    def add_area(example):
        boxes = example["boxes_xyxy"]
        return {**example, "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])}

    config = PipelineConfig(input_size=SIZE, batch_size=3, max_instances=4)
    batch = _batches(tiny_dataset, config, target_fn=add_area)[0]
    assert batch["area"].shape == (3, 4)
    np.testing.assert_allclose(batch["area"][0, 0], 20 * 12 * batch["transform"][0, 0] ** 2, rtol=1e-5)


def test_training_drops_partial_batch_and_shuffles_records(synth_train):
    config = PipelineConfig(input_size=SIZE, batch_size=3, deterministic=True)
    ids = [b["image_id"].tolist() for b in _batches(synth_train, config, training=True)]
    assert len(ids) == len(synth_train) // 3 and all(len(i) == 3 for i in ids)
    eval_ids = [i for b in _batches(synth_train, config) for i in b["image_id"].tolist()]
    assert eval_ids == [r.image_id for r in synth_train.records]


def test_data_set_without_attributes_gives_empty_attribute_columns(tmp_path, tiny_coco_json, write_tiny_coco):
    instances, keypoints = tiny_coco_json
    del instances["attributes"]
    for ann in instances["annotations"]:
        ann.pop("attribute_ids", None)
    paths = write_tiny_coco(tmp_path, instances, keypoints)
    dataset = load_coco(paths.instances_json, paths.image_dir, paths.keypoints_json)
    assert dataset.attribute_names == () and dataset.records[0].attribute_ids.shape == (3, 0)
    batch = _batches(dataset, PipelineConfig(input_size=SIZE, batch_size=3, max_instances=4))[0]
    assert batch["attributes"].shape == (3, 4, 0)
