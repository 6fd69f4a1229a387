"""Load a COCO-format data set into frozen per-image records (pycocotools, numpy, OpenCV; no TF).

Conventions: boxes are continuous ``[x0, y0, x1, y1]`` pixels (pixel centres at +0.5),
converted from COCO ``[x, y, w, h]``, clipped to the image; boxes with area
``<= MIN_BOX_AREA`` after clipping are dropped (counted in ``CocoDataset.num_dropped_boxes``).
Category ids map to contiguous 0-based ``class_ids`` in ascending category-id order. Images
without annotations are kept (negatives). Missing or corrupt image files are skipped at load
time with ONE warning (``CocoDataset.skipped_images``), so an epoch never crashes on a file.
"""

import contextlib
import io
import json
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tfsp.data.coco_validation import image_file_problem, validate_instances, validate_keypoints
from tfsp.data.keypoints import NUM_KEYPOINTS

logger = logging.getLogger(__name__)

MIN_BOX_AREA = 0.0  # square pixels; boxes at or below this after clipping are dropped
MIN_POLYGON_COORDS = 6  # polygons with fewer coordinates (or an odd count) are dropped, as in detectron2
MAX_LISTED_BAD_IMAGES = 10  # files named in the skip warning (the count covers all)
IMAGE_CHECK_THREADS = 4  # cv2.imdecode releases the GIL


@dataclass(frozen=True)
class ImageRecord:
    """One image and its instances (N of them; N may be 0).

    Attributes:
        image_id: COCO image id.
        path: Image file path.
        height: Image height in pixels.
        width: Image width in pixels.
        boxes_xyxy: ``(N, 4)`` float32 ``[x0, y0, x1, y1]`` pixels, clipped, positive area.
        class_ids: ``(N,)`` int32 contiguous 0-based class ids.
        is_crowd: ``(N,)`` bool COCO ``iscrowd``.
        keypoints: ``(N, 17, 3)`` float32 ``[x, y, v]`` pixels (zeros for non-person / unlabelled).
        segmentations: N raw COCO segmentations (polygon lists or RLE dicts; ``[]`` if absent).
        attribute_ids: ``(N, A)`` float32 multi-hot over ``CocoDataset.attribute_names``.
        semantic_path: uint8 semantic label PNG, or None.
        depth_path: uint16 depth PNG (millimetres), or None.
    """

    image_id: int
    path: str
    height: int
    width: int
    boxes_xyxy: np.ndarray
    class_ids: np.ndarray
    is_crowd: np.ndarray
    keypoints: np.ndarray
    segmentations: tuple
    attribute_ids: np.ndarray
    semantic_path: str | None = None
    depth_path: str | None = None

    def __post_init__(self) -> None:
        count = len(self.class_ids)
        expected = {"boxes_xyxy": ((count, 4), np.float32), "class_ids": ((count,), np.int32),
                    "is_crowd": ((count,), np.bool_), "keypoints": ((count, NUM_KEYPOINTS, 3), np.float32)}
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                raise ValueError(f"ImageRecord.{name} must be {np.dtype(dtype).name} {shape}, got "
                                 f"{getattr(value, 'dtype', type(value))} {getattr(value, 'shape', '')}")
        if self.attribute_ids.ndim != 2 or len(self.attribute_ids) != count or self.attribute_ids.dtype != np.float32:
            raise ValueError(f"ImageRecord.attribute_ids must be float32 ({count}, A), got "
                             f"{self.attribute_ids.dtype} {self.attribute_ids.shape}")
        if len(self.segmentations) != count:
            raise ValueError(f"ImageRecord.segmentations must have {count} entries, got {len(self.segmentations)}")

    def __len__(self) -> int:
        return len(self.class_ids)


@dataclass(frozen=True)
class CocoDataset:
    """A loaded split.

    Attributes:
        records: One :class:`ImageRecord` per usable image, in JSON image order.
        category_ids: COCO category id of each class id (ascending).
        class_names: Category name of each class id.
        attribute_names: Attribute name of each multi-hot column (ascending attribute id).
        instances_json: The instances JSON path (for COCOeval).
        num_dropped_boxes: Annotations dropped for zero area after clipping.
        skipped_images: Paths of image files skipped as missing or corrupt.
    """

    records: tuple[ImageRecord, ...]
    category_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    attribute_names: tuple[str, ...]
    instances_json: str
    num_dropped_boxes: int = 0
    skipped_images: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes."""
        return len(self.category_ids)


def _read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _coco_index(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _xywh_to_clipped_xyxy(bbox: list, height: int, width: int) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.clip([x, y, x + w, y + h], 0.0, [width, height, width, height]).astype(np.float32)


def _usable_segmentation(segmentation: Any, context: dict) -> Any:
    if not isinstance(segmentation, list):
        return segmentation  # RLE
    polygons = [p for p in segmentation if len(p) >= MIN_POLYGON_COORDS and len(p) % 2 == 0]
    context["dropped_polygons"] += len(segmentation) - len(polygons)
    return polygons


def _make_record(image: dict, anns: list[dict], context: dict) -> tuple[ImageRecord, int]:
    height, width, dropped = image["height"], image["width"], 0
    boxes, classes, crowd, keypoints, segms, attributes = [], [], [], [], [], []
    for ann in anns:
        box = _xywh_to_clipped_xyxy(ann["bbox"], height, width)
        if (box[2] - box[0]) * (box[3] - box[1]) <= MIN_BOX_AREA:
            dropped += 1
            continue
        boxes.append(box)
        classes.append(context["class_of"][ann["category_id"]])
        crowd.append(bool(ann.get("iscrowd", 0)))
        raw_kps = context["keypoints"].get(ann["id"], ann.get("keypoints"))
        keypoints.append(np.zeros((NUM_KEYPOINTS, 3), np.float32) if raw_kps is None
                         else np.asarray(raw_kps, np.float32).reshape(NUM_KEYPOINTS, 3))
        segms.append(_usable_segmentation(ann.get("segmentation", []), context))
        multi_hot = np.zeros(len(context["column_of"]), np.float32)
        multi_hot[[context["column_of"][a] for a in ann.get("attribute_ids", [])]] = 1.0
        attributes.append(multi_hot)
    dense, root = image.get("dense") or {}, context["dense_root"]
    record = ImageRecord(
        image_id=int(image["id"]),
        path=str(Path(context["image_dir"]) / image["file_name"]),
        height=height,
        width=width,
        boxes_xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        class_ids=np.array(classes, np.int32),
        is_crowd=np.array(crowd, bool),
        keypoints=np.array(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3),
        segmentations=tuple(segms),
        attribute_ids=np.array(attributes, np.float32).reshape(len(boxes), len(context["column_of"])),
        semantic_path=str(root / dense["semantic"]) if dense.get("semantic") else None,
        depth_path=str(root / dense["depth"]) if dense.get("depth") else None,
    )
    return record, dropped


def _bad_images(images: list[dict], image_dir: Path) -> dict[int, str]:
    with ThreadPoolExecutor(IMAGE_CHECK_THREADS) as pool:
        problems = list(pool.map(lambda im: image_file_problem(image_dir / im["file_name"], im["height"], im["width"]),
                                 images))
    return {image["id"]: reason for image, reason in zip(images, problems) if reason is not None}


def load_coco(
    instances_json: str | Path,
    image_dir: str | Path,
    keypoints_json: str | Path | None = None,
    *,
    dense_root: str | Path | None = None,
    check_images: bool = True,
) -> CocoDataset:
    """Loads a COCO-format split.

    Args:
        instances_json: Instances JSON (images, categories, annotations, optional attributes).
        image_dir: Directory holding the images' ``file_name``.
        keypoints_json: Optional person-keypoints JSON; its ``keypoints`` are merged into the
            instances annotations with the same annotation id.
        dense_root: Directory the images' ``"dense"`` paths are relative to; defaults to the
            parent of the instances JSON's directory (the data set root in the COCO layout).
        check_images: Read and decode every image now, skipping missing/corrupt ones with
            one warning. ``False`` trusts the files (faster on huge sets).

    Returns:
        The :class:`CocoDataset`.

    Raises:
        ValueError: Malformed JSON, naming the file and field.
        FileNotFoundError: A JSON file does not exist.
    """
    data = _read_json(instances_json)
    validate_instances(data, instances_json)
    kp_by_ann: dict[int, list] = {}
    if keypoints_json is not None:
        kp_data = _read_json(keypoints_json)
        validate_keypoints(kp_data, keypoints_json, {a["id"]: a["image_id"] for a in data["annotations"]})
        kp_by_ann = {a["id"]: a["keypoints"] for a in kp_data["annotations"]}
    coco = _coco_index(data)
    category_ids = tuple(sorted(coco.getCatIds()))
    attribute_vocab = sorted(data.get("attributes", []), key=lambda a: a["id"])
    context = {
        "class_of": {cat_id: index for index, cat_id in enumerate(category_ids)},
        "column_of": {a["id"]: index for index, a in enumerate(attribute_vocab)},
        "keypoints": kp_by_ann,
        "dropped_polygons": 0,
        "image_dir": Path(image_dir),
        "dense_root": Path(dense_root) if dense_root is not None else Path(instances_json).resolve().parent.parent,
    }
    images = coco.loadImgs(coco.getImgIds())
    bad = _bad_images(images, Path(image_dir)) if check_images else {}
    if bad:
        listed = [f"{image['file_name']} ({bad[image['id']]})" for image in images if image["id"] in bad]
        more = f" and {len(listed) - MAX_LISTED_BAD_IMAGES} more" if len(listed) > MAX_LISTED_BAD_IMAGES else ""
        warnings.warn(f"{instances_json}: skipped {len(bad)} of {len(images)} images with missing or corrupt files "
                      f"in {image_dir}: {', '.join(listed[:MAX_LISTED_BAD_IMAGES])}{more}", stacklevel=2)
    records, dropped = [], 0
    for image in images:
        if image["id"] not in bad:
            record, count = _make_record(image, coco.imgToAnns[image["id"]], context)
            records.append(record)
            dropped += count
    if dropped or context["dropped_polygons"]:
        logger.info("%s: dropped %d boxes with zero area after clipping and %d degenerate polygons",
                    instances_json, dropped, context["dropped_polygons"])
    return CocoDataset(
        records=tuple(records),
        category_ids=category_ids,
        class_names=tuple(cat["name"] for cat in coco.loadCats(list(category_ids))),
        attribute_names=tuple(a["name"] for a in attribute_vocab),
        instances_json=str(instances_json),
        num_dropped_boxes=dropped,
        skipped_images=tuple(str(Path(image_dir) / image["file_name"]) for image in images if image["id"] in bad),
    )


def load_split(root: str | Path, split: str, *, check_images: bool = True) -> CocoDataset:
    """Loads ``split`` ("train"/"val") of a data set in the :mod:`tfsp.data.synthetic` layout.

    Reads ``root/annotations/instances_{split}.json``, images from ``root/images/{split}``,
    merges ``root/annotations/person_keypoints_{split}.json`` when present; dense paths are
    relative to ``root``.
    """
    root = Path(root)
    keypoints_json = root / "annotations" / f"person_keypoints_{split}.json"
    return load_coco(root / "annotations" / f"instances_{split}.json", root / "images" / split,
                     keypoints_json if keypoints_json.exists() else None, dense_root=root, check_images=check_images)


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decodes one COCO segmentation (polygons, uncompressed or compressed RLE) to ``(H, W)`` uint8 0/1.

    An empty segmentation (``[]``) gives an all-zero mask.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def record_masks(record: ImageRecord) -> np.ndarray:
    """All instance masks of a record.

    Returns:
        ``(N, H, W)`` uint8 in {0, 1}, instance order as ``record.class_ids``.
    """
    masks = [segmentation_mask(s, record.height, record.width) for s in record.segmentations]
    return np.stack(masks) if masks else np.zeros((0, record.height, record.width), np.uint8)
