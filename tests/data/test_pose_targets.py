"""Tests for tfsp.data.pose_targets: parity with the numpy renderer, loss mask, flip, fit packing."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data import pose_fields
from tfsp.data.augment import AugmentConfig, flip_boxes_xyxy, flip_keypoints
from tfsp.data.coco import load_split
from tfsp.data.keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS, PAF_LIMBS
from tfsp.data.pipeline import PipelineConfig, make_dataset
from tfsp.data.pose_targets import (
    MASK_CHANNELS,
    NUM_HEATMAP_CHANNELS,
    POSE_MASK,
    PoseTargetConfig,
    make_pose_target_fn,
    pose_fit_targets,
)
from tfsp.postprocess.paf import HEATMAPS, PAFS

SIZE = 64
PERSON, OTHER, PAD = 0, 2, -1
ATOL = 1e-5
CONFIG = PoseTargetConfig(input_size=SIZE)
# Non-default settings, to check that every field reaches the renderer.
OTHER_CONFIG = PoseTargetConfig(input_size=SIZE, stride=4, sigma_px=3.5, limb_width_px=5.0, person_class_id=1,
                                limbs=PAF_LIMBS[:5])


def _random_example(rng, num_rows=10, num_padded=2, person_class=PERSON):
    """Random instances: people with missing joints, other classes, crowd, an unlabelled person, padding.

    Padded, crowd and non-person rows carry labelled keypoints too, to show they are ignored.
    """
    keypoints = np.concatenate(
        [rng.uniform(-4, SIZE + 4, (num_rows, NUM_KEYPOINTS, 2)), rng.integers(0, 3, (num_rows, NUM_KEYPOINTS, 1))],
        axis=-1,
    ).astype(np.float32)
    keypoints[..., :2] *= keypoints[..., 2:] > 0  # unlabelled keypoints are [0, 0, 0], as in COCO
    centre, half = rng.uniform(0, SIZE, (num_rows, 2)), rng.uniform(2, 20, (num_rows, 2))
    boxes = np.concatenate([centre - half, centre + half], axis=1).clip(0, SIZE).astype(np.float32)
    class_ids = np.where(rng.uniform(size=num_rows) < 0.7, person_class, OTHER).astype(np.int32)
    is_crowd = rng.uniform(size=num_rows) < 0.15
    class_ids[0], is_crowd[0] = person_class, True  # a crowd person
    class_ids[1], is_crowd[1], keypoints[1] = person_class, False, 0.0  # a person without keypoints
    class_ids[num_rows - num_padded:] = PAD
    is_crowd[num_rows - 1] = True  # padded rows never count, even flagged crowd
    return {
        "image": np.zeros((SIZE, SIZE, 3), np.float32),
        "boxes_xyxy": boxes,
        "class_ids": class_ids,
        "is_crowd": is_crowd,
        "keypoints": keypoints,
    }


def reference_targets(example, config=CONFIG):
    """numpy reference: pose_fields on the people, and a loop for the loss mask."""
    size, stride = config.map_size, config.stride
    class_ids, is_crowd, keypoints = example["class_ids"], example["is_crowd"], example["keypoints"]
    people = keypoints[(class_ids == config.person_class_id) & ~is_crowd]
    heatmaps = pose_fields.render_heatmaps(people, size, stride, config.sigma_px)
    pafs = pose_fields.render_pafs(people, size, stride, config.limb_width_px, config.limbs)
    mask = np.ones((size, size, 1), np.float32)
    xs, ys = pose_fields.cell_centres(size, stride)
    for box, class_id, crowd, points in zip(example["boxes_xyxy"], class_ids, is_crowd, keypoints):
        unlabelled_person = class_id == config.person_class_id and not (points[:, 2] > 0).any()
        if class_id != PAD and (crowd or unlabelled_person):
            x0, y0, x1, y1 = box
            mask[(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)] = 0.0
    return heatmaps, pafs, mask


def _targets(example, config=CONFIG):
    out = make_pose_target_fn(config)({k: tf.constant(v) for k, v in example.items()})
    return out[HEATMAPS].numpy(), out[PAFS].numpy(), out[POSE_MASK].numpy()


def _assert_matches_reference(heatmaps, pafs, mask, example, config=CONFIG):
    ref_heatmaps, ref_pafs, ref_mask = reference_targets(example, config)
    np.testing.assert_allclose(heatmaps, ref_heatmaps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(pafs, ref_pafs, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(mask, ref_mask)


@pytest.mark.parametrize("seed", range(6))
def test_matches_numpy_reference(seed):
    config = CONFIG if seed % 2 else OTHER_CONFIG
    example = _random_example(np.random.default_rng(seed), num_rows=12, person_class=config.person_class_id)
    heatmaps, pafs, mask = _targets(example, config)
    size = config.map_size
    assert heatmaps.shape == (size, size, NUM_HEATMAP_CHANNELS) and heatmaps.dtype == np.float32
    assert pafs.shape == (size, size, 2 * len(config.limbs)) and pafs.dtype == np.float32
    assert mask.shape == (size, size, MASK_CHANNELS) and mask.dtype == np.float32
    assert heatmaps[..., :NUM_KEYPOINTS].max() > 0.5 and np.abs(pafs).max() > 0.5 and mask.min() == 0.0
    _assert_matches_reference(heatmaps, pafs, mask, example, config)


def test_golden_shoulders():
    """One person with only the shoulders, 32 px input at stride 8 (cell centres 4, 12, 20, 28)."""
    keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
    keypoints[0, 5], keypoints[0, 6] = (4, 12, 2), (20, 12, 1)  # left -> right shoulder, 16 px
    example = {"image": np.zeros((32, 32, 3), np.float32), "boxes_xyxy": np.array([[0, 0, 24, 24]], np.float32),
               "class_ids": np.array([PERSON], np.int32), "keypoints": keypoints}  # no is_crowd: none
    heatmaps, pafs, mask = _targets(example, PoseTargetConfig(input_size=32))
    assert heatmaps[1, 0, 5] == 1.0 and heatmaps[1, 2, 6] == 1.0 and heatmaps[1, 0, NUM_KEYPOINTS] == 0.0
    np.testing.assert_allclose(heatmaps[1, 1, 5:7], np.exp(-64 / 72), rtol=1e-6)  # 8 px from both
    assert not heatmaps[..., [k for k in range(NUM_KEYPOINTS) if k not in (5, 6)]].any()
    expected_x = np.zeros((4, 4), np.float32)
    expected_x[:3, :] = 1.0  # along in [-8, 16 + 8] px (band extended past the joints), across <= 8 px, borders included
    np.testing.assert_array_equal(pafs[..., 0], expected_x)
    assert not pafs[..., 1:].any()  # y of limb 0 and every other limb are 0
    np.testing.assert_array_equal(mask, 1.0)


def test_pose_mask_golden():
    """Crowd (any class) and keypoint-less people are masked; labelled people, others, padding are not."""
    keypoints = np.zeros((6, NUM_KEYPOINTS, 3), np.float32)
    keypoints[2, 0] = (5, 25, 2)
    example = {
        "image": np.zeros((32, 32, 3), np.float32),
        "boxes_xyxy": np.array([[0, 0, 12, 12],  # crowd, class 2: centres 4 and 12 on both axes
                                [19, 20, 30, 31],  # person without keypoints: cells 2..3 x 2..3
                                [0, 20, 10, 30],  # person with a keypoint: not masked
                                [20, 0, 32, 10],  # non-person without keypoints: not masked
                                [0, 0, 32, 32],  # padding flagged crowd: never counts
                                [0, 0, 0, 0]], np.float32),  # padding
        "class_ids": np.array([OTHER, PERSON, PERSON, OTHER, PAD, PAD], np.int32),
        "is_crowd": np.array([True, False, False, False, True, False]),
        "keypoints": keypoints,
    }
    _, _, mask = _targets(example, PoseTargetConfig(input_size=32))
    expected = np.ones((4, 4), np.float32)
    expected[:2, :2] = 0.0
    expected[2:, 2:] = 0.0
    np.testing.assert_array_equal(mask[..., 0], expected)


@pytest.mark.parametrize("num_rows", [0, 3])
def test_no_people(num_rows):
    example = {"image": np.zeros((SIZE, SIZE, 3), np.float32), "boxes_xyxy": np.zeros((num_rows, 4), np.float32),
               "class_ids": np.full(num_rows, PAD, np.int32), "is_crowd": np.zeros(num_rows, bool),
               "keypoints": np.ones((num_rows, NUM_KEYPOINTS, 3), np.float32)}
    heatmaps, pafs, mask = _targets(example)
    assert not heatmaps[..., :NUM_KEYPOINTS].any() and (heatmaps[..., NUM_KEYPOINTS] == 1.0).all()
    assert not pafs.any() and (mask == 1.0).all()


def _mirrored_limbs(limbs):
    """For each limb l, ``(l', sign)`` such that the flipped PAF of l' is ``sign * (-x, y)`` of l's."""
    mapping = []
    for a, b in limbs:
        mirrored = (FLIP_PERMUTATION[a], FLIP_PERMUTATION[b])
        if mirrored in limbs:
            mapping.append((limbs.index(mirrored), 1.0))
        else:
            mapping.append((limbs.index(mirrored[::-1]), -1.0))  # stored reversed, e.g. (5, 6)
    return mapping


def flip_targets(heatmaps, pafs, mask, limbs=PAF_LIMBS):
    """What the targets of a horizontally flipped input must be (cell j <-> F - 1 - j)."""
    heatmaps, pafs, mask = heatmaps[:, ::-1], pafs[:, ::-1], mask[:, ::-1]
    flipped_heatmaps = heatmaps[..., list(FLIP_PERMUTATION) + [NUM_KEYPOINTS]]
    flipped_pafs = np.zeros_like(pafs)
    for l, (target, sign) in enumerate(_mirrored_limbs(limbs)):
        flipped_pafs[..., 2 * target] = -sign * pafs[..., 2 * l]
        flipped_pafs[..., 2 * target + 1] = sign * pafs[..., 2 * l + 1]
    return flipped_heatmaps, flipped_pafs, mask


def test_mirrored_limbs_of_paf_limbs():
    mapping = _mirrored_limbs(PAF_LIMBS)
    assert sorted(target for target, _ in mapping) == list(range(len(PAF_LIMBS)))  # a permutation
    assert mapping[0] == (0, -1.0)  # shoulders (5, 6) -> (6, 5): itself, reversed
    assert mapping[PAF_LIMBS.index((5, 0))] == (PAF_LIMBS.index((6, 0)), 1.0)


@pytest.mark.parametrize("seed", range(3))
def test_flip_consistency(seed):
    example = _random_example(np.random.default_rng(50 + seed), num_rows=12)
    flipped = dict(example)
    flipped["keypoints"] = flip_keypoints(tf.constant(example["keypoints"]), SIZE).numpy()
    flipped["boxes_xyxy"] = flip_boxes_xyxy(tf.constant(example["boxes_xyxy"]), SIZE).numpy()
    for actual, expected in zip(_targets(flipped), flip_targets(*_targets(example))):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_parity_through_tf_data_and_fit_packing():
    examples = [_random_example(np.random.default_rng(20 + s), num_rows=8) for s in range(3)]
    stacked = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    dataset = (tf.data.Dataset.from_tensor_slices(stacked).map(make_pose_target_fn(CONFIG))
               .batch(3).map(pose_fit_targets))
    image, y = next(iter(dataset))
    size = CONFIG.map_size
    assert image.shape == (3, SIZE, SIZE, 3)
    assert set(y) == {HEATMAPS, PAFS}
    assert y[HEATMAPS].shape == (3, size, size, NUM_HEATMAP_CHANNELS + MASK_CHANNELS)
    assert y[PAFS].shape == (3, size, size, 2 * len(PAF_LIMBS) + MASK_CHANNELS)
    for i, example in enumerate(examples):
        heatmaps, pafs = y[HEATMAPS][i].numpy(), y[PAFS][i].numpy()
        np.testing.assert_array_equal(heatmaps[..., -1:], pafs[..., -1:])  # the same mask, last in both
        _assert_matches_reference(heatmaps[..., :-1], pafs[..., :-1], heatmaps[..., -1:], example)


def _pipeline_examples(dataset, training, augment=None, size=SIZE):
    config = PipelineConfig(input_size=size, batch_size=len(dataset), max_instances=8, augment=augment,
                            deterministic=True)
    target_fn = make_pose_target_fn(PoseTargetConfig(input_size=size))
    batch = next(iter(make_dataset(dataset, config, training, target_fn=target_fn)))
    examples = [{k: v[i].numpy() for k, v in batch.items()} for i in range(len(dataset))]
    return sorted(examples, key=lambda e: e["image_id"])


def test_make_dataset_targets_match_reference_and_flip(tiny_dataset):
    """Through the real pipeline: parity on every image; training flips give the mirrored targets.

    Every tiny image fills the input width after letterboxing, so a flip mirrors the whole input.
    """
    plain = _pipeline_examples(tiny_dataset, training=False)
    flipped = _pipeline_examples(tiny_dataset, training=True,
                                 augment=AugmentConfig(flip_probability=1.0, crop_probability=0.0))
    for example in plain + flipped:
        _assert_matches_reference(example[HEATMAPS], example[PAFS], example[POSE_MASK], example)
    by_id = {e["image_id"]: e for e in plain}
    assert by_id[1][HEATMAPS][..., :NUM_KEYPOINTS].max() > 0.5 and np.abs(by_id[1][PAFS]).max() > 0.5  # person
    assert by_id[3][POSE_MASK].min() == 0.0  # crowd
    for example in flipped:
        original = by_id[example["image_id"]]
        expected = flip_targets(original[HEATMAPS], original[PAFS], original[POSE_MASK])
        for key, target in zip((HEATMAPS, PAFS, POSE_MASK), expected):
            np.testing.assert_allclose(example[key], target, rtol=0, atol=ATOL)


def test_make_dataset_parity_on_synthetic_people_with_crop_and_flip(synth_data):
    size = 96
    augment = AugmentConfig(crop_probability=1.0, crop_scale_range=(0.6, 0.9))
    examples = _pipeline_examples(load_split(synth_data, "train"), training=True, augment=augment, size=size)
    config = PoseTargetConfig(input_size=size)
    for example in examples:
        _assert_matches_reference(example[HEATMAPS], example[PAFS], example[POSE_MASK], example, config)
    assert sum(np.abs(e[PAFS]).max() > 0.5 for e in examples) >= len(examples) // 2  # people drawn
    assert any(e[POSE_MASK].min() == 0.0 for e in examples)  # crowd regions masked


@pytest.mark.parametrize(
    "kwargs",
    [{"input_size": 60}, {"input_size": 0}, {"input_size": 64, "stride": 0}, {"input_size": 64, "sigma_px": 0.0},
     {"input_size": 64, "limb_width_px": -1.0}, {"input_size": 64, "person_class_id": -1},
     {"input_size": 64, "limbs": ()}, {"input_size": 64, "limbs": ((5, 5),)}, {"input_size": 64, "limbs": ((0, 17),)}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        PoseTargetConfig(**kwargs)


def test_image_size_must_match_config():
    example = _random_example(np.random.default_rng(0))
    with pytest.raises(ValueError, match="input_size"):
        _targets(example, PoseTargetConfig(input_size=2 * SIZE))
