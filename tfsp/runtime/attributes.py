"""Attribute pipeline: boxes of an image -> crops -> runner -> multi-label attribute scores.

On the device it composes with a detector: image -> ``DetectionPipeline`` -> boxes ->
crops -> attribute graph -> ``Attributes`` (one row per detection). Evaluation feeds
ground-truth boxes instead, so the attribute model is measured on its own.

Crops are cut from the letterboxed S x S image (S = ``spec.attributes.image_size``)
exactly as training cuts them from the tf.data input images
(``tfsp.postprocess.attributes.crop_boxes``), so a box's scale is the same in both.
Device-safe.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfsp.postprocess.attributes import ATTRIBUTE_LOGITS, crop_boxes, decode_attributes
from tfsp.runtime.detection import DetectionPipeline
from tfsp.runtime.preprocess import preprocess_image
from tfsp.runtime.runner import Runner
from tfsp.runtime.timing import StageClock, StageTimings
from tfsp.spec import ModelSpec, Task
from tfsp.structures import Attributes, Detections


@dataclasses.dataclass(frozen=True)
class AttributedDetections:
    """Detections and the attributes of each (row i of both is the same object).

    Attributes:
        detections: boxes in original pixels, scores, class ids.
        attributes: (N, A) attribute scores and the spec's names and thresholds.
    """

    detections: Detections
    attributes: Attributes

    def __post_init__(self) -> None:
        if len(self.detections) != len(self.attributes):
            raise ValueError(f"AttributedDetections: {len(self.detections)} detections but "
                             f"{len(self.attributes)} attribute rows")


class AttributePipeline:
    """Classifies the attributes of boxes; with a detector, of the objects it finds.

    Args:
        runner: any ``Runner`` over crops (input side = ``spec.input_size``) with output
            ``attribute_logits`` (B, A).
        spec: the model's ``ModelSpec`` (task ATTRIBUTES).
        detector: optional detection pipeline that ``detect_timed`` runs first.

    Raises:
        ValueError: spec and runner disagree (task, crop size, output name).
    """

    def __init__(self, runner: Runner, spec: ModelSpec, detector: DetectionPipeline | None = None) -> None:
        if spec.task is not Task.ATTRIBUTES or spec.attributes is None:
            raise ValueError(f"AttributePipeline needs a Task.ATTRIBUTES spec, got {spec.task}")
        if runner.input_size != spec.input_size:
            raise ValueError(f"runner input size {runner.input_size} != spec crop size {spec.input_size}")
        if ATTRIBUTE_LOGITS not in runner.output_names:
            raise ValueError(f"runner lacks output {ATTRIBUTE_LOGITS!r}; it has {list(runner.output_names)}")
        self._runner = runner
        self._spec = spec
        self._head = spec.attributes
        self._detector = detector

    @property
    def spec(self) -> ModelSpec:
        """The attribute model's spec."""
        return self._spec

    def classify_timed(self, image_rgb: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[Attributes, StageTimings]:
        """Attribute scores of given boxes.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image; not modified.
            boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in pixels of ``image_rgb``.

        Returns:
            (``Attributes`` with N rows in box order, per-stage timings: preprocess = resize
            and cropping, inference = the attribute graph on the N crops, postprocess = sigmoid).
        """
        clock = StageClock()
        boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        image, letterbox = preprocess_image(image_rgb, self._head.image_size, self._spec.resize_mode)
        crops = crop_boxes(image, letterbox.to_input_xyxy(boxes), self._head.crop)
        clock.mark()
        logits = (self._runner(crops)[ATTRIBUTE_LOGITS] if len(crops)
                  else np.zeros((0, len(self._head.names)), np.float32))
        clock.mark()
        attributes = decode_attributes(logits, self._head.names, np.asarray(self._head.thresholds, np.float32))
        return attributes, clock.timings()

    def __call__(self, image_rgb: np.ndarray) -> AttributedDetections:
        """Detects objects with the detector, then classifies their attributes."""
        return self.detect_timed(image_rgb)[0]

    def detect_timed(self, image_rgb: np.ndarray) -> tuple[AttributedDetections, StageTimings]:
        """Detector then attributes; each stage's time is the sum over both graphs.

        Raises:
            ValueError: the pipeline has no detector.
        """
        if self._detector is None:
            raise ValueError("AttributePipeline.detect_timed needs a detector (pass detector=DetectionPipeline(...))")
        detections, detect_times = self._detector.detect_timed(image_rgb)
        attributes, attribute_times = self.classify_timed(image_rgb, detections.boxes_xyxy)
        total = StageTimings(detect_times.preprocess_ms + attribute_times.preprocess_ms,
                             detect_times.inference_ms + attribute_times.inference_ms,
                             detect_times.postprocess_ms + attribute_times.postprocess_ms)
        return AttributedDetections(detections, attributes), total
