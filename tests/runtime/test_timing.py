"""StageTimings: totals and per-stage means (hand-computed)."""

from tfsp.runtime.timing import StageTimings


def test_total_is_the_sum_of_the_stages():
    assert StageTimings(1.5, 2.0, 0.25).total_ms == 3.75


def test_mean_is_per_stage_and_zero_for_no_images():
    mean = StageTimings.mean([StageTimings(1, 2, 3), StageTimings(3, 4, 5)])
    assert mean == StageTimings(2.0, 3.0, 4.0)
    assert StageTimings.mean([]) == StageTimings(0.0, 0.0, 0.0)
