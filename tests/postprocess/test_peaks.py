"""Tests for tfsp.postprocess.peaks: smoothing, sub-cell refinement and filling missing keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from tfsp.data.keypoints import NUM_KEYPOINTS
from tfsp.data.pose_fields import DEFAULT_STRIDE, render_heatmaps, render_pafs
from tfsp.postprocess import paf_benchmark
from tfsp.postprocess.paf import PafParserConfig, parse_poses
from tfsp.postprocess.peaks import (FILL_MARGIN_CELLS, FILL_MARGIN_FRACTION, fill_missing_keypoints, refined_xy,
                                    smooth_maps, subcell_offset)

SIZE = 32  # map side, cells


def _gaussian(x: float, y: float, sigma: float = 1.0, size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size] + 0.5
    return np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _person(found: dict[int, tuple[float, float]]) -> np.ndarray:
    """(1, 17, 3) keypoints with the given keypoints found (score 0.9), the rest absent."""
    keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
    for k, (x, y) in found.items():
        keypoints[0, k] = (x, y, 0.9)
    return keypoints


def test_subcell_offset_is_exact_for_a_gaussian():
    # log of a Gaussian is a parabola: the vertex is found exactly, clamped to half a cell.
    for centre in (0.0, 0.2, -0.37):
        values = np.exp(-(np.array([-1.0, 0.0, 1.0]) - centre) ** 2 / 2)
        assert subcell_offset(*values, np.array(True)) == pytest.approx(centre, abs=1e-9)
    assert subcell_offset(np.array(1.0), np.array(0.5), np.array(1.0), np.array(True)) == 0  # a valley
    assert subcell_offset(np.array(0.0), np.array(1.0), np.array(0.5), np.array(True)) == 0  # a zero neighbour
    assert subcell_offset(np.array(0.2), np.array(1.0), np.array(0.9), np.array(False)) == 0  # the border


def test_refined_xy_finds_the_gaussian_centre():
    maps = np.stack([_gaussian(10.3, 7.8), _gaussian(0.5, 20.5)])
    xy = refined_xy(maps, np.array([0, 1]), np.array([7, 20]), np.array([10, 0]))
    np.testing.assert_allclose(xy, [[10.3, 7.8], [0.5, 20.5]], atol=1e-5)  # the second on the border: no offset


def test_smooth_maps_keeps_mass_and_the_peak():
    maps = _gaussian(15.5, 15.5)[None]
    smoothed = smooth_maps(maps, 1.0)
    assert smoothed.dtype == np.float32 and smoothed.shape == maps.shape
    assert smoothed.sum() == pytest.approx(maps.sum(), rel=1e-4)
    assert np.unravel_index(smoothed.argmax(), smoothed.shape) == (0, 15, 15)
    # sigma 1 smoothed by sigma 1 is a Gaussian of sigma sqrt(2), scaled to the same mass (up to
    # the sampling of both on the cell grid: 3.7e-4 at most).
    np.testing.assert_allclose(smoothed[0], _gaussian(15.5, 15.5, np.sqrt(2.0)) / 2, atol=5e-4)


def test_fill_takes_the_best_cell_near_the_person():
    keypoints = _person({5: (10.5, 10.5), 6: (14.5, 10.5), 11: (10.5, 18.5), 12: (14.5, 18.5)})
    maps = np.zeros((NUM_KEYPOINTS, SIZE, SIZE), np.float32)
    maps[9] = 0.3 * _gaussian(8.2, 20.4)  # left wrist, inside the person's box
    maps[0] = 0.05 * _gaussian(12.6, 8.3) + 0.5 * _gaussian(28.5, 4.5)  # nose: the strong peak is far away
    before = keypoints.copy()
    filled = fill_missing_keypoints(keypoints, maps)
    np.testing.assert_array_equal(keypoints, before)  # not mutated
    np.testing.assert_array_equal(filled[:, [5, 6, 11, 12]], before[:, [5, 6, 11, 12]])  # found ones kept
    np.testing.assert_allclose(filled[0, 9], [8.2, 20.4, maps[9, 20, 8]], atol=1e-4)
    np.testing.assert_allclose(filled[0, 0, :2], [12.6, 8.3], atol=1e-4)  # the weak one near the person
    absent = [k for k in range(NUM_KEYPOINTS) if k not in (0, 5, 6, 9, 11, 12)]
    np.testing.assert_array_equal(filled[0, absent], 0.0)  # all-zero maps: nothing to fill


def test_fill_margin():
    # Box 4 x 8 cells: margin 0.25 * 8 + 1 = 3 cells, so cells up to x = 14.5 + 3 are searched.
    keypoints = _person({5: (10.5, 10.5), 6: (14.5, 10.5), 11: (10.5, 18.5), 12: (14.5, 18.5)})
    margin = FILL_MARGIN_FRACTION * 8 + FILL_MARGIN_CELLS
    maps = np.zeros((NUM_KEYPOINTS, SIZE, SIZE), np.float32)
    maps[7, 12, int(14.5 + margin) - 1] = 0.4  # the last column inside
    maps[8, 12, int(14.5 + margin) + 1] = 0.4  # outside
    filled = fill_missing_keypoints(keypoints, maps)
    assert filled[0, 7, 2] == pytest.approx(0.4) and filled[0, 8, 2] == 0


def test_fill_without_people_or_found_keypoints():
    maps = np.ones((NUM_KEYPOINTS, SIZE, SIZE), np.float32)
    assert fill_missing_keypoints(np.zeros((0, NUM_KEYPOINTS, 3), np.float32), maps).shape == (0, NUM_KEYPOINTS, 3)
    np.testing.assert_array_equal(fill_missing_keypoints(np.zeros((1, NUM_KEYPOINTS, 3)), maps), 0.0)


def test_parser_fill_keeps_people_and_their_found_keypoints():
    people = paf_benchmark.random_people(np.random.default_rng(3), 8, 46 * DEFAULT_STRIDE, missing_probability=0.2)
    heatmaps, pafs = render_heatmaps(people, 46), render_pafs(people, 46)
    plain = parse_poses(heatmaps, pafs)
    filled = parse_poses(heatmaps, pafs, PafParserConfig(fill_missing=True))
    np.testing.assert_array_equal(filled.scores, plain.scores)
    found = plain.keypoints[:, :, 2] > 0
    np.testing.assert_array_equal(filled.keypoints[found], plain.keypoints[found])
    assert (filled.keypoints[:, :, 2] > 0).sum() > found.sum()  # rendered neighbours lie near some people
    with pytest.raises(ValueError, match="fill_missing"):
        PafParserConfig(fill_missing=1)
