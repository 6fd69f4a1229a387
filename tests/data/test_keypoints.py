"""COCO keypoint constants: names, skeleton, flip permutation and OKS sigmas."""

import numpy as np
from pycocotools.cocoeval import Params

from tfsp.data.keypoints import (COCO_SIGMAS, FLIP_PERMUTATION, KEYPOINT_NAMES, NUM_KEYPOINTS, NUM_TREE_LIMBS,
                                 PAF_LIMBS, SKELETON, skeleton_one_based)

# The "skeleton" field of COCO 2017 person_keypoints_*.json, copied verbatim (1-based).
COCO_JSON_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                      [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]


def test_names_are_the_17_coco_keypoints_in_order():
    assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS == 17
    assert len(set(KEYPOINT_NAMES)) == 17
    assert KEYPOINT_NAMES[:3] == ("nose", "left_eye", "right_eye")
    assert KEYPOINT_NAMES[5:7] == ("left_shoulder", "right_shoulder")
    assert KEYPOINT_NAMES[-2:] == ("left_ankle", "right_ankle")


def test_flip_permutation_is_an_involution_swapping_left_and_right():
    perm = np.array(FLIP_PERMUTATION)
    assert sorted(FLIP_PERMUTATION) == list(range(17))
    np.testing.assert_array_equal(perm[perm], np.arange(17))
    for k, name in enumerate(KEYPOINT_NAMES):
        flipped = KEYPOINT_NAMES[FLIP_PERMUTATION[k]]
        if name.startswith("left_"):
            assert flipped == "right_" + name[len("left_"):]
        elif name.startswith("right_"):
            assert flipped == "left_" + name[len("right_"):]
        else:
            assert flipped == name == "nose"


def test_skeleton_is_cocos_skeleton_with_valid_indices():
    assert skeleton_one_based() == COCO_JSON_SKELETON
    edges = np.array(SKELETON)
    assert edges.shape == (19, 2)
    assert edges.min() >= 0 and edges.max() < NUM_KEYPOINTS
    assert all(a != b for a, b in SKELETON)
    assert len({frozenset(edge) for edge in SKELETON}) == len(SKELETON)
    assert set(edges.ravel()) == set(range(NUM_KEYPOINTS))  # every keypoint is connected


def test_skeleton_is_closed_under_flip():
    flipped = {frozenset((FLIP_PERMUTATION[a], FLIP_PERMUTATION[b])) for a, b in SKELETON}
    assert flipped == {frozenset(edge) for edge in SKELETON}


def test_sigmas_match_pycocotools_cocoeval():
    assert COCO_SIGMAS.shape == (17,) and COCO_SIGMAS.dtype == np.float64
    np.testing.assert_array_equal(COCO_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)
    np.testing.assert_array_equal(COCO_SIGMAS[list(FLIP_PERMUTATION)], COCO_SIGMAS)
    assert not COCO_SIGMAS.flags.writeable


def test_paf_tree_limbs_span_all_keypoints_grown_from_the_shoulders():
    reached = {PAF_LIMBS[0][0]}
    for a, b in PAF_LIMBS[:NUM_TREE_LIMBS]:
        assert a in reached and b not in reached  # each tree limb adds exactly one new keypoint
        reached.add(b)
    assert reached == set(range(NUM_KEYPOINTS))
    assert len({frozenset(limb) for limb in PAF_LIMBS}) == len(PAF_LIMBS)


def test_paf_limbs_are_closed_under_flip():
    flipped = {frozenset((FLIP_PERMUTATION[a], FLIP_PERMUTATION[b])) for a, b in PAF_LIMBS}
    assert flipped == {frozenset(limb) for limb in PAF_LIMBS}
