"""The one place the evaluation meets the edge runtime: a detector that scores audio and makes detections.

An evaluation scores each stream once (`score`) and then asks for the detections at many thresholds (`detect`),
which is how the whole FRR / FA-per-hour curve comes from one pass. `WindowDetector` wraps the window scanner
(`edge_runtime.detector`, what `detect` uses); `StreamingDetector` wraps the streaming model and post-processing of
`python -m edge_runtime run` (the service) and is the default (`DEFAULT_DETECTOR`). `CheckpointDetector` scores a
torch checkpoint (e.g. the CRNN teacher) at the streaming detector's times with its post-processing: a reference for
what the deployed model gives up, not a deployed path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.detector import KeywordScorer, WindowScores, find_detections
from edge_runtime.manifest import Bundle, load_bundle


@dataclass(frozen=True)
class ScoreTrack:
    """Keyword probability over time: `times_s` when each score is known (seconds from the stream start). A
    verified track also keeps `gate_values`, the student's smoothed probability that the gate compares, and
    `verified`, the verifier's mean wherever the gate it was scored with was open (`StreamingDetector.at_gate`)."""

    times_s: np.ndarray
    scores: np.ndarray
    gate_values: np.ndarray | None = None
    verified: np.ndarray | None = None

    def shifted(self, keep: np.ndarray, seconds: float) -> ScoreTrack:
        """The outputs where `keep` holds, `seconds` earlier."""
        extras = [None if values is None else values[keep] for values in (self.gate_values, self.verified)]
        return ScoreTrack(self.times_s[keep] - seconds, self.scores[keep], *extras)


class WindowDetector:
    """The deployed int8 window model, scanned with the bundle's hop and refractory period. Every detector has
    `spec` (FeatureSpec), `keyword`, `manifest` (dict), `score(audio)`, `decision_values(track)` and
    `detect(track, threshold)`."""

    name = "window"
    precision = "int8"  # the bundle's window model is always the full-int8 TFLite

    def __init__(self, bundle: str | Path | Bundle) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.spec, self.keyword, self.manifest = self.bundle.feature_spec, self.bundle.keyword, self.bundle.manifest
        self.scorer = KeywordScorer(self.bundle)
        self.refractory_seconds = self.bundle.detection.refractory_seconds
        self.sample_rate = self.bundle.feature_spec.sample_rate

    def score(self, audio: np.ndarray) -> ScoreTrack:
        windows = self.scorer.window_scores(audio)
        return ScoreTrack(windows.times_s, windows.scores)

    def decision_values(self, track: ScoreTrack) -> np.ndarray:
        """What the threshold is compared with: the window scores themselves."""
        return track.scores

    def detect(self, track: ScoreTrack, threshold: float) -> np.ndarray:
        """Detection times at `threshold`. Windows below the threshold can neither start a detection nor move a
        detection's peak (a peak is >= threshold), so dropping them first gives the same detections, faster."""
        keep = track.scores >= threshold
        windows = WindowScores(times_s=track.times_s[keep], scores=track.scores[keep])
        return np.array([d.time_s for d in find_detections(windows, threshold, self.refractory_seconds)])


class _StreamingPostProcessing:
    """Smoothing, rise-to-threshold firing and refractory period of `python -m edge_runtime run`. Needs
    `smoothing_seconds`, `output_period` and `refractory_seconds`."""

    def decision_values(self, track: ScoreTrack) -> np.ndarray:
        """What the threshold is compared with: the smoothed probability."""
        from edge_runtime.postprocess import smoothed_track

        return smoothed_track(track.scores, self.smoothing_seconds, self.output_period)

    def detect(self, track: ScoreTrack, threshold: float) -> np.ndarray:
        from edge_runtime.postprocess import DetectionPolicy, PostProcessor

        policy = DetectionPolicy(threshold, self.refractory_seconds, self.smoothing_seconds)
        post = PostProcessor(policy, self.output_period)
        return np.array([d.time_s for d in post.update(track.times_s, track.scores)])


class StreamingDetector(_StreamingPostProcessing):
    """The deployed int8 streaming model (`python -m edge_runtime run`): per-step keyword probabilities, smoothed,
    fired on a rise to the threshold, with the refractory period (`edge_runtime.postprocess`). Needs a bundle
    converted with its streaming model. A bundle with a verifier (`edge_runtime.verifier`) is scored through it:
    the track then holds the verified values the threshold is compared with, every output time."""

    name = "streaming"

    def __init__(self, bundle: str | Path, scoring_gate: float | None = None) -> None:
        """`scoring_gate`: run the verifier wherever the student's smoothed probability reaches this (or the
        bundle's gate, when that is lower), so that `at_gate` can give the track of any gate from there up
        (`train.evaluate --gates`). `score` still returns the bundle's own detector, usage included."""
        from edge_runtime.stream_manifest import load_stream_bundle

        self.bundle = load_stream_bundle(bundle)
        self.spec, self.keyword, self.manifest = self.bundle.spec, self.bundle.keyword, self.bundle.manifest
        self.output_period = self.bundle.stream.output_period_s
        self.precision = self.bundle.stream.precision  # int8, or float32 where the int8 step failed its check
        self.refractory_seconds = self.bundle.detection.refractory_seconds
        self.smoothing_seconds = self.bundle.stream.smoothing_seconds
        self.verifier = self.bundle.verifier
        if scoring_gate is not None:
            if self.verifier is None:
                raise ValueError(f"bundle {bundle} has no verifier, so no gate to sweep")
            if not 0.0 <= scoring_gate <= 1.0:
                raise ValueError(f"a gate must be in 0..1, got {scoring_gate}")
            self.verifier = dataclasses.replace(self.verifier, gate=min(scoring_gate, self.verifier.gate))
        self.deployed_gate = None if self.bundle.verifier is None else self.bundle.verifier.gate
        self.last_verifier_usage: dict | None = None  # how much the verifier ran in the last `score`

    def score(self, audio: np.ndarray) -> ScoreTrack:
        from edge_runtime.streaming import StreamingScorer

        scorer = StreamingScorer(self.bundle.stream, self.bundle.keyword_index)
        steps = scorer.push(audio) + scorer.flush()  # a stream's end is a file's end: score its last partial step
        if not steps:
            return ScoreTrack(np.zeros(0), np.zeros(0, np.float32))
        times = np.concatenate([s.times_s for s in steps])
        if self.verifier is None:
            return ScoreTrack(times, np.concatenate([s.scores for s in steps]))
        from edge_runtime.postprocess import DetectionPolicy
        from edge_runtime.verifier import VerifiedPostProcessor

        # The values do not depend on the threshold: one pass serves the whole sweep.
        policy = DetectionPolicy(1.0, self.refractory_seconds, self.smoothing_seconds)
        post = VerifiedPostProcessor(policy, self.output_period, self.verifier, self.bundle.stream.frames_per_step)
        values, smoothed = (np.concatenate(parts) for parts in
                            zip(*(post.values_and_gate(s.times_s, s.scores, s.frames) for s in steps), strict=True))
        scored = ScoreTrack(times, values, smoothed, values)
        if self.verifier.gate == self.deployed_gate:
            self.last_verifier_usage = {"windows": post.verifier.windows_scored, "open_outputs": post.gate_outputs,
                                        "outputs": int(times.size)}  # fmt: skip
            return scored
        # Scored with a lower gate for a sweep: what the bundle's own gate would have made and run.
        self.last_verifier_usage = self.usage_at_gate(scored, self.deployed_gate)
        return self.at_gate(scored, self.deployed_gate)

    def at_gate(self, track: ScoreTrack, gate: float) -> ScoreTrack:
        """The verified track as a bundle with its gate at `gate` makes it: the verifier's mean where the student's
        smoothed probability reaches `gate`, else 0. Exact for any gate from the one `track` was scored with up:
        the mean at an output does not depend on the gate, only whether it is asked for."""
        if track.verified is None or not gate >= self.verifier.gate:
            raise ValueError(f"a track scored with the gate at {self.verifier.gate} gives gates from there up, "
                             f"not {gate}")  # fmt: skip
        values = np.where(track.gate_values >= gate, track.verified, 0.0).astype(np.float32)
        return ScoreTrack(track.times_s, values, track.gate_values, track.verified)

    def usage_at_gate(self, track: ScoreTrack, gate: float) -> dict:
        """`last_verifier_usage` of a bundle gated at `gate` on `track`'s stream: the outputs the gate is open for,
        all outputs, and the verifier windows scored, each grid window within the span of an open output once (the
        verifier keeps the scores it may be asked for again)."""
        from edge_runtime.verifier import grid_window_ends, smoothing_span_frames

        is_open = track.gate_values >= gate
        span = smoothing_span_frames(self.smoothing_seconds, self.spec)
        lasts = self.spec.frame_ending_at(track.times_s[is_open])
        windows = {g for last in lasts.tolist() for g in grid_window_ends(last, span, self.verifier.hop_frames)}
        return {"windows": len(windows), "open_outputs": int(is_open.sum()), "outputs": int(track.times_s.size)}

    def decision_values(self, track: ScoreTrack) -> np.ndarray:
        return track.scores if self.verifier is not None else super().decision_values(track)

    def detect(self, track: ScoreTrack, threshold: float) -> np.ndarray:
        if self.verifier is None:
            return super().detect(track, threshold)
        from edge_runtime.postprocess import RiseTrigger

        trigger = RiseTrigger(threshold, self.refractory_seconds)
        return np.array([d.time_s for d in trigger.update(track.times_s, track.scores)])


class CheckpointDetector(_StreamingPostProcessing):
    """A torch checkpoint (e.g. the CRNN teacher the student was distilled from) scored where and how the
    streaming detector `like` scores its bundle: at each of its output times, the frames heard up to then (silence
    before the stream's start, as the stream's primed state has), the same smoothing, threshold rule and refractory
    period. A reference for what compression gives up on long audio, not a deployed path: float32 torch, in
    batches, so its real-time factor is not the device's.

    Which frames: a model that reads its whole 1 s window (the CRNN) gets the window ending at the output's last
    frame. A DS-CNN whose strided stem leaves the window's last `unread_frames` frames unread reads the frames up
    to the output's last frame when its window ends that many frames later, which is where its streaming step
    reads them; the unread frames are never heard early. (Until 2026-11-23 every reference ended its window at the
    last frame, so a DS-CNN reference read two frames older than its own stream: same audio, another phase of
    its stride-5 stem, and on `make eval`'s streams another FRR at 0.5 FA/h, 33.5% against the stream's 52.8%.)"""

    name = "reference"
    precision = "float32"
    BATCH_WINDOWS = 2048

    def __init__(self, checkpoint: str | Path, like: StreamingDetector) -> None:
        from edge_runtime.features import MelFrontEnd, silence_frames
        from train.checkpoint import load_checkpoint

        self.model, self.info = load_checkpoint(Path(checkpoint))
        # Its own front-end (log-mel or PCEN) on the same frames: everything else of the spec must match, so its
        # scores fall at the bundle's output times.
        if dataclasses.replace(self.info.feature_spec, front_end=like.spec.front_end) != like.spec:
            raise ValueError(f"reference {checkpoint} was trained on other frames than the bundle: "
                             f"{self.info.feature_spec.to_dict()} vs {like.spec.to_dict()}")  # fmt: skip
        if self.info.keyword != like.keyword:
            raise ValueError(f"reference {checkpoint} spots {self.info.keyword!r}, the bundle {like.keyword!r}")
        self.spec, self.keyword, self.manifest = like.spec, like.keyword, like.manifest
        self.checkpoint = Path(checkpoint)
        self.architecture = self.info.architecture
        stream = like.bundle.stream
        self.stride_frames, self.first_frame = stream.stride_frames, stream.output_frame_offset
        self.phase_lags = stream.phase_lags  # scored at every phase the stream runs, as the stream merges them
        self.output_period, self.smoothing_seconds = like.output_period, like.smoothing_seconds
        self.refractory_seconds = like.refractory_seconds
        self.front_end = MelFrontEnd(self.info.feature_spec)
        self.silence_frame = silence_frames(1, self.info.feature_spec)[0]
        self.unread_frames = unread_window_frames(self.model, self.info.feature_spec)

    def score(self, audio: np.ndarray) -> ScoreTrack:
        import torch

        spec, window = self.spec, self.spec.frames_per_clip
        frames = self.front_end.frames(np.asarray(audio, dtype=np.float32))
        # Row f + before of `padded` is frame f (silence before the stream, as the primed state heard; the later
        # phases start up to `max(phase_lags)` frames before it); the window of the output whose last frame is f
        # starts at row f + before - window + 1 + unread (its unread frames past the end of the stream are
        # silence, which the model does not read).
        unread, before = self.unread_frames, window - 1 + max(self.phase_lags)
        padded = np.concatenate(
            [np.tile(self.silence_frame, (before, 1)), frames, np.tile(self.silence_frame, (unread, 1))]
        )
        first = np.arange(self.first_frame, frames.shape[0], self.stride_frames)
        last_frames = np.sort(np.concatenate([first - lag for lag in self.phase_lags]), kind="stable")
        starts = last_frames + before - window + 1 + unread
        windows = torch.from_numpy(padded).unfold(0, window, 1).transpose(1, 2)[starts]
        keyword = self.info.keyword_index
        with torch.no_grad():
            scores = [
                torch.softmax(self.model(windows[start : start + self.BATCH_WINDOWS]).float(), dim=1)[:, keyword]
                for start in range(0, len(last_frames), self.BATCH_WINDOWS)
            ]
        scores = torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)
        return ScoreTrack(spec.frame_end_sample(last_frames) / spec.sample_rate, scores)


def unread_window_frames(model, spec) -> int:
    """Frames at the end of a 1 s window that `model` does not read: those a DS-CNN's strided stem leaves over
    (its streaming layout's count), 0 for a model that reads them all."""
    from convert.stream_model import NotStreamable, StreamLayout

    try:
        return spec.frames_per_clip - StreamLayout.of(model, spec).used_window_frames
    except NotStreamable:
        return 0


DETECTORS = {"window": WindowDetector, "streaming": StreamingDetector}
# The deployed path: `python -m edge_runtime run` and the service stream; every bundle carries the streaming model.
DEFAULT_DETECTOR = "streaming"


def make_detector(bundle: str | Path, kind: str = DEFAULT_DETECTOR, scoring_gate: float | None = None):
    """The detector `kind` for `bundle`; `scoring_gate` (streaming only): see `StreamingDetector`."""
    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {kind!r}")
    if scoring_gate is None:
        return DETECTORS[kind](bundle)
    if kind != "streaming":
        raise ValueError(f"only the streaming detector has a verifier's gate to sweep, not the {kind} detector")
    return StreamingDetector(bundle, scoring_gate)
