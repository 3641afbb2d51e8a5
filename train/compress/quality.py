"""Detection quality of keyword scores on the test split: the threshold metrics of `train.metrics` plus the DLA
KWS homework's area under the false-alarms-per-hour vs false-reject-rate curve (au_fa_fr) and FRR at a fixed FA/h.

As in the homework, every score is tried as a threshold (a window counts as a detection when its score >= the
threshold), FA and FR are counted at each, and the curve is integrated with the trapezoidal rule. Here, as the
issue asks, the x axis is false alarms per hour, with the hours being the total duration of the negative test
windows (each one clip long), and the y axis is the false-reject rate over the keyword windows. (The homework
divides both counts by the number of all windows instead; on a fixed test split that changes au_fa_fr by a
constant factor only, so comparisons between models are the same.) One threshold above every score is added, so
the curve always ends at 0 FA/h and FRR 1 (the homework's extra threshold of 1 misses that point when a score is
exactly 1). Lower is better.
"""

from __future__ import annotations

import numpy as np

from train.metrics import detection_metrics

SECONDS_PER_HOUR = 3600.0
DEFAULT_FA_PER_HOUR = 10.0


def fa_fr_curve(scores: np.ndarray, labels: np.ndarray, negative_hours: float) -> tuple[np.ndarray, np.ndarray]:
    """(false alarms per hour, false-reject rate) at every candidate threshold, from 0 to above the largest score."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if labels.all() or not labels.any() or negative_hours <= 0:
        raise ValueError("au_fa_fr needs keyword and non-keyword windows")
    thresholds = np.concatenate([[0.0], np.unique(scores), [np.nextafter(scores.max(), np.inf)]])
    negatives, positives = np.sort(scores[~labels]), np.sort(scores[labels])
    false_alarms = len(negatives) - np.searchsorted(negatives, thresholds, side="left")  # scores >= threshold
    false_rejects = np.searchsorted(positives, thresholds, side="left")  # scores < threshold
    return false_alarms / negative_hours, false_rejects / len(positives)


def au_fa_fr(scores: np.ndarray, labels: np.ndarray, negative_hours: float) -> float:
    fa_per_hour, frr = fa_fr_curve(scores, labels, negative_hours)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it
    return float(-trapezoid(frr, x=fa_per_hour)) + 0.0  # FA/h falls as the threshold rises; + 0.0 avoids -0.0


def frr_at_fa_per_hour(scores: np.ndarray, labels: np.ndarray, negative_hours: float, fa_per_hour: float) -> float:
    """The lowest false-reject rate of any threshold with at most `fa_per_hour` false alarms per hour."""
    curve_fa, curve_frr = fa_fr_curve(scores, labels, negative_hours)
    return float(curve_frr[curve_fa <= fa_per_hour].min())


def quality(
    scores: np.ndarray, labels: np.ndarray, threshold: float, clip_seconds: float, fa_per_hour=DEFAULT_FA_PER_HOUR
) -> dict:
    """Everything the report shows about detection quality; `labels` are True for keyword windows."""
    labels = np.asarray(labels).astype(bool)
    negative_hours = float((~labels).sum()) * clip_seconds / SECONDS_PER_HOUR
    return detection_metrics(scores, labels, threshold) | {
        "au_fa_fr": au_fa_fr(scores, labels, negative_hours),
        "frr_at_fa_per_hour": frr_at_fa_per_hour(scores, labels, negative_hours, fa_per_hour),
        "fa_per_hour_fixed": fa_per_hour,
        "negative_hours": negative_hours,
    }
