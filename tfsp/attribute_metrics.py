"""Multi-label attribute metrics: average precision, F1 and F1-optimal thresholds (numpy only).

Device-safe (never imports TensorFlow), so the same numbers come out of a Keras evaluation on the
server and a TFLite run on the device.

Average precision is the area under the interpolated precision-recall curve, VOC 2010+ / COCO
style with all recall points: instances are ranked by descending score, tied scores form ONE
operating point (so the result does not depend on input order), precision is made monotone
(each point takes the best precision at any higher recall), and AP sums
``(recall_k - recall_{k-1}) * precision_k`` over the operating points. An attribute without
positives has no defined AP or F1: both are NaN (:data:`NO_POSITIVES`), and the means skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_POSITIVES = float("nan")
"""AP / F1 of an attribute without positive instances (skipped by ``mAP`` and ``mean_F1``)."""

DEFAULT_THRESHOLD = 0.5
"""Probability threshold for attributes whose threshold cannot be fitted (no positives)."""


def _ranked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true / false positives at each distinct score, descending; and those scores."""
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_labels = scores[order], labels[order]
    true_pos = np.cumsum(ranked_labels, dtype=np.float64)
    false_pos = np.cumsum(~ranked_labels, dtype=np.float64)
    last_of_tie = np.append(ranked_scores[1:] != ranked_scores[:-1], True)
    return true_pos[last_of_tie], false_pos[last_of_tie], ranked_scores[last_of_tie]


def _check(scores: np.ndarray, labels: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    if scores.ndim != ndim or scores.shape != labels.shape:
        raise ValueError(f"scores and labels must share a {ndim}-D shape, got {scores.shape} and {labels.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return scores, labels


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the interpolated precision-recall curve of one attribute (module docstring).

    Args:
        scores: (N,) float scores (probabilities or logits; only their order matters).
        labels: (N,) bool ground truth.

    Returns:
        AP in [0, 1]; :data:`NO_POSITIVES` (NaN) when ``labels`` has no positive.
    """
    scores, labels = _check(scores, labels, 1)
    num_pos = int(labels.sum())
    if num_pos == 0:
        return NO_POSITIVES
    true_pos, false_pos, _ = _ranked(scores, labels)
    precision = true_pos / (true_pos + false_pos)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(true_pos, prepend=0.0) / num_pos
    return float(np.sum(recall_steps * precision))


def f1_score(predicted: np.ndarray, labels: np.ndarray) -> float:
    """F1 = 2 TP / (2 TP + FP + FN) of one attribute's (N,) bool predictions; NaN without positives."""
    predicted, labels = np.asarray(predicted, bool), np.asarray(labels, bool)
    if not labels.any():
        return NO_POSITIVES
    true_pos = np.count_nonzero(predicted & labels)
    return float(2.0 * true_pos / (np.count_nonzero(predicted) + np.count_nonzero(labels)))  # 2TP+FP+FN


def attribute_metrics(scores: np.ndarray, labels: np.ndarray, names: Sequence[str],
                      thresholds: float | np.ndarray = DEFAULT_THRESHOLD) -> dict[str, float]:
    """AP and F1 per attribute and their means.

    Args:
        scores: (N, A) float32 probabilities in [0, 1].
        labels: (N, A) bool (or 0/1) ground truth.
        names: the A attribute names.
        thresholds: scalar or (A,) probability thresholds; predicted where ``score >= threshold``.

    Returns:
        ``{"mAP", "mean_F1", "AP_<name>", "F1_<name>" for every name}`` as Python floats. Per
        attribute values are NaN without positives; the means average the others (NaN if none).
    """
    scores, labels = _check(scores, labels, 2)
    if scores.shape[1] != len(names):
        raise ValueError(f"scores have {scores.shape[1]} attributes but {len(names)} names were given")
    thresholds = np.broadcast_to(np.asarray(thresholds, np.float64), (len(names),))
    aps = [average_precision(scores[:, a], labels[:, a]) for a in range(len(names))]
    f1s = [f1_score(scores[:, a] >= thresholds[a], labels[:, a]) for a in range(len(names))]
    has_pos = labels.any(axis=0)
    result = {
        "mAP": float(np.mean(np.asarray(aps)[has_pos])) if has_pos.any() else NO_POSITIVES,
        "mean_F1": float(np.mean(np.asarray(f1s)[has_pos])) if has_pos.any() else NO_POSITIVES,
    }
    result.update({f"AP_{name}": ap for name, ap in zip(names, aps)})
    result.update({f"F1_{name}": f1 for name, f1 in zip(names, f1s)})
    return result


def choose_thresholds(scores: np.ndarray, labels: np.ndarray, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-attribute probability thresholds that maximise F1 on (validation) data.

    For each attribute every distinct score s_k is a candidate cut (predict ``score >= s_k``); the
    cut with the best F1 wins (ties: the highest cut). The threshold returned lies midway between
    the winning score and the next lower distinct score (the winning score itself if it is the
    lowest), so the same predictions come out with a margin on both sides.

    Args:
        scores: (N, A) float32 probabilities in [0, 1].
        labels: (N, A) bool ground truth.
        default: threshold of attributes without positives.

    Returns:
        (A,) float32 thresholds.
    """
    scores, labels = _check(scores, labels, 2)
    thresholds = np.full(scores.shape[1], default, np.float32)
    for a in range(scores.shape[1]):
        num_pos = int(labels[:, a].sum())
        if num_pos == 0:
            continue
        true_pos, false_pos, cuts = _ranked(scores[:, a], labels[:, a])
        f1 = 2.0 * true_pos / (true_pos + false_pos + num_pos)
        best = int(np.argmax(f1))
        below = cuts[best + 1] if best + 1 < len(cuts) else cuts[best]
        thresholds[a] = 0.5 * (cuts[best] + below)
    return thresholds
