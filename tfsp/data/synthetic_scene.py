"""Scene sampling and rendering for the synthetic data set (numpy + OpenCV).

A scene is a background plus layers drawn back to front: geometric shapes, stick-figure
people with the 17 COCO keypoints and, sometimes, a crowd (a tight cluster of tiny shapes
that is annotated as one ``iscrowd`` region). Every layer is drawn as a hard-edged silhouette
(no anti-aliasing), so the pixels of the image, the masks and the dense maps agree exactly.

Pixel convention: continuous coordinates, pixel (row i, col j) covers [j, j+1) x [i, i+1)
and its centre is (j + 0.5, i + 0.5). OpenCV draws integer point p at the pixel whose centre
is p + 0.5, so continuous points are shifted by -0.5 (and drawn with sub-pixel ``shift``).

Depth: layer k of n (back to front) sits at about ``far - (k + 0.5) * step`` mm with
``step = (far - near) / n``, plus a jitter and a slight vertical slope that are small enough
that every pixel of a nearer layer is strictly nearer than every pixel of the layers behind.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from tfsp.data import synthetic_person
from tfsp.data.keypoints import NUM_KEYPOINTS

PERSON, CIRCLE, SQUARE, TRIANGLE = 1, 2, 3, 4
CATEGORY_NAMES: dict[int, str] = {PERSON: "person", CIRCLE: "circle", SQUARE: "square", TRIANGLE: "triangle"}
SHAPE_CATEGORIES = (CIRCLE, SQUARE, TRIANGLE)

# Named object colours (RGB). Objects jitter each channel by up to COLOR_JITTER.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (235, 220, 50),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "purple": (140, 50, 190),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
COLOR_JITTER = 15
SHADE_AMPLITUDE = 30.0  # brightness change across one image size of an object's linear shading
# Person details (``synthetic_person.draw_person``): a sideways person's far arm and leg are blended
# this far towards grey (depth: they are behind the body), the face marks this far towards the
# opposite colour (255 - colour), so that which way a person looks and which limb is near show.
FAR_LIMB_BLEND = 0.45
FAR_LIMB_GREY = 128.0
FACE_MARK_BLEND = 0.7
MAX_LEVEL = 255.0

NEGATIVE_FRACTION = 0.05  # images with no objects at all
CROWD_FRACTION = 0.2  # images that contain one crowd region
MAX_SHAPES = 6
MAX_PERSONS = 3
MIN_VISIBLE_AREA_PX = 24  # layers with fewer visible pixels are removed from the scene
CENTER_MARGIN = 0.1  # shape centres lie in [-margin, 1 + margin] * image size
PERSON_CENTER_RANGE = (0.1, 0.9)  # person box centres, fraction of the image size (big ones still cross edges)

SHAPE_SIZE_RANGE = (0.04, 0.22)  # circumradius, fraction of the image size
FILLED_PROBABILITY = 0.7
OUTLINE_THICKNESS_RANGE = (0.12, 0.35)  # fraction of the circumradius
MIN_OUTLINE_PX = 2

CROWD_COUNT_RANGE = (5, 12)  # number of tiny shapes, inclusive
CROWD_SHAPE_RADIUS_PX = (2.0, 4.5)
CROWD_CENTER_RANGE = (0.15, 0.85)  # fraction of the image size
CROWD_SPREAD = 0.05  # std of tiny-shape offsets, fraction of the image size

BACKGROUND_LEVELS = (30.0, 225.0)  # gradient end colours are drawn from this range
BACKGROUND_GRID = 16  # the background is built on this grid, then resized to the image
BACKGROUND_NOISE_GRID = (2, 9)  # low-frequency noise grid sizes
BACKGROUND_NOISE_AMPLITUDE = 45.0
IMAGE_NOISE_STD = 3.0  # per-pixel Gaussian noise over the whole image

DEPTH_BACKGROUND_MM = 10_000
DEPTH_OBJECT_RANGE_MM = (1_000.0, 8_000.0)  # objects lie in this depth range, front to back
DEPTH_JITTER = 0.3  # depth offset, fraction of the per-layer depth step
DEPTH_TILT = 0.15  # depth slope per image size of vertical offset from the layer centroid, fraction of the step


@dataclass(frozen=True)
class Layer:
    """One drawn object (or crowd cluster) of a scene, before occlusion.

    Attributes:
        category_id: COCO category id (see CATEGORY_NAMES).
        mask: (H, W) bool full silhouette.
        color_name: key of PALETTE.
        color_rgb: (3,) float32 base colour, RGB 0..255.
        filled: False for outlined shapes.
        is_crowd: True for a crowd cluster.
        keypoints_xy: (17, 2) float64 continuous pixel coordinates, or None for non-persons.
        detail: (H, W) uint8 person detail codes (``synthetic_person.DETAIL_*``), or None.
    """

    category_id: int
    mask: np.ndarray
    color_name: str
    color_rgb: np.ndarray
    filled: bool
    is_crowd: bool
    keypoints_xy: np.ndarray | None = None
    detail: np.ndarray | None = None


@dataclass(frozen=True)
class RenderedScene:
    """A rendered image with the visible (occlusion-resolved) part of every kept layer.

    Attributes:
        image_rgb: (H, W, 3) uint8 RGB.
        layers: kept layers, back to front.
        visible_masks: (N, H, W) bool, layer mask minus the union of the layers in front.
        keypoints: (N, 17, 3) float32 [x, y, v] (zeros for non-persons); outside -> (0, 0, 0).
        semantic: (H, W) uint8, category id of the topmost layer, 0 for background.
        depth_mm: (H, W) uint16 depth in millimetres, DEPTH_BACKGROUND_MM for background.
    """

    image_rgb: np.ndarray
    layers: tuple[Layer, ...]
    visible_masks: np.ndarray
    keypoints: np.ndarray
    semantic: np.ndarray
    depth_mm: np.ndarray


def _sample_color(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    name = list(PALETTE)[rng.integers(len(PALETTE))]
    jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    return name, np.clip(np.array(PALETTE[name]) + jitter, 0, 255).astype(np.float32)


def _polygon_xy(category_id: int, center: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Corners (K, 2) of a square (circumradius ``radius``) or an equilateral triangle."""
    corners = 4 if category_id == SQUARE else 3
    theta = angle + 2.0 * np.pi * np.arange(corners) / corners
    return center + radius * np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def _draw_shape(mask: np.ndarray, category_id: int, center: np.ndarray, radius: float, angle: float,
                thickness: int) -> None:
    """Draw a shape into a uint8 canvas in place; ``thickness`` -1 fills it."""
    if category_id == CIRCLE:
        c = synthetic_person.to_cv_points(center)
        r = int(round(radius * (1 << synthetic_person.CV_SHIFT)))
        cv2.circle(mask, (int(c[0]), int(c[1])), r, 1, thickness, cv2.LINE_8, synthetic_person.CV_SHIFT)
        return
    pts = synthetic_person.to_cv_points(_polygon_xy(category_id, center, radius, angle))[None]
    if thickness < 0:
        cv2.fillPoly(mask, pts, 1, cv2.LINE_8, synthetic_person.CV_SHIFT)
    else:
        cv2.polylines(mask, pts, True, 1, thickness, cv2.LINE_8, synthetic_person.CV_SHIFT)


def _sample_center(rng: np.random.Generator, size: int, low: float = -CENTER_MARGIN,
                   high: float = 1.0 + CENTER_MARGIN) -> np.ndarray:
    return rng.uniform(low, high, size=2) * size


def sample_shape(rng: np.random.Generator, size: int) -> Layer:
    """A circle, square or triangle with random size, rotation, colour and fill."""
    category_id = int(SHAPE_CATEGORIES[rng.integers(len(SHAPE_CATEGORIES))])
    radius = rng.uniform(*SHAPE_SIZE_RANGE) * size
    center, angle = _sample_center(rng, size), rng.uniform(0.0, 2.0 * np.pi)
    filled = bool(rng.random() < FILLED_PROBABILITY)
    thickness = -1 if filled else max(MIN_OUTLINE_PX, int(round(radius * rng.uniform(*OUTLINE_THICKNESS_RANGE))))
    mask = np.zeros((size, size), np.uint8)
    _draw_shape(mask, category_id, center, radius, angle, thickness)
    name, rgb = _sample_color(rng)
    return Layer(category_id, mask.astype(bool), name, rgb, filled, is_crowd=False)


def sample_crowd(rng: np.random.Generator, size: int) -> Layer:
    """A tight cluster of tiny filled shapes of one category and colour (one crowd region)."""
    category_id = int(SHAPE_CATEGORIES[rng.integers(len(SHAPE_CATEGORIES))])
    center = rng.uniform(*CROWD_CENTER_RANGE, size=2) * size
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(CROWD_COUNT_RANGE[0], CROWD_COUNT_RANGE[1] + 1)):
        offset = rng.normal(0.0, CROWD_SPREAD * size, size=2)
        radius = rng.uniform(*CROWD_SHAPE_RADIUS_PX)
        _draw_shape(mask, category_id, center + offset, radius, rng.uniform(0.0, 2.0 * np.pi), -1)
    name, rgb = _sample_color(rng)
    return Layer(category_id, mask.astype(bool), name, rgb, filled=True, is_crowd=True)


def sample_person(rng: np.random.Generator, size: int) -> Layer:
    """A stick figure (thick limbs, torso, head disc) with its 17 COCO keypoints."""
    mask, keypoints_xy, detail = synthetic_person.draw_person(rng, size,
                                                             _sample_center(rng, size, *PERSON_CENTER_RANGE))
    name, rgb = _sample_color(rng)
    return Layer(PERSON, mask, name, rgb, filled=True, is_crowd=False, keypoints_xy=keypoints_xy, detail=detail)


def layer_colors(layer: Layer, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(P, 3) float32 colour of the layer's pixels (ys, xs) before shading: the base colour, with a
    person's far limbs blended towards grey and its face marks towards the opposite colour."""
    colors = np.broadcast_to(layer.color_rgb, (len(ys), 3)).astype(np.float32)
    if layer.detail is None:
        return colors
    codes = layer.detail[ys, xs]
    far = codes == synthetic_person.DETAIL_FAR_LIMB
    colors[far] += FAR_LIMB_BLEND * (FAR_LIMB_GREY - layer.color_rgb)
    face = codes == synthetic_person.DETAIL_FACE_MARK
    colors[face] += FACE_MARK_BLEND * (MAX_LEVEL - 2.0 * layer.color_rgb)
    return colors


def sample_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random background: linear colour gradient plus low-frequency noise.

    Returns:
        (size, size, 3) float32 RGB, roughly 0..255 (clipped later).
    """
    c0, c1 = rng.uniform(*BACKGROUND_LEVELS, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    coords = (np.arange(BACKGROUND_GRID, dtype=np.float32) + 0.5) / BACKGROUND_GRID
    t = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    grid = int(rng.integers(BACKGROUND_NOISE_GRID[0], BACKGROUND_NOISE_GRID[1] + 1))
    noise = rng.uniform(0.0, BACKGROUND_NOISE_AMPLITUDE) * rng.standard_normal(size=(grid, grid, 3), dtype=np.float32)
    small = c0 + (c1 - c0) * t[..., None]
    small += cv2.resize(noise, (BACKGROUND_GRID, BACKGROUND_GRID), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def sample_layers(rng: np.random.Generator, size: int) -> list[Layer]:
    """Random layers of one scene, back to front (empty for a negative image)."""
    if rng.random() < NEGATIVE_FRACTION:
        return []
    layers = [sample_shape(rng, size) for _ in range(rng.integers(1, MAX_SHAPES + 1))]
    layers += [sample_person(rng, size) for _ in range(rng.integers(0, MAX_PERSONS + 1))]
    if rng.random() < CROWD_FRACTION:
        layers.append(sample_crowd(rng, size))
    return [layers[i] for i in rng.permutation(len(layers))]


def resolve_occlusion(layers: list[Layer]) -> tuple[list[Layer], list[np.ndarray]]:
    """Visible part of each layer, dropping layers with less than MIN_VISIBLE_AREA_PX visible.

    Works front to back, so a dropped layer never occludes anything (it is not rendered).

    Args:
        layers: back to front.

    Returns:
        (kept layers back to front, their (H, W) bool visible masks).
    """
    kept: list[tuple[Layer, np.ndarray]] = []
    covered = None
    for layer in reversed(layers):
        visible = layer.mask if covered is None else layer.mask & ~covered
        if np.count_nonzero(visible) < MIN_VISIBLE_AREA_PX:
            continue
        kept.append((layer, visible))
        covered = layer.mask.copy() if covered is None else covered | layer.mask
    kept.reverse()
    return [layer for layer, _ in kept], [visible for _, visible in kept]


def keypoint_visibility(keypoints_xy: np.ndarray, visible_mask: np.ndarray) -> np.ndarray:
    """COCO [x, y, v] keypoints: 2 on the visible mask, 1 occluded, (0, 0, 0) outside the image.

    Args:
        keypoints_xy: (17, 2) continuous pixel coordinates; every in-image keypoint lies on
            its layer's full mask (the person drawing guarantees it).
        visible_mask: (H, W) bool visible part of the person.

    Returns:
        (17, 3) float32.
    """
    height, width = visible_mask.shape
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for k, (x, y) in enumerate(keypoints_xy):
        if 0.0 <= x < width and 0.0 <= y < height:
            out[k] = (x, y, 2.0 if visible_mask[int(y), int(x)] else 1.0)
    return out


def render_scene(rng: np.random.Generator, size: int) -> RenderedScene:
    """Sample and render one scene of ``size`` x ``size`` pixels."""
    background = sample_background(rng, size)
    layers, visible = resolve_occlusion(sample_layers(rng, size))
    image = background
    semantic = np.zeros((size, size), np.uint8)
    depth = np.full((size, size), float(DEPTH_BACKGROUND_MM), np.float32)
    near, far = DEPTH_OBJECT_RANGE_MM
    step = (far - near) / max(len(layers), 1)
    for k, layer in enumerate(layers):
        ys, xs = np.nonzero(layer.mask)
        rel = (np.stack([xs, ys], axis=-1) + 0.5 - np.array([xs.mean(), ys.mean()])) / size
        shade = rel @ rng.uniform(-SHADE_AMPLITUDE, SHADE_AMPLITUDE, size=2)
        image[ys, xs] = layer_colors(layer, ys, xs) + shade[:, None].astype(np.float32)
        semantic[ys, xs] = layer.category_id
        layer_depth = far - (k + 0.5 + rng.uniform(-DEPTH_JITTER, DEPTH_JITTER)) * step
        depth[ys, xs] = layer_depth + rng.uniform(-DEPTH_TILT, DEPTH_TILT) * step * rel[:, 1]
    noise = rng.standard_normal(size=image.shape, dtype=np.float32)
    noise *= IMAGE_NOISE_STD
    image += noise
    image += 0.5  # + 0.5 then truncation to uint8: rounding
    np.clip(image, 0, 255, out=image)
    keypoints = np.zeros((len(layers), NUM_KEYPOINTS, 3), np.float32)
    for k, layer in enumerate(layers):
        if layer.keypoints_xy is not None:
            keypoints[k] = keypoint_visibility(layer.keypoints_xy, visible[k])
    return RenderedScene(
        image_rgb=image.astype(np.uint8),
        layers=tuple(layers),
        visible_masks=np.stack(visible) if visible else np.zeros((0, size, size), bool),
        keypoints=keypoints,
        semantic=semantic,
        depth_mm=np.round(depth).astype(np.uint16),
    )
