"""COCO evaluation on the server: pycocotools ``COCOeval`` with named statistics.

Results are COCO result dicts, e.g. from ``Detections.to_coco``, ``InstanceMasks.to_coco``
or ``Poses.to_coco`` (``tfsp.structures``), gathered over the images of a split::

    results = [r for image_id, det in outputs for r in det.to_coco(image_id, dataset.category_ids)]
    stats = evaluate_coco("data/synth/annotations/instances_val.json", results, IouType.BBOX)
    stats["AP"], stats["AP50"]

Statistics follow pycocotools exactly, including its ``-1.0`` where the ground truth has
nothing to measure (e.g. ``APs`` without small objects).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import io
import os
import warnings
from typing import Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

BOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Names of ``COCOeval.stats`` for bbox and segm, in pycocotools' order."""
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
"""Names of ``COCOeval.stats`` for keypoints, in pycocotools' order."""
GROUND_TRUTH_SCORE = 1.0
"""Score given to every result by ``ground_truth_as_results``."""


class IouType(enum.Enum):
    """What COCOeval matches: boxes, masks or keypoints (OKS). Values are pycocotools' names."""

    BBOX = "bbox"
    SEGM = "segm"
    KEYPOINTS = "keypoints"


_RESULT_KEY = {IouType.BBOX: "bbox", IouType.SEGM: "segmentation", IouType.KEYPOINTS: "keypoints"}


def stat_names(iou_type: IouType) -> tuple[str, ...]:
    """Names of the statistics ``evaluate_coco`` returns for ``iou_type``, in order."""
    return KEYPOINT_STAT_NAMES if iou_type is IouType.KEYPOINTS else BOX_STAT_NAMES


def _quiet(verbose: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def load_ground_truth(ground_truth: str | os.PathLike | COCO, verbose: bool = False) -> COCO:
    """Returns ``ground_truth`` as a pycocotools ``COCO`` (loading a JSON path if given one).

    Args:
        ground_truth: path to a COCO annotations JSON, or a ``COCO`` object (returned as is).
        verbose: let pycocotools print its progress.
    """
    if isinstance(ground_truth, COCO):
        return ground_truth
    with _quiet(verbose):
        return COCO(os.fspath(ground_truth))


def _prepare_results(coco: COCO, results: Sequence[dict], iou_type: IouType) -> list[dict]:
    """Deep-copies results (``loadRes`` edits them) and compresses uncompressed RLE for ``loadRes``.

    For segm, a ``bbox`` key is dropped so that pycocotools takes each result's area from its mask.
    """
    key = _RESULT_KEY[iou_type]
    missing = [k for k, r in enumerate(results) if key not in r]
    if missing:
        raise ValueError(f"{iou_type.value} evaluation needs a '{key}' in every result; results {missing[:10]} lack it")
    prepared = copy.deepcopy(list(results))
    unknown = {r["image_id"] for r in prepared} - set(coco.getImgIds())
    if unknown:
        raise ValueError(f"results refer to image ids absent from the ground truth: {sorted(unknown)[:10]}")
    for result in prepared:
        segmentation = result.get("segmentation")
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            height, width = segmentation["size"]
            result["segmentation"] = mask_utils.frPyObjects(segmentation, height, width)
        if iou_type is IouType.SEGM:
            result.pop("bbox", None)
    return prepared


def _keypoint_category_ids(coco: COCO) -> list[int]:
    """Categories whose annotations carry keypoints (COCO: only person)."""
    return sorted({a["category_id"] for a in coco.dataset.get("annotations", []) if "keypoints" in a})


def _chosen_categories(coco: COCO, category_ids: Iterable[int], keypoint_categories: Sequence[int],
                       iou_type: IouType) -> list[int]:
    """The requested category ids, checked against the ground truth (and, for OKS, its keypoint categories)."""
    wanted = sorted({int(c) for c in category_ids})
    known = set(keypoint_categories) if iou_type is IouType.KEYPOINTS else set(coco.getCatIds())
    unknown = [c for c in wanted if c not in known]
    if unknown or not wanted:
        raise ValueError(f"category_ids {wanted} must be a non-empty subset of the ground truth's "
                         f"{'keypoint ' if iou_type is IouType.KEYPOINTS else ''}categories {sorted(known)}")
    return wanted


def evaluate_coco(ground_truth: str | os.PathLike | COCO, results: Sequence[dict], iou_type: IouType, *,
                  image_ids: Iterable[int] | None = None, category_ids: Iterable[int] | None = None,
                  verbose: bool = False) -> dict[str, float]:
    """Runs COCOeval and returns its statistics by name.

    Args:
        ground_truth: COCO annotations JSON path or ``COCO`` object. For keypoints it may be a
            person-keypoints JSON (person annotations only); only categories with keypoint
            annotations are evaluated.
        results: COCO result dicts (``image_id``, ``category_id``, ``score`` and ``bbox`` /
            ``segmentation`` (compressed or uncompressed RLE) / ``keypoints``). Not modified.
        iou_type: which matching to run.
        image_ids: images to evaluate; default all ground-truth images (images without results
            count as misses).
        category_ids: evaluate only these categories (e.g. one, for per-class AP); default all
            (for keypoints: all with keypoint annotations, of which these are kept).
        verbose: let pycocotools print its progress and summary table.

    Returns:
        ``{name: value}`` for ``stat_names(iou_type)``; AP/AR in [0, 1], ``-1.0`` where pycocotools
        has no ground truth for that statistic. With no results at all: zeros and a ``UserWarning``.

    Raises:
        ValueError: keypoints without keypoint ground truth; ``category_ids`` empty or not in the
            ground truth.
    """
    coco = load_ground_truth(ground_truth, verbose)
    names = stat_names(iou_type)
    keypoint_categories = _keypoint_category_ids(coco) if iou_type is IouType.KEYPOINTS else []
    if iou_type is IouType.KEYPOINTS and not keypoint_categories:
        raise ValueError("keypoints evaluation needs ground truth with keypoint annotations (person_keypoints JSON)")
    chosen = None if category_ids is None else _chosen_categories(coco, category_ids, keypoint_categories, iou_type)
    if not results:
        warnings.warn(f"evaluate_coco({iou_type.value}): no results to evaluate; returning zeros", stacklevel=2)
        return {name: 0.0 for name in names}
    with _quiet(verbose):
        detections = coco.loadRes(_prepare_results(coco, results, iou_type))
        evaluator = COCOeval(coco, detections, iou_type.value)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        if iou_type is IouType.KEYPOINTS:
            evaluator.params.catIds = keypoint_categories
        if chosen is not None:
            evaluator.params.catIds = chosen
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(names, evaluator.stats)}


def ground_truth_as_results(coco: COCO, iou_type: IouType) -> list[dict]:
    """The non-crowd ground truth written as perfect results (score ``GROUND_TRUTH_SCORE``).

    Evaluating these against ``coco`` gives AP 1.0; useful to check an evaluation set-up.

    Args:
        coco: ground truth.
        iou_type: BBOX writes ``bbox``; SEGM writes ``segmentation`` as compressed RLE (counts a
            str, JSON-safe); KEYPOINTS writes ``keypoints`` for annotations with num_keypoints > 0.

    Returns:
        COCO result dicts, in annotation id order.
    """
    results = []
    for ann in coco.loadAnns(sorted(coco.getAnnIds(iscrowd=False))):
        result = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": GROUND_TRUTH_SCORE}
        if iou_type is IouType.BBOX:
            result["bbox"] = [float(v) for v in ann["bbox"]]
        elif iou_type is IouType.SEGM:
            rle = coco.annToRLE(ann)
            result["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        elif ann.get("num_keypoints", 0) > 0:
            result["keypoints"] = np.asarray(ann["keypoints"], np.float64).tolist()
        else:
            continue
        results.append(result)
    return results
