"""Output structures: validation, immutability, selection, COCO export (RLE parity with pycocotools)."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from tfsp.structures import (Attributes, DenseKind, DenseMap, Detections, InstanceMasks, Poses, mask_to_rle,
                             rle_to_mask)


def _detections():
    return Detections(np.array([[0, 0, 10, 20], [5, 5, 8, 9], [1, 2, 3, 4]], np.float32),
                      np.array([0.9, 0.5, 0.25], np.float32), np.array([0, 1, 0], np.int32))


def test_errors_name_class_field_and_shape():
    ok = dict(scores=np.zeros(3, np.float32), class_ids=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"^Detections\.boxes_xyxy must have shape \(N, 4\), got \(3, 5\)$"):
        Detections(boxes_xyxy=np.zeros((3, 5), np.float32), **ok)
    with pytest.raises(ValueError, match=r"Detections\.boxes_xyxy must have dtype float32, got float64"):
        Detections(boxes_xyxy=np.zeros((3, 4)), **ok)
    with pytest.raises(ValueError, match=r"Detections\.boxes_xyxy must be a numpy\.ndarray, got list"):
        Detections(boxes_xyxy=[[0, 0, 1, 1]] * 3, **ok)
    with pytest.raises(ValueError, match=r"Detections fields must share the leading length N"):
        Detections(np.zeros((2, 4), np.float32), **ok)
    with pytest.raises(ValueError, match=r"InstanceMasks\.masks must have dtype bool, got uint8"):
        InstanceMasks(np.zeros((1, 4, 4), np.uint8), np.zeros(1, np.float32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match=r"Poses\.keypoints must have shape \(N, 17, 3\), got \(1, 18, 3\)"):
        Poses(np.zeros((1, 18, 3), np.float32), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"DenseMap\.values must have dtype int32"):
        DenseMap(np.zeros((4, 4), np.uint8), DenseKind.LABELS)
    with pytest.raises(ValueError, match=r"DenseMap\.values must have shape \(H, W, C\), got \(4, 4\)"):
        DenseMap(np.zeros((4, 4), np.float32), DenseKind.PROBABILITIES)
    with pytest.raises(ValueError, match=r"DenseMap\.kind must be a DenseKind"):
        DenseMap(np.zeros((4, 4), np.float32), "depth")


def test_create_coerces_but_never_reshapes_real_data():
    det = Detections.create([[0, 0, 1, 1]], [1], [2])
    assert (det.boxes_xyxy.dtype, det.scores.dtype, det.class_ids.dtype) == (np.float32, np.float32, np.int32)
    assert Detections.create([], [], []).boxes_xyxy.shape == (0, 4)
    with pytest.raises(ValueError, match=r"shape \(N, 4\), got \(2, 6\)"):
        Detections.create(np.zeros((2, 6)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="Attributes.scores"):
        Attributes.create([[0.2, 0.9]], ["red"], 0.5)  # (1, 2) scores for one name: not reshaped to (2, 1)
    masks = InstanceMasks.create(np.array([[[0, 3], [0.5, 0]]]), [0.5], [0])
    np.testing.assert_array_equal(masks.masks[0], [[False, True], [True, False]])


def test_frozen_read_only_and_independent_of_inputs():
    boxes = np.array([[0, 0, 10, 20]], np.float32)
    det = Detections(boxes, np.ones(1, np.float32), np.zeros(1, np.int32))
    boxes[0, 0] = 99  # caller keeps a writeable array; the structure holds its own copy
    assert det.boxes_xyxy[0, 0] == 0 and boxes.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        det.boxes_xyxy[0, 0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.scores = np.zeros(1, np.float32)
    view = det[0:1]
    assert not view.boxes_xyxy.flags.writeable and np.shares_memory(view.boxes_xyxy, det.boxes_xyxy)
    readonly_view = np.zeros((2, 4), np.float32)[:1]
    readonly_view.setflags(write=False)  # read-only view of a writeable array: still copied
    other = Detections(readonly_view, np.ones(1, np.float32), np.zeros(1, np.int32))
    assert not np.shares_memory(other.boxes_xyxy, readonly_view)


def test_selection_keeps_type_and_leading_axis():
    det = _detections()
    assert len(det) == 3
    np.testing.assert_array_equal(det[np.array([True, False, True])].scores, np.float32([0.9, 0.25]))
    np.testing.assert_array_equal(det[np.array([2, 0])].class_ids, [0, 0])
    np.testing.assert_array_equal(det[1:].boxes_xyxy, [[5, 5, 8, 9], [1, 2, 3, 4]])
    single = det[1]
    assert isinstance(single, Detections) and single.boxes_xyxy.shape == (1, 4) and single.scores[0] == 0.5
    assert len(det[det.scores > 1]) == 0
    with pytest.raises(IndexError):
        det[np.array([True, False])]
    attrs = Attributes.create([[0.1, 0.9], [0.6, 0.2]], ["red", "big"], [0.5, 0.5])[np.array([1])]
    assert attrs.names == ("red", "big") and attrs.present.tolist() == [[True, False]]
    poses = Poses.create(np.ones((2, 17, 3)), [0.3, 0.7])[np.array([False, True])]
    assert poses.keypoints.shape == (1, 17, 3) and poses.scores.tolist() == [pytest.approx(0.7)]


def test_empty_constructors():
    assert len(Detections.empty()) == 0 and Detections.empty().to_coco(1, [1]) == []
    assert InstanceMasks.empty(6, 8).masks.shape == (0, 6, 8)
    assert Poses.empty().keypoints.shape == (0, 17, 3) and Poses.empty().to_coco(1) == []
    empty_attrs = Attributes.empty(["a", "b"], 0.5)
    assert empty_attrs.scores.shape == (0, 2) and empty_attrs.present.shape == (0, 2)


def test_detections_to_coco_golden():
    results = _detections().to_coco(image_id=7, category_ids=[3, 5])
    assert results[1] == {"image_id": 7, "category_id": 5, "bbox": [5.0, 5.0, 3.0, 4.0], "score": 0.5}
    assert results[0]["bbox"] == [0.0, 0.0, 10.0, 20.0] and results[2]["category_id"] == 3
    assert json.loads(json.dumps(results)) == results
    with pytest.raises(ValueError, match=r"class_ids must lie in \[0, 1\)"):
        _detections().to_coco(7, [3])


def test_rle_golden_by_hand():
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)  # column-major: 0 1 0 | 1 1 0
    assert mask_to_rle(mask) == {"size": [3, 2], "counts": [1, 1, 1, 2, 1]}
    assert mask_to_rle(~mask)["counts"] == [0, 1, 1, 1, 2, 1]  # starts with a run of zero zeros
    assert mask_to_rle(np.zeros((2, 2), bool))["counts"] == [4]


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_rle_matches_pycocotools(mask):
    rle = mask_to_rle(mask)
    ours = mask_utils.frPyObjects(rle, *rle["size"])
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"]
    np.testing.assert_array_equal(mask_utils.decode(ours).astype(bool), mask)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_instance_masks_to_coco():
    masks = np.zeros((2, 4, 5), bool)
    masks[0, 1:3, 2:4] = True
    masks[1, 0, 0] = True
    results = InstanceMasks(masks, np.array([0.8, 0.4], np.float32), np.array([1, 0], np.int32)).to_coco(3, [1, 2])
    assert [r["category_id"] for r in results] == [2, 1] and "bbox" not in results[0]
    assert results[0]["segmentation"] == {"size": [4, 5], "counts": [9, 2, 2, 2, 5]}
    assert json.loads(json.dumps(results)) == results
    np.testing.assert_array_equal(rle_to_mask(results[1]["segmentation"]), masks[1])


def test_poses_to_coco_visibility_from_score():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 0] = np.arange(17) + 0.5
    kps[0, :, 1] = 2 * np.arange(17)
    kps[0, :, 2] = np.where(np.arange(17) % 3 == 0, 0.0, 0.7)
    (result,) = Poses(kps, np.array([0.6], np.float32)).to_coco(image_id=4)
    assert result["category_id"] == 1 and result["score"] == pytest.approx(0.6) and len(result["keypoints"]) == 51
    assert result["keypoints"][:6] == [0.5, 0.0, 0, 1.5, 2.0, 2]
    assert result["keypoints"][2::3] == [0 if k % 3 == 0 else 2 for k in range(17)]
    assert Poses(kps, np.array([0.6], np.float32)).to_coco(4, category_id=9)[0]["category_id"] == 9


def test_dense_map_kinds():
    probs = np.zeros((2, 3, 4), np.float32)
    probs[..., 2] = 1
    probs[0, 0] = [0, 0.9, 0.1, 0]
    labels = DenseMap(probs, DenseKind.PROBABILITIES).to_labels()
    assert labels.kind is DenseKind.LABELS and labels.values.dtype == np.int32
    np.testing.assert_array_equal(labels.values, [[1, 2, 2], [2, 2, 2]])
    depth = DenseMap.create(np.full((2, 3), 1.5), DenseKind.DEPTH)
    assert depth.values.dtype == np.float32 and not depth.values.flags.writeable
    with pytest.raises(ValueError, match="DEPTH"):
        depth.to_labels()


def test_attributes():
    attrs = Attributes.create([[0.5, 0.49, 1.0]], ("red", "filled", "large"), [0.5, 0.5, 0.9])
    assert attrs.present.tolist() == [[True, False, True]]  # >= threshold counts as present
    assert attrs.present_names(0) == ("red", "large") and len(attrs) == 1
    with pytest.raises(ValueError, match=r"scores must lie in \[0, 1\]"):
        Attributes.create([[1.5]], ["a"], 0.5)
    with pytest.raises(ValueError, match="names must be a tuple of str"):
        Attributes(np.zeros((1, 1), np.float32), ["a"], np.zeros(1, np.float32))
