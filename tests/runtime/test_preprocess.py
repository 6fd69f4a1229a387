"""Golden tests for the shared numpy preprocessing (letterbox / stretch)."""

import cv2
import numpy as np
import pytest

from tfsp.runtime.preprocess import (
    LETTERBOX_PAD_VALUE,
    Letterbox,
    ResizeMode,
    fit_letterbox,
    preprocess_image,
    read_image_rgb,
    resized_size,
)


@pytest.mark.parametrize(
    ("height", "width", "size", "mode", "expected"),
    [
        (48, 64, 32, ResizeMode.LETTERBOX, (24, 32)),
        (37, 53, 96, ResizeMode.LETTERBOX, (67, 96)),  # 37 * 96 / 53 = 67.02
        (3, 2, 5, ResizeMode.LETTERBOX, (5, 3)),  # 2 * 5 / 3 = 3.33 -> 3
        (2, 6, 5, ResizeMode.LETTERBOX, (2, 5)),  # 2 * 5 / 6 = 1.67 -> 2
        (4, 3, 6, ResizeMode.LETTERBOX, (6, 5)),  # 3 * 6 / 4 = 4.5 -> 5 (half rounds up)
        (1, 100, 10, ResizeMode.LETTERBOX, (1, 10)),  # never below one pixel
        (48, 64, 32, ResizeMode.STRETCH, (32, 32)),
    ],
)
def test_resized_size_golden(height, width, size, mode, expected):
    assert resized_size(height, width, size, mode) == expected


def test_letterbox_upsample_golden_values_and_top_left_padding():
    # 2x3 -> content 4x6 inside 6x6: bilinear, half-pixel centres, clamped at the border.
    channel = np.array([[0, 100, 200], [200, 240, 40]], np.uint8)
    image = np.repeat(channel[..., None], 3, axis=2)
    out, letterbox = preprocess_image(image, 6, ResizeMode.LETTERBOX)
    expected_row0 = [0.0, 25.0, 75.0, 125.0, 175.0, 200.0]  # source x = -0.25 (clamped), 0.25, ..., 2.25
    expected_col0 = [0.0, 50.0, 150.0, 200.0]
    np.testing.assert_allclose(out[0, :, 0], expected_row0, atol=1e-4)
    np.testing.assert_allclose(out[:4, 0, 1], expected_col0, atol=1e-4)
    assert out.dtype == np.float32 and out.shape == (6, 6, 3)
    # Padding sits at the bottom only (the image is wider than tall), exactly the named value.
    assert np.all(out[4:] == LETTERBOX_PAD_VALUE) and not np.any(out[:4] == LETTERBOX_PAD_VALUE)
    assert letterbox == Letterbox(2.0, 2.0, 0.0, 0.0, 6)


def test_pixel_centre_convention_single_pixel_maps_through_letterbox():
    image = np.zeros((10, 10, 3), np.uint8)
    image[3, 5] = 255  # pixel centre (x, y) = (5.5, 3.5)
    out, letterbox = preprocess_image(image, 20, ResizeMode.LETTERBOX)
    weights = out[..., 0]
    ys, xs = np.mgrid[0:20, 0:20] + 0.5
    centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, letterbox.to_input_xy(np.array([5.5, 3.5])), atol=1e-4)
    np.testing.assert_allclose(centroid, [11.0, 7.0], atol=1e-4)


@pytest.mark.parametrize("mode", [ResizeMode.LETTERBOX, ResizeMode.STRETCH])
def test_preprocess_matches_plain_cv2_resize_and_does_not_mutate(mode):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    before = image.copy()
    out, letterbox = preprocess_image(image, 40, mode)
    new_h, new_w = resized_size(30, 50, 40, mode)
    reference = cv2.resize(image.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[:new_h, :new_w], reference)
    np.testing.assert_array_equal(image, before)
    assert letterbox.scale_x == pytest.approx(new_w / 50) and letterbox.scale_y == pytest.approx(new_h / 30)
    assert letterbox == fit_letterbox(30, 50, 40, mode)


@pytest.mark.parametrize("letterbox", [Letterbox(0.5, 0.75, 0.0, 0.0, 64), Letterbox(-0.6, 0.7, 40.0, -3.0, 64)])
def test_letterbox_round_trips(letterbox):
    rng = np.random.default_rng(1)
    points = rng.uniform(-10, 100, (20, 2)).astype(np.float32)
    np.testing.assert_allclose(letterbox.to_original_xy(letterbox.to_input_xy(points)), points, atol=1e-4)
    boxes = np.sort(rng.uniform(0, 100, (5, 2, 2)), axis=1).reshape(5, 4).astype(np.float32)  # (corner, xy)
    np.testing.assert_allclose(letterbox.to_original_xyxy(letterbox.to_input_xyxy(boxes)), boxes, atol=1e-4)
    keypoints = np.concatenate([points.reshape(4, 5, 2), np.full((4, 5, 1), 2.0, np.float32)], axis=-1)
    mapped = np.concatenate([letterbox.to_input_xy(keypoints[..., :2]), keypoints[..., 2:]], axis=-1)
    np.testing.assert_allclose(letterbox.to_original_keypoints(mapped), keypoints, atol=1e-4)
    np.testing.assert_array_equal(Letterbox.from_vector(letterbox.as_vector(), 64).as_vector(), letterbox.as_vector())


def test_negative_scale_box_corners_are_resorted():
    flipped = Letterbox(-1.0, 1.0, 100.0, 0.0, 100)  # x -> 100 - x
    np.testing.assert_allclose(flipped.to_original_xyxy(np.array([[10.0, 5.0, 30.0, 25.0]])), [[70.0, 5.0, 90.0, 25.0]])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="image_rgb"):
        preprocess_image(np.zeros((4, 4), np.uint8), 8)
    with pytest.raises(ValueError, match="scale_x"):
        Letterbox(0.0, 1.0, 0.0, 0.0, 8)
    with pytest.raises(ValueError, match="boxes_xyxy"):
        Letterbox(1.0, 1.0, 0.0, 0.0, 8).to_original_xyxy(np.zeros((2, 3)))


def test_read_image_rgb_returns_rgb_and_rejects_bad_files(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image_rgb(tmp_path / "red.png")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8 and (image[..., 0] == 200).all()
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        read_image_rgb(tmp_path / "empty.jpg")
    with pytest.raises(FileNotFoundError):
        read_image_rgb(tmp_path / "absent.jpg")
