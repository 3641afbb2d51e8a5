"""False rejects and false accepts per hour from detections, over a sweep of thresholds; threshold choice.

A keyword occurrence (onset..offset, seconds) is found when a detection lies in [onset, offset + hit_after_s]: the
window detector reports a window's end, which follows the keyword by up to a window length. Every detection in a
negative stream is a false accept; detections in positive streams that find no keyword are counted apart
(`extra_positive_detections`) since those streams are short and their speech surrounds a real keyword.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SECONDS_PER_HOUR = 3600.0
MAX_THRESHOLDS = 400
PEAK_MARGIN = 1e-6  # above a peak: float32 scores step by ~6e-8 near 1
# The sweep runs from strict to lenient and stops past this rate: lower thresholds matter to nobody, and at very
# low thresholds nearly every window of ten hours would be scanned again for each.
MAX_FA_PER_HOUR = 300.0


@dataclass(frozen=True)
class Scored:
    """One stream's detections as a function of the threshold, with what is known about the stream."""

    detect: Callable[[float], np.ndarray]  # threshold -> detection times (s)
    seconds: float
    keyword_spans: Sequence[tuple[float, float]] = ()
    family: str = ""


@dataclass(frozen=True)
class Curve:
    """FRR and FA/h per threshold (thresholds ascending: stricter to the right)."""

    thresholds: np.ndarray
    frr: np.ndarray
    fa_per_hour: np.ndarray
    false_accepts: np.ndarray
    extra_positive_detections: np.ndarray
    positives: int
    negative_hours: float

    def to_dict(self) -> dict:
        return {
            "thresholds": self.thresholds.tolist(),
            "frr": self.frr.tolist(),
            "fa_per_hour": self.fa_per_hour.tolist(),
            "false_accepts": self.false_accepts.tolist(),
            "extra_positive_detections": self.extra_positive_detections.tolist(),
            "positives": self.positives,
            "negative_hours": self.negative_hours,
        }


def _span_hits(detections: np.ndarray, spans: Sequence[tuple[float, float]], hit_after_s: float):
    """Per span, which detections find it: those in [onset, offset + hit_after_s]."""
    for onset, offset in spans:
        yield offset, (detections >= onset) & (detections <= offset + hit_after_s)


def found_keywords(detections: np.ndarray, spans: Sequence[tuple[float, float]], hit_after_s: float):
    """(number of spans with a detection in [onset, offset + hit_after_s], detections that matched no span)."""
    detections = np.asarray(detections, dtype=np.float64)
    matched = np.zeros(detections.size, dtype=bool)
    found = 0
    for _, inside in _span_hits(detections, spans, hit_after_s):
        found += bool(inside.any())
        matched |= inside
    return found, int((~matched).sum())


def detection_delays(detections: np.ndarray, spans: Sequence[tuple[float, float]], hit_after_s: float) -> list:
    """Seconds from each found keyword's end to its first detection (negative: fired before the word ended)."""
    detections = np.asarray(detections, dtype=np.float64)
    return [
        float(detections[inside].min() - offset)
        for offset, inside in _span_hits(detections, spans, hit_after_s)
        if inside.any()
    ]


def sweep(
    positive: Sequence[Scored],
    negative: Sequence[Scored],
    thresholds,
    hit_after_s: float,
    stop_above_fa_per_hour: float = MAX_FA_PER_HOUR,
) -> Curve:
    """FRR and FA/h at each threshold, from the strictest down to the first past `stop_above_fa_per_hour`."""
    descending = sorted({float(t) for t in thresholds}, reverse=True)
    total_positives = sum(len(s.keyword_spans) for s in positive)
    hours = sum(s.seconds for s in negative) / SECONDS_PER_HOUR
    if total_positives == 0 or hours <= 0:
        raise ValueError("a curve needs at least one keyword occurrence and some negative audio")
    rows = []
    for threshold in descending:
        found, extra = 0, 0
        for stream in positive:
            hit, unmatched = found_keywords(stream.detect(threshold), stream.keyword_spans, hit_after_s)
            found, extra = found + hit, extra + unmatched
        false = sum(len(stream.detect(threshold)) for stream in negative)
        rows.append((threshold, 1.0 - found / total_positives, false / hours, false, extra))
        if false / hours > stop_above_fa_per_hour:
            break
    columns = [np.array(column) for column in zip(*reversed(rows), strict=True)]
    return Curve(
        thresholds=columns[0].astype(np.float64), frr=columns[1].astype(np.float64),
        fa_per_hour=columns[2].astype(np.float64), false_accepts=columns[3].astype(np.int64),
        extra_positive_detections=columns[4].astype(np.int64), positives=total_positives, negative_hours=hours,
    )  # fmt: skip


def candidate_thresholds(score_arrays: Sequence[np.ndarray], negative_decisions: Sequence[np.ndarray] = ()):
    """Every distinct score (an int8 model has at most 256), or MAX_THRESHOLDS quantiles when there are more; plus
    `peak_thresholds` of the values the detector compares with the threshold on negative streams. Quantiles alone
    are spent where the scores are, on silence and speech near 0: ten hours of float scores left a single threshold
    between 11 and 0.3 false accepts per hour, exactly where the operating points are read."""
    scores = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in score_arrays])
    unique = np.unique(scores)
    if unique.size > MAX_THRESHOLDS:
        unique = np.unique(np.quantile(scores, np.linspace(0, 1, MAX_THRESHOLDS)))
    return np.union1d(unique, peak_thresholds(negative_decisions)) if len(negative_decisions) else unique


def peak_thresholds(negative_decisions: Sequence[np.ndarray], count: int = MAX_THRESHOLDS) -> np.ndarray:
    """A threshold just above each of the `count` highest peaks of the negative streams' decision values: a false
    accept appears only where the threshold falls below a peak, so these are where the FA/h changes, and each is
    the lowest threshold (fewest false rejects) that still excludes its peak. At most 1.0."""
    peaks = [_local_maxima(np.asarray(values, dtype=np.float64)) for values in negative_decisions]
    highest = np.unique(np.concatenate([*peaks, [1.0]]))[-count:]
    return np.unique(np.minimum(highest + PEAK_MARGIN, 1.0))


def _local_maxima(values: np.ndarray) -> np.ndarray:
    if values.size < 3:
        return values
    inner = values[1:-1]
    return inner[(inner >= values[:-2]) & (inner >= values[2:])]


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    frr: float
    fa_per_hour: float
    false_accepts: int
    resolvable: bool  # the negative audio is long enough to measure the target (>= 1 / target hours)

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "frr": self.frr,
            "fa_per_hour": self.fa_per_hour,
            "false_accepts": self.false_accepts,
            "resolvable": self.resolvable,
        }


def threshold_for(curve: Curve, target_fa_per_hour: float) -> OperatingPoint | None:
    """The lowest threshold at which this and every stricter threshold stay at or under the target FA/h (lowest
    = fewest false rejects); None when even the strictest threshold does not."""
    if target_fa_per_hour < 0:
        raise ValueError(f"target FA/h must be >= 0, got {target_fa_per_hour}")
    within = curve.fa_per_hour <= target_fa_per_hour + 1e-12
    # Stricter thresholds are to the right: every threshold from the first one after the last violation works.
    violations = np.flatnonzero(~within)
    first = violations[-1] + 1 if violations.size else 0
    if first >= curve.thresholds.size:
        return None
    return OperatingPoint(
        threshold=float(curve.thresholds[first]),
        frr=float(curve.frr[first]),
        fa_per_hour=float(curve.fa_per_hour[first]),
        false_accepts=int(curve.false_accepts[first]),
        resolvable=curve.negative_hours * target_fa_per_hour >= 1.0 - 1e-9,
    )
