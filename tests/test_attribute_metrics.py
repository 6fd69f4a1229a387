"""Attribute AP, F1 and F1-optimal thresholds against hand-computed values."""

import math

import numpy as np
import pytest

from tfsp.attribute_metrics import (DEFAULT_THRESHOLD, attribute_metrics, average_precision, choose_thresholds,
                                    f1_score)


def test_average_precision_interpolates_precision():
    # Ranked labels 1 0 1 0 1: precision 1, 1/2, 2/3, 2/4, 3/5; made monotone: 1, 2/3, 2/3, 3/5, 3/5.
    # Recall rises by 1/3 at ranks 1, 3 and 5: AP = (1 + 2/3 + 3/5) / 3.
    scores = np.array([0.6, 0.9, 0.5, 0.8, 0.7])
    labels = np.array([False, True, True, False, True])
    assert math.isclose(average_precision(scores, labels), (1 + 2 / 3 + 3 / 5) / 3, rel_tol=1e-12)


@pytest.mark.parametrize("labels", [[True, True, False], [True, False, True]])
def test_tied_scores_are_one_operating_point_whatever_their_order(labels):
    # {0.9}: TP 1 FP 0 (recall 1/2, precision 1); {0.5, 0.5}: TP 2 FP 1 (recall 1, precision 2/3).
    scores = np.array([0.9, 0.5, 0.5])
    assert math.isclose(average_precision(scores, np.array(labels)), 0.5 * 1 + 0.5 * 2 / 3, rel_tol=1e-12)


def test_average_precision_edge_cases():
    assert average_precision(np.array([0.9, 0.1]), np.array([True, False])) == 1.0
    assert average_precision(np.array([0.1, 0.9]), np.array([True, False])) == 0.5  # precision 1/2 at recall 1
    assert math.isnan(average_precision(np.array([0.3, 0.2]), np.array([False, False])))
    with pytest.raises(ValueError, match="shape"):
        average_precision(np.zeros(3), np.zeros(2, bool))
    with pytest.raises(ValueError, match="finite"):
        average_precision(np.array([np.nan, 0.1]), np.array([True, False]))


def test_f1_score():
    predicted = np.array([True, True, False, False])
    labels = np.array([True, False, True, True])
    assert math.isclose(f1_score(predicted, labels), 2 * 1 / (2 * 1 + 1 + 2))  # TP 1, FP 1, FN 2
    assert math.isnan(f1_score(predicted, np.zeros(4, bool)))


def test_attribute_metrics_per_attribute_and_means():
    scores = np.array([[0.9, 0.2, 0.7],
                       [0.6, 0.8, 0.1],
                       [0.3, 0.4, 0.6],
                       [0.1, 0.6, 0.2]], np.float32)
    labels = np.array([[1, 0, 0],
                       [0, 1, 0],
                       [1, 0, 0],
                       [0, 1, 0]], bool)
    metrics = attribute_metrics(scores, labels, ("red", "filled", "large"), thresholds=[0.5, 0.5, 0.5])
    # red: ranked 1 0 1 0 -> AP (1 + 2/3) / 2; predicted rows 0, 1 -> TP 1 FP 1 FN 1 -> F1 1/2.
    # filled: ranked 1 1 0 0 -> AP 1; predicted rows 1, 3 -> F1 1. large: no positives -> NaN.
    assert math.isclose(metrics["AP_red"], (1 + 2 / 3) / 2)
    assert metrics["AP_filled"] == 1.0 and math.isnan(metrics["AP_large"])
    assert math.isclose(metrics["F1_red"], 0.5) and metrics["F1_filled"] == 1.0 and math.isnan(metrics["F1_large"])
    assert math.isclose(metrics["mAP"], ((1 + 2 / 3) / 2 + 1) / 2)
    assert math.isclose(metrics["mean_F1"], 0.75)
    assert set(metrics) == {"mAP", "mean_F1"} | {f"{k}_{n}" for k in ("AP", "F1") for n in ("red", "filled", "large")}


def test_attribute_metrics_broadcasts_a_scalar_threshold_and_checks_names():
    scores, labels = np.array([[0.7], [0.2]], np.float32), np.array([[1], [0]], bool)
    assert attribute_metrics(scores, labels, ("red",), thresholds=0.75)["F1_red"] == 0.0
    assert math.isnan(attribute_metrics(scores, np.zeros((2, 1), bool), ("red",))["mAP"])
    with pytest.raises(ValueError, match="names"):
        attribute_metrics(scores, labels, ("red", "blue"))


def test_choose_thresholds_maximises_f1():
    scores = np.array([[0.9, 0.9, 0.2],
                       [0.8, 0.8, 0.1],
                       [0.4, 0.4, 0.3],
                       [0.3, 0.3, 0.4]], np.float32)
    labels = np.array([[1, 1, 0],
                       [1, 1, 0],
                       [0, 0, 0],
                       [1, 0, 0]], bool)
    thresholds = choose_thresholds(scores, labels, default=0.7)
    # Column 0 cuts: 0.9 -> F1 2/4, 0.8 -> 4/5, 0.4 -> 4/6, 0.3 -> 6/7 (best, lowest score: itself).
    # Column 1: cut 0.8 gives F1 1; midway to the next score 0.4 -> 0.6. Column 2: no positives.
    assert thresholds.dtype == np.float32
    np.testing.assert_allclose(thresholds, [0.3, 0.6, 0.7], rtol=1e-6)
    assert choose_thresholds(scores[:, 2:], labels[:, 2:])[0] == DEFAULT_THRESHOLD


def test_chosen_thresholds_reproduce_the_best_f1():
    rng = np.random.default_rng(0)
    labels = rng.random((200, 3)) < 0.3
    scores = np.clip(labels * 0.3 + rng.random((200, 3)) * 0.7, 0, 1).astype(np.float32)
    thresholds = choose_thresholds(scores, labels)
    best = attribute_metrics(scores, labels, ("a", "b", "c"), thresholds)
    for shift in (-0.05, -0.01, 0.01, 0.05):
        other = attribute_metrics(scores, labels, ("a", "b", "c"), thresholds + shift)
        assert all(best[f"F1_{n}"] >= other[f"F1_{n}"] for n in "abc")
