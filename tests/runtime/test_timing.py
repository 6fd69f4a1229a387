"""StageTimings: totals and per-stage means (hand-computed)."""

import pytest

from tfsp.runtime.timing import StageTimings


def test_total_is_the_sum_of_the_stages():
    assert StageTimings(1.5, 2.0, 0.25).total_ms == 3.75


def test_mean_is_per_stage_and_zero_for_no_images():
    mean = StageTimings.mean([StageTimings(1, 2, 3), StageTimings(3, 4, 5)])
    assert mean == StageTimings(2.0, 3.0, 4.0)
    assert StageTimings.mean([]) == StageTimings(0.0, 0.0, 0.0)


def test_stage_clock_measures_the_three_stages_in_order(monkeypatch):
    from tfsp.runtime import timing

    ticks = iter([10.0, 10.002, 10.007, 10.0075])  # seconds: start, 2 marks, end
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    clock = timing.StageClock()
    clock.mark()
    clock.mark()
    result = clock.timings()
    assert (result.preprocess_ms, result.inference_ms, result.postprocess_ms) == pytest.approx((2.0, 5.0, 0.5))


def test_stage_clock_needs_two_marks():
    from tfsp.runtime.timing import StageClock

    clock = StageClock()
    clock.mark()
    with pytest.raises(ValueError, match="exactly 2 marks"):
        clock.timings()
