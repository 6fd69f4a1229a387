"""Tests for tfsp.postprocess.anchors: paper counts, golden values, ordering."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from tfsp.postprocess import anchors as anchor_ops
from tfsp.postprocess.anchors import SSD300, SSD512, SsdAnchorConfig
from tfsp.postprocess.boxes import cxcywh_to_xyxy


def _caffe_sizes(min_dim, num_maps, min_ratio, max_ratio, first_min, first_max):
    """The Caffe ssd_pascal*.py prior-size recipe (percentages of min_dim)."""
    step = int(math.floor((max_ratio - min_ratio) / (num_maps - 2)))
    ratios = range(min_ratio, max_ratio + 1, step)
    min_sizes = [min_dim * first_min / 100.0] + [min_dim * r / 100.0 for r in ratios]
    max_sizes = [min_dim * first_max / 100.0] + [min_dim * (r + step) / 100.0 for r in ratios]
    return tuple(min_sizes), tuple(max_sizes)


def test_paper_counts():
    assert anchor_ops.num_anchors_per_location(SSD300) == (4, 6, 6, 6, 4, 4)
    assert anchor_ops.num_anchors_per_location(SSD512) == (4, 6, 6, 6, 6, 4, 4)
    assert anchor_ops.num_anchors(SSD300) == 8732
    assert anchor_ops.num_anchors(SSD512) == 24564
    anchors = anchor_ops.generate_ssd_anchors(SSD300)
    assert anchors.shape == (8732, 4) and anchors.dtype == np.float32
    assert anchor_ops.generate_ssd_anchors(SSD512).shape == (24564, 4)


def test_paper_sizes_match_caffe_recipe():
    assert anchor_ops.anchor_sizes_px(SSD300) == _caffe_sizes(300, 6, 20, 90, 10, 20)
    expected_512 = _caffe_sizes(512, 7, 15, 90, 7, 15)
    np.testing.assert_allclose(anchor_ops.anchor_sizes_px(SSD512), expected_512, rtol=1e-12)


def test_paper_scale_formula():
    config = SsdAnchorConfig(
        image_size=300, feature_map_sizes=(19, 10, 5, 3, 1), min_scale=0.2, max_scale=0.9,
        aspect_ratios=((2.0,),) * 5,
    )
    min_sizes, max_sizes = anchor_ops.anchor_sizes_px(config)
    np.testing.assert_allclose(np.array(min_sizes) / 300, [0.2, 0.375, 0.55, 0.725, 0.9])
    np.testing.assert_allclose(np.array(max_sizes) / 300, [0.375, 0.55, 0.725, 0.9, 1.075])


def test_tiny_config_golden():
    config = SsdAnchorConfig(
        image_size=100, feature_map_sizes=(2, 1), min_scale=0.2, max_scale=0.6,
        aspect_ratios=((2.0,), ()),
    )
    # Scales 0.2, 0.6 (+ extrapolated 1.0); steps 50 and 100 px.
    r2 = math.sqrt(2.0)
    location_wh = [
        (0.2, 0.2), (math.sqrt(0.2 * 0.6),) * 2, (0.2 * r2, 0.2 / r2), (0.2 / r2, 0.2 * r2)
    ]
    expected = [
        [cx, cy, w, h] for cy in (0.25, 0.75) for cx in (0.25, 0.75) for w, h in location_wh
    ] + [[0.5, 0.5, 0.6, 0.6], [0.5, 0.5, math.sqrt(0.6), math.sqrt(0.6)]]
    anchors = anchor_ops.generate_ssd_anchors(config)
    assert anchor_ops.num_anchors_per_location(config) == (4, 2)
    np.testing.assert_allclose(anchors, np.array(expected, np.float32), rtol=1e-6)


def test_ssd300_golden_corners():
    anchors = anchor_ops.generate_ssd_anchors(SSD300)
    np.testing.assert_allclose(anchors[0], [4 / 300, 4 / 300, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(anchors[1, 2:], [math.sqrt(30 * 60) / 300] * 2, rtol=1e-6)
    r2 = math.sqrt(2)
    np.testing.assert_allclose(anchors[2, 2:], [30 * r2 / 300, 30 / r2 / 300], rtol=1e-6)  # ratio 2
    np.testing.assert_allclose(anchors[3, 2:], [30 / r2 / 300, 30 * r2 / 300], rtol=1e-6)  # 1/2
    # Last map is 1x1 with step 300: centre 0.5; last box is ratio 1/2.
    last = [0.5, 0.5, 264 / math.sqrt(2) / 300, 264 * math.sqrt(2) / 300]
    np.testing.assert_allclose(anchors[-1], last, rtol=1e-6)
    # conv4_3's last centre is (37 + 0.5) * 8 / 300 == 1.0.
    np.testing.assert_allclose(anchors[38 * 38 * 4 - 1, :2], [1.0, 1.0], rtol=1e-6)


def test_ordering_row_major_then_location():
    anchors = anchor_ops.generate_ssd_anchors(SSD300)
    first_map = anchors[: 38 * 38 * 4].reshape(38, 38, 4, 4)  # (y, x, box, cxcywh)
    expected_centres = (np.arange(38) + 0.5) * 8 / 300
    np.testing.assert_allclose(first_map[0, :, 0, 0], expected_centres, rtol=1e-6)  # cx along x
    np.testing.assert_allclose(first_map[:, 0, 0, 1], expected_centres, rtol=1e-6)  # cy along y
    assert np.all(first_map[..., 0] == first_map[..., :1, 0])  # same centre for every box
    np.testing.assert_array_equal(first_map[5, 7, :, 2:], first_map[0, 0, :, 2:])
    second_map = anchors[38 * 38 * 4 : 38 * 38 * 4 + 19 * 19 * 6].reshape(19, 19, 6, 4)
    np.testing.assert_allclose(second_map[0, 1, 0, :2], [1.5 * 16 / 300, 0.5 * 16 / 300], rtol=1e-6)


def test_centres_inside_unit_square():
    for config in (SSD512, dataclasses.replace(SSD300, steps=None)):
        anchors = anchor_ops.generate_ssd_anchors(config)
        assert np.all((anchors[:, :2] >= 0) & (anchors[:, :2] <= 1))
        assert np.all(anchors[:, 2:] > 0)


def test_ssd300_caffe_steps_overhang():
    # The Caffe SSD300 steps put conv6_2's (10x10, step 32 px) last centre at
    # 9.5 * 32 = 304 px > 300 px; every other centre lies inside [0, 1].
    anchors = anchor_ops.generate_ssd_anchors(SSD300)
    start = 38 * 38 * 4 + 19 * 19 * 6
    conv6_2 = anchors[start : start + 10 * 10 * 6].reshape(10, 10, 6, 4)
    outside = (anchors[:, :2] < 0) | (anchors[:, :2] > 1)
    assert outside.sum() == 10 * 6 + 10 * 6  # last column's cx + last row's cy
    np.testing.assert_allclose(conv6_2[:, -1, :, 0], 304 / 300, rtol=1e-6)
    np.testing.assert_allclose(conv6_2[-1, :, :, 1], 304 / 300, rtol=1e-6)


def test_small_config_and_clip():
    config = SsdAnchorConfig(
        image_size=128, feature_map_sizes=(16, 8, 4), min_scale=0.1, max_scale=0.9,
        aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0)), clip=True,
    )
    anchors = anchor_ops.generate_ssd_anchors(config)
    assert anchors.shape == (16 * 16 * 4 + 8 * 8 * 6 + 4 * 4 * 6, 4)
    corners = cxcywh_to_xyxy(anchors)
    assert corners.min() >= -1e-6 and corners.max() <= 1 + 1e-6
    unclipped = anchor_ops.generate_ssd_anchors(dataclasses.replace(config, clip=False))
    assert cxcywh_to_xyxy(unclipped).max() > 1  # clip really changed something


def test_config_normalises_sequences_and_validates():
    config = SsdAnchorConfig(
        image_size=64, feature_map_sizes=[4, 2], min_scale=0.2, max_scale=0.8,
        aspect_ratios=[[2], []], steps=[16, 32],
    )
    assert config.feature_map_sizes == (4, 2) and config.aspect_ratios == ((2.0,), ())
    assert config.steps == (16.0, 32.0) and hash(config) == hash(dataclasses.replace(config))
    with pytest.raises(ValueError, match="aspect_ratios"):
        dataclasses.replace(config, aspect_ratios=((2.0,),))
    with pytest.raises(ValueError, match="together"):
        dataclasses.replace(config, min_sizes=(10.0, 20.0))
    with pytest.raises(ValueError, match="steps"):
        dataclasses.replace(config, steps=(16.0,))


def test_postprocess_does_not_import_tensorflow():
    code = (
        "import sys, tfsp.postprocess.boxes, tfsp.postprocess.anchors; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
