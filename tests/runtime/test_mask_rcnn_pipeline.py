"""MaskRcnnPipeline with fake numpy runners whose outputs make the answer known by hand.

Geometry: a 48 x 96 original image letterboxes into the 64 x 64 input at scale 2/3 (content in
input rows 0..31), so original = input * 1.5. Input levels P2 (16 x 16, 16 px anchors) and P3
(8 x 8, 32 px anchors), aspect ratios (0.5, 1, 2):

* anchor A: P3, row 2, col 3, aspect 1 (square), centre (28, 20), [12, 4, 44, 36]; RPN logit 10 and
  dx = 0.25 (channel 4 * 1 + 0) shift it by 0.25 * 32 = 8 px: proposal [20, 4, 52, 36] input
  = [30, 6, 78, 54] original, clipped to [30, 6, 78, 48] (reaches into the letterbox padding);
* anchor B: P2, row 3, col 12, aspect 1, centre (50, 14), [42, 6, 58, 22] input = [63, 9, 87, 33]
  original; RPN logit 9, zero deltas.

The box head calls row 0 (A) a person (logit 10) and row 1 (B) class 2 (logit 8), with zero deltas
for those classes and 5.0 for every other (a wrong (R, C, 4) reshape would move the boxes).
"""

from __future__ import annotations

import numpy as np
import pytest

from tfsp.postprocess.rcnn import (
    FPN_OUTPUT,
    RPN_DELTAS_OUTPUT,
    RPN_OBJECTNESS_OUTPUT,
    BoxHeadConfig,
    FpnAnchorConfig,
    RpnProposalConfig,
)
from tfsp.postprocess.rcnn_masks import KEYPOINT_LOGITS, MASK_LOGITS
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS
from tfsp.runtime.mask_rcnn import (
    GRAPH_STEPS,
    NUMPY_STEPS,
    STEP_NAMES,
    MaskRcnnPipeline,
    MaskRcnnPipelineConfig,
    MaskRcnnResult,
)
from tfsp.runtime.preprocess import LETTERBOX_PAD_VALUE

SIZE, F, HEIGHT, WIDTH = 64, 4, 48, 96
LEVELS, ANCHOR_SIZES, RATIOS = (2, 3), (16.0, 32.0), (0.5, 1.0, 2.0)
CLASSES = ("person", "car", "dog")
ROW_CLASSES = (0, 2)  # box-head class of proposal rows 0 (A) and 1 (B)
BOX_A_ORIGINAL, BOX_B_ORIGINAL = [30, 6, 78, 48], [63, 9, 87, 33]
BOX_A_INPUT = (20.0, 4.0, 52.0, 36.0)
HEATMAP = 56
PEAK_ROWS = np.array([2 * k + 3 for k in range(16)] + [55])  # keypoint 16 on the bottom row
PEAK_COLS = np.array([50 - 2 * k for k in range(17)])


class FakeStage1:
    """Image runner: zero FPN maps, RPN logits -10 except anchors A (10) and B (9)."""

    def __init__(self, peaks=((3, 2, 3, 1, 10.0, 0.25), (2, 3, 12, 1, 9.0, 0.0))):
        self.input_size = SIZE
        self.output_names = tuple(f"{n}_p{level}" for level in LEVELS for n in ("fpn", "rpn_objectness", "rpn_deltas"))
        self.images = []
        self.outputs = {}
        for level in LEVELS:
            side = SIZE // 2**level
            self.outputs[f"fpn_p{level}"] = np.zeros((1, side, side, F), np.float32)
            self.outputs[f"rpn_objectness_p{level}"] = np.full((1, side, side, 3), -10.0, np.float32)
            self.outputs[f"rpn_deltas_p{level}"] = np.zeros((1, side, side, 12), np.float32)
        for level, row, col, aspect, logit, dx in peaks:
            self.outputs[f"rpn_objectness_p{level}"][0, row, col, aspect] = logit
            self.outputs[f"rpn_deltas_p{level}"][0, row, col, 4 * aspect] = dx

    def __call__(self, images):
        assert images.shape == (1, SIZE, SIZE, 3) and images.dtype == np.float32
        self.images.append(images)
        return self.outputs


class FakeHead:
    """Feature runner: records input shapes; ``make(rois)`` builds the outputs."""

    def __init__(self, name, make, output_names):
        self.name, self.make, self.output_names, self.input_size = name, make, output_names, None
        self.shapes = []

    def __call__(self, images):
        raise AssertionError(f"{self.name} must be run with run_features")

    def run_features(self, rois):
        assert rois.dtype == np.float32
        self.shapes.append(rois.shape)
        return self.make(rois)


def box_head_outputs(rois, logits=(10.0, 8.0)):
    count = len(rois)
    class_logits = np.zeros((count, len(CLASSES) + 1), np.float32)
    deltas = np.full((count, len(CLASSES), 4), 5.0, np.float32)
    for row in range(count):
        class_logits[row, ROW_CLASSES[row] + 1] = logits[row]
        deltas[row, ROW_CLASSES[row]] = 0.0
    return {CLASS_LOGITS: class_logits, BOX_DELTAS: deltas.reshape(count, -1)}


def mask_head_outputs(rois):
    """Row n: +10 left half / -10 right half in its class channel, the opposite elsewhere."""
    logits = np.empty((len(rois), 28, 28, len(CLASSES)), np.float32)
    logits[:, :, :14], logits[:, :, 14:] = -10.0, 10.0
    for row in range(len(rois)):
        logits[row, :, :14, ROW_CLASSES[row]], logits[row, :, 14:, ROW_CLASSES[row]] = 10.0, -10.0
    return {MASK_LOGITS: logits}


def keypoint_head_outputs(rois):
    logits = np.zeros((len(rois), HEATMAP, HEATMAP, 17), np.float32)
    logits[:, PEAK_ROWS, PEAK_COLS, np.arange(17)] = 10.0
    return {KEYPOINT_LOGITS: logits}


def make_config(**overrides):
    anchors = FpnAnchorConfig(image_size=SIZE, levels=LEVELS, sizes_px=ANCHOR_SIZES, aspect_ratios=RATIOS)
    fields = dict(input_size=SIZE, anchors=anchors, class_names=CLASSES,
                  proposals=RpnProposalConfig(post_nms_top_k=2), box_head=BoxHeadConfig())
    return MaskRcnnPipelineConfig(**{**fields, **overrides})


def make_pipeline(box=box_head_outputs, keypoints=True, stage1=None, **overrides):
    heads = (FakeHead("box", box, (CLASS_LOGITS, BOX_DELTAS)), FakeHead("mask", mask_head_outputs, (MASK_LOGITS,)),
             FakeHead("keypoint", keypoint_head_outputs, (KEYPOINT_LOGITS,)) if keypoints else None)
    stage1 = stage1 or FakeStage1()
    return MaskRcnnPipeline(stage1, *heads, config=make_config(**overrides)), stage1, heads


IMAGE = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def test_golden_detections_masks_and_poses():
    pipeline, stage1, (box, mask, keypoint) = make_pipeline()
    result, timings = pipeline.detect_timed(IMAGE)
    assert isinstance(result, MaskRcnnResult)
    assert np.all(stage1.images[0][0, 32:] == LETTERBOX_PAD_VALUE)  # letterbox: content rows 0..31
    assert box.shapes == [(2, 7, 7, F)] and mask.shapes == [(2, 14, 14, F)] and keypoint.shapes == [(1, 14, 14, F)]

    det = result.detections
    np.testing.assert_allclose(det.boxes_xyxy, [BOX_A_ORIGINAL, BOX_B_ORIGINAL], atol=1e-4)
    np.testing.assert_array_equal(det.class_ids, [0, 2])
    np.testing.assert_allclose(det.scores, [np.exp(10) / (np.exp(10) + 3), np.exp(8) / (np.exp(8) + 3)], rtol=1e-5)

    # Masks: left half of each (unclipped) original box; A's box ends at y = 54 but the image at 48.
    expected = np.zeros((2, HEIGHT, WIDTH), bool)
    expected[0, 6:48, 30:54] = True  # x in [30, 54): centre 53.5 in, 54.5 out
    expected[1, 9:33, 63:75] = True  # box [63, 9, 87, 33], mid x 75
    np.testing.assert_array_equal(result.masks.masks, expected)
    np.testing.assert_array_equal(result.masks.class_ids, det.class_ids)
    np.testing.assert_array_equal(result.masks.scores, det.scores)

    # Keypoints of the person (detection 0) only: cell centres in box A (input), x 1.5, clipped.
    np.testing.assert_array_equal(result.pose_detection_index, [0])
    x0, y0, x1, y1 = BOX_A_INPUT
    x = (x0 + (PEAK_COLS + 0.5) * (x1 - x0) / HEATMAP) * 1.5
    y = np.minimum((y0 + (PEAK_ROWS + 0.5) * (y1 - y0) / HEATMAP) * 1.5, HEIGHT)
    assert y[16] == HEIGHT and y[15] < HEIGHT  # keypoint 16 lies in the padding: clipped to the image
    score = 1.0 / (1.0 + (HEATMAP * HEATMAP - 1) * np.exp(-10.0))
    np.testing.assert_allclose(result.poses.keypoints[0], np.stack([x, y, np.full(17, score)], 1), atol=1e-4)
    np.testing.assert_allclose(result.poses.scores, det.scores[:1] * np.sqrt(score), rtol=1e-5)
    assert timings.preprocess_ms >= 0 and timings.inference_ms >= 0 and timings.postprocess_ms >= 0


def test_profiled_steps_sum_to_stage_timings():
    pipeline, _, _ = make_pipeline()
    _, timings, steps = pipeline.detect_profiled(IMAGE)
    assert tuple(steps) == STEP_NAMES and all(value >= 0 for value in steps.values())
    assert set(GRAPH_STEPS) | set(NUMPY_STEPS) == set(STEP_NAMES)
    assert timings.inference_ms == pytest.approx(sum(steps[s] for s in GRAPH_STEPS))
    assert timings.postprocess_ms == pytest.approx(sum(steps[s] for s in NUMPY_STEPS))


def test_without_keypoint_head_poses_are_none():
    pipeline, _, _ = make_pipeline(keypoints=False)
    result = pipeline(IMAGE)
    assert result.poses is None and result.pose_detection_index.shape == (0,)
    assert len(result.detections) == 2 and result.masks.masks.shape == (2, HEIGHT, WIDTH)


def test_no_person_class_runs_no_keypoint_head():
    pipeline, _, (_, _, keypoint) = make_pipeline(class_names=("cat", "car", "dog"))
    result = pipeline(IMAGE)
    assert pipeline.config.person_class_id is None and keypoint.shapes == []
    assert len(result.poses) == 0 and len(result.detections) == 2


def test_no_detections_skips_the_heads():
    background = lambda rois: {CLASS_LOGITS: np.tile(np.float32([10, 0, 0, 0]), (len(rois), 1)),  # noqa: E731
                               BOX_DELTAS: np.zeros((len(rois), 12), np.float32)}
    pipeline, _, (box, mask, keypoint) = make_pipeline(box=background)
    result, timings = pipeline.detect_timed(IMAGE)
    assert box.shapes == [(2, 7, 7, F)] and mask.shapes == [] and keypoint.shapes == []
    assert len(result.detections) == 0 and result.masks.masks.shape == (0, HEIGHT, WIDTH)
    assert len(result.poses) == 0 and result.pose_detection_index.shape == (0,)
    assert min(timings.preprocess_ms, timings.inference_ms, timings.postprocess_ms) >= 0


def test_no_proposals_skips_every_head():
    pipeline, _, heads = make_pipeline(proposals=RpnProposalConfig(post_nms_top_k=0))
    result = pipeline(IMAGE)
    assert all(head.shapes == [] for head in heads)
    assert len(result.detections) == 0 and len(result.masks) == 0 and len(result.poses) == 0


def test_config_and_runner_validation():
    assert make_config().person_class_id == 0 and make_config().category_ids == (1, 2, 3)
    assert make_config().levels == LEVELS
    with pytest.raises(ValueError, match="image_size"):
        make_config(anchors=FpnAnchorConfig(image_size=32, levels=LEVELS, sizes_px=ANCHOR_SIZES))
    with pytest.raises(ValueError, match="person_class_id"):
        make_config(person_class_id=3)
    stage1 = FakeStage1()
    stage1.output_names = stage1.output_names[:-1]
    with pytest.raises(ValueError, match="rpn_deltas_p3"):
        make_pipeline(stage1=stage1)
    with pytest.raises(ValueError, match="pose_detection_index"):
        result = make_pipeline()[0](IMAGE)
        MaskRcnnResult(result.detections, result.masks, result.poses, np.array([5]))


def test_pipeline_config_matches_the_model_config():
    pytest.importorskip("keras")
    from tfsp.models import mask_rcnn as model

    synth = model.MASK_RCNN_SYNTH_CONFIG
    config = MaskRcnnPipelineConfig.from_model_config(synth, ("person", "a", "b", "c"))
    assert config.anchors == model.fpn_anchor_config(synth)
    assert (config.box_roi_size, config.mask_roi_size, config.keypoint_roi_size) == (7, 14, 14)
    stage1_names = {name.format(level) for level in config.levels
                    for name in (FPN_OUTPUT, RPN_OBJECTNESS_OUTPUT, RPN_DELTAS_OUTPUT)}
    assert stage1_names == set(model.stage1_output_names(synth))
