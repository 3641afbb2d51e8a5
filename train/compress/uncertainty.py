"""How sure a "no worse than the baseline" verdict is on one test split: a paired bootstrap over test windows.

The verdicts of the report compare two numbers measured on the same windows. With ~1,000 windows at 96% accuracy
one model's accuracy has a binomial standard error of about 0.6 points, so a gap of a few windows can be noise.
Resampling the windows with replacement (the same resample for both models, since they saw the same windows) and
recomputing both metrics gives the spread of the difference: its percentile interval, and the share of
resamples in which the candidate is no worse. Each model keeps its own val-chosen threshold (it is not re-chosen
per resample), so this measures test-set noise only, not the noise of training or of the threshold choice.
"""

from __future__ import annotations

import numpy as np

from train.compress.quality import SECONDS_PER_HOUR, au_fa_fr

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
INTERVAL = (2.5, 97.5)  # percentiles: a 95% interval


def paired_bootstrap(
    baseline_scores: np.ndarray,
    baseline_threshold: float,
    candidate_scores: np.ndarray,
    candidate_threshold: float,
    labels: np.ndarray,
    clip_seconds: float,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict:
    """Accuracy (points) and au_fa_fr differences, candidate minus baseline: measured, 95% interval, and the share
    of resamples where the candidate is no worse (accuracy not lower, au_fa_fr not higher)."""
    labels = np.asarray(labels).astype(bool)
    baseline_scores, candidate_scores = np.asarray(baseline_scores), np.asarray(candidate_scores)
    if not (len(labels) == len(baseline_scores) == len(candidate_scores)) or labels.all() or not labels.any():
        raise ValueError("the bootstrap needs both models' scores on the same keyword and non-keyword windows")
    baseline_right = (baseline_scores >= baseline_threshold) == labels
    candidate_right = (candidate_scores >= candidate_threshold) == labels
    rng = np.random.default_rng(seed)
    accuracy, area = np.empty(resamples), np.empty(resamples)
    for index in range(resamples):
        chosen = rng.integers(0, len(labels), len(labels))
        chosen_labels = labels[chosen]
        if chosen_labels.all() or not chosen_labels.any():  # cannot happen at test-split sizes; keeps it defined
            chosen = np.arange(len(labels))
            chosen_labels = labels
        accuracy[index] = 100.0 * (candidate_right[chosen].mean() - baseline_right[chosen].mean())
        hours = float((~chosen_labels).sum()) * clip_seconds / SECONDS_PER_HOUR
        area[index] = au_fa_fr(candidate_scores[chosen], chosen_labels, hours) - au_fa_fr(
            baseline_scores[chosen], chosen_labels, hours
        )
    hours = float((~labels).sum()) * clip_seconds / SECONDS_PER_HOUR
    measured = {
        "accuracy_points": 100.0 * (candidate_right.mean() - baseline_right.mean()),
        "au_fa_fr": au_fa_fr(candidate_scores, labels, hours) - au_fa_fr(baseline_scores, labels, hours),
    }
    return {
        "method": "paired bootstrap over test windows, thresholds fixed",
        "resamples": resamples,
        "seed": seed,
        "accuracy_points": _summary(measured["accuracy_points"], accuracy, accuracy >= 0.0),
        "au_fa_fr": _summary(measured["au_fa_fr"], area, area <= 0.0),
    }


def _summary(measured: float, resampled: np.ndarray, no_worse: np.ndarray) -> dict:
    low, high = np.percentile(resampled, INTERVAL)
    return {
        "difference": round(float(measured), 4),
        "interval_95": [round(float(low), 4), round(float(high), 4)],
        "share_no_worse": round(float(no_worse.mean()), 4),
    }
