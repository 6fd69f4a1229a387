"""Mask R-CNN keypoint diagnosis: matching, the labelled-keypoint oracle and the CLI on an untrained chain."""

import numpy as np
import pytest

from tfsp.runtime.mask_rcnn import MaskRcnnResult
from tfsp.structures import Detections, InstanceMasks, Poses
from training import rcnn_diagnose
from training.rcnn_diagnose import COMBINATIONS, diagnose, match_people, with_labelled_keypoints


def test_match_people_is_greedy_by_score_and_one_to_one():
    people = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    boxes = np.array([[0, 0, 10, 9],      # IoU 0.9 with person 0, lower score
                      [0, 0, 10, 10],     # exact person 0, higher score: takes it
                      [21, 21, 30, 30],   # IoU 0.81 with person 1
                      [50, 50, 60, 60]],  # nobody
                     np.float32)
    scores = np.array([0.5, 0.9, 0.3, 0.8], np.float32)
    np.testing.assert_array_equal(match_people(boxes, scores, people), [-1, 0, 1, -1])
    np.testing.assert_array_equal(match_people(boxes, scores, people, min_iou=0.85), [-1, 0, -1, -1])
    assert match_people(boxes, scores, people[:0]).tolist() == [-1] * 4
    assert match_people(boxes[:0], scores[:0], people).shape == (0,)


def test_labelled_keypoints_replace_only_matched_poses_and_labelled_types():
    predicted = np.arange(2 * 17 * 3, dtype=np.float32).reshape(2, 17, 3)
    poses = Poses.create(predicted, [0.7, 0.2])
    labels = np.zeros((1, 17, 3), np.float32)
    labels[0, 0] = (5.0, 6.0, 2.0)
    labels[0, 3] = (7.0, 8.0, 1.0)  # labelled, not visible: still a label
    got = with_labelled_keypoints(poses, np.array([-1, 0]), labels)
    np.testing.assert_array_equal(got.keypoints[0], predicted[0])
    np.testing.assert_array_equal(got.keypoints[1, [0, 3]], [[5.0, 6.0, 1.0], [7.0, 8.0, 1.0]])
    unlabelled = [k for k in range(17) if k not in (0, 3)]
    np.testing.assert_array_equal(got.keypoints[1, unlabelled], predicted[1, unlabelled])
    np.testing.assert_array_equal(got.scores, poses.scores)
    np.testing.assert_array_equal(poses.keypoints, predicted)  # input untouched


SHIFT_XY = np.array([1.2, 1.6], np.float32)  # every predicted keypoint 2 px off its label


class _LabelledPipeline:
    """Stands in for the device pipeline: per record in order, the labelled people's boxes and keypoints
    moved by SHIFT_XY, plus one false person (no label near it) with the highest score."""

    def __init__(self, records, person):
        self.records, self.person = iter(records), person

    def __call__(self, image):
        record = next(self.records)
        people = rcnn_diagnose._labelled_people(record, self.person)
        boxes = np.concatenate([record.boxes_xyxy[people], [[0.0, 0.0, 3.0, 3.0]]]).astype(np.float32)
        scores = np.concatenate([np.linspace(0.9, 0.5, len(people)), [0.99]]).astype(np.float32)
        class_ids = np.full(len(boxes), self.person, np.int32)
        keypoints = np.concatenate([record.keypoints[people], np.ones((1, 17, 3), np.float32)])
        keypoints[:-1, :, :2] += SHIFT_XY
        masks = np.zeros((len(boxes), *image.shape[:2]), bool)
        return MaskRcnnResult(Detections.create(boxes, scores, class_ids), InstanceMasks.create(masks, scores, class_ids),
                              Poses.create(keypoints, scores), np.arange(len(boxes)))


def test_diagnosis_of_known_poses(tiny_rcnn, monkeypatch):
    dataset, spec = tiny_rcnn.dataset, tiny_rcnn.spec
    pipeline = _LabelledPipeline(dataset.records, spec.rcnn.person_class_id)
    monkeypatch.setattr(rcnn_diagnose.MaskRcnnPipeline, "from_runner", classmethod(lambda cls, runner, spec: pipeline))
    stats, errors = diagnose(None, spec, dataset)
    # the false person ranks first in its image: dropping it or giving every matched pose its labels both help
    assert stats["matched_only"]["AP"] > stats["predicted"]["AP"]
    assert stats["gt_keypoints"]["AP"] > stats["predicted"]["AP"]
    assert errors and set(errors) <= set(rcnn_diagnose.KEYPOINT_NAMES)
    for error in errors.values():
        assert error.median_px == pytest.approx(2.0, abs=1e-4) and error.p90_px == pytest.approx(2.0, abs=1e-4)
        assert error.outside_box == 0.0  # labels lie inside their own boxes


def test_untrained_chain_gives_every_combination_and_consistent_errors(tiny_rcnn):
    stats, errors = diagnose(tiny_rcnn.chain(), tiny_rcnn.spec, tiny_rcnn.dataset)
    assert tuple(stats) == COMBINATIONS
    assert all(0.0 <= values["AP"] <= 1.0 or values["AP"] == -1.0 for values in stats.values())
    # the labels of the matched people can only raise AP over the predictions, up to ties in the matching
    assert stats["gt_keypoints"]["AP"] >= stats["predicted"]["AP"]
    for error in errors.values():
        assert error.count > 0 and 0.0 <= error.median_px <= error.p90_px and 0.0 <= error.outside_box <= 1.0
    text = rcnn_diagnose.format_report(stats, errors)
    assert text.splitlines()[0].split() == ["poses", "AP", "AP50", "AP75"] and "gt_keypoints" in text


def test_chain_without_keypoint_head_is_refused(tiny_rcnn):
    with pytest.raises(ValueError, match="no keypoint head"):
        diagnose(tiny_rcnn.chain(keypoints=False), tiny_rcnn.spec, tiny_rcnn.dataset, max_images=1)


def test_cli_reports_a_clear_error_for_a_missing_model(tmp_path, capsys):
    assert rcnn_diagnose.main(["--model", str(tmp_path / "nope.tflite"), "--data", str(tmp_path)]) == 2
    assert "Mask R-CNN diagnosis failed" in capsys.readouterr().err
