"""Detection pipeline: RGB image -> preprocess -> runner -> SSD decode -> original pixels.

The same code runs on the server (``KerasRunner``) and the device
(``TFLiteRunner``); it imports neither TensorFlow nor Keras itself, so it is
device-safe whenever the runner is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from tfsp.postprocess.anchors import generate_ssd_anchors
from tfsp.postprocess.boxes import clip_xyxy
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS, SSD_OUTPUT_NAMES, decode_ssd
from tfsp.runtime.preprocess import preprocess_image, read_image_rgb
from tfsp.runtime.runner import Runner, check_pipeline_runner
from tfsp.runtime.timing import StageClock, StageTimings
from tfsp.spec import ModelSpec, Task
from tfsp.structures import Detections


class DetectionPipeline:
    """Runs an SSD graph on full images and returns detections in original pixels.

    Args:
        runner: any ``Runner`` whose outputs include ``box_deltas`` and ``class_logits``.
        spec: the model's ``ModelSpec`` (task DETECTION; input size, resize mode,
            anchors and postprocess thresholds are taken from it).

    Raises:
        ValueError: spec and runner disagree (task, input size, output names).
    """

    def __init__(self, runner: Runner, spec: ModelSpec) -> None:
        check_pipeline_runner("DetectionPipeline", runner, spec, Task.DETECTION, SSD_OUTPUT_NAMES)
        self._runner = runner
        self._spec = spec
        self._anchors = generate_ssd_anchors(spec.anchors)

    @property
    def spec(self) -> ModelSpec:
        """The model spec."""
        return self._spec

    def __call__(self, image_rgb: np.ndarray) -> Detections:
        """Detects objects in one image.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image; not modified.

        Returns:
            ``Detections``: boxes (N, 4) float32 ``[x0, y0, x1, y1]`` in pixels of
            ``image_rgb`` clipped to the image, scores, class ids.
        """
        return self.detect_timed(image_rgb)[0]

    def detect_timed(self, image_rgb: np.ndarray) -> tuple[Detections, StageTimings]:
        """Like ``__call__`` but also returns the per-stage wall-clock timings."""
        clock = StageClock()
        image, letterbox = preprocess_image(image_rgb, self._spec.input_size, self._spec.resize_mode)
        clock.mark()
        outputs = self._runner(image[np.newaxis])
        clock.mark()
        detections = decode_ssd(outputs[BOX_DELTAS][0], outputs[CLASS_LOGITS][0], self._anchors,
                                self._spec.postprocess)
        boxes_input_px = detections.boxes_xyxy * np.float32(self._spec.input_size)
        height, width = image_rgb.shape[:2]
        boxes = clip_xyxy(letterbox.to_original_xyxy(boxes_input_px), height, width)
        result = dataclasses.replace(detections, boxes_xyxy=np.asarray(boxes, np.float32))
        return result, clock.timings()


class ImageRecordLike(Protocol):
    """What ``detect_coco`` reads from each record (``tfsp.data.coco.ImageRecord`` fits)."""

    image_id: int
    path: str


def detect_coco(
    pipeline: DetectionPipeline, records: Iterable[ImageRecordLike]
) -> tuple[list[dict], StageTimings]:
    """Runs every image of a COCO split through the pipeline.

    Args:
        pipeline: the detection pipeline.
        records: images to run (e.g. ``load_split(root, "val").records``).

    Returns:
        ``(results, mean_timings)``: COCO result dicts ``{"image_id",
        "category_id", "bbox": [x, y, w, h] (pixels), "score"}`` for
        ``tfsp.eval``, with category ids from the spec; and the per-stage mean
        timings over the images.

    Raises:
        FileNotFoundError: a missing image file.
        ValueError: an undecodable image file.
    """
    results: list[dict] = []
    timings = []
    for record in records:
        detections, timing = pipeline.detect_timed(read_image_rgb(record.path))
        results.extend(detections.to_coco(record.image_id, pipeline.spec.category_ids))
        timings.append(timing)
    return results, StageTimings.mean(timings)
