"""OpenPose Part Affinity Field parsing: confidence maps and PAFs to ``Poses`` (numpy only).

The multi-person parser of Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part
Affinity Fields" (CVPR 2017), run identically on the server and the device:

1. **Peaks.** Optionally smooth the 17 keypoint heatmaps with a Gaussian (``smoothing_sigma``
   cells, 0 = off); a peak is a cell strictly above ``peak_threshold`` that is the maximum of
   its 3x3 neighbourhood (ties go to the first cell in raster order). A parabola through the
   logs of the peak and its two neighbours along x, and along y, refines it to sub-cell
   precision (exact for an isolated Gaussian); the offset is clamped to +-0.5 cell and is 0 on
   the map border or where one of the three values is not positive. The keypoint score is the
   (smoothed) heatmap value at the peak cell.
2. **Candidate connections.** Every pair (peak of type a, peak of type b) of every limb (a, b) is
   scored at once by the PAF line integral: the limb's PAF, sampled *bilinearly* at the
   midpoints of ``num_samples`` equal pieces of the segment a -> b (not at the ends, where a
   limb's field stops), dotted with the unit vector from a to b. A pair is a candidate when at
   least ``min_sample_fraction`` of the samples exceed ``sample_threshold`` and its score
   ``mean(dot) + min(distance_prior_fraction * F_h / d - 1, 0)`` is positive (``d`` the peak
   distance and ``F_h`` the map height, in cells); coincident peaks are never connected.
3. **Matching.** Per limb, candidates are taken greedily by descending score, each peak at most
   once; then alternating paths that raise the limb's total score are flipped (the augmenting
   step of the Hungarian method, towards the paper's maximum-weight matching). Greedy alone
   fails where the same limb of people side by side lies on one line (shoulders, hips): a
   connection across several people scores a little higher than each person's own.
4. **Assembly.** Connections are visited limb by limb in ``limbs`` order: both ends free -> a new
   person (only the first ``num_tree_limbs`` limbs start people); one end in a person with no
   keypoint of the other end's type -> that end joins; both ends in one person -> the score is
   added; ends in two people with no keypoint type in common -> they merge.
5. **Filtering and scores.** A person's mean score is the mean of its keypoint and connection
   scores; people with fewer than ``min_parts`` keypoints or a mean score at most
   ``min_mean_score`` are dropped. The person score, which ranks people for COCO AP, is
   ``mean score * keypoints found / 17``: complete, confident people first.
6. **Filling** (optional, ``fill_missing``; not in the paper): each kept person's absent keypoints
   take the best map cell near that person (``tfsp.postprocess.peaks``).

Coordinates are *map coordinates*: cell ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` and its
centre is ``(x, y) = (j + 0.5, i + 0.5)``; multiply by the stride for input pixels.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfsp.data.keypoints import NUM_KEYPOINTS, NUM_TREE_LIMBS, PAF_LIMBS
from tfsp.postprocess.paf_assembly import assemble_people, match_limbs
from tfsp.postprocess.peaks import fill_missing_keypoints, refined_xy, smooth_maps
from tfsp.spec_json import added_field
from tfsp.structures import Poses

HEATMAPS = "heatmaps"
"""Name of the pose output holding (B, F_h, F_w, K) float32 keypoint confidence maps."""

PAFS = "pafs"
"""Name of the pose output holding (B, F_h, F_w, 2L) float32 Part Affinity Fields (x, y per limb)."""

DEFAULT_PEAK_THRESHOLD = 0.1
"""Heatmap peaks must be strictly above this (OpenPose ``thre1``)."""

DEFAULT_SMOOTHING_SIGMA = 0.0
"""Gaussian smoothing of the heatmaps before peak finding, in cells; 0 = off."""

DEFAULT_NUM_SAMPLES = 10
"""PAF samples per candidate connection (OpenPose ``mid_num``)."""

DEFAULT_SAMPLE_THRESHOLD = 0.05
"""A sample counts when PAF . unit limb vector is strictly above this (OpenPose ``thre2``)."""

DEFAULT_MIN_SAMPLE_FRACTION = 0.8
"""At least this fraction of the samples must count (OpenPose: 0.8)."""

DEFAULT_DISTANCE_PRIOR_FRACTION = 0.5
"""Connections longer than this fraction of the map height are penalised (OpenPose: 0.5)."""

DEFAULT_MIN_PARTS = 4
"""People with fewer keypoints are dropped (OpenPose demo: 4)."""

DEFAULT_FILL_MISSING = False
"""The paper's parser reports only the keypoints it connected (see ``PafParserConfig.fill_missing``)."""

FILL_MISSING_ADDED_IN = "0.2.0"
"""Specs written before carry no ``fill_missing`` and load with the default (the paper's parser)."""

DEFAULT_MIN_MEAN_SCORE = 0.2
"""People whose mean keypoint-and-connection score is at most this are dropped. OpenPose's 0.4
bounds (sum of keypoint and connection scores) / keypoints, about twice this mean."""

MIN_CONNECTION_LENGTH = 1e-6
"""Peaks closer than this (cells) have no direction and are never connected."""

PAIR_BLOCK = 4096
"""Peak pairs scored together: bounds numpy temporaries to ~100 KiB (glibc maps larger ones afresh
for every operation, and the page faults are a measurable part of the parse)."""


@dataclasses.dataclass(frozen=True)
class PafParserConfig:
    """Thresholds of the PAF parser; every default is a named constant above.

    Attributes:
        limbs: (a, b) keypoint pairs; the PAF of limb l points from a to b in channels (2l, 2l + 1).
        num_tree_limbs: the first this many limbs may start a person; the rest only join or merge.
        peak_threshold: heatmap peaks must be strictly above this (>= 0).
        smoothing_sigma: Gaussian smoothing of the heatmaps in cells (>= 0, 0 = off).
        num_samples: PAF samples per candidate connection (>= 1).
        sample_threshold: a sample counts when PAF . unit vector is strictly above this (>= 0).
        min_sample_fraction: at least this fraction of samples must count, in [0, 1].
        distance_prior_fraction: connections longer than this fraction of the map height are
            penalised by ``fraction * F_h / d - 1`` (> 0).
        min_parts: people with fewer keypoints are dropped, in [1, 17].
        min_mean_score: people whose mean keypoint-and-connection score is at most this are dropped.
        fill_missing: after filtering, give each person's absent keypoints the highest cell of
            their (smoothed) map near that person (``tfsp.postprocess.peaks.fill_missing_keypoints``;
            score = that map value, person scores unchanged). Off in the paper's parser; on for
            trained models, where COCO's OKS scores an absent keypoint as a miss.
    """

    limbs: tuple[tuple[int, int], ...] = PAF_LIMBS
    num_tree_limbs: int = NUM_TREE_LIMBS
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD
    smoothing_sigma: float = DEFAULT_SMOOTHING_SIGMA
    num_samples: int = DEFAULT_NUM_SAMPLES
    sample_threshold: float = DEFAULT_SAMPLE_THRESHOLD
    min_sample_fraction: float = DEFAULT_MIN_SAMPLE_FRACTION
    distance_prior_fraction: float = DEFAULT_DISTANCE_PRIOR_FRACTION
    min_parts: int = DEFAULT_MIN_PARTS
    min_mean_score: float = DEFAULT_MIN_MEAN_SCORE
    fill_missing: bool = added_field(DEFAULT_FILL_MISSING, FILL_MISSING_ADDED_IN)

    def __post_init__(self) -> None:
        name = "PafParserConfig"
        limbs = tuple(tuple(limb) if isinstance(limb, (tuple, list)) else (limb,) for limb in self.limbs)
        if not limbs or any(len(limb) != 2 or limb[0] == limb[1] or not all(
                _is_int(k) and 0 <= k < NUM_KEYPOINTS for k in limb) for limb in limbs):
            raise ValueError(f"{name}.limbs must be non-empty (a, b) pairs of distinct keypoint indices in "
                             f"[0, {NUM_KEYPOINTS}), got {self.limbs!r}")
        object.__setattr__(self, "limbs", limbs)
        for field in ("num_tree_limbs", "num_samples", "min_parts"):
            if not _is_int(getattr(self, field)):
                raise ValueError(f"{name}.{field} must be an int, got {getattr(self, field)!r}")
        if not 1 <= self.num_tree_limbs <= len(limbs):
            raise ValueError(f"{name}.num_tree_limbs must be in [1, {len(limbs)}], got {self.num_tree_limbs}")
        for field in ("peak_threshold", "smoothing_sigma", "sample_threshold"):
            if not 0.0 <= getattr(self, field) < math.inf:
                raise ValueError(f"{name}.{field} must be finite and >= 0, got {getattr(self, field)}")
        if self.num_samples < 1:
            raise ValueError(f"{name}.num_samples must be >= 1, got {self.num_samples}")
        if not 0.0 <= self.min_sample_fraction <= 1.0:
            raise ValueError(f"{name}.min_sample_fraction must be in [0, 1], got {self.min_sample_fraction}")
        if not 0.0 < self.distance_prior_fraction < math.inf:
            raise ValueError(f"{name}.distance_prior_fraction must be finite and > 0, "
                             f"got {self.distance_prior_fraction}")
        if not 1 <= self.min_parts <= NUM_KEYPOINTS:
            raise ValueError(f"{name}.min_parts must be in [1, {NUM_KEYPOINTS}], got {self.min_parts}")
        if not isinstance(self.fill_missing, bool):
            raise ValueError(f"{name}.fill_missing must be true or false, got {self.fill_missing!r}")
        if not math.isfinite(self.min_mean_score):
            raise ValueError(f"{name}.min_mean_score must be finite, got {self.min_mean_score}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def peak_maps(heatmaps: np.ndarray, config: PafParserConfig = PafParserConfig()) -> np.ndarray:
    """The maps peaks are found in: the first 17 heatmap channels, smoothed by ``config.smoothing_sigma``.

    Args:
        heatmaps: (F_h, F_w, K >= 17) float keypoint confidence maps (later channels ignored).
        config: ``smoothing_sigma`` is used.

    Returns:
        (17, F_h, F_w) float32 maps (a view of ``heatmaps`` when not smoothed).
    """
    heatmaps = np.asarray(heatmaps, np.float32)
    if heatmaps.ndim != 3 or heatmaps.shape[2] < NUM_KEYPOINTS:
        raise ValueError(f"heatmaps must have shape (F_h, F_w, K >= {NUM_KEYPOINTS}), got {heatmaps.shape}")
    maps = heatmaps[:, :, :NUM_KEYPOINTS].transpose(2, 0, 1)
    return smooth_maps(maps, config.smoothing_sigma) if config.smoothing_sigma > 0 else maps


def find_peaks(heatmaps: np.ndarray, config: PafParserConfig = PafParserConfig()
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoint peaks of the first 17 heatmap channels (step 1 of the module docstring).

    Args:
        heatmaps: (F_h, F_w, K >= 17) float keypoint confidence maps (later channels ignored).
        config: ``peak_threshold`` and ``smoothing_sigma`` are used.

    Returns:
        ``(types, xy, scores)`` sorted by keypoint type, then raster order: types (P,) int64
        keypoint index; xy (P, 2) float64 ``[x, y]`` map coordinates; scores (P,) float32 > 0.
    """
    return _peaks_of(peak_maps(heatmaps, config), config.peak_threshold)


def _peaks_of(maps: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``find_peaks`` on the (17, H, W) maps of :func:`peak_maps`."""
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    rows_max = np.maximum(np.maximum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
    window_max = np.maximum(np.maximum(rows_max[:, :-2], rows_max[:, 1:-1]), rows_max[:, 2:])
    types, rows, cols = np.nonzero((maps >= window_max) & (maps > np.float32(threshold)))
    scores = maps[types, rows, cols]
    # A tie with an earlier neighbour (up-left, up, up-right, left) leaves the peak to it.
    earlier = [padded[types, rows + di, cols + dj] for di, dj in ((0, 0), (0, 1), (0, 2), (1, 0))]
    keep = np.all([value < scores for value in earlier], axis=0)
    types, rows, cols, scores = types[keep], rows[keep], cols[keep], scores[keep]
    return types, refined_xy(maps, types, rows, cols), scores


def _line_integral(pafs: np.ndarray, limb: np.ndarray, geometry: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """PAF . unit limb vector, sampled bilinearly at ``a + t * (b - a)`` for each t in ``fractions``.

    Args:
        pafs: (H, W, 2L) float32, C-contiguous.
        limb: (P,) int64 limb index of each pair.
        geometry: (6, P) float32 rows ``a_x, a_y, (b - a)_x, (b - a)_y, u_x, u_y`` in map
            coordinates, ``u`` the unit vector from a to b.
        fractions: (S, 1) float32 positions along the segment in [0, 1].

    Returns:
        (S, P) float32 dot products.
    """
    height, width, channels = pafs.shape
    half = channels // 2
    field = pafs.reshape(-1).view(np.complex64)  # x + iy of limb l at cell c: index c * L + l
    x, y = _cell_position(geometry, fractions, height, width)
    x0, y0 = x.astype(np.intp), y.astype(np.intp)  # floor, as x, y >= 0
    fx, fy = x - x0.astype(np.float32), y - y0.astype(np.float32)
    top_left = (y0 * width + x0) * half + limb
    top_right = top_left + (x0 < width - 1) * half
    down = (y0 < height - 1) * (width * half)

    def dot(index: np.ndarray) -> np.ndarray:
        value = field.take(index)
        return value.real * geometry[4] + value.imag * geometry[5]

    top = dot(top_left)
    top += fx * (dot(top_right) - top)
    bottom = dot(top_left + down)
    bottom += fx * (dot(top_right + down) - bottom)
    top += fy * (bottom - top)
    return top


def _cell_position(geometry: np.ndarray, fractions: np.ndarray, height: int, width: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(S, P) continuous cell indices ``(x, y)`` of the samples (cell centre j + 0.5 -> j), clamped."""
    x = np.clip(geometry[0] - np.float32(0.5) + geometry[2] * fractions, 0.0, width - 1.0)
    y = np.clip(geometry[1] - np.float32(0.5) + geometry[3] * fractions, 0.0, height - 1.0)
    return x, y


def _score_pairs(types: np.ndarray, xy: np.ndarray, pafs: np.ndarray, config: PafParserConfig
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scores every (peak a, peak b) pair of every limb; returns the candidates (step 2).

    Returns:
        ``(limb, a, b, score)`` of the candidate connections: limb index and peak indices into
        ``types`` / ``xy`` (int64), score (float32, > 0).
    """
    limbs = np.asarray(config.limbs).reshape(-1, 2)
    bounds = np.searchsorted(types, np.arange(NUM_KEYPOINTS + 1))
    first, count = bounds[limbs], bounds[limbs + 1] - bounds[limbs]  # (L, 2) peaks of a and b
    sizes = count[:, 0] * count[:, 1]
    limb = np.repeat(np.arange(len(limbs)), sizes)
    offset = np.arange(len(limb)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index_a, index_b = np.divmod(offset, np.repeat(count[:, 1], sizes))
    peak_a, peak_b = np.repeat(first[:, 0], sizes) + index_a, np.repeat(first[:, 1], sizes) + index_b
    squared = pafs * pafs
    threshold = np.float32(config.sample_threshold)
    support = squared[:, :, 0::2] + squared[:, :, 1::2] > threshold * threshold  # (H, W, L): |PAF| > t
    support[:, :-1] |= support[:, 1:]  # now: any of the 2 x 2 cells a bilinear sample at (i, j) reads
    support[:-1] |= support[1:]
    points = xy.T.astype(np.float32)
    found = [_score_block(pafs, support, points, limb[begin:begin + PAIR_BLOCK], peak_a[begin:begin + PAIR_BLOCK],
                          peak_b[begin:begin + PAIR_BLOCK], config) for begin in range(0, len(limb), PAIR_BLOCK)]
    return tuple(np.concatenate(parts) for parts in zip(*found)) if found else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


def _score_block(pafs: np.ndarray, support: np.ndarray, points: np.ndarray, limb: np.ndarray, peak_a: np.ndarray,
                 peak_b: np.ndarray, config: PafParserConfig) -> tuple[np.ndarray, ...]:
    """Scores one block of pairs (see ``_score_pairs``); ``support`` (H, W, L) bool is False where
    a bilinear sample is known to fail: all four cells it reads have |PAF| <= sample_threshold."""
    height, width, channels = pafs.shape
    start_x, start_y = points[0].take(peak_a), points[1].take(peak_a)
    delta_x, delta_y = points[0].take(peak_b) - start_x, points[1].take(peak_b) - start_y
    length = np.hypot(delta_x, delta_y)
    inverse = np.float32(1.0) / np.maximum(length, np.float32(MIN_CONNECTION_LENGTH))
    geometry = np.stack([start_x, start_y, delta_x, delta_y, delta_x * inverse, delta_y * inverse])
    # Samples go middle-out in chunks of allowed + 1; a pair is dropped as soon as more than
    # `allowed` of its samples fail, most already by the support test of the first chunk.
    num = config.num_samples
    fractions = (np.arange(num, dtype=np.float32) + np.float32(0.5)) / np.float32(num)
    fractions = fractions[np.argsort(np.abs(fractions - 0.5), kind="stable")][:, None]
    allowed = num - math.ceil(config.min_sample_fraction * num - 1e-9)
    x, y = _cell_position(geometry, fractions[:allowed + 1], height, width)
    possible = support.reshape(-1).take((y.astype(np.intp) * width + x.astype(np.intp)) * (channels // 2) + limb)
    alive = np.flatnonzero((np.count_nonzero(possible, axis=0) >= len(possible) - allowed)
                           & (length >= MIN_CONNECTION_LENGTH))
    limb, geometry, length = limb.take(alive), geometry.take(alive, axis=1), length.take(alive)
    fails, total = np.zeros(len(limb), np.int64), np.zeros(len(limb), np.float32)
    for begin in range(0, num, allowed + 1):
        dots = _line_integral(pafs, limb, geometry, fractions[begin:begin + allowed + 1])
        fails += np.count_nonzero(dots <= np.float32(config.sample_threshold), axis=0)
        total += dots.sum(axis=0)
        keep = np.flatnonzero(fails <= allowed)
        alive, limb, geometry = alive.take(keep), limb.take(keep), geometry.take(keep, axis=1)
        fails, total, length = fails.take(keep), total.take(keep), length.take(keep)
    score = total / np.float32(num) + np.minimum(
        np.float32(config.distance_prior_fraction * height) / length - np.float32(1.0), 0)
    keep = np.flatnonzero(score > 0)
    alive = alive.take(keep)
    return limb.take(keep), peak_a.take(alive), peak_b.take(alive), score.take(keep).astype(np.float32)


def parse_poses(heatmaps: np.ndarray, pafs: np.ndarray, config: PafParserConfig = PafParserConfig()) -> Poses:
    """Parses one image's confidence maps and PAFs into people (see module docstring).

    Args:
        heatmaps: (F_h, F_w, K >= 17) float32 keypoint confidence maps in COCO keypoint order
            (channels after the 17th, e.g. the background, are ignored).
        pafs: (F_h, F_w, 2L) float32 Part Affinity Fields, limb l = ``config.limbs[l]`` in
            channels (2l, 2l + 1) = (x, y).
        config: parser thresholds.

    Returns:
        ``Poses`` by descending score: keypoints (N, 17, 3) float32 ``[x, y, score]`` in map
        coordinates (cell centre j -> j + 0.5), score the peak heatmap value (> 0), or
        ``[0, 0, 0]`` where absent (filled instead with ``fill_missing``); scores (N,) float32
        ``mean score * keypoints found / 17``, keypoints found before filling.
    """
    maps = peak_maps(heatmaps, config)  # checks the heatmaps
    types, xy, scores = _peaks_of(maps, config.peak_threshold)
    pafs = np.ascontiguousarray(pafs, np.float32)
    expected = np.shape(heatmaps)[:2] + (2 * len(config.limbs),)
    if pafs.shape != expected:
        raise ValueError(f"pafs must have shape {expected} (heatmap grid, 2 channels per limb), got {pafs.shape}")
    people = assemble_people(match_limbs(*_score_pairs(types, xy, pafs, config)), types.tolist(), scores.tolist(),
                             config.num_tree_limbs)
    if not people:
        return Poses.empty()
    slots = np.array([slots for slots, _, _ in people]).reshape(-1, NUM_KEYPOINTS)  # (N, 17) peak or -1
    found = slots >= 0
    parts = np.count_nonzero(found, axis=1)
    mean = np.array([score_sum for _, score_sum, _ in people]) / (parts + [n for _, _, n in people])
    keep = np.flatnonzero((parts >= config.min_parts) & (mean > config.min_mean_score))
    keep = keep[np.argsort(-(mean * parts)[keep], kind="stable")]
    slots, found = slots[keep], found[keep, :, None]
    keypoints = np.where(found, np.concatenate([xy[slots], scores[slots][:, :, None]], axis=2), 0.0)
    if config.fill_missing:
        keypoints = fill_missing_keypoints(keypoints, maps)
    return Poses.create(keypoints, mean[keep] * parts[keep] / NUM_KEYPOINTS)
