"""Per-stage wall-clock timings of a task pipeline (preprocess -> runner -> postprocess).

Task-neutral and device-safe (numpy only): every pipeline's ``detect_timed``-style method
returns one ``StageTimings`` per image, and the edge demo, its benchmark and the COCO
evaluation report them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import numpy as np

MS_PER_S = 1000.0


@dataclasses.dataclass(frozen=True)
class StageTimings:
    """Wall-clock time of each pipeline stage for one image, in milliseconds.

    Attributes:
        preprocess_ms: resize to the model input.
        inference_ms: the runner (including int8 (de)quantisation).
        postprocess_ms: decoding (e.g. SSD decoding and NMS) and mapping back to original pixels.
    """

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        """Sum of the three stages."""
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms

    @staticmethod
    def mean(timings: Iterable[StageTimings]) -> StageTimings:
        """Per-stage mean over images (all zeros for none)."""
        rows = np.array([[t.preprocess_ms, t.inference_ms, t.postprocess_ms] for t in timings], np.float64)
        means = rows.mean(axis=0) if len(rows) else np.zeros(3)
        return StageTimings(*(float(m) for m in means))


class StageClock:
    """Measures the three pipeline stages of one image.

    Start it before preprocessing, call ``mark()`` after preprocessing and after
    inference, then ``timings()`` after postprocessing::

        clock = StageClock()
        image, letterbox = preprocess_image(...)
        clock.mark()
        outputs = runner(image[np.newaxis])
        clock.mark()
        result = decode(outputs)
        return result, clock.timings()
    """

    def __init__(self) -> None:
        self._marks = [time.perf_counter()]

    def mark(self) -> None:
        """Ends the current stage."""
        self._marks.append(time.perf_counter())

    def timings(self) -> StageTimings:
        """Ends the last stage and returns the three stage times.

        Raises:
            ValueError: ``mark`` was not called exactly twice before.
        """
        if len(self._marks) != 3:
            raise ValueError(f"StageClock.timings needs exactly 2 marks before it, got {len(self._marks) - 1}")
        marks = [*self._marks, time.perf_counter()]
        return StageTimings(*((end - start) * MS_PER_S for start, end in zip(marks, marks[1:])))
