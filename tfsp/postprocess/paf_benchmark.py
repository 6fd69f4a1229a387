"""Speed of the PAF parser on rendered crowds, and the random crowds its tests parse.

Usage::

    python -m tfsp.postprocess.paf_benchmark --people 30 --map-size 46 --repeats 200

Renders ``--people`` random upright people (:func:`random_people`) into reference confidence
maps and PAFs (:mod:`tfsp.data.pose_fields`, stride 8) and prints the median and 90th
percentile wall time of :func:`tfsp.postprocess.paf.parse_poses` over ``--repeats`` calls after
``--warmup`` calls. Device-safe: numpy only.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from tfsp.cli import SuggestingParser, non_negative_int, positive_int
from tfsp.data.keypoints import NUM_KEYPOINTS, PAF_LIMBS
from tfsp.data.pose_fields import DEFAULT_STRIDE, render_heatmaps, render_pafs
from tfsp.postprocess.paf import DEFAULT_MIN_PARTS, DEFAULT_SMOOTHING_SIGMA, PafParserConfig, parse_poses

DEFAULT_PEOPLE = 30
DEFAULT_MAP_SIZE = 46  # 368 px input at stride 8, OpenPose's training size
DEFAULT_REPEATS = 200
DEFAULT_WARMUP = 10
DEFAULT_SEED = 0

PEOPLE_PER_ROW_RATIO = 2  # rows = ceil(sqrt(people / ratio)): 30 people -> 4 rows of 8
ROW_OVERLAP = 1.3  # a person is this many row pitches tall: the row in front hides the next one's legs
MAX_HEIGHT = 0.6  # nominal person height at most this fraction of the input
HEIGHT_RANGE = (0.85, 1.15)  # person height, fraction of the nominal height
HALF_WIDTH = 0.25  # typical half-width of a person, fraction of the nominal height
JITTER = 0.15  # horizontal jitter of a person's centre, fraction of the column pitch
TILT_STD = 0.08  # radians, whole-body lean around the hip centre
BUILD_RANGE = (0.85, 1.15)  # shoulder/hip width factor

# Body in fractions of the height h, y down from the top of the head, x towards the person's
# left (the image right: people face the camera). Face keypoints are in head sizes HEAD * h
# around the head centre; the face is drawn large, cartoon-like, so that every face limb is
# longer than a map cell at the default scale (shorter limbs get no rendered PAF at all).
HEAD, HEAD_CENTRE_Y = 0.14, 0.1
FACE = {0: (0.0, 0.4), 1: (0.45, -0.3), 2: (-0.45, -0.3), 3: (1.1, 0.05), 4: (-1.1, 0.05)}
SHOULDER_Y, SHOULDER_X = 0.22, 0.12
HIP_Y, HIP_X = 0.52, 0.08
UPPER_ARM, FOREARM, THIGH, SHIN = 0.17, 0.15, 0.23, 0.22
ARM_RANGE, ELBOW_RANGE = (-0.1, 1.2), (-0.2, 1.2)  # radians from "down" towards outward
LEG_RANGE, KNEE_RANGE = (-0.05, 0.35), (-0.2, 0.2)

# What 8-pixel cells can resolve: sub-cell refinement needs a peak's neighbours, so keypoints
# keep MARGIN_PX from the border, and two people's keypoints of one type stay MIN_SEPARATION_PX
# apart so that each peak's 3x3 neighbourhood is its own Gaussian's (3 cells at sigma 6 px).
MARGIN_PX = 12.0
MIN_SEPARATION_PX = 24.0
MAX_TRIES = 50  # samples per person before the scene starts again
MAX_SCENE_TRIES = 20
TORSO = [5, 6, 11, 12]  # shoulders and hips


def _person(rng: np.random.Generator, height: float, centre_x: float, top_y: float) -> np.ndarray:
    """(17, 2) float64 keypoints in input pixels of one upright person."""
    points = np.zeros((NUM_KEYPOINTS, 2))
    for k, (side, up) in FACE.items():
        points[k] = (side * HEAD, HEAD_CENTRE_Y + up * HEAD)
    build = rng.uniform(*BUILD_RANGE)
    for sign, (shoulder, elbow, wrist, hip, knee, ankle) in ((1, (5, 7, 9, 11, 13, 15)), (-1, (6, 8, 10, 12, 14, 16))):
        points[shoulder] = (sign * SHOULDER_X * build, SHOULDER_Y)
        points[hip] = (sign * HIP_X * build, HIP_Y)
        for root, joint, end, (first, second), (angle_range, bend_range) in (
                (shoulder, elbow, wrist, (UPPER_ARM, FOREARM), (ARM_RANGE, ELBOW_RANGE)),
                (hip, knee, ankle, (THIGH, SHIN), (LEG_RANGE, KNEE_RANGE))):
            angle = rng.uniform(*angle_range)
            bend = angle + rng.uniform(*bend_range)
            points[joint] = points[root] + first * np.array([sign * math.sin(angle), math.cos(angle)])
            points[end] = points[joint] + second * np.array([sign * math.sin(bend), math.cos(bend)])
    tilt = rng.normal(0.0, TILT_STD)
    rotation = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
    hip_centre = np.array([0.0, HIP_Y])
    points = (points - hip_centre) @ rotation.T + hip_centre
    return points * height + np.array([centre_x, top_y])


def _connected(present: np.ndarray) -> np.ndarray:
    """The largest set of present keypoints connected by PAF limbs (tree and redundant)."""
    component = -np.ones(NUM_KEYPOINTS, np.int64)
    for k in np.flatnonzero(present):
        if component[k] < 0:
            component[k], stack = k, [k]
            while stack:
                j = stack.pop()
                for a, b in PAF_LIMBS:
                    other = b if a == j else a if b == j else -1
                    if other >= 0 and present[other] and component[other] < 0:
                        component[other] = k
                        stack.append(other)
    labels, counts = np.unique(component[present], return_counts=True)
    return component == labels[np.argmax(counts)] if len(labels) else present


def _fits(points: np.ndarray, present: np.ndarray, torso: np.ndarray, people: np.ndarray, torsos: list,
          input_size: int) -> bool:
    """Whether a new person (17, 2) respects the margin, same-type separation and torso rules."""
    if not np.all((points >= MARGIN_PX) & (points <= input_size - MARGIN_PX)):
        return False
    distance = np.hypot(*(people[:, present, :2] - points[present]).transpose(2, 0, 1))  # (m, P)
    if np.any(distance[people[:, present, 2] > 0] < MIN_SEPARATION_PX):
        return False
    return all(np.any(torso[:2] > other[2:]) or np.any(other[:2] > torso[2:]) for other in torsos)


def random_people(rng: np.random.Generator, num_people: int, input_size: int, missing_probability: float = 0.0
                  ) -> np.ndarray:
    """Upright people side by side in rows, like a group photo: limbs overlap, torsos do not.

    People stand in ``ceil(sqrt(num_people / PEOPLE_PER_ROW_RATIO))`` rows, each row in front
    of (below) the previous one and hiding the legs of the people behind it, varied in height,
    build, lean and arm/leg angles. A person is re-sampled (MAX_TRIES times, then the scene
    starts again) until its keypoints keep MARGIN_PX from the border and MIN_SEPARATION_PX from
    the same keypoint of everyone placed before, and its torso box (shoulders and hips) overlaps
    no other: where two torsos interleave, the shoulder-shoulder and hip-hip fields of the two
    people lie on one line and cannot tell who is who. Each keypoint is dropped with
    ``missing_probability``; then only the largest set of keypoints still joined by PAF limbs
    is kept (a parser cannot attach a joint whose every limb has a missing end), and people
    left with fewer than DEFAULT_MIN_PARTS keypoints keep all 17.

    Args:
        rng: random generator.
        num_people: M >= 1.
        input_size: side of the square input in pixels.
        missing_probability: chance that each keypoint is absent.

    Returns:
        (M, 17, 3) float32 ``[x, y, v]`` in input pixels, v = 2 present, 0 (and x = y = 0) absent.

    Raises:
        ValueError: when a person cannot be placed (too many people for the image).
    """
    rows = math.ceil(math.sqrt(num_people / PEOPLE_PER_ROW_RATIO))
    columns = math.ceil(num_people / rows)
    span = input_size - 2 * MARGIN_PX
    row_pitch = span / (rows - 1 + ROW_OVERLAP)
    nominal = min(ROW_OVERLAP * row_pitch, MAX_HEIGHT * input_size)
    left = MARGIN_PX + HALF_WIDTH * nominal  # column centres keep half a person from the border
    column_pitch = (span - 2 * HALF_WIDTH * nominal) / columns
    for _ in range(MAX_SCENE_TRIES):
        people = np.zeros((num_people, NUM_KEYPOINTS, 3), np.float32)
        torsos: list[np.ndarray] = []
        for m in range(num_people):
            row, column = divmod(m, columns)
            feet_y = MARGIN_PX + row * row_pitch + nominal
            present = _connected(rng.random(NUM_KEYPOINTS) >= missing_probability)
            if np.count_nonzero(present) < DEFAULT_MIN_PARTS:  # the parser drops such people
                present[:] = True
            for _ in range(MAX_TRIES):
                height = nominal * rng.uniform(*HEIGHT_RANGE)
                centre_x = left + (column + 0.5 + rng.uniform(-JITTER, JITTER)) * column_pitch
                points = _person(rng, height, centre_x, feet_y - height)
                torso = np.concatenate([points[TORSO].min(axis=0), points[TORSO].max(axis=0)])
                if _fits(points, present, torso, people[:m], torsos, input_size):
                    break
            else:
                break  # start the scene again
            torsos.append(torso)
            people[m, present, :2] = points[present]
            people[m, present, 2] = 2
        else:
            return people
    raise ValueError(f"cannot place {num_people} people in {input_size} px (MAX_SCENE_TRIES = {MAX_SCENE_TRIES})")


def measure(heatmaps: np.ndarray, pafs: np.ndarray, config: PafParserConfig, repeats: int, warmup: int
            ) -> np.ndarray:
    """Wall time in milliseconds of each of ``repeats`` ``parse_poses`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        parse_poses(heatmaps, pafs, config)
    times = np.zeros(repeats)
    for r in range(repeats):
        start = time.perf_counter()
        parse_poses(heatmaps, pafs, config)
        times[r] = (time.perf_counter() - start) * 1e3
    return times


def _parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="python -m tfsp.postprocess.paf_benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=positive_int, default=DEFAULT_PEOPLE, help="people in the scene")
    parser.add_argument("--map-size", type=positive_int, default=DEFAULT_MAP_SIZE, help="map side F (input 8F)")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, help="timed calls")
    parser.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP, help="untimed calls first")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED, help="scene seed")
    parser.add_argument("--smoothing-sigma", type=float, default=DEFAULT_SMOOTHING_SIGMA,
                        help=f"parser heatmap smoothing, cells (default {DEFAULT_SMOOTHING_SIGMA}; trained pose "
                             f"models use 0.75)")
    parser.add_argument("--fill-missing", action="store_true",
                        help="also fill absent keypoints, as the parser of trained pose models does")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        people = random_people(np.random.default_rng(args.seed), args.people, args.map_size * DEFAULT_STRIDE)
    except ValueError as error:
        print(f"error: {error}; try fewer --people or a larger --map-size", file=sys.stderr)
        return 2
    heatmaps, pafs = render_heatmaps(people, args.map_size), render_pafs(people, args.map_size)
    try:
        config = PafParserConfig(smoothing_sigma=args.smoothing_sigma, fill_missing=args.fill_missing)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = len(parse_poses(heatmaps, pafs, config))
    times = measure(heatmaps, pafs, config, args.repeats, args.warmup)
    print(f"parse_poses: median {np.median(times):.2f} ms, p90 {np.percentile(times, 90):.2f} ms "
          f"(people: {args.people} rendered, {found} parsed; {args.map_size}x{args.map_size} maps, "
          f"{args.repeats} repeats; smoothing {config.smoothing_sigma}, fill {config.fill_missing})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
