"""COCO encoding of synthetic masks: exact polygons (holes included), RLE, boxes, pixel convention."""

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from tfsp.data import synthetic_coco


def _rasterise(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """What pycocotools (COCO.annToMask) makes of a polygon segmentation."""
    if not polygons:
        return np.zeros((height, width), bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def _random_masks(rng: np.random.Generator, count: int):
    for index in range(count):
        height, width = (int(v) for v in rng.integers(4, 40, size=2))
        kind = index % 4
        if kind == 0:  # salt and pepper: holes, islands in holes, diagonal-only contacts, border contact
            yield rng.random((height, width)) < rng.uniform(0.2, 0.8)
        elif kind == 1:  # smooth blobs
            low = rng.random((max(2, height // 4), max(2, width // 4))).astype(np.float32)
            yield cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC) > 0.5
        elif kind == 2:  # rings (one hole) of thickness 1-3
            ring = np.zeros((height, width), np.uint8)
            cv2.circle(ring, (width // 2, height // 2), min(height, width) // 3, 1, int(rng.integers(1, 4)))
            yield ring.astype(bool)
        else:  # one-pixel-wide lines
            line = np.zeros((height, width), np.uint8)
            p0, p1 = rng.integers(0, min(height, width), size=(2, 2))
            cv2.line(line, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, 1)
            yield line.astype(bool)


def test_polygons_trace_pixel_edges_golden():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True  # rows 1-2, cols 2-4: continuous box [2, 1, 5, 3]
    (polygon,) = synthetic_coco.mask_to_polygons(mask)
    vertices = {tuple(p) for p in np.array(polygon).reshape(-1, 2)}
    assert vertices == {(2.0, 1.0), (2.0, 3.0), (5.0, 3.0), (5.0, 1.0)}
    assert synthetic_coco.bbox_xywh(mask) == [2.0, 1.0, 3.0, 2.0]


def test_single_pixel_box_follows_the_pixel_convention():
    mask = np.zeros((4, 5), bool)
    mask[2, 3] = True  # pixel (row 2, col 3) covers [3, 4) x [2, 3)
    assert synthetic_coco.bbox_xywh(mask) == [3.0, 2.0, 1.0, 1.0]
    (polygon,) = synthetic_coco.mask_to_polygons(mask)
    assert sorted(np.array(polygon).reshape(-1, 2).tolist()) == [[3, 2], [3, 3], [4, 2], [4, 3]]


def test_polygon_with_hole_round_trips_exactly():
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    mask[4:7, 5:8] = False
    polygons = synthetic_coco.mask_to_polygons(mask)
    assert len(polygons) == 1  # hole joined to its outer ring by a zero-width slit
    np.testing.assert_array_equal(_rasterise(polygons, 12, 12), mask)


def test_polygons_round_trip_through_pycocotools_exactly():
    rng = np.random.default_rng(0)
    for mask in _random_masks(rng, 400):
        polygons = synthetic_coco.mask_to_polygons(mask)
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        np.testing.assert_array_equal(_rasterise(polygons, *mask.shape), mask)


def test_empty_mask_has_no_polygons():
    assert synthetic_coco.mask_to_polygons(np.zeros((3, 3), bool)) == []


def test_rle_is_json_ready_and_round_trips():
    rng = np.random.default_rng(1)
    mask = rng.random((7, 9)) < 0.4
    rle = synthetic_coco.mask_to_rle(mask)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
    assert mask_utils.area(rle) == mask.sum()


@pytest.mark.parametrize(("area", "expected"), [(1023, "small"), (1024, "medium"), (9215, "medium"),
                                                (9216, "large")])
def test_size_attribute_uses_coco_area_ranges(area: int, expected: str):
    layer = synthetic_coco.scene.Layer(category_id=2, mask=np.ones((2, 2), bool), color_name="blue",
                                       color_rgb=np.zeros(3, np.float32), filled=False, is_crowd=False)
    ids = synthetic_coco.attribute_ids(layer, area)
    assert ids == sorted(synthetic_coco.ATTRIBUTE_IDS[n] for n in ("blue", "outlined", expected))
