"""COCO evaluation through the output structures, on a small hand-built COCO ground truth."""

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tfsp.eval import (BOX_STAT_NAMES, KEYPOINT_STAT_NAMES, IouType, evaluate_coco, ground_truth_as_results,
                       load_ground_truth)
from tfsp.structures import Detections, InstanceMasks, Poses

SIZE = 96
CATEGORY_IDS = (1, 2, 3)  # class_id k -> category id; 1 person, 2 circle, 3 square
IMAGE_IDS = (11, 12, 13)


def _rect(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _circle(cx, cy, r, n=16):
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).ravel().round(2).tolist()


def _person_keypoints(x0, y0, seed, all_missing=False):
    """17 keypoints inside a 24 x 48 box; visibilities 0, 1 and 2 (x = y = 0 where v = 0)."""
    rng = np.random.default_rng(seed)
    xy = np.stack([x0 + rng.uniform(2, 22, 17), y0 + rng.uniform(2, 46, 17)], 1).round(1)
    v = np.full(17, 2)
    v[[3, 4]] = 0
    v[[9, 15]] = 1
    if all_missing:
        v[:] = 0
    xy[v == 0] = 0
    return np.concatenate([xy, v[:, None]], 1).ravel().tolist(), int((v > 0).sum())


def _annotation(ann_id, image_id, category_id, polygon=None, rle=None, keypoints=None):
    segm = [polygon] if polygon is not None else rle
    rles = mask_utils.frPyObjects(segm, SIZE, SIZE)
    rle_merged = mask_utils.merge(rles) if isinstance(rles, list) else rles
    ann = {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segm,
           "area": float(mask_utils.area(rle_merged)), "bbox": mask_utils.toBbox(rle_merged).tolist(),
           "iscrowd": int(rle is not None)}
    if polygon is not None:
        xs, ys = polygon[0::2], polygon[1::2]
        ann["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    if keypoints is not None:
        ann["keypoints"], ann["num_keypoints"] = keypoints
    return ann


@pytest.fixture(scope="module")
def gt_paths(tmp_path_factory):
    """Writes instances.json (all categories) and person_keypoints.json (persons only)."""
    # iscrowd region rows 70:90, cols 4:40 as uncompressed column-major RLE, counted by hand.
    crowd_rle = {"size": [SIZE, SIZE], "counts": [4 * SIZE + 70] + [20, SIZE - 20] * 35 + [20, 6 + 56 * SIZE]}
    people = [  # (ann id, image id, x0, y0, keypoints)
        (3, 11, 60, 10, _person_keypoints(60, 10, 0)),
        (6, 12, 50, 20, _person_keypoints(50, 20, 1)),
        (9, 13, 8, 40, _person_keypoints(8, 40, 2, all_missing=True)),
    ]
    shapes = [
        _annotation(1, 11, 2, polygon=_circle(24, 24, 14)),
        _annotation(2, 11, 3, polygon=_rect(10, 50, 40, 80)),
        _annotation(4, 12, 3, polygon=_rect(5, 5, 25, 25)),
        _annotation(5, 12, 3, polygon=_rect(30, 30, 48, 60)),
        _annotation(7, 12, 3, rle=crowd_rle),
        _annotation(8, 13, 2, polygon=_circle(70, 30, 18)),
    ]
    persons = [_annotation(a, i, 1, polygon=_rect(x, y, x + 24, y + 48), keypoints=k) for a, i, x, y, k in people]
    images = [{"id": i, "width": SIZE, "height": SIZE, "file_name": f"{i:012d}.jpg"} for i in IMAGE_IDS]
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 2, "name": "circle", "supercategory": "shape"},
                  {"id": 3, "name": "square", "supercategory": "shape"}]
    root = tmp_path_factory.mktemp("coco")
    plain_persons = [{k: v for k, v in p.items() if k not in ("keypoints", "num_keypoints")} for p in persons]
    instances = {"images": images, "categories": categories,
                 "annotations": sorted(shapes + plain_persons, key=lambda a: a["id"])}
    (root / "instances.json").write_text(json.dumps(instances))
    person_cat = dict(categories[0], keypoints=[f"k{i}" for i in range(17)], skeleton=[[16, 14], [14, 12]])
    keypoints = {"images": images, "categories": [person_cat], "annotations": persons}
    (root / "person_keypoints.json").write_text(json.dumps(keypoints))
    return root / "instances.json", root / "person_keypoints.json"


@pytest.fixture(scope="module")
def gt(gt_paths):
    return load_ground_truth(gt_paths[0]), load_ground_truth(gt_paths[1])


def _gt_anns(coco, image_id):
    return coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))


def _detections(coco, image_id, shift=0.0):
    anns = _gt_anns(coco, image_id)
    xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) + shift
    return Detections.create(boxes, np.linspace(0.9, 0.5, len(anns)),
                             [CATEGORY_IDS.index(a["category_id"]) for a in anns])


def _instance_masks(coco, image_id, shift=0):
    anns = _gt_anns(coco, image_id)
    masks = np.stack([np.roll(coco.annToMask(a), shift, axis=(0, 1)) for a in anns])
    return InstanceMasks.create(masks, np.linspace(0.9, 0.5, len(anns)),
                                [CATEGORY_IDS.index(a["category_id"]) for a in anns])


def _poses(coco, image_id, shift=0.0):
    anns = [a for a in _gt_anns(coco, image_id) if a["num_keypoints"] > 0]
    kps = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
    kps[:, :, :2] += shift
    return Poses.create(kps, np.full(len(kps), 0.8))


def test_ground_truth_through_structures_scores_perfect(gt, gt_paths):
    instances, keypoints = gt
    boxes = [r for i in IMAGE_IDS for r in _detections(instances, i).to_coco(i, CATEGORY_IDS)]
    masks = [r for i in IMAGE_IDS for r in _instance_masks(instances, i).to_coco(i, CATEGORY_IDS)]
    poses = [r for i in IMAGE_IDS for r in _poses(keypoints, i).to_coco(i, category_id=1)]
    box_stats = evaluate_coco(gt_paths[0], boxes, IouType.BBOX)
    assert tuple(box_stats) == BOX_STAT_NAMES
    for stats in (box_stats, evaluate_coco(instances, masks, IouType.SEGM)):
        assert stats["AP"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)
        assert stats["AR100"] == pytest.approx(1.0)
    pose_stats = evaluate_coco(gt_paths[1], poses, IouType.KEYPOINTS)
    assert tuple(pose_stats) == KEYPOINT_STAT_NAMES
    assert pose_stats["AP"] == pytest.approx(1.0) and pose_stats["AR"] == pytest.approx(1.0)


def test_ground_truth_as_results_scores_perfect_and_keeps_crowd_out(gt):
    instances, keypoints = gt
    for coco, iou_type in ((instances, IouType.BBOX), (instances, IouType.SEGM), (keypoints, IouType.KEYPOINTS)):
        results = ground_truth_as_results(coco, iou_type)
        assert evaluate_coco(coco, json.loads(json.dumps(results)), iou_type)["AP"] == pytest.approx(1.0)
    assert len(ground_truth_as_results(instances, IouType.BBOX)) == 8  # 9 annotations, 1 crowd
    assert len(ground_truth_as_results(keypoints, IouType.KEYPOINTS)) == 2  # one person has no keypoints


def test_detection_on_crowd_region_is_ignored(gt):
    instances, _ = gt
    results = ground_truth_as_results(instances, IouType.BBOX)
    results.append({"image_id": 12, "category_id": 3, "bbox": [4.0, 70.0, 36.0, 20.0], "score": 0.99})
    assert evaluate_coco(instances, results, IouType.BBOX)["AP"] == pytest.approx(1.0)


def test_perturbed_predictions_score_below_one(gt):
    instances, keypoints = gt
    boxes = [r for i in IMAGE_IDS for r in _detections(instances, i, shift=2.0).to_coco(i, CATEGORY_IDS)]
    stats = evaluate_coco(instances, boxes, IouType.BBOX)
    assert 0.0 < stats["AP"] < 1.0 and stats["AP50"] == pytest.approx(1.0)  # boxes >= 18 px: IoU > 0.6
    masks = [r for i in IMAGE_IDS for r in _instance_masks(instances, i, shift=3).to_coco(i, CATEGORY_IDS)]
    assert 0.0 < evaluate_coco(instances, masks, IouType.SEGM)["AP"] < 1.0
    poses = [r for i in IMAGE_IDS for r in _poses(keypoints, i, shift=2.0).to_coco(i)]
    assert 0.0 < evaluate_coco(keypoints, poses, IouType.KEYPOINTS)["AP"] < 1.0


def _one_image_gt(boxes_xywh):
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
                    "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                                     "iscrowd": 0} for k, b in enumerate(boxes_xywh)]}
    coco.createIndex()
    return coco


def test_hand_checked_missed_ground_truth():
    """Two GT, one found exactly: recall 0.5; AP = 51/101 (precision 1 at recall points 0, .01, ..., .5)."""
    coco = _one_image_gt([[10, 10, 40, 40], [60, 60, 35, 35]])
    found = Detections.create([[10, 10, 50, 50]], [0.9], [0]).to_coco(1, [1])
    stats = evaluate_coco(coco, found, IouType.BBOX)
    assert stats["AR100"] == pytest.approx(0.5) and stats["AR1"] == pytest.approx(0.5)
    assert stats["AP"] == pytest.approx(51 / 101) and stats["AP50"] == pytest.approx(51 / 101)
    assert stats["APs"] == -1.0  # no small ground truth: pycocotools' -1 is kept


def test_hand_checked_false_positive_first():
    """A wrong box scored above the right one: precision 0.5 at recall 1, so AP = 0.5."""
    coco = _one_image_gt([[10, 10, 40, 40]])
    results = Detections.create([[60, 60, 90, 90], [10, 10, 50, 50]], [0.9, 0.8], [0, 0]).to_coco(1, [1])
    stats = evaluate_coco(coco, results, IouType.BBOX)
    assert stats["AP"] == pytest.approx(0.5) and stats["AR100"] == pytest.approx(1.0)


def test_results_not_modified_and_quiet(gt, capsys):
    instances, _ = gt
    results = [r for i in IMAGE_IDS for r in _instance_masks(instances, i).to_coco(i, CATEGORY_IDS)]
    before = copy.deepcopy(results)
    evaluate_coco(instances, results, IouType.SEGM)
    assert results == before
    assert capsys.readouterr().out == ""
    evaluate_coco(instances, results, IouType.SEGM, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_empty_results_warn_and_give_zeros(gt):
    with pytest.warns(UserWarning, match="no results"):
        stats = evaluate_coco(gt[1], [], IouType.KEYPOINTS)
    assert stats == {name: 0.0 for name in KEYPOINT_STAT_NAMES}


def test_unknown_image_id_raises(gt):
    results = Detections.create([[0, 0, 5, 5]], [0.5], [0]).to_coco(999, CATEGORY_IDS)
    with pytest.raises(ValueError, match="999"):
        evaluate_coco(gt[0], results, IouType.BBOX)


def test_mismatched_results_or_ground_truth_raise(gt):
    instances, keypoints = gt
    boxes = Detections.create([[0, 0, 5, 5]], [0.5], [0]).to_coco(11, CATEGORY_IDS)
    with pytest.raises(ValueError, match="'segmentation'"):
        evaluate_coco(instances, boxes, IouType.SEGM)
    poses = Poses.create(np.ones((1, 17, 3)), [0.5]).to_coco(11)
    with pytest.raises(ValueError, match="keypoint annotations"):
        evaluate_coco(instances, poses, IouType.KEYPOINTS)  # instances JSON: persons without keypoints


def test_image_ids_restrict_evaluation(gt):
    instances, _ = gt
    only_11 = _detections(instances, 11).to_coco(11, CATEGORY_IDS)
    assert evaluate_coco(instances, only_11, IouType.BBOX)["AR100"] < 1.0
    assert evaluate_coco(instances, only_11, IouType.BBOX, image_ids=[11])["AP"] == pytest.approx(1.0)


def test_category_ids_restrict_evaluation_and_average_to_the_overall_ap(gt):
    instances, _ = gt
    boxes = [r for i in IMAGE_IDS for r in _detections(instances, i, shift=2.0).to_coco(i, CATEGORY_IDS)]
    overall = evaluate_coco(instances, boxes, IouType.BBOX)
    per_category = [evaluate_coco(instances, boxes, IouType.BBOX, category_ids=[c]) for c in CATEGORY_IDS]
    assert len({round(s["AP"], 6) for s in per_category}) > 1  # the categories differ
    # COCO's AP is the mean over categories (each has ground truth here).
    assert np.mean([s["AP"] for s in per_category]) == pytest.approx(overall["AP"], abs=1e-9)
    without_squares = [r for r in boxes if r["category_id"] != CATEGORY_IDS[2]]
    assert evaluate_coco(instances, without_squares, IouType.BBOX, category_ids=[CATEGORY_IDS[2]])["AP"] == 0.0
    assert evaluate_coco(instances, without_squares, IouType.BBOX, category_ids=CATEGORY_IDS[:2]) == pytest.approx(
        evaluate_coco(instances, boxes, IouType.BBOX, category_ids=CATEGORY_IDS[:2]))
    for bad in ([], [99]):
        with pytest.raises(ValueError, match=r"category_ids .* subset of the ground truth's categories \[1, 2, 3\]"):
            evaluate_coco(instances, boxes, IouType.BBOX, category_ids=bad)
