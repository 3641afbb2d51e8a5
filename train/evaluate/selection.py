"""Choosing checkpoints on long audio: the mean false-reject rate at a few false-accept rates on val streams.

`make eval` scores the deployed model on long test streams; this module lets training pick its epoch on the same
kind of measurement without touching them. The val streams are built like the evaluation streams (`streams.py`)
from the eSpeak variants the clip set held out for *val* (the test variants stay unheard), with their own seed,
and shorter: 2 h of negatives by default, which resolves a few false accepts per hour (0.5 FA/h, the evaluation's
headline, would rest on one false accept).

A DS-CNN student is scored as the streaming detector scores it (`CausalDSCNN.sliding_logits`: a 1 s window every
stride step, in one pass over the stream), smoothed, fired on a rise with the refractory period
(`edge_runtime.postprocess`), with the settings `python -m convert` writes into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convert.manifest_writer import DEFAULT_REFRACTORY_SECONDS
from edge_runtime.features import FeatureSpec, MelFrontEnd
from edge_runtime.postprocess import DetectionPolicy, PostProcessor, smoothed_track
from train.data.clipset import ClipSet
from train.evaluate.scoring import Scored, peak_thresholds, sweep, threshold_for
from train.evaluate.streams import Stream, StreamConfig, build_streams, load_streams, stream_audio
from train.models.dscnn import CausalDSCNN

VAL_STREAM_SEED = 1717  # not the evaluation's (2024): other texts, scenes and voices' settings
# Epochs are ranked on one phase of the stride (a score every stem stride), smoothed over this span: the span the
# deployed detector used before it merged every phase. Kept apart from the manifest's default
# (convert.streaming.DEFAULT_SMOOTHING_SECONDS, re-chosen for the merged scores) so that changing how the runtime
# post-processes does not silently change which epoch training keeps.
SELECTION_SMOOTHING_SECONDS = 0.5
DEFAULT_FA_PER_HOUR = (1.0, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class StreamSelection:
    """How to build the val streams and what ranks the epochs: the mean FRR at several false-accept rates (one
    rate rests on a handful of false accepts and picked epochs by noise; measured in docs/quality.md), among the
    epochs from `from_share` of the schedule on (earlier ones, at a high learning rate, are not candidates)."""

    fa_per_hour: tuple[float, ...] = DEFAULT_FA_PER_HOUR
    negative_hours: float = 2.0
    positives: int = 200
    from_share: float = 0.5
    cache_root: Path = Path("data")

    def __post_init__(self) -> None:
        if not self.fa_per_hour or min(self.fa_per_hour) <= 0 or not self.negative_hours > 0 or self.positives < 1:
            raise ValueError("stream selection needs FA/h rates > 0, negative hours > 0 and positives >= 1")
        if not 0.0 <= self.from_share < 1.0:
            raise ValueError(f"the share of the schedule before candidates must be in 0..<1, got {self.from_share}")
        lowest = min(self.fa_per_hour)
        if self.negative_hours * lowest < 1 - 1e-9:
            raise ValueError(
                f"{self.negative_hours:g} h of val negatives cannot resolve {lowest:g} FA/h (that is less than one "
                f"false accept); raise the hours to at least {1 / lowest:g}"
            )

    def first_candidate(self, epochs: int) -> int:
        """The first epoch (1-based) that may be picked in a training of `epochs` epochs."""
        return min(epochs, int(self.from_share * epochs) + 1)

    def to_dict(self) -> dict:
        return {
            "fa_per_hour": list(self.fa_per_hour),
            "negative_hours": self.negative_hours,
            "positives": self.positives,
            "from_share": self.from_share,
            "cache_root": str(self.cache_root),
        }


@dataclass(frozen=True)
class StreamQuality:
    """One model on the val streams: at each rate, the FRR at the lowest threshold that keeps every stricter one
    within it (1.0 where none does); `mean_frr` ranks the epochs."""

    fa_per_hour: tuple[float, ...]
    frr: tuple[float, ...]
    thresholds: tuple[float | None, ...]

    @property
    def mean_frr(self) -> float:
        return float(np.mean(self.frr))

    def to_dict(self) -> dict:
        return {
            "fa_per_hour": list(self.fa_per_hour),
            "frr": list(self.frr),
            "thresholds": list(self.thresholds),
            "mean_frr": self.mean_frr,
        }


def why_not_streams(meta: dict, leave_out: list[str]) -> str | None:
    """Why a clip set (its meta.json) cannot give val streams for this training, or None when it can."""
    if not meta.get("held_out", {}).get("val", {}).get("espeak_variants"):
        return "the clip set lists no held-out val voices (meta.json held_out.val.espeak_variants): it is not synthetic"
    if any(prefix.startswith("espeak") for prefix in leave_out):
        return f"--leave-out {' '.join(leave_out)} takes eSpeak out of training, and the val streams are eSpeak voices"
    return None


def val_stream_config(clips: ClipSet, selection: StreamSelection, leave_out: list[str]) -> StreamConfig:
    reason = why_not_streams(clips.meta, leave_out)
    if reason is not None:
        raise ValueError(f"cannot pick epochs on val streams of {clips.folder}: {reason}; use --select-on windows")
    variants = clips.meta["held_out"]["val"]["espeak_variants"]
    without_piper = any(prefix.startswith("piper") for prefix in leave_out)
    hours = selection.negative_hours
    return StreamConfig(
        keyword=clips.meta["keyword"],
        held_out_variants=tuple(variants),
        positives=selection.positives,
        piper_positive_share=0.0 if without_piper else StreamConfig.piper_positive_share,
        negative_hours=hours,
        piper_negative_hours=0.0 if without_piper else min(StreamConfig.piper_negative_hours, hours * 0.25),
        seed=VAL_STREAM_SEED,
    )


class ValStreams:
    """The val streams as log-mel features, ready to score any number of checkpoints."""

    def __init__(self, streams: list[Stream], audio: list[np.ndarray], spec: FeatureSpec, selection: StreamSelection):
        front_end = MelFrontEnd(spec)
        self.streams, self.spec, self.selection = streams, spec, selection
        self.features = [torch.from_numpy(front_end.frames(samples))[None] for samples in audio]
        self.hours = sum(s.seconds for s in streams if s.kind == "negative") / 3600
        self.keywords = sum(len(s.keyword_spans) for s in streams)

    @classmethod
    def from_folder(cls, folder: Path, spec: FeatureSpec, selection: StreamSelection) -> ValStreams:
        streams = load_streams(folder)
        return cls(streams, [stream_audio(folder, s) for s in streams], spec, selection)

    def measure(self, model: CausalDSCNN, keyword_index: int, device: torch.device) -> StreamQuality:
        tracks, period = self.tracks(model, keyword_index, device)
        return quality_at(self.streams, tracks, period, self.selection.fa_per_hour, self.spec.clip_seconds)

    @torch.no_grad()
    def tracks(self, model: CausalDSCNN, keyword_index: int, device: torch.device):
        """((times, keyword probabilities) per stream, output period in seconds) of `model` on these streams."""
        was_training = model.training
        model.eval()
        spec, window = self.spec, self.spec.frames_per_clip
        tracks = []
        for features in self.features:
            logits = model.sliding_logits(features.to(device), window)
            scores = torch.softmax(logits.float(), dim=1)[:, keyword_index].cpu().numpy()
            # Each score is known once its window's last frame has arrived: that frame's end.
            ends = spec.frame_end_sample(np.arange(scores.size) * model.stem_stride + window - 1)
            tracks.append((ends / spec.sample_rate, scores))
        model.train(was_training)
        return tracks, model.stem_stride * spec.hop_ms / 1000


def quality_at(
    streams, tracks, period_s: float, rates: tuple[float, ...], hit_after_s: float,
    smoothing_seconds: float = SELECTION_SMOOTHING_SECONDS,
) -> StreamQuality:  # fmt: skip
    """FRR at each of `rates` FA/h of score tracks ((times, scores) per stream) through the streaming
    post-processing (smoothed over `smoothing_seconds`)."""

    def scored(stream, track) -> Scored:
        def detect(threshold: float) -> np.ndarray:
            policy = DetectionPolicy(threshold, DEFAULT_REFRACTORY_SECONDS, smoothing_seconds)
            return np.array([d.time_s for d in PostProcessor(policy, period_s).update(*track)])

        return Scored(detect, stream.seconds, stream.keyword_spans, stream.family)

    positive = [scored(s, t) for s, t in zip(streams, tracks, strict=True) if s.kind == "positive"]
    negative = [scored(s, t) for s, t in zip(streams, tracks, strict=True) if s.kind == "negative"]
    negatives = [smoothed_track(t[1], smoothing_seconds, period_s)
                 for s, t in zip(streams, tracks, strict=True) if s.kind == "negative"]  # fmt: skip
    curve = sweep(positive, negative, peak_thresholds(negatives), hit_after_s, stop_above_fa_per_hour=max(rates))
    points = [threshold_for(curve, rate) for rate in rates]
    return StreamQuality(
        fa_per_hour=tuple(rates),
        frr=tuple(1.0 if point is None else point.frr for point in points),
        thresholds=tuple(None if point is None else point.threshold for point in points),
    )


def load_val_streams(
    clipset: Path, spec: FeatureSpec, selection: StreamSelection, leave_out: list[str], workers: int = 1
) -> ValStreams:
    """Build (or reuse from `selection.cache_root`) and load the val streams of a clip set."""
    config = val_stream_config(ClipSet.load(clipset), selection, leave_out)
    return ValStreams.from_folder(build_streams(config, spec, selection.cache_root, workers=workers), spec, selection)
