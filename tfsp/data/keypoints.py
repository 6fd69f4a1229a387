"""The 17 COCO person keypoints: names, skeleton, horizontal-flip permutation, OKS sigmas.

Device-safe: numpy only. Keypoint arrays elsewhere in tfsp are ``(N, 17, 3)`` float32
``[x, y, v]`` in this order, with ``x, y`` continuous pixel coordinates (pixel centres at
+0.5) and ``v`` the COCO visibility flag (0 unlabelled/outside, 1 occluded, 2 visible).
"""

import numpy as np

NUM_KEYPOINTS = 17

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# COCO's person skeleton as 0-based index pairs into KEYPOINT_NAMES, in the order of the
# COCO annotation files (which store the same pairs 1-based: see skeleton_one_based()).
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),  # left_ankle - left_knee
    (13, 11),  # left_knee - left_hip
    (16, 14),  # right_ankle - right_knee
    (14, 12),  # right_knee - right_hip
    (11, 12),  # left_hip - right_hip
    (5, 11),  # left_shoulder - left_hip
    (6, 12),  # right_shoulder - right_hip
    (5, 6),  # left_shoulder - right_shoulder
    (5, 7),  # left_shoulder - left_elbow
    (6, 8),  # right_shoulder - right_elbow
    (7, 9),  # left_elbow - left_wrist
    (8, 10),  # right_elbow - right_wrist
    (1, 2),  # left_eye - right_eye
    (0, 1),  # nose - left_eye
    (0, 2),  # nose - right_eye
    (1, 3),  # left_eye - left_ear
    (2, 4),  # right_eye - right_ear
    (3, 5),  # left_ear - left_shoulder
    (4, 6),  # right_ear - right_shoulder
)

# Limbs of the Part Affinity Field graph (OpenPose), 0-based (a, b) pairs; the PAF of limb l points
# from keypoint a to keypoint b and occupies PAF channels (2l, 2l + 1) = (x, y). The first
# NUM_TREE_LIMBS form a spanning tree of all 17 keypoints grown from the shoulders (torso, arms,
# legs, head), in the order a greedy parser assembles people; the last two are redundant
# connections (hip-hip, right shoulder-nose) that rejoin a person when a tree joint is missing.
PAF_LIMBS: tuple[tuple[int, int], ...] = (
    (5, 6),  # left_shoulder - right_shoulder
    (5, 7),  # left_shoulder - left_elbow
    (7, 9),  # left_elbow - left_wrist
    (6, 8),  # right_shoulder - right_elbow
    (8, 10),  # right_elbow - right_wrist
    (5, 11),  # left_shoulder - left_hip
    (11, 13),  # left_hip - left_knee
    (13, 15),  # left_knee - left_ankle
    (6, 12),  # right_shoulder - right_hip
    (12, 14),  # right_hip - right_knee
    (14, 16),  # right_knee - right_ankle
    (5, 0),  # left_shoulder - nose
    (0, 1),  # nose - left_eye
    (0, 2),  # nose - right_eye
    (1, 3),  # left_eye - left_ear
    (2, 4),  # right_eye - right_ear
    (11, 12),  # left_hip - right_hip (redundant)
    (6, 0),  # right_shoulder - nose (redundant)
)
NUM_PAF_LIMBS = len(PAF_LIMBS)
NUM_TREE_LIMBS = NUM_KEYPOINTS - 1

# FLIP_PERMUTATION[k] is the keypoint that keypoint k becomes after a horizontal flip:
# flipped[..., k, :] = original[..., FLIP_PERMUTATION[k], :] (with x -> W - x).
FLIP_PERMUTATION: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Per-keypoint OKS sigmas, exactly the values pycocotools' COCOeval uses (kpt_oks_sigmas).
COCO_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
        dtype=np.float64,
    )
    / 10.0
)
COCO_SIGMAS.flags.writeable = False


def skeleton_one_based() -> list[list[int]]:
    """The skeleton as written in a COCO category's ``"skeleton"`` field.

    Returns:
        List of ``[a, b]`` 1-based keypoint indices, same order as :data:`SKELETON`.
    """
    return [[a + 1, b + 1] for a, b in SKELETON]
