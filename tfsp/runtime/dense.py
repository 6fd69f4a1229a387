"""Dense pipeline: RGB image -> preprocess -> runner -> per-pixel maps in original pixels.

The same code runs on the server (``KerasRunner``) and the device (``TFLiteRunner``);
it imports neither TensorFlow nor Keras itself. The graph predicts on an F x F grid
covering the S x S letterboxed input; ``tfsp.postprocess.dense`` resamples the maps
back onto the original image (logits before the argmax, depth bilinearly).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfsp.postprocess.dense import (
    DEPTH,
    HEAD_OUTPUTS,
    SEMANTIC_LOGITS,
    DenseHead,
    decode_depth,
    decode_semantic,
    heads_of,
)
from tfsp.runtime.preprocess import preprocess_image
from tfsp.runtime.runner import Runner, check_pipeline_runner
from tfsp.runtime.timing import StageClock, StageTimings
from tfsp.spec import ModelSpec, Task
from tfsp.structures import DenseKind, DenseMap

DENSE_OUTPUT_NAMES = (SEMANTIC_LOGITS, DEPTH)
"""Graph outputs the dense pipeline can read (a graph has those of its heads)."""


@dataclasses.dataclass(frozen=True)
class DensePrediction:
    """The dense maps of one image, on its original pixel grid (None for a head the graph lacks).

    Attributes:
        semantic: LABELS (H, W) int32: 0 background, k + 1 = class id k of the spec; or None.
        depth: DEPTH (H, W) float32 metres; or None.
    """

    semantic: DenseMap | None
    depth: DenseMap | None

    def __post_init__(self) -> None:
        if self.semantic is None and self.depth is None:
            raise ValueError("DensePrediction needs at least one map")
        if (self.semantic is not None and self.semantic.kind is not DenseKind.LABELS) or (
                self.depth is not None and self.depth.kind is not DenseKind.DEPTH):
            raise ValueError(f"DensePrediction needs a LABELS and a DEPTH map, got "
                             f"{getattr(self.semantic, 'kind', None)} and {getattr(self.depth, 'kind', None)}")
        if self.semantic is not None and self.depth is not None and (
                self.semantic.values.shape != self.depth.values.shape):
            raise ValueError(f"DensePrediction maps differ in shape: {self.semantic.values.shape} vs "
                             f"{self.depth.values.shape}")


class DensePipeline:
    """Runs a dense (segmentation + depth) graph on full images.

    Args:
        runner: any ``Runner`` whose outputs include those of the spec: ``semantic_logits``
            (1, F, F, C + 1) and/or ``depth`` (1, F, F, 1).
        spec: the model's ``ModelSpec`` (task DENSE; its outputs say which heads there are).

    Raises:
        ValueError: spec and runner disagree (task, input size, output names).
    """

    def __init__(self, runner: Runner, spec: ModelSpec) -> None:
        self._heads = heads_of(spec.output_names)
        if not self._heads:
            raise ValueError(f"a dense spec needs an output among {list(DENSE_OUTPUT_NAMES)}, got {spec.output_names}")
        check_pipeline_runner("DensePipeline", runner, spec, Task.DENSE,
                              tuple(HEAD_OUTPUTS[head] for head in self._heads))
        self._runner = runner
        self._spec = spec

    @property
    def spec(self) -> ModelSpec:
        """The model spec."""
        return self._spec

    @property
    def heads(self) -> tuple[DenseHead, ...]:
        """The graph's heads (``tfsp.postprocess.dense.DenseHead``), from the spec's outputs."""
        return self._heads

    def __call__(self, image_rgb: np.ndarray) -> DensePrediction:
        """Predicts the label and/or depth maps of one (H, W, 3) uint8 RGB image (not modified)."""
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
            semantic=(decode_semantic(outputs[SEMANTIC_LOGITS][0], letterbox, size, height, width)
                      if DenseHead.SEGMENTATION in self._heads else None),
            depth=(decode_depth(outputs[DEPTH][0], letterbox, size, height, width)
                   if DenseHead.DEPTH in self._heads else None))
        return result, clock.timings()
