"""Drawing structures onto images (device-safe: numpy and OpenCV only).

Every function is pure: it takes an (H, W, 3) uint8 image, RGB, and returns a new image;
the input is never written. Colours are RGB triples. Coordinates follow tfsp's pixel
convention: pixel (row i, col j) covers [j, j+1) x [i, i+1), so a box ``[x0, y0, x1, y1]``
covers the pixel columns floor(x0) .. ceil(x1) - 1, and a keypoint at (x, y) lies in pixel
(floor(y), floor(x)).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import cv2
import numpy as np

from tfsp.data.keypoints import SKELETON
from tfsp.structures import Attributes, DenseKind, DenseMap, Detections, InstanceMasks, Poses

PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128)], np.uint8)
"""(20, 3) uint8 RGB class colours; class k gets ``PALETTE[k % 20]``."""
BOX_THICKNESS = 2  # box outline width in pixels, drawn inside the box
MASK_ALPHA = 0.5  # weight of the class colour over mask pixels
DENSE_ALPHA = 0.5  # weight of the colour-mapped dense map over the image
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
TEXT_PADDING = 2  # pixels between text and its background box edge
KEYPOINT_RADIUS = 3  # joint disc radius in pixels
LIMB_THICKNESS = 2  # skeleton line width in pixels
KEYPOINT_SCORE_THRESHOLD = 0.0  # joints with score > threshold are drawn
JOINT_COLOR = (255, 255, 255)
TIMING_BACKGROUND = (0, 0, 0)
TIMING_SEPARATOR = "  |  "  # between the items of a one-line timing footer
TIMING_WIDEST_VALUE = "9999.9"  # the footer layout is planned for values up to this wide
DEPTH_COLORMAP = cv2.COLORMAP_TURBO  # near = blue ... far = red after min-max normalisation
_SHIFT = 4  # fractional bits for sub-pixel cv2 drawing
(_, _TEXT_HEIGHT), _TEXT_DESCENT = cv2.getTextSize("Ag|y", FONT, FONT_SCALE, 1)  # same for every string
TEXT_LINE_HEIGHT = _TEXT_HEIGHT + _TEXT_DESCENT + 2 * TEXT_PADDING
"""Height in pixels of one text tag (its filled box), so stacked lines align."""


def class_color(class_id: int) -> tuple[int, int, int]:
    """Deterministic RGB colour of a 0-based class id (same on every run and device)."""
    return tuple(int(c) for c in PALETTE[int(class_id) % len(PALETTE)])


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {got}")


def _cv_point(x: float, y: float) -> tuple[int, int]:
    """Continuous (x, y) -> cv2 fixed-point point (cv2 puts pixel centres at integers)."""
    return int(round((x - 0.5) * (1 << _SHIFT))), int(round((y - 0.5) * (1 << _SHIFT)))


def _pixel_box(box_xyxy: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel bounds [c0, c1) x [r0, r1) covered by a box, clipped to the image, at least 1 x 1."""
    c0 = min(max(math.floor(box_xyxy[0]), 0), width - 1)
    r0 = min(max(math.floor(box_xyxy[1]), 0), height - 1)
    c1 = max(min(math.ceil(box_xyxy[2]), width), c0 + 1)
    r1 = max(min(math.ceil(box_xyxy[3]), height), r0 + 1)
    return c0, r0, c1, r1


def _text(out: np.ndarray, text: str, x: int, y: int, background: tuple[int, int, int], below: bool) -> None:
    """Writes ``text`` on a filled box whose top-left (``below``) or bottom-left corner is pixel (x, y)."""
    w, box_h = cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0], TEXT_LINE_HEIGHT
    top = y if below else y - box_h
    top = min(max(top, 0), max(out.shape[0] - box_h, 0))
    x = min(max(x, 0), max(out.shape[1] - w - 2 * TEXT_PADDING, 0))
    cv2.rectangle(out, (x, top), (x + w + 2 * TEXT_PADDING - 1, top + box_h - 1), background, -1)
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
    cv2.putText(out, text, (x + TEXT_PADDING, top + TEXT_PADDING + _TEXT_HEIGHT), FONT, FONT_SCALE, ink, 1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Detections, class_names: Sequence[str] | None = None,
                    thickness: int = BOX_THICKNESS) -> np.ndarray:
    """Draws box outlines in class colours with a ``"label 0.87"`` tag above each box.

    Args:
        image: (H, W, 3) uint8 RGB.
        detections: boxes in pixels of ``image``.
        class_names: name per class id; the numeric class id is shown when None.
        thickness: outline width in pixels, drawn inside the box.

    Returns:
        New (H, W, 3) uint8 image.
    """
    _check_image(image)
    out = image.copy()
    height, width = out.shape[:2]
    for box, score, class_id in zip(detections.boxes_xyxy, detections.scores, detections.class_ids):
        color = class_color(class_id)
        c0, r0, c1, r1 = _pixel_box(box, height, width)
        t = max(1, min(thickness, (c1 - c0 + 1) // 2, (r1 - r0 + 1) // 2))
        out[r0:r0 + t, c0:c1] = out[r1 - t:r1, c0:c1] = color
        out[r0:r1, c0:c0 + t] = out[r0:r1, c1 - t:c1] = color
        label = class_names[class_id] if class_names is not None else str(int(class_id))
        _text(out, f"{label} {score:.2f}", c0, r0, color, below=False)
    return out


def draw_masks(image: np.ndarray, masks: InstanceMasks, alpha: float = MASK_ALPHA) -> np.ndarray:
    """Blends each mask's class colour over its pixels: ``(1 - alpha) * image + alpha * colour``.

    Args:
        image: (H, W, 3) uint8 RGB; masks of another size are resized (nearest) to it.
        masks: instance masks; later instances are drawn over earlier ones.
        alpha: colour weight in [0, 1].

    Returns:
        New (H, W, 3) uint8 image.
    """
    _check_image(image)
    out = image.astype(np.float32)
    height, width = image.shape[:2]
    for mask, class_id in zip(masks.masks, masks.class_ids):
        if mask.shape != (height, width):
            mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.float32(class_color(class_id))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_poses(image: np.ndarray, poses: Poses, score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
               skeleton: Sequence[tuple[int, int]] = SKELETON) -> np.ndarray:
    """Draws skeleton limbs (colour per limb) and joints for keypoints with score > ``score_threshold``.

    Args:
        image: (H, W, 3) uint8 RGB.
        poses: keypoints ``[x, y, score]`` in pixels of ``image``.
        score_threshold: joints at or below it, and limbs touching them, are skipped.
        skeleton: 0-based keypoint index pairs (default the COCO skeleton).

    Returns:
        New (H, W, 3) uint8 image.
    """
    _check_image(image)
    out = image.copy()
    for keypoints in poses.keypoints:
        found = keypoints[:, 2] > score_threshold
        for limb, (a, b) in enumerate(skeleton):
            if found[a] and found[b]:
                cv2.line(out, _cv_point(*keypoints[a, :2]), _cv_point(*keypoints[b, :2]), class_color(limb),
                         LIMB_THICKNESS, cv2.LINE_AA, _SHIFT)
        for x, y, _ in keypoints[found]:
            cv2.circle(out, _cv_point(x, y), KEYPOINT_RADIUS << _SHIFT, JOINT_COLOR, -1, cv2.LINE_AA, _SHIFT)
    return out


def colorize_dense(dense: DenseMap, depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Colours a dense map: (H, W, 3) uint8 RGB.

    LABELS / PROBABILITIES (argmax): label l > 0 gets ``class_color(l - 1)`` (label k + 1 is
    class id k, as in the detections), background 0 is black. DEPTH: ``DEPTH_COLORMAP`` over
    ``depth_range`` (metres; default the finite min and max), non-finite depth black.
    """
    if dense.kind is DenseKind.DEPTH:
        depth = dense.values
        finite = np.isfinite(depth)
        low, high = depth_range or ((depth[finite].min(), depth[finite].max()) if finite.any() else (0.0, 1.0))
        scaled = np.clip((np.where(finite, depth, low) - low) / max(high - low, 1e-6), 0, 1)
        colored = cv2.applyColorMap(np.rint(scaled * 255).astype(np.uint8), DEPTH_COLORMAP)[..., ::-1]
        return np.where(finite[..., None], colored, 0).astype(np.uint8)
    labels = dense.to_labels().values
    table = np.concatenate([np.zeros((1, 3), np.uint8), PALETTE])
    return table[np.where(labels > 0, (labels - 1) % len(PALETTE) + 1, 0)]


def draw_dense(image: np.ndarray, dense: DenseMap, alpha: float = DENSE_ALPHA,
               depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Overlays ``colorize_dense(dense)``: label maps over foreground pixels only, depth everywhere.

    Args:
        image: (H, W, 3) uint8 RGB; a map of another size is resized to it (nearest for labels,
            linear for depth).
        dense: the map.
        alpha: weight of the colour map in [0, 1].
        depth_range: (near, far) metres for DEPTH colouring; default the map's finite range.

    Returns:
        New (H, W, 3) uint8 image.
    """
    _check_image(image)
    height, width = image.shape[:2]
    colored = colorize_dense(dense, depth_range)
    if dense.kind is DenseKind.DEPTH:
        where = np.ones((height, width), bool)
    else:
        where = dense.to_labels().values > 0
        if where.shape != (height, width):
            where = cv2.resize(where.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    if colored.shape[:2] != (height, width):
        linear = dense.kind is DenseKind.DEPTH
        colored = cv2.resize(colored, (width, height), interpolation=cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST)
    out = image.astype(np.float32)
    out[where] = (1.0 - alpha) * out[where] + alpha * colored[where]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_attributes(image: np.ndarray, detections: Detections, attributes: Attributes) -> np.ndarray:
    """Writes the names of the present attributes of instance i under box i, in its class colour.

    Args:
        image: (H, W, 3) uint8 RGB.
        detections: boxes in pixels of ``image``.
        attributes: one row per detection.

    Returns:
        New (H, W, 3) uint8 image.
    """
    _check_image(image)
    if len(attributes) != len(detections):
        raise ValueError(f"attributes has {len(attributes)} rows for {len(detections)} detections")
    out = image.copy()
    for i, (box, class_id) in enumerate(zip(detections.boxes_xyxy, detections.class_ids)):
        names = attributes.present_names(i)
        if names:
            c0, _, _, r1 = _pixel_box(box, *out.shape[:2])
            _text(out, ", ".join(names), c0, r1, class_color(class_id), below=True)
    return out


def draw_timing(image: np.ndarray, fps: float | None = None, timings_ms: Mapping[str, float] | None = None
                ) -> np.ndarray:
    """Appends a black footer below the image with ``"FPS 30.0"`` and ``"name 1.2 ms"`` per timing.

    The footer never covers the picture (labels near the top stay readable). Its layout depends only
    on the image width and the timing names, not on the values, so every frame of a video gets the
    same size: all items on one line when the widest values (``TIMING_WIDEST_VALUE``) would fit,
    else one item per line.

    Args:
        image: (H, W, 3) uint8 RGB.
        fps: frames per second, omitted when None.
        timings_ms: stage name -> milliseconds, in display order.

    Returns:
        New (H + F, W, 3) uint8 image, F = lines x ``TEXT_LINE_HEIGHT`` (F = 0 with nothing to show).
    """
    _check_image(image)
    names = list(timings_ms or {})
    items = ([f"FPS {fps:.1f}"] if fps is not None else []) + [f"{k} {v:.1f} ms" for k, v in (timings_ms or {}).items()]
    if not items:
        return image.copy()
    widest = ([f"FPS {TIMING_WIDEST_VALUE}"] if fps is not None else []) + [f"{k} {TIMING_WIDEST_VALUE} ms" for k in names]
    one_line = cv2.getTextSize(TIMING_SEPARATOR.join(widest), FONT, FONT_SCALE, 1)[0][0] + 2 * TEXT_PADDING
    lines = [TIMING_SEPARATOR.join(items)] if one_line <= image.shape[1] else items
    footer = np.zeros((len(lines) * TEXT_LINE_HEIGHT, image.shape[1], 3), np.uint8)
    footer[:] = TIMING_BACKGROUND
    for k, line in enumerate(lines):
        _text(footer, line, 0, k * TEXT_LINE_HEIGHT, TIMING_BACKGROUND, below=True)
    return np.concatenate([image, footer], axis=0)


def contact_sheet(images: Sequence[np.ndarray], columns: int, tile_size: int | tuple[int, int]) -> np.ndarray:
    """Tiles images row-major into a grid; each is resized to fit its tile, keeping its aspect ratio.

    Args:
        images: uint8 images, (H, W, 3) RGB or (H, W) grey (replicated to 3 channels).
        columns: tiles per row.
        tile_size: tile side in pixels, or (height, width).

    Returns:
        (ceil(len(images) / columns) * tile_height, columns * tile_width, 3) uint8; images are
        centred in their tiles and the rest is black.
    """
    if not len(images) or columns < 1:
        raise ValueError(f"contact_sheet needs at least one image and columns >= 1, got {len(images)}, {columns}")
    tile_h, tile_w = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    rows = math.ceil(len(images) / columns)
    sheet = np.zeros((rows * tile_h, columns * tile_w, 3), np.uint8)
    for k, image in enumerate(images):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        _check_image(image)
        scale = min(tile_h / image.shape[0], tile_w / image.shape[1])
        h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (k // columns) * tile_h + (tile_h - h) // 2, (k % columns) * tile_w + (tile_w - w) // 2
        sheet[top:top + h, left:left + w] = resized
    return sheet
