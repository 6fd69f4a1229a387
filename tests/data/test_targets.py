"""Tests for tfsp.data.targets (SSD matching), against a numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data import targets
from tfsp.postprocess.anchors import SsdAnchorConfig, generate_ssd_anchors
from tfsp.postprocess.boxes import cxcywh_to_xyxy, decode_cxcywh, encode_cxcywh, iou_xyxy

SIZE = 64
ANCHORS = generate_ssd_anchors(
    SsdAnchorConfig(
        image_size=SIZE,
        feature_map_sizes=(8, 4, 2, 1),
        min_scale=0.1,
        max_scale=0.9,
        aspect_ratios=((2.0,), (2.0, 3.0), (2.0,), (2.0,)),
    )
)
THRESHOLD = 0.5


def reference_targets(anchors, boxes_px, class_ids, is_crowd, height, width):
    """Straightforward numpy version of the matching documented in tfsp.data.targets."""
    scale = np.array([width, height, width, height], np.float32)
    gt = boxes_px.astype(np.float32) / scale
    valid = class_ids >= 0
    iou = iou_xyxy(cxcywh_to_xyxy(anchors), gt) if len(gt) else np.zeros((len(anchors), 0))
    iou[:, ~valid] = -1.0
    classes = np.zeros(len(anchors), np.int32)
    matched = np.full(len(anchors), -1)
    for a in range(len(anchors)):
        if len(gt) and iou[a].max() >= THRESHOLD:
            j = int(np.argmax(iou[a]))
            classes[a] = -1 if is_crowd[j] else class_ids[j] + 1
            matched[a] = j
    remaining = np.where((valid & ~is_crowd)[None, :], iou, -1.0)
    while remaining.size and remaining.max() > 0:  # greedy bipartite matching
        a, j = np.unravel_index(np.argmax(remaining), remaining.shape)
        classes[a], matched[a] = class_ids[j] + 1, j
        remaining[a, :], remaining[:, j] = -1.0, -1.0
    boxes = np.zeros((len(anchors), 4), np.float32)
    positive = classes > 0
    boxes[positive] = encode_cxcywh(gt[matched[positive]], anchors[positive])
    return boxes, classes


def _random_example(rng, height=SIZE, width=SIZE, num_boxes=6, num_padded=2):
    centre = rng.uniform(0, 1, (num_boxes, 2)) * [width, height]
    half = rng.uniform(2, 20, (num_boxes, 2))
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    class_ids = rng.integers(0, 3, num_boxes).astype(np.int32)
    class_ids[num_boxes - num_padded :] = -1
    boxes[num_boxes - num_padded :] = 0.0
    is_crowd = rng.uniform(size=num_boxes) < 0.2
    return {
        "image": np.zeros((height, width, 3), np.float32),
        "boxes_xyxy": boxes,
        "class_ids": class_ids,
        "is_crowd": is_crowd,
    }


def _run(example, anchors=ANCHORS):
    out = targets.make_ssd_target_fn(anchors)({k: tf.constant(v) for k, v in example.items()})
    return out["box_targets"].numpy(), out["class_targets"].numpy()


@pytest.mark.parametrize("seed", range(8))
def test_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    height, width = (SIZE, SIZE) if seed % 2 else (48, 80)
    example = _random_example(rng, height, width, num_boxes=8)
    boxes, classes = _run(example)
    ref_boxes, ref_classes = reference_targets(
        ANCHORS, example["boxes_xyxy"], example["class_ids"], example["is_crowd"], height, width
    )
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-6, atol=1e-6)
    assert classes.dtype == np.int32 and boxes.dtype == np.float32


def test_golden_small_case():
    # Four quadrant anchors of a 100 px image.
    anchors = np.array(
        [[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5],
         [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]],
        np.float32,
    )
    example = {
        "image": np.zeros((100, 100, 3), np.float32),
        "boxes_xyxy": np.array(
            [[0, 0, 50, 40], [50, 50, 80, 80], [50, 0, 100, 50], [0, 50, 50, 100]], np.float32
        ),
        "class_ids": np.array([2, 0, 1, -1], np.int32),  # last row is padding
        "is_crowd": np.array([False, False, True, False]),
    }
    boxes, classes = _run(example, anchors)
    # a0: IoU 0.8 -> class 2 + 1; a1: IoU 1 with the crowd box -> ignored;
    # a2: only overlaps padding -> background; a3: IoU 0.36 but forced by box 1 -> class 0 + 1.
    np.testing.assert_array_equal(classes, [3, -1, 0, 1])
    expected = np.array(
        [
            [0.0, -1.0, 0.0, np.log(0.8) / 0.2],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [-2.0, -2.0, np.log(0.6) / 0.2, np.log(0.6) / 0.2],
        ],
        np.float32,
    )
    np.testing.assert_allclose(boxes, expected, atol=1e-5)


def test_competing_boxes_each_get_an_anchor():
    """Two boxes whose best anchor is the same both end up with a positive anchor."""
    anchors = np.array([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.8, 0.8]], np.float32)
    example = {
        "image": np.zeros((10, 10, 3), np.float32),
        "boxes_xyxy": np.array([[2.5, 2.5, 7.5, 7.5], [3, 3, 7, 7]], np.float32),
        "class_ids": np.array([0, 1], np.int32),
    }
    _, classes = _run(example, anchors)
    np.testing.assert_array_equal(classes, [1, 2])


@pytest.mark.parametrize("seed", range(4))
def test_positive_anchors_decode_to_their_boxes_and_every_box_is_matched(seed):
    example = _random_example(np.random.default_rng(100 + seed), num_boxes=10, num_padded=3)
    example["is_crowd"][:] = False
    boxes, classes = _run(example)
    positive = classes > 0
    decoded = decode_cxcywh(boxes[positive], ANCHORS[positive]) * SIZE
    gt = example["boxes_xyxy"][example["class_ids"] >= 0]
    distance = np.abs(decoded[:, None, :] - gt[None, :, :]).max(axis=2)  # (P, G), pixels
    assert np.all(distance.min(axis=1) < 1e-4 * SIZE)  # each positive decodes to a GT box
    matched = distance < 1e-4 * SIZE
    assert np.all(matched.any(axis=0))  # every GT box has a positive anchor


def test_empty_image_is_all_background():
    example = {
        "image": np.zeros((SIZE, SIZE, 3), np.float32),
        "boxes_xyxy": np.zeros((3, 4), np.float32),
        "class_ids": np.full(3, -1, np.int32),
    }
    boxes, classes = _run(example)
    assert not classes.any() and not boxes.any()
    example["boxes_xyxy"] = np.zeros((0, 4), np.float32)
    example["class_ids"] = np.zeros(0, np.int32)
    boxes, classes = _run(example)
    assert classes.shape == (len(ANCHORS),) and not classes.any() and not boxes.any()


def test_works_in_tf_data_and_fit_targets():
    examples = [_random_example(np.random.default_rng(s)) for s in range(2)]
    stacked = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    dataset = (
        tf.data.Dataset.from_tensor_slices(stacked)
        .map(targets.make_ssd_target_fn(ANCHORS))
        .batch(2)
        .map(targets.ssd_fit_targets)
    )
    image, y = next(iter(dataset))
    assert image.shape == (2, SIZE, SIZE, 3)
    assert y["box_deltas"].shape == (2, len(ANCHORS), 5)
    assert y["class_logits"].shape == (2, len(ANCHORS)) and y["class_logits"].dtype == tf.int32
    for i, example in enumerate(examples):
        ref_boxes, ref_classes = reference_targets(
            ANCHORS, example["boxes_xyxy"], example["class_ids"], example["is_crowd"], SIZE, SIZE
        )
        np.testing.assert_array_equal(y["class_logits"][i].numpy(), ref_classes)
        box_deltas = y["box_deltas"][i].numpy()
        np.testing.assert_allclose(box_deltas[:, :4], ref_boxes, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(box_deltas[:, 4], (ref_classes > 0).astype(np.float32))


def _greedy_reference(iou):
    """The greedy over the full matrix: highest remaining IoU > 0 first, ties to the lowest flat index."""
    remaining = iou.copy()
    forced = np.full(iou.shape[0], -1)
    while remaining.size and remaining.max() > 0:
        a, j = np.unravel_index(np.argmax(remaining), remaining.shape)  # argmax: first flat maximum
        forced[a] = j
        remaining[a, :], remaining[:, j] = -1.0, -1.0
    return forced


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [(40, 7), (5, 9), (3, 3), (60, 1)])
def test_bipartite_match_equals_full_greedy_with_ties_and_crowding(seed, shape):
    rng = np.random.default_rng(seed)
    # Few distinct values (many ties), zeros and -1 (unmatchable boxes); boxes compete for anchors.
    iou = rng.choice(np.array([-1.0, 0.0, 0.25, 0.5, 0.75], np.float32), size=shape, p=[0.1, 0.3, 0.2, 0.2, 0.2])
    iou[:, rng.uniform(size=shape[1]) < 0.15] = -1.0
    forced = targets._bipartite_match(tf.constant(iou)).numpy()
    np.testing.assert_array_equal(forced, _greedy_reference(iou))
