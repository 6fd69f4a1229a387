"""Articulated stick-figure people with anatomically placed COCO keypoints (numpy + OpenCV).

The body is built in a body frame around the hip centre: ``up`` is the torso direction and
``side`` points to the image right when the person faces the camera (so the person's left
side is on the image right, as in a photo). Limbs hang from the shoulders and hips at random
angles measured from "down" towards an outward direction. Proportions are fractions of the
person's height. All coordinates are continuous pixels (pixel centres at +0.5).
"""

import cv2
import numpy as np

from tfsp.data.keypoints import KEYPOINT_NAMES

CV_SHIFT = 4  # OpenCV sub-pixel bits used for every drawing call
KEYPOINT_DECIMALS = 2  # keypoints are rounded before drawing so JSON holds the exact values

HEIGHT_RANGE = (0.25, 0.8)  # person height, fraction of the image size
TILT_STD = 0.15  # radians; whole-body tilt for most people
LARGE_TILT_PROBABILITY = 0.1  # some people lean or lie at any angle in [-pi/2, pi/2]
SIDEWAYS_PROBABILITY = 0.3

TORSO = 0.30  # hip centre -> neck
NECK = 0.10  # neck -> head centre
HEAD_RADIUS = 0.075
SHOULDER_HALF_WIDTH = 0.11
HIP_HALF_WIDTH = 0.07
SIDEWAYS_WIDTH = 0.2  # shoulder/hip width factor when seen from the side
UPPER_ARM, FOREARM = 0.16, 0.14
THIGH, SHIN = 0.23, 0.22
LIMB_THICKNESS = 0.05  # fraction of the height
MIN_LIMB_PX = 2

# Limb angles (radians), measured from "down" towards the outward direction.
ARM_ANGLE_RANGE = (-0.4, 2.8)
ELBOW_BEND_RANGE = (-0.3, 2.2)
LEG_ANGLE_RANGE = (-0.3, 0.6)
KNEE_BEND_RANGE = (-0.4, 0.4)
SIDE_LEG_ANGLE_RANGE = (-0.6, 1.2)  # sideways: legs swing forward / back
SIDE_KNEE_BEND_RANGE = (0.0, 1.8)  # sideways: knees bend backwards

# Face keypoints in head radii, as (along side, along up) offsets for a frontal person.
FRONT_FACE = {"nose": (0.0, -0.15), "left_eye": (0.35, 0.2), "right_eye": (-0.35, 0.2),
              "left_ear": (0.85, 0.0), "right_ear": (-0.85, 0.0)}
# Sideways, looking towards +side: (near/far are the sides towards/away from the viewer).
SIDE_FACE = {"nose": (0.8, -0.1), "near_eye": (0.5, 0.2), "far_eye": (0.3, 0.25),
             "near_ear": (-0.1, 0.0), "far_ear": (-0.25, 0.05)}

LIMBS = (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
         ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
         ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
         ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
         ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))
TORSO_QUAD = ("left_shoulder", "right_shoulder", "right_hip", "left_hip")
TORSO_EDGES = (("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))
_INDEX = {name: k for k, name in enumerate(KEYPOINT_NAMES)}

# Pixel codes of ``draw_person``'s detail map.
DETAIL_BODY = 0
DETAIL_FAR_LIMB = 1  # a sideways person's far arm and leg, behind the body
DETAIL_FACE_MARK = 2  # nose and eyes
FACE_MARKS = ("nose", "left_eye", "right_eye")
FACE_MARK_RADIUS = 0.15  # head radii (at least one pixel)


def to_cv_points(points_xy: np.ndarray) -> np.ndarray:
    """Continuous (..., 2) pixel points -> int32 OpenCV points for drawing with ``shift=CV_SHIFT``."""
    return np.round((np.asarray(points_xy) - 0.5) * (1 << CV_SHIFT)).astype(np.int32)


def _direction(down: np.ndarray, outward: np.ndarray, angle: float) -> np.ndarray:
    """Unit vector rotated ``angle`` radians from ``down`` towards ``outward``."""
    return np.cos(angle) * down + np.sin(angle) * outward


def body_keypoints(rng: np.random.Generator, height: float) -> np.ndarray:
    """Sample a pose and return its 17 keypoints relative to the hip centre.

    Args:
        rng: random generator.
        height: person height in pixels.

    Returns:
        (18, 2) float64 offsets in pixels, image axes (x right, y down): the 17 keypoints in COCO
        order, then the head centre.
    """
    return body_pose(rng, height)[0]


def body_pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, str | None]:
    """Sample a pose: its 17 keypoints and head centre relative to the hip centre, and its far side.

    Args:
        rng: random generator.
        height: person height in pixels.

    Returns:
        ``(points, far_side)``: points (18, 2) float64 offsets in pixels, image axes, the 17
        keypoints in COCO order then the head centre; far_side ``"left"`` or ``"right"`` for a
        sideways person (the side turned away from the viewer), None for a frontal one.
    """
    tilt = rng.uniform(-np.pi / 2, np.pi / 2) if rng.random() < LARGE_TILT_PROBABILITY else rng.normal(0.0, TILT_STD)
    up = np.array([np.sin(tilt), -np.cos(tilt)])
    side = np.array([np.cos(tilt), np.sin(tilt)])
    sideways = bool(rng.random() < SIDEWAYS_PROBABILITY)
    facing = float(rng.choice([-1.0, 1.0]))  # sideways: looking towards facing * side
    width = SIDEWAYS_WIDTH if sideways else 1.0
    # Facing +side, the person's right side is towards the viewer; facing -side, the left.
    left_sign = -facing if sideways else 1.0
    pts: dict[str, np.ndarray] = {}
    neck = up * TORSO * height
    head = neck + up * NECK * height
    radius = HEAD_RADIUS * height
    for part, center, half in (("shoulder", neck, SHOULDER_HALF_WIDTH), ("hip", np.zeros(2), HIP_HALF_WIDTH)):
        pts[f"left_{part}"] = center + left_sign * side * half * width * height
        pts[f"right_{part}"] = center - left_sign * side * half * width * height
    for prefix, sign in (("left", left_sign), ("right", -left_sign)):
        outward = side * (facing if sideways else sign)
        arm, elbow_bend = rng.uniform(*ARM_ANGLE_RANGE), rng.uniform(*ELBOW_BEND_RANGE)
        elbow = pts[f"{prefix}_shoulder"] + _direction(-up, outward, arm) * UPPER_ARM * height
        pts[f"{prefix}_elbow"] = elbow
        pts[f"{prefix}_wrist"] = elbow + _direction(-up, outward, arm + elbow_bend) * FOREARM * height
        if sideways:
            leg, knee_bend = rng.uniform(*SIDE_LEG_ANGLE_RANGE), -rng.uniform(*SIDE_KNEE_BEND_RANGE)
        else:
            leg, knee_bend = rng.uniform(*LEG_ANGLE_RANGE), rng.uniform(*KNEE_BEND_RANGE)
        knee = pts[f"{prefix}_hip"] + _direction(-up, outward, leg) * THIGH * height
        pts[f"{prefix}_knee"] = knee
        pts[f"{prefix}_ankle"] = knee + _direction(-up, outward, leg + knee_bend) * SHIN * height
    if sideways:
        near, far = ("right", "left") if facing > 0 else ("left", "right")
        face = {"nose": SIDE_FACE["nose"], f"{near}_eye": SIDE_FACE["near_eye"], f"{far}_eye": SIDE_FACE["far_eye"],
                f"{near}_ear": SIDE_FACE["near_ear"], f"{far}_ear": SIDE_FACE["far_ear"]}
        face = {name: (facing * a, b) for name, (a, b) in face.items()}
    else:
        face = FRONT_FACE
    for name, (a, b) in face.items():
        pts[name] = head + (a * side + b * up) * radius
    pts["_head"] = head
    far_side = None if not sideways else ("left" if facing > 0 else "right")
    return np.stack([pts[name] for name in (*KEYPOINT_NAMES, "_head")]), far_side


def draw_person(rng: np.random.Generator, size: int, center_xy: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample a person whose bounding-box centre is ``center_xy`` and draw its silhouette.

    Besides the silhouette it draws the cues a photo has and a flat silhouette lacks, so that
    every keypoint's identity can be read from the pixels: the face marks (nose and eyes, which
    show where a sideways person looks) and, for a sideways person, the far arm and leg behind
    the body (the near ones drawn over them). They lie inside the silhouette and use no random
    numbers, so masks, keypoints and the rest of the scene do not depend on them.

    Args:
        rng: random generator.
        size: image size in pixels (square images).
        center_xy: (2,) continuous pixel coordinates of the body's bounding-box centre.

    Returns:
        ``(mask, keypoints_xy, detail)``: mask (size, size) bool; keypoints_xy (17, 2) float64
        rounded to KEYPOINT_DECIMALS, every keypoint inside the image on the mask (pixel
        (floor(y), floor(x)) is set); detail (size, size) uint8 inside the mask: ``DETAIL_BODY``,
        ``DETAIL_FAR_LIMB`` or ``DETAIL_FACE_MARK`` (``tfsp.data.synthetic_scene`` shades them).
    """
    height = rng.uniform(*HEIGHT_RANGE) * size
    points, far_side = body_pose(rng, height)
    points = points + (center_xy - (points.min(axis=0) + points.max(axis=0)) / 2.0)
    points = np.round(points, KEYPOINT_DECIMALS)
    keypoints = points[:-1]
    thickness = max(MIN_LIMB_PX, int(round(LIMB_THICKNESS * height)))
    cv_pts = to_cv_points(points)
    radius = int(round(HEAD_RADIUS * height * (1 << CV_SHIFT)))
    canvas = np.zeros((size, size), np.uint8)
    detail = np.zeros((size, size), np.uint8)
    if far_side is not None:
        _draw_body(detail, cv_pts, thickness, radius, DETAIL_FAR_LIMB, lambda a, b: _is_far_limb(a, b, far_side))
        _draw_body(detail, cv_pts, thickness, radius, DETAIL_BODY, lambda a, b: not _is_far_limb(a, b, far_side))
    _draw_body(canvas, cv_pts, thickness, radius, 1, lambda a, b: True)
    mark = max(1, int(round(FACE_MARK_RADIUS * HEAD_RADIUS * height * (1 << CV_SHIFT))))
    for name in FACE_MARKS:
        cv2.circle(detail, tuple(cv_pts[_INDEX[name]].tolist()), mark, DETAIL_FACE_MARK, -1, cv2.LINE_8, CV_SHIFT)
    mask = canvas.astype(bool)
    inside = np.all((keypoints >= 0.0) & (keypoints < size), axis=1)
    cols, rows = np.floor(keypoints[inside]).astype(np.int64).T
    mask[rows, cols] = True
    return mask, keypoints, np.where(mask, detail, DETAIL_BODY).astype(np.uint8)


def _is_far_limb(a: str, b: str, far_side: str) -> bool:
    """An arm or leg segment of the far side (not a torso edge)."""
    return a.startswith(far_side) and b.startswith(far_side) and (a, b) not in TORSO_EDGES


def _draw_body(canvas: np.ndarray, cv_pts: np.ndarray, thickness: int, radius: int, value: int, limbs) -> None:
    """Draws the limbs ``limbs(a, b)`` selects with ``value``; with every limb, also torso, neck and head."""
    pt = [tuple(p) for p in cv_pts.tolist()]
    everything = all(limbs(a, b) for a, b in LIMBS)
    if everything or value == DETAIL_BODY:
        cv2.fillPoly(canvas, cv_pts[[_INDEX[n] for n in TORSO_QUAD]][None], value, cv2.LINE_8, CV_SHIFT)
    for a, b in LIMBS:
        if limbs(a, b):
            cv2.line(canvas, pt[_INDEX[a]], pt[_INDEX[b]], value, thickness, cv2.LINE_8, CV_SHIFT)
    if everything or value == DETAIL_BODY:
        neck = (cv_pts[_INDEX["left_shoulder"]] + cv_pts[_INDEX["right_shoulder"]]) // 2
        cv2.line(canvas, tuple(neck.tolist()), pt[-1], value, thickness, cv2.LINE_8, CV_SHIFT)
        cv2.circle(canvas, pt[-1], radius, value, -1, cv2.LINE_8, CV_SHIFT)
