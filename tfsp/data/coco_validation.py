"""Checks for COCO-format JSON and image files, run before pycocotools sees them.

Every JSON error is a ``ValueError`` naming the FILE and the FIELD, e.g.
``data/x.json: annotations[3].bbox must be 4 numbers, got [1, 2]``, instead of a bare
``KeyError`` from deep inside pycocotools. Image files are checked for presence, size,
truncation (JPEG end-of-image / PNG IEND marker) and decodability; bad ones are reported,
never raised, so a training epoch cannot crash on one file. No TensorFlow here.
"""

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tfsp.data.keypoints import NUM_KEYPOINTS

JPEG_MAGIC = b"\xff\xd8"
JPEG_END_OF_IMAGE = b"\xff\xd9"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END_CHUNK = b"IEND"
# The end marker may be followed by a little padding (some encoders append zeros).
END_MARKER_SEARCH_BYTES = 64
# cv2 flags: 3-channel decode without EXIF rotation (TF's decoders never rotate either).
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def _fail(path: str | Path, field: str, message: str) -> ValueError:
    return ValueError(f"{path}: {field} {message}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_list(data: dict, key: str, path: str | Path) -> list:
    if key not in data:
        raise _fail(path, f"'{key}'", "is missing (required top-level key)")
    if not isinstance(data[key], list):
        raise _fail(path, f"'{key}'", f"must be a list, got {type(data[key]).__name__}")
    return data[key]


def _require_int(entry: dict, key: str, where: str, path: str | Path, positive: bool = False) -> int:
    value = entry.get(key)
    if not _is_int(value) or (positive and value <= 0):
        kind = "a positive integer" if positive else "an integer"
        raise _fail(path, f"{where}.{key}", f"must be {kind}, got {_short(value)}")
    return value


def _unique_ids(entries: list, section: str, path: str | Path, required: Iterable[str] = ()) -> set[int]:
    ids: set[int] = set()
    for index, entry in enumerate(entries):
        where = f"{section}[{index}]"
        if not isinstance(entry, dict):
            raise _fail(path, where, f"must be an object, got {_short(entry)}")
        entry_id = _require_int(entry, "id", where, path)
        if entry_id in ids:
            raise _fail(path, f"{where}.id", f"duplicates id {entry_id}")
        ids.add(entry_id)
        for key in required:
            if not isinstance(entry.get(key), str):
                raise _fail(path, f"{where}.{key}", f"must be a string, got {_short(entry.get(key))}")
    return ids


def _check_segmentation(segm: Any, where: str, path: str | Path) -> None:
    if isinstance(segm, list):
        for k, polygon in enumerate(segm):  # degenerate polygons are dropped later, not errors (COCO has some)
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                raise _fail(path, f"{where}.segmentation[{k}]", f"must be a list of numbers, got {_short(polygon)}")
    elif isinstance(segm, dict):
        size = segm.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise _fail(path, f"{where}.segmentation.size", f"must be [height, width], got {_short(size)}")
        if not isinstance(segm.get("counts"), (list, str)):
            raise _fail(path, f"{where}.segmentation.counts",
                        f"must be a list or string, got {_short(segm.get('counts'))}")
    else:
        raise _fail(path, f"{where}.segmentation", f"must be polygons (list) or RLE (object), got {_short(segm)}")


def _check_keypoints(values: Any, where: str, path: str | Path) -> None:
    expected = 3 * NUM_KEYPOINTS
    if not (isinstance(values, list) and len(values) == expected and all(_is_number(v) for v in values)):
        raise _fail(path, f"{where}.keypoints", f"must be {expected} numbers (x, y, v) * {NUM_KEYPOINTS}, "
                    f"got {_short(values)}")


def _check_annotation(ann: dict, where: str, path: str | Path, image_ids: set[int], category_ids: set[int],
                      attribute_ids: set[int]) -> None:
    if _require_int(ann, "image_id", where, path) not in image_ids:
        raise _fail(path, f"{where}.image_id", f"{ann['image_id']} is not the id of any entry in 'images'")
    if _require_int(ann, "category_id", where, path) not in category_ids:
        raise _fail(path, f"{where}.category_id", f"{ann['category_id']} is not the id of any entry in 'categories'")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise _fail(path, f"{where}.bbox", f"must be 4 numbers, got {_short(bbox)}")
    if bbox[2] < 0 or bbox[3] < 0:
        raise _fail(path, f"{where}.bbox", f"must have width and height >= 0 ([x, y, w, h]), got {bbox}")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise _fail(path, f"{where}.iscrowd", f"must be 0 or 1, got {_short(ann.get('iscrowd'))}")
    if "segmentation" in ann:
        _check_segmentation(ann["segmentation"], where, path)
    if "keypoints" in ann:
        _check_keypoints(ann["keypoints"], where, path)
    attributes = ann.get("attribute_ids", [])
    if not isinstance(attributes, list) or any(a not in attribute_ids for a in attributes):
        raise _fail(path, f"{where}.attribute_ids", f"must list ids from 'attributes', got {_short(attributes)}")


def validate_instances(data: Any, path: str | Path) -> None:
    """Validates an instances JSON object (images, categories, annotations, optional attributes).

    Args:
        data: The parsed JSON.
        path: File name used in error messages.

    Raises:
        ValueError: ``"<path>: <field> <problem>"`` for the first problem found.
    """
    if not isinstance(data, dict):
        raise _fail(path, "top level", f"must be a JSON object, got {type(data).__name__}")
    images = _require_list(data, "images", path)
    categories = _require_list(data, "categories", path)
    annotations = _require_list(data, "annotations", path)
    image_ids = _unique_ids(images, "images", path, required=("file_name",))
    for index, image in enumerate(images):
        _require_int(image, "height", f"images[{index}]", path, positive=True)
        _require_int(image, "width", f"images[{index}]", path, positive=True)
    category_ids = _unique_ids(categories, "categories", path, required=("name",))
    attribute_ids = _unique_ids(data.get("attributes", []), "attributes", path, required=("name",))
    _unique_ids(annotations, "annotations", path)
    for index, ann in enumerate(annotations):
        _check_annotation(ann, f"annotations[{index}]", path, image_ids, category_ids, attribute_ids)


def validate_keypoints(data: Any, path: str | Path, annotation_image_ids: dict[int, int]) -> None:
    """Validates a person-keypoints JSON object against the instances it is merged into.

    Args:
        data: The parsed JSON.
        path: File name used in error messages.
        annotation_image_ids: Instances annotation id -> image id.

    Raises:
        ValueError: ``"<path>: <field> <problem>"`` for the first problem found.
    """
    if not isinstance(data, dict):
        raise _fail(path, "top level", f"must be a JSON object, got {type(data).__name__}")
    annotations = _require_list(data, "annotations", path)
    _unique_ids(annotations, "annotations", path)
    for index, ann in enumerate(annotations):
        where = f"annotations[{index}]"
        if ann["id"] not in annotation_image_ids:
            raise _fail(path, f"{where}.id", f"{ann['id']} matches no annotation id of the instances JSON")
        if ann.get("image_id", annotation_image_ids[ann["id"]]) != annotation_image_ids[ann["id"]]:
            raise _fail(path, f"{where}.image_id", f"{ann.get('image_id')} differs from the instances annotation's "
                        f"image_id {annotation_image_ids[ann['id']]}")
        _check_keypoints(ann.get("keypoints"), where, path)


def image_file_problem(path: str | Path, height: int, width: int) -> str | None:
    """Why an image file is unusable, or ``None`` when it decodes to the expected size.

    Args:
        path: Image file.
        height: Height the JSON declares, pixels.
        width: Width the JSON declares, pixels.

    Returns:
        A short reason ("missing", "zero bytes", "truncated: no JPEG end-of-image marker",
        "truncated: no PNG IEND chunk", "undecodable", "decodes to HxW, JSON says HxW") or None.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if not data:
        return "zero bytes"
    tail = data[-END_MARKER_SEARCH_BYTES:]
    if data.startswith(JPEG_MAGIC) and JPEG_END_OF_IMAGE not in tail:
        return "truncated: no JPEG end-of-image marker"
    if data.startswith(PNG_MAGIC) and PNG_END_CHUNK not in tail:
        return "truncated: no PNG IEND chunk"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), DECODE_FLAGS)
    if image is None:
        return "undecodable"
    if image.shape[:2] != (height, width):
        return f"decodes to {image.shape[0]}x{image.shape[1]}, JSON says {height}x{width}"
    return None
