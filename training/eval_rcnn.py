"""Evaluation of Mask R-CNN (``Task.INSTANCE_SEGMENTATION``) through its device pipeline.

Every image goes once through ``tfsp.runtime.mask_rcnn.MaskRcnnPipeline`` (the four-graph
chain with numpy between, as on the device); its result is written as three sets of COCO
results and each is scored by pycocotools (``tfsp.eval.evaluate_coco``):

* ``segm``: the pasted masks (uncompressed RLE, ``InstanceMasks.to_coco``) against the
  instances JSON -> ``mask_AP``, ``mask_AP50``, ...;
* ``bbox``: the boxes against the instances JSON -> ``box_AP``, ...;
* ``keypoints``: the poses of the person detections (score: ``rcnn_masks.pose_scores``) against the
  person-keypoints JSON -> ``kp_AP``, ... (only with a keypoint head, a person class and
  that file).

Category ids come from the spec, which must list the data set's categories.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfsp.data.coco import CocoDataset, ImageRecord
from tfsp.eval import IouType, evaluate_coco
from tfsp.runtime.mask_rcnn import MaskRcnnPipeline, MaskRcnnResult
from tfsp.runtime.preprocess import read_image_rgb
from tfsp.runtime.runner import Runner
from tfsp.runtime.timing import StageTimings
from tfsp.spec import ModelSpec

INSTANCE_PREFIXES: dict[IouType, str] = {IouType.SEGM: "mask_", IouType.BBOX: "box_", IouType.KEYPOINTS: "kp_"}
"""Prefix of each matching type's stats (``mask_AP``, ``box_AP``, ``kp_AP``); the stats come in this order."""
INSTANCE_HEADLINE = ("mask_AP", "box_AP", "kp_AP")
"""The instance stats shown on progress lines and compared in the demo (kp_AP only when evaluated)."""

CocoResults = dict[IouType, list[dict]]


def result_to_coco(result: MaskRcnnResult, image_id: int, category_ids: Sequence[int],
                   person_category_id: int | None) -> CocoResults:
    """One image's Mask R-CNN result as COCO results per matching type.

    Args:
        result: the pipeline's result in original pixels.
        image_id: COCO image id.
        category_ids: COCO category id of each class id (the spec's).
        person_category_id: category id of the poses; None: no keypoint results.

    Returns:
        ``{SEGM: [...], BBOX: [...], KEYPOINTS: [...]}``: segm results carry uncompressed RLE and no
        ``bbox``; keypoint results ``[x, y, v] * 17`` with the pose score; empty lists where
        there is nothing (no poses, or no person category).
    """
    keypoints = []
    if result.poses is not None and person_category_id is not None:
        keypoints = result.poses.to_coco(image_id, person_category_id)
    return {IouType.SEGM: result.masks.to_coco(image_id, category_ids),
            IouType.BBOX: result.detections.to_coco(image_id, category_ids),
            IouType.KEYPOINTS: keypoints}


def instances_coco(pipeline: MaskRcnnPipeline, records: Sequence[ImageRecord], category_ids: Sequence[int],
                   person_category_id: int | None) -> tuple[CocoResults, bool, StageTimings]:
    """Runs every image once through the pipeline and gathers its COCO results.

    Returns:
        ``(results per matching type, whether the pipeline produced poses (has a keypoint head),
        mean per-image timings)``.

    Raises:
        FileNotFoundError: a missing image file.
        ValueError: an undecodable image file.
    """
    results: CocoResults = {iou_type: [] for iou_type in INSTANCE_PREFIXES}
    timings, with_poses = [], True
    for record in records:
        result, timing = pipeline.detect_timed(read_image_rgb(record.path))
        with_poses &= result.poses is not None
        for iou_type, image_results in result_to_coco(result, record.image_id, category_ids,
                                                      person_category_id).items():
            results[iou_type].extend(image_results)
        timings.append(timing)
    return results, with_poses and bool(records), StageTimings.mean(timings)


def score_instances(results: CocoResults, instances_json: str, keypoints_json: str | None,
                    image_ids: Sequence[int]) -> dict[str, float]:
    """COCOeval of each matching type, stats prefixed by ``INSTANCE_PREFIXES`` (keypoints only with a JSON)."""
    stats: dict[str, float] = {}
    for iou_type, prefix in INSTANCE_PREFIXES.items():
        ground_truth = keypoints_json if iou_type is IouType.KEYPOINTS else instances_json
        if ground_truth is None:
            continue
        values = evaluate_coco(ground_truth, results[iou_type], iou_type, image_ids=image_ids)
        stats.update({prefix + name: value for name, value in values.items()})
    return stats


def check_instance_categories(spec: ModelSpec, dataset: CocoDataset) -> None:
    """Raises ``ValueError`` unless the spec's category ids and names are the data set's."""
    if tuple(spec.category_ids) != tuple(dataset.category_ids):
        raise ValueError(f"model category ids {list(spec.category_ids)} != {dataset.instances_json} "
                         f"category ids {list(dataset.category_ids)}")
    if tuple(spec.class_names) != tuple(dataset.class_names):
        raise ValueError(f"model class names {list(spec.class_names)} != {dataset.instances_json} "
                         f"class names {list(dataset.class_names)}")


def evaluate_instances(runner: Runner, spec: ModelSpec, dataset: CocoDataset, records: Sequence[ImageRecord],
                       keypoints_json: str | None) -> tuple[dict[str, float], int, StageTimings]:
    """Mask, box and keypoint AP of a Mask R-CNN chain over ``records``.

    Args:
        runner: the chain (``tfsp.runtime.graph_chain.GraphChain``: stage 1 and its heads).
        spec: the model's ModelSpec (Task.INSTANCE_SEGMENTATION).
        dataset: the split (its instances JSON is the box and mask ground truth).
        records: the images to run.
        keypoints_json: the split's person-keypoints JSON; None: no keypoint stats.

    Returns:
        (stats ``mask_*``, ``box_*`` (``tfsp.eval.BOX_STAT_NAMES``), then ``kp_*``
        (``KEYPOINT_STAT_NAMES``, only with ``keypoints_json``, a person class and a keypoint
        head); number of detected instances; mean per-image timings).

    Raises:
        ValueError: the spec and the data set disagree on categories, or the runner and spec
            do not fit (``MaskRcnnPipeline.from_runner``).
    """
    check_instance_categories(spec, dataset)
    pipeline = MaskRcnnPipeline.from_runner(runner, spec)
    person = spec.rcnn.person_class_id
    person_category = None if person is None else int(spec.category_ids[person])
    results, with_poses, timings = instances_coco(pipeline, records, spec.category_ids, person_category)
    if person_category is None or not with_poses:
        keypoints_json = None
    stats = score_instances(results, dataset.instances_json, keypoints_json,
                            [record.image_id for record in records])
    return stats, len(results[IouType.BBOX]), timings
