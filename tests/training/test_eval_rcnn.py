"""Mask R-CNN evaluation: a ground-truth oracle scores AP 1.0; an untrained tiny chain runs end to end."""

import dataclasses
import json

import numpy as np
import pytest

from tfsp.data.coco import record_masks
from tfsp.eval import BOX_STAT_NAMES, KEYPOINT_STAT_NAMES
from tfsp.runtime.graph_chain import head_path
from tfsp.runtime.keras_runner import KerasRunner
from tfsp.runtime.mask_rcnn import MaskRcnnResult
from tfsp.spec_builders import instance_segmentation_spec
from tfsp.structures import Detections, InstanceMasks, Poses
from training import evaluate
from training.eval_rcnn import result_to_coco, score_instances
from training.eval_tasks import METRIC_DESCRIPTIONS, keypoints_json

BOX_STATS = [prefix + name for prefix in ("mask_", "box_") for name in BOX_STAT_NAMES]
KEYPOINT_STATS = ["kp_" + name for name in KEYPOINT_STAT_NAMES]


def _oracle(record, person_class_id):
    """The record's non-crowd ground truth as a perfect MaskRcnnResult (scores 1, keypoints of the people)."""
    keep = ~record.is_crowd
    ones = np.ones(int(keep.sum()), np.float32)
    class_ids = record.class_ids[keep]
    detections = Detections.create(record.boxes_xyxy[keep], ones, class_ids)
    masks = InstanceMasks.create(record_masks(record)[keep], ones, class_ids)
    people = np.flatnonzero(class_ids == person_class_id)
    keypoints = record.keypoints[keep][people].copy()
    keypoints[..., 2] = (keypoints[..., 2] > 0).astype(np.float32)
    return MaskRcnnResult(detections, masks, Poses.create(keypoints, ones[people]), people)


def test_ground_truth_through_the_results_builder_scores_one(synth_data, tiny_rcnn):
    dataset, spec = tiny_rcnn.dataset, tiny_rcnn.spec
    person = spec.rcnn.person_class_id
    assert dataset.class_names[person] == "person"
    results = {}
    for record in dataset.records:
        coco = result_to_coco(_oracle(record, person), record.image_id, spec.category_ids, spec.category_ids[person])
        for iou_type, values in coco.items():
            results.setdefault(iou_type, []).extend(values)
    assert all(results.values())  # boxes, masks and poses all present
    stats = score_instances(results, dataset.instances_json, str(keypoints_json(dataset)),
                            [record.image_id for record in dataset.records])
    assert list(stats) == BOX_STATS + KEYPOINT_STATS
    for name in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75", "kp_AP", "kp_AP50"):
        assert stats[name] == pytest.approx(1.0), name


def test_untrained_chain_gives_every_named_stat(tiny_rcnn):
    result = evaluate.evaluate_runner(tiny_rcnn.chain(), tiny_rcnn.spec, tiny_rcnn.dataset)
    assert result.metric == "instances" and result.headline == ("mask_AP", "box_AP", "kp_AP")
    assert list(result.stats) == BOX_STATS + KEYPOINT_STATS
    assert set(METRIC_DESCRIPTIONS["instances"]) == set(result.stats)
    assert all(0.0 <= v <= 1.0 or v == evaluate.MISSING_STAT for v in result.stats.values())
    assert result.num_images == len(tiny_rcnn.dataset) and result.num_detections > 0
    assert result.timings.inference_ms > 0 and result.timings.postprocess_ms > 0
    assert "mask_AP" in result.format_table() and "person keypoints, OKS 0.50" in result.format_table()


def test_without_keypoint_head_or_person_class_there_are_no_keypoint_stats(tiny_rcnn):
    no_head = evaluate.evaluate_runner(tiny_rcnn.chain(keypoints=False), tiny_rcnn.spec, tiny_rcnn.dataset, 1)
    no_person = instance_segmentation_spec(tiny_rcnn.config, tiny_rcnn.dataset.class_names,
                                           tiny_rcnn.dataset.category_ids, with_keypoints=False,
                                           box_head=tiny_rcnn.spec.rcnn.box_head)
    no_kp = evaluate.evaluate_runner(tiny_rcnn.chain(keypoints=False), no_person, tiny_rcnn.dataset, 1)
    for result in (no_head, no_kp):
        assert list(result.stats) == BOX_STATS and result.headline == ("mask_AP", "box_AP")


def test_category_mismatch_is_a_clear_error(tiny_rcnn):
    ids = tuple(c + 10 for c in tiny_rcnn.spec.category_ids)
    with pytest.raises(ValueError, match="model category ids .* != .*instances_val.json category ids"):
        evaluate.evaluate_runner(tiny_rcnn.chain(), dataclasses.replace(tiny_rcnn.spec, category_ids=ids),
                                 tiny_rcnn.dataset)


def test_a_plain_runner_is_a_clear_error(tiny_rcnn):
    with pytest.raises(ValueError, match="GraphChain"):
        evaluate.evaluate_runner(KerasRunner(tiny_rcnn.stage1), tiny_rcnn.spec, tiny_rcnn.dataset)


def test_cli_opens_the_chain_beside_model_keras(synth_data, tiny_rcnn, tmp_path, capsys):
    model = tmp_path / "model.keras"
    tiny_rcnn.stage1.save(model)
    for name, head in tiny_rcnn.heads.items():
        head.save(head_path(model, name))
    tiny_rcnn.spec.to_json(tmp_path / "spec.json")
    out = tmp_path / "stats.json"
    code = evaluate.main(["--model", str(model), "--data", str(synth_data), "--max-images", "2", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "COCO segm, bbox and keypoints" in stdout and " instances" in stdout
    payload = json.loads(out.read_text())
    assert payload["metric"] == "instances" and payload["num_images"] == 2
    assert payload["headline"] == ["mask_AP", "box_AP", "kp_AP"]
    assert list(payload["instances"]) == BOX_STATS + KEYPOINT_STATS
