"""COCO encoding of rendered synthetic scenes: polygons, RLE, boxes, attributes, annotations.

Pixel convention: pixel (row i, col j) covers [j, j+1) x [i, i+1). Boxes and polygons are in
these continuous coordinates, so a mask's tight box is [min col, min row, max col + 1, max row + 1].
"""

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from tfsp.data import synthetic_scene as scene
from tfsp.data.keypoints import KEYPOINT_NAMES, skeleton_one_based

SMALL_AREA_PX = 32**2  # COCO's small/medium/large area boundaries (pixels)
MEDIUM_AREA_PX = 96**2
FILL_NAMES = ("filled", "outlined")
SIZE_NAMES = ("small", "medium", "large")
ATTRIBUTE_NAMES: tuple[str, ...] = (*scene.PALETTE, *FILL_NAMES, *SIZE_NAMES)
ATTRIBUTE_IDS: dict[str, int] = {name: k + 1 for k, name in enumerate(ATTRIBUTE_NAMES)}
MIN_POLYGON_COORDS = 6  # a polygon needs at least 3 (x, y) points


def categories() -> list[dict]:
    """COCO ``categories`` entries; the person carries ``keypoints`` and a 1-based ``skeleton``."""
    out = []
    for category_id, name in sorted(scene.CATEGORY_NAMES.items()):
        entry = {"id": category_id, "name": name, "supercategory": "person" if category_id == scene.PERSON else "shape"}
        if category_id == scene.PERSON:
            entry.update(keypoints=list(KEYPOINT_NAMES), skeleton=skeleton_one_based())
        out.append(entry)
    return out


def attributes() -> list[dict]:
    """The attribute vocabulary: ``[{"id": 1-based int, "name": str}, ...]``."""
    return [{"id": ATTRIBUTE_IDS[name], "name": name} for name in ATTRIBUTE_NAMES]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Polygons that pycocotools rasterises back to exactly ``mask``.

    The polygons trace pixel edges (integer vertices), not pixel centres: contours are found
    on the mask upsampled 2x, where a boundary pixel at index p lies on the pixel edge
    (p + 1) // 2 of the original grid. Holes are joined to their outer ring by a zero-width
    slit (there and back), which the even-odd fill of pycocotools ignores, so one polygon per
    connected component represents holes exactly.

    Args:
        mask: (H, W) bool.

    Returns:
        One flat ``[x0, y0, x1, y1, ...]`` float list per connected component.
    """
    if not mask.any():
        return []
    x0, y0, w, h = (int(v) for v in bbox_xywh(mask))
    crop = np.pad(mask[y0:y0 + h, x0:x0 + w].astype(np.uint8), 1)  # zero border: contours never touch it
    up = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST_EXACT)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(2 * x0 - 2, 2 * y0 - 2))
    polygons = []
    for index, contour in enumerate(contours):
        links = hierarchy[0][index]
        if links[3] != -1:  # a hole: handled with its outer ring
            continue
        ring = (contour[:, 0, :] + 1) // 2
        parts = [ring]
        child = links[2]
        while child != -1:  # ring ... r0, hole ... h0, then back to r0 (next hole, or the closing edge)
            hole = (contours[child][:, 0, :] + 1) // 2
            parts += [ring[:1], hole, hole[:1]]
            child = hierarchy[0][child][0]
        coords = np.concatenate(parts).astype(np.float64).ravel().tolist()
        if len(coords) >= MIN_POLYGON_COORDS:
            polygons.append(coords)
    return polygons


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of an (H, W) bool mask, with ``counts`` as a JSON-ready str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` (continuous pixels) of a non-empty (H, W) bool mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def attribute_ids(layer: scene.Layer, area: int) -> list[int]:
    """Sorted 1-based attribute ids: colour, filled/outlined and COCO size class of the visible area."""
    size_name = "small" if area < SMALL_AREA_PX else "medium" if area < MEDIUM_AREA_PX else "large"
    names = (layer.color_name, "filled" if layer.filled else "outlined", size_name)
    return sorted(ATTRIBUTE_IDS[name] for name in names)


def scene_annotations(rendered: scene.RenderedScene, image_id: int) -> list[dict]:
    """COCO annotations (without ``id``) of every kept layer, in layer order (back to front).

    Persons carry ``keypoints`` (51 numbers, [x, y, v] per keypoint, v in {0, 1, 2}) and
    ``num_keypoints``; crowds use RLE and ``iscrowd`` 1; others use polygons.
    """
    annotations = []
    for layer, visible, keypoints in zip(rendered.layers, rendered.visible_masks, rendered.keypoints):
        area = int(np.count_nonzero(visible))
        ann = {
            "image_id": image_id,
            "category_id": layer.category_id,
            "segmentation": mask_to_rle(visible) if layer.is_crowd else mask_to_polygons(visible),
            "area": float(area),
            "bbox": bbox_xywh(visible),
            "iscrowd": int(layer.is_crowd),
            "attribute_ids": attribute_ids(layer, area),
        }
        if layer.keypoints_xy is not None:
            # x, y from the float64 layer coordinates (exactly the rounded values that were drawn).
            flat = [[float(x), float(y), int(v)] if v > 0 else [0.0, 0.0, 0]
                    for (x, y), v in zip(layer.keypoints_xy.tolist(), keypoints[:, 2].tolist())]
            ann["keypoints"] = [value for point in flat for value in point]
            ann["num_keypoints"] = int(np.count_nonzero(keypoints[:, 2] > 0))
        annotations.append(ann)
    return annotations
