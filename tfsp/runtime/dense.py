"""Dense pipeline: RGB image -> preprocess -> runner -> per-pixel maps in original pixels.

The same code runs on the server (``KerasRunner``) and the device (``TFLiteRunner``);
it imports neither TensorFlow nor Keras itself. The graph predicts on an F x F grid
covering the S x S letterboxed input; ``tfsp.postprocess.dense`` resamples the maps
back onto the original image (logits before the argmax, depth bilinearly).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfsp.postprocess.dense import DEPTH, SEMANTIC_LOGITS, decode_depth, decode_semantic
from tfsp.runtime.preprocess import preprocess_image
from tfsp.runtime.runner import Runner, check_pipeline_runner
from tfsp.runtime.timing import StageClock, StageTimings
from tfsp.spec import ModelSpec, Task
from tfsp.structures import DenseKind, DenseMap

DENSE_OUTPUT_NAMES = (SEMANTIC_LOGITS, DEPTH)
"""Graph outputs the dense pipeline reads."""


@dataclasses.dataclass(frozen=True)
class DensePrediction:
    """The dense maps of one image, on its original pixel grid.

    Attributes:
        semantic: LABELS (H, W) int32: 0 background, k + 1 = class id k of the spec.
        depth: DEPTH (H, W) float32 metres.
    """

    semantic: DenseMap
    depth: DenseMap

    def __post_init__(self) -> None:
        if self.semantic.kind is not DenseKind.LABELS or self.depth.kind is not DenseKind.DEPTH:
            raise ValueError(f"DensePrediction needs a LABELS and a DEPTH map, got {self.semantic.kind} and "
                             f"{self.depth.kind}")
        if self.semantic.values.shape != self.depth.values.shape:
            raise ValueError(f"DensePrediction maps differ in shape: {self.semantic.values.shape} vs "
                             f"{self.depth.values.shape}")


class DensePipeline:
    """Runs a dense (segmentation + depth) graph on full images.

    Args:
        runner: any ``Runner`` whose outputs include ``semantic_logits`` (1, F, F, C + 1)
            and ``depth`` (1, F, F, 1).
        spec: the model's ``ModelSpec`` (task DENSE).

    Raises:
        ValueError: spec and runner disagree (task, input size, output names).
    """

    def __init__(self, runner: Runner, spec: ModelSpec) -> None:
        check_pipeline_runner("DensePipeline", runner, spec, Task.DENSE, DENSE_OUTPUT_NAMES)
        self._runner = runner
        self._spec = spec

    @property
    def spec(self) -> ModelSpec:
        """The model spec."""
        return self._spec

    def __call__(self, image_rgb: np.ndarray) -> DensePrediction:
        """Predicts the label and depth maps of one (H, W, 3) uint8 RGB image (not modified)."""
        return self.detect_timed(image_rgb)[0]

    def detect_timed(self, image_rgb: np.ndarray) -> tuple[DensePrediction, StageTimings]:
        """Like ``__call__`` but also returns the per-stage wall-clock timings."""
        clock = StageClock()
        image, letterbox = preprocess_image(image_rgb, self._spec.input_size, self._spec.resize_mode)
        clock.mark()
        outputs = self._runner(image[np.newaxis])
        clock.mark()
        height, width = image_rgb.shape[:2]
        size = self._spec.input_size
        result = DensePrediction(
            semantic=decode_semantic(outputs[SEMANTIC_LOGITS][0], letterbox, size, height, width),
            depth=decode_depth(outputs[DEPTH][0], letterbox, size, height, width))
        return result, clock.timings()
