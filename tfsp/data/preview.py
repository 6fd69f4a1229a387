"""Contact sheet of annotated samples from a COCO-format data set.

Reads the split through the same pycocotools loader training uses (:func:`tfsp.data.coco.load_split`)
and draws each image's ground truth with :mod:`tfsp.viz`: instance masks, boxes with class names,
person skeletons, and the semantic map beside it when the data set has dense maps.

Usage::

    python -m tfsp.data.preview --data data/synth --split val --out outputs/synth_contact_sheet.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tfsp import viz
from tfsp.cli import SuggestingParser, positive_int
from tfsp.data.coco import CocoDataset, ImageRecord, load_split, record_masks
from tfsp.fileio import write_atomic
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.structures import DenseKind, DenseMap, Detections, InstanceMasks, Poses

DEFAULT_COUNT = 16
DEFAULT_COLUMNS = 4
DEFAULT_TILE_PX = 256
GROUND_TRUTH_SCORE = 1.0  # ground truth is drawn as detections of full confidence
VISIBLE_KEYPOINT = 2  # COCO visibility: 2 visible, 1 occluded, 0 unlabelled
OCCLUDED_KEYPOINT_SCORE = 0.5  # occluded joints are drawn too (score above the viz threshold)


def _ground_truth_structures(record: ImageRecord) -> tuple[Detections, InstanceMasks, Poses]:
    """The record's non-crowd ground truth as structures in image pixels."""
    keep = ~record.is_crowd
    ones = np.full(int(keep.sum()), GROUND_TRUTH_SCORE, np.float32)
    detections = Detections(boxes_xyxy=record.boxes_xyxy[keep], scores=ones, class_ids=record.class_ids[keep])
    masks = InstanceMasks(masks=record_masks(record)[keep].astype(bool), scores=ones,
                          class_ids=record.class_ids[keep])
    keypoints = record.keypoints[keep]
    has_keypoints = (keypoints[:, :, 2] > 0).any(axis=1)
    visibility = keypoints[has_keypoints, :, 2]
    scores = np.where(visibility == VISIBLE_KEYPOINT, 1.0, np.where(visibility > 0, OCCLUDED_KEYPOINT_SCORE, 0.0))
    poses = Poses(keypoints=np.concatenate([keypoints[has_keypoints, :, :2], scores[..., None]], axis=-1)
                  .astype(np.float32), scores=np.ones(int(has_keypoints.sum()), np.float32))
    return detections, masks, poses


def render_record(record: ImageRecord, class_names: Sequence[str]) -> np.ndarray:
    """Draws one record's ground truth.

    Returns:
        ``(H, W, 3)`` uint8 RGB, or ``(H, 2W, 3)`` with the semantic map on the right when the record has one.
    """
    image = read_image_rgb(record.path)
    detections, masks, poses = _ground_truth_structures(record)
    drawn = viz.draw_detections(viz.draw_poses(viz.draw_masks(image, masks), poses), detections, class_names)
    if record.semantic_path is None:
        return drawn
    labels = cv2.imread(record.semantic_path, cv2.IMREAD_UNCHANGED).astype(np.int32)
    dense = viz.colorize_dense(DenseMap(values=labels, kind=DenseKind.LABELS))
    return np.concatenate([drawn, dense], axis=1)


def contact_sheet_for(dataset: CocoDataset, count: int = DEFAULT_COUNT, columns: int = DEFAULT_COLUMNS,
                      tile_px: int = DEFAULT_TILE_PX) -> np.ndarray:
    """A grid of the first ``count`` images of ``dataset`` with their ground truth drawn.

    Returns:
        uint8 RGB image.
    """
    if not dataset.records:
        raise ValueError(f"{dataset.instances_json}: no usable images to preview")
    tiles = [render_record(record, dataset.class_names) for record in dataset.records[:count]]
    tile_shape = (tile_px, tile_px * tiles[0].shape[1] // tiles[0].shape[0])
    return viz.contact_sheet(tiles, columns=min(columns, len(tiles)), tile_size=tile_shape)


def write_png_atomic(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Writes an ``(H, W, 3)`` uint8 RGB image as PNG with ``tfsp.fileio.write_atomic``."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    return write_atomic(path, encoded.tobytes())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the preview CLI; returns the process exit code."""
    parser = SuggestingParser(prog="python -m tfsp.data.preview", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="data set root (synthetic layout)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--out", default="outputs/synth_contact_sheet.png", help="PNG to write")
    parser.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, help="number of images")
    parser.add_argument("--columns", type=positive_int, default=DEFAULT_COLUMNS)
    args = parser.parse_args(argv)
    dataset = load_split(args.data, args.split)
    sheet = contact_sheet_for(dataset, count=args.count, columns=args.columns)
    path = write_png_atomic(args.out, sheet)
    print(f"contact sheet of {min(args.count, len(dataset))} {args.split} images: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
