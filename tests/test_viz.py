"""Drawing: pixels change where the structures are, nowhere else, and inputs stay untouched."""

import numpy as np
import pytest

from tfsp import viz
from tfsp.data.keypoints import SKELETON
from tfsp.structures import Attributes, DenseKind, DenseMap, Detections, InstanceMasks, Poses

GREY = 100


def _image(height=64, width=96):
    return np.full((height, width, 3), GREY, np.uint8)


def _untouched(out, rows, cols):
    return bool(np.all(out[rows, cols] == GREY))


def test_palette_deterministic_and_distinct():
    assert viz.class_color(0) == (230, 25, 75) and viz.class_color(3) == viz.class_color(23)
    assert len({viz.class_color(k) for k in range(len(viz.PALETTE))}) == len(viz.PALETTE)


def test_box_edges_take_class_colour_and_rest_untouched():
    image = _image()
    det = Detections.create([[20.4, 30.0, 50.0, 50.6]], [0.87], [2])  # covers cols 20..49, rows 30..50
    out = viz.draw_detections(image, det, class_names=["a", "b", "circle"], thickness=2)
    color = viz.class_color(2)
    assert np.all(out[30:51, 20] == color) and np.all(out[30:51, 49] == color)  # left / right edges
    assert np.all(out[30, 20:50] == color) and np.all(out[50, 20:50] == color)  # top / bottom edges
    assert np.all(out[31, 21:49] == color) and np.all(out[32:49, 22:48] == GREY)  # 2 px wide, hollow
    assert _untouched(out, slice(51, None), slice(None)) and _untouched(out, slice(30, None), slice(50, None))
    assert _untouched(out, slice(0, 30 - viz.TEXT_LINE_HEIGHT), slice(None))  # label box sits on the top edge
    label = out[:30, 20:50]
    assert np.any(np.all(label == color, axis=-1)) and np.any(np.all(label == 255, axis=-1) | np.all(label == 0,
                                                                                                     axis=-1))
    assert np.all(image == GREY)  # input not drawn into


def test_box_at_image_border_is_clipped():
    out = viz.draw_detections(_image(), Detections.create([[-5, 40, 200, 80]], [0.5], [0]))
    assert np.all(out[40:64, 0] == viz.class_color(0)) and np.all(out[40:64, 95] == viz.class_color(0))


def test_mask_overlay_blends_only_mask_pixels():
    image = _image(8, 8)
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:4, 5:7] = True
    out = viz.draw_masks(image, InstanceMasks.create(masks, [0.9], [1]), alpha=0.5)
    expected = np.rint(0.5 * GREY + 0.5 * np.array(viz.class_color(1), np.float64)).astype(np.uint8)
    assert np.all(out[2:4, 5:7] == expected)
    assert np.all(out[~masks[0]] == GREY) and np.all(image == GREY)


def test_mask_of_other_size_is_resized():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True  # top-left quarter
    out = viz.draw_masks(_image(8, 8), InstanceMasks.create(masks, [0.9], [0]))
    assert np.all(out[:4, :4] != GREY) and _untouched(out, slice(4, None), slice(None))


def test_poses_draw_joints_and_limbs_only_where_found():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 2] = 0  # all absent ...
    kps[0, 15] = [20.5, 50.5, 0.9]  # ... but left ankle
    kps[0, 13] = [20.5, 20.5, 0.9]  # and left knee: SKELETON[0] joins them
    assert SKELETON[0] == (15, 13)
    image = _image()
    out = viz.draw_poses(image, Poses.create(kps, [1.0]))
    assert np.all(out[50, 20] == viz.JOINT_COLOR) and np.all(out[20, 20] == viz.JOINT_COLOR)
    assert np.all(out[35, 20] == viz.class_color(0))  # mid-limb takes limb 0's colour
    assert _untouched(out, slice(None), slice(30, None)) and _untouched(out, slice(0, 14), slice(None))
    assert np.all(image == GREY)
    hidden = kps.copy()
    hidden[0, 13, 2] = 0
    out = viz.draw_poses(image, Poses.create(hidden, [1.0]))
    assert np.all(out[35, 20] == GREY) and np.all(out[50, 20] == viz.JOINT_COLOR)


def test_dense_labels_overlay_foreground_only():
    labels = np.zeros((4, 6), np.int32)
    labels[1:3, 2:4] = 3  # class id 2
    dense = DenseMap(labels, DenseKind.LABELS)
    np.testing.assert_array_equal(viz.colorize_dense(dense)[1, 2], viz.class_color(2))
    assert np.all(viz.colorize_dense(dense)[0, 0] == 0)
    out = viz.draw_dense(_image(8, 12), dense, alpha=1.0)  # map resized 2x (nearest)
    assert np.all(out[2:6, 4:8] == viz.class_color(2))
    mask = np.ones((8, 12), bool)
    mask[2:6, 4:8] = False
    assert np.all(out[mask] == GREY)
    probs = np.zeros((4, 6, 4), np.float32)
    probs[..., 0] = 1
    probs[1:3, 2:4] = [0, 0, 0, 1]
    np.testing.assert_array_equal(viz.colorize_dense(DenseMap(probs, DenseKind.PROBABILITIES)),
                                  viz.colorize_dense(dense))


def test_dense_depth_heat_map_orders_near_to_far():
    depth = np.tile(np.linspace(1.0, 5.0, 16, dtype=np.float32), (4, 1))
    depth[0, 0] = np.nan
    colored = viz.colorize_dense(DenseMap(depth, DenseKind.DEPTH))
    assert np.all(colored[0, 0] == 0)
    near, far = colored[2, 0].astype(int), colored[2, -1].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # turbo: near blue, far red (RGB order)
    out = viz.draw_dense(_image(4, 16), DenseMap(depth, DenseKind.DEPTH), alpha=0.5)
    assert np.all(out[1:] != GREY)  # depth overlays every pixel


def test_attribute_tags_under_boxes():
    det = Detections.create([[10, 5, 40, 20], [60, 5, 90, 20]], [0.9, 0.8], [0, 1])
    attrs = Attributes.create([[0.9, 0.1], [0.1, 0.2]], ["red", "big"], 0.5)  # second has none
    out = viz.draw_attributes(_image(), det, attrs)
    assert np.any(out[20:40, 10:40] != GREY) and np.any(np.all(out[20:40, 10:40] == viz.class_color(0), axis=-1))
    assert _untouched(out, slice(None), slice(55, None)) and _untouched(out, slice(0, 20), slice(None))
    with pytest.raises(ValueError, match="2 detections"):
        viz.draw_attributes(_image(), det, attrs[np.array([0])])


def test_timing_footer_is_appended_below_and_never_covers_the_image():
    image = _image()
    line_height = viz.TEXT_LINE_HEIGHT
    narrow = viz.draw_timing(image, fps=29.97, timings_ms={"pre": 1.5, "model": 12.25})
    assert narrow.shape == (image.shape[0] + 3 * line_height, image.shape[1], 3)  # 3 items, one per line
    assert np.array_equal(narrow[:image.shape[0]], image)
    for k in range(3):  # FPS, pre, model: white ink on the black footer
        band = narrow[image.shape[0] + k * line_height:image.shape[0] + (k + 1) * line_height]
        assert np.any(np.all(band == viz.TIMING_BACKGROUND, axis=-1)) and np.any(np.all(band == 255, axis=-1))
    wide_image = np.full((40, 600, 3), GREY, np.uint8)
    wide = viz.draw_timing(wide_image, fps=30.0, timings_ms={"pre": 1.5, "model": 12.25})
    assert wide.shape == (40 + line_height, 600, 3)  # everything fits on one line
    # The layout depends on the names only: other values give the same size (a video keeps its frame size).
    assert viz.draw_timing(image, fps=1.0, timings_ms={"pre": 1234.5, "model": 0.0}).shape == narrow.shape
    assert np.all(image == GREY)
    assert np.array_equal(viz.draw_timing(image), image)


def test_contact_sheet_shape_and_placement():
    images = [np.full((20, 40, 3), v, np.uint8) for v in (10, 20, 30)] + [np.full((30, 30), 40, np.uint8)]
    sheet = viz.contact_sheet(images, columns=3, tile_size=(32, 48))
    assert sheet.shape == (64, 144, 3) and sheet.dtype == np.uint8
    assert np.all(sheet[4:28, 0:48] == 10)  # 20x40 scaled by 1.2 -> 24x48, centred vertically
    assert np.all(sheet[:4, :48] == 0) and np.all(sheet[28:32, :48] == 0) and np.all(sheet[4:28, 96:144] == 30)
    assert np.all(sheet[32:64, 8:40] == 40) and np.all(sheet[32:64, 48:] == 0)  # grey 30x30 -> 32x32
    assert viz.contact_sheet(images[:1], columns=2, tile_size=16).shape == (16, 32, 3)
    with pytest.raises(ValueError):
        viz.contact_sheet([], columns=2, tile_size=16)


def test_rejects_non_uint8_images():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        viz.draw_detections(np.zeros((8, 8, 3), np.float32), Detections.empty())
