"""Streaming keyword scores: audio chunks of any size in, keyword probabilities every model output period out.

- `StreamingFrontEnd`: the mel front-end, fed incrementally. Each sample enters once; only the samples the next
  frame still needs (less than one window; for PCEN, the stream's first clip) are kept between calls. Frames are
  computed by `MelFrontEnd` itself, a step's worth at a time, so stream and window features come from one
  implementation.
- `StreamingModel`: the streaming TFLite step (`frames` + `state` -> `probabilities` + `state_out`). The int8
  state goes back in exactly as it came out (conversion checked that state input and output share scale and zero
  point), and the state starts primed with digital silence, so the first outputs already mean something.
- `StreamingScorer`: both together. Audio is cut into model steps of `frames_per_step` hops; a step's outputs are
  the same whatever chunk sizes the audio arrived in. At the end of a finite input (a file, standard input
  closed) `flush()` scores the last, partial step, completed with digital silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import KwsError
from .features import PCEN_FRONT_ENDS, FeatureSpec, MelFrontEnd, SmootherState, silence_frames
from .interpreter import (
    DEFAULT_THREADS,
    OUTPUT_LOGITS,
    Interpreter,
    TensorInfo,
    native_stderr_silenced,
    quantize,
    softmax,
)
from .stream_manifest import StreamingEntry


class StreamingFrontEnd:
    """Feature frames of an endless signal, `frames_per_call` frames at a time.

    PCEN's running average starts from the stream's first clip (`smoother_start`), so for PCEN the first
    `first_calls` calls' frames (a clip or a little more) are computed at once and handed out a call at a time: the
    stream's first frames wait for its first clip of audio, once, and every frame equals the signal's taken whole.
    """

    def __init__(self, spec: FeatureSpec, frames_per_call: int) -> None:
        self.spec = spec
        self.frames_per_call = frames_per_call
        self._front_end = MelFrontEnd(spec)
        self._smoother = SmootherState()  # PCEN's running average, carried from call to call (unused for log-mel)
        self.first_calls = -(-spec.frames_per_clip // frames_per_call) if spec.front_end in PCEN_FRONT_ENDS else 1
        # Samples needed for `frames_per_call` frames, and how far the next call's first frame starts after this one.
        self.samples_per_call = spec.frame_end_sample(frames_per_call - 1)
        self.advance = frames_per_call * spec.hop_samples
        self._pending = np.zeros(0, np.float32)
        self._computed: list[np.ndarray] = []  # calls' frames computed ahead (PCEN's first clip), oldest first
        self._calls_next = self.first_calls

    @property
    def new_samples_per_call(self) -> int:
        """Fresh samples each call consumes once the first window is filled: one hop per frame."""
        return self.advance

    def _samples_for(self, calls: int) -> int:
        return self.spec.frame_end_sample(calls * self.frames_per_call - 1)

    def push(self, audio: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, np.asarray(audio, dtype=np.float32).ravel()])

    def ready(self) -> bool:
        return bool(self._computed) or self._pending.shape[0] >= self._samples_for(self._calls_next)

    def pop(self) -> np.ndarray:
        """The next `frames_per_call` frames [frames_per_call, n_mels]; call only when `ready()`."""
        if not self._computed:
            # Each frame is computed once, so the smoother sees every frame once, in order.
            calls = self._calls_next
            frames = self._front_end.frames(self._pending[: self._samples_for(calls)], self._smoother)
            self._pending = self._pending[calls * self.advance :]
            self._computed = list(np.split(frames, calls))
            self._calls_next = 1
        return self._computed.pop(0)

    def flush(self) -> list[np.ndarray]:
        """At the end of the input (after every ready call was popped): the frames of the samples left, a call at
        a time, with the missing samples taken as zeros; [] when every sample is already in a frame. Frames past
        the real end then hold digital silence, the same zeros the window model pads a short file with."""
        left = self._pending.shape[0]
        if left <= self.spec.window_samples - self.spec.hop_samples:
            return []  # what is left was all read by the last call's frames
        real_frames = -(-left // self.spec.hop_samples)  # frames that start on a real sample
        calls = min(self._calls_next, -(-real_frames // self.frames_per_call))  # the calls that hold them
        self.push(np.zeros(self._samples_for(self._calls_next) - left, np.float32))
        frames = [self.pop() for _ in range(calls)]
        self._pending, self._computed = np.zeros(0, np.float32), []
        return frames

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._computed, self._calls_next = [], self.first_calls
        self._smoother.reset()


class StreamingModel:
    """The streaming TFLite step with one state per phase; `step(frames, phase)` -> float32 probabilities
    [outputs, classes]."""

    def __init__(self, entry: StreamingEntry, num_threads: int = DEFAULT_THREADS, phases: int = 1) -> None:
        if Interpreter is None:
            raise KwsError("no TFLite interpreter installed: install ai-edge-litert (or tflite-runtime)")
        self.entry = entry
        try:
            self._interpreter = Interpreter(model_path=str(entry.path), num_threads=num_threads)
            with native_stderr_silenced():
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise KwsError(f"streaming model {entry.path} is not a loadable TFLite model ({error})") from None
        found = {
            d["name"]: d for d in (*self._interpreter.get_input_details(), *self._interpreter.get_output_details())
        }
        tensors = {}
        for role, declared in entry.tensors.items():
            if declared.name not in found:
                raise KwsError(
                    f"streaming model {entry.path} has no tensor '{declared.name}' ({role}); it has {sorted(found)}"
                )
            actual = TensorInfo.from_details(found[declared.name])
            if actual != declared:
                raise KwsError(f"streaming model {entry.path}: {role} is {actual}, the manifest says {declared}")
            tensors[role] = found[declared.name]["index"]
        self._frames_index, self._state_index = tensors["frames"], tensors["state"]
        self._probabilities_index, self._state_out_index = tensors["probabilities"], tensors["state_out"]
        self.frames_info, self.probabilities_info = entry.tensors["frames"], entry.tensors["probabilities"]
        self._frames_shape = entry.tensors["frames"].shape
        state_info = self.entry.tensors["state"]
        self._states = [quantize(np.zeros(state_info.shape, np.float32), state_info)]  # overwritten by the priming
        silence = silence_frames(self.entry.frames_per_step, self.entry.spec)
        for _ in range(self.entry.prime_steps):  # the state after a clip of digital silence
            self.step(silence)
        self._primed_state = self._states[0]
        self._states = [self._primed_state.copy() for _ in range(phases)]

    def reset(self) -> None:
        self._states = [self._primed_state.copy() for _ in self._states]

    def step(self, frames: np.ndarray, phase: int = 0) -> np.ndarray:
        """Frames [frames_per_step, n_mels] float32 -> keyword-and-other probabilities [outputs_per_step, classes],
        carrying `phase`'s state."""
        interpreter = self._interpreter
        interpreter.set_tensor(self._frames_index, quantize(frames.reshape(self._frames_shape), self.frames_info))
        interpreter.set_tensor(self._state_index, self._states[phase])
        interpreter.invoke()
        self._states[phase] = interpreter.get_tensor(self._state_out_index)
        raw = interpreter.get_tensor(self._probabilities_index)[0]
        info = self.probabilities_info
        output = (raw.astype(np.float32) - info.zero_point) * np.float32(info.scale) if info.quantized else raw
        return softmax(output) if self.entry.output_meaning == OUTPUT_LOGITS else output


@dataclass(frozen=True)
class StepScores:
    """One model step: keyword probability and stream time (seconds, end of the newest sample read) per output,
    the time spent in the front-end and the model, and the step's new feature frames (a verifier reads them)."""

    times_s: np.ndarray
    scores: np.ndarray
    features_ns: int
    model_ns: int
    frames: np.ndarray | None = None


class StreamingScorer:
    """Front-end + streaming model: `push(audio)` returns the steps that audio completed.

    With `entry.phases` > 1 the step runs that many times per call, each copy with its own state on the frames
    `entry.phase_lags` behind the newest (digital silence before the stream's start): a model whose stem strides
    over 5 frames then scores the audio at all 5 alignments of its stride, and a step's outputs are all copies'
    scores in time order, `output_period_s` apart. One alignment alone is a noisy detector: scored on the same
    long audio, the default student missed 32% to 57% of keywords at 0.5 false accepts per hour depending on the
    alignment, and 25% with the five merged before smoothing (docs/quality.md), for 5x the model's work, still a
    small part of the front-end's."""

    def __init__(self, entry: StreamingEntry, keyword_index: int, num_threads: int = DEFAULT_THREADS) -> None:
        self.entry = entry
        self.spec = entry.spec
        self.keyword_index = keyword_index
        self.front_end = StreamingFrontEnd(entry.spec, entry.frames_per_step)
        self.model = StreamingModel(entry, num_threads, entry.phases)
        self._lags = entry.phase_lags
        hop_s = entry.spec.hop_samples / entry.spec.sample_rate
        self._lag_seconds = [lag * hop_s for lag in self._lags]  # each phase's outputs are this much older
        self._history = silence_frames(max(self._lags), entry.spec)  # the newest frames of the step before
        self.steps_done = 0
        self.samples_pushed = 0
        self.flushed = False
        spec = entry.spec
        outputs = np.arange(entry.outputs_per_step)
        # Output n has read up to frame output_frame_offset + n * stride.
        last_frames = entry.output_frame_offset + outputs * entry.stride_frames
        self._first_times = spec.frame_end_sample(last_frames) / spec.sample_rate
        self._step_seconds = entry.frames_per_step * spec.hop_samples / spec.sample_rate

    @property
    def seconds_per_step(self) -> float:
        return self._step_seconds

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio scored: whole steps, or after `flush()` all the audio pushed."""
        if self.flushed:
            return self.samples_pushed / self.spec.sample_rate
        return self.steps_done * self._step_seconds

    def push(self, audio: np.ndarray) -> list[StepScores]:
        audio = np.asarray(audio, dtype=np.float32).ravel()
        self.samples_pushed += audio.shape[0]
        self.front_end.push(audio)
        steps = []
        while self.front_end.ready():
            started = time.perf_counter_ns()
            steps.append(self._step(self.front_end.pop(), started))
        return steps

    def flush(self, tail_seconds: float = 0.0) -> list[StepScores]:
        """End of input: score the audio that did not fill a whole step, completed with silence (zeros), and
        `tail_seconds` of silence after it.

        Without this the last up to `seconds_per_step` of a file would never be scored, and a keyword that ends
        with the file would be lost: the window model scores a window flush with the end of a file, the stream
        would stop at the last whole step before it (a 1 s file ending in a 0.25 s keyword peaked at 0.49 with
        the tiny test model, under the threshold, where the window model gives 0.79; flushed: 0.79). Zeros are
        what the window model pads a short file with. The outputs are kept up to the first one that has read the
        last real sample plus `tail_seconds`, so a time is at most one output period past that. Full steps are
        untouched: the stream still equals the window model on them.

        `tail_seconds` is for the post-processing: its moving average over `smoothing_seconds` needs that long
        after a word to reach the word's level, as it gets live, where the audio goes on (a pause) after a word.
        The tail counts as scored time, not as audio (`audio_seconds` stays the input's length).
        Call it once, at the end; `push` must not follow."""
        if tail_seconds < 0:
            raise ValueError(f"tail_seconds must be >= 0, got {tail_seconds}")
        started = time.perf_counter_ns()
        real_samples = self.samples_pushed
        end_s = real_samples / self.spec.sample_rate + tail_seconds
        steps = self.push(np.zeros(round(tail_seconds * self.spec.sample_rate), np.float32)) if tail_seconds else []
        self.samples_pushed = real_samples
        for frames in self.front_end.flush():
            steps.append(self._step(frames, started))
            started = time.perf_counter_ns()
        self.flushed = True
        kept = []
        for step in steps:  # drop outputs that read nothing but padding
            keep = min(len(step.times_s), int(np.count_nonzero(step.times_s < end_s - 1e-9)) + 1)
            kept.append(
                StepScores(step.times_s[:keep], step.scores[:keep], step.features_ns, step.model_ns, step.frames)
            )
            if keep < len(step.times_s):
                break
        return kept

    def _step(self, frames: np.ndarray, started: int) -> StepScores:
        featured = time.perf_counter_ns()
        times = self._first_times + self.steps_done * self._step_seconds
        if len(self._lags) == 1:
            scores = self.model.step(frames)[:, self.keyword_index]
        else:
            recent = np.concatenate([self._history, frames])
            behind, count = self._history.shape[0], frames.shape[0]
            scores = np.concatenate([
                self.model.step(recent[behind - lag : behind - lag + count], phase)[:, self.keyword_index]
                for phase, lag in enumerate(self._lags)
            ])
            self._history = recent[recent.shape[0] - behind :]
            times = np.concatenate([times - lag_s for lag_s in self._lag_seconds])
            order = np.argsort(times, kind="stable")
            times, scores = times[order], scores[order]
        done = time.perf_counter_ns()
        self.steps_done += 1
        return StepScores(times, scores, featured - started, done - featured, frames)

    def reset(self) -> None:
        self.front_end.reset()
        self.model.reset()
        self._history = silence_frames(max(self._lags), self.spec)
        self.steps_done = self.samples_pushed = 0
        self.flushed = False
