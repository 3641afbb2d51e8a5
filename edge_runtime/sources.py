"""Audio sources for `run`: a WAV file, or raw 16-bit PCM on standard input (the microphone is in `microphone.py`).

Every source yields mono float32 chunks in -1..1 at the model's sample rate, converted at the door: channels are
averaged, other rates are resampled with soxr (streaming resampler for endless input). `chunks()` ends at the end
of the input or as soon as `stop` is set (checked at least every `POLL_SECONDS`), so a signal never waits on a
blocked read.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .audio_io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, StreamResampler, downmix, open_wav, read_finite_block
from .errors import KwsError

POLL_SECONDS = 0.1
PCM_BYTES = 2  # signed 16-bit little-endian, as `arecord -f S16_LE -t raw` writes it
PCM_FULL_SCALE = 32768.0
STDIN_FD = 0


class AudioSource:
    """Base: counters every source reports in the latency summary."""

    description = "audio"

    def __init__(self) -> None:
        self.overflows = 0  # capture reported an input overflow (samples were lost before we got them)
        self.dropped_samples = 0  # samples we had to drop ourselves because processing fell behind

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call twice."""


def check_rate(rate: int, what: str) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise KwsError(f"{what} {rate} Hz is not supported; allowed: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")


def pcm16_to_mono(data: bytes, channels: int) -> np.ndarray:
    """Interleaved signed 16-bit little-endian frames -> mono float32 in -1..1."""
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / PCM_FULL_SCALE
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


class WavSource(AudioSource):
    """A WAV file (any format `audio_io` accepts), read and resampled block by block: a recording of hours is never
    held in memory whole. The file is checked when the source is made, so a bad file fails before any audio."""

    def __init__(self, path: str | Path, sample_rate: int, chunk_samples: int) -> None:
        super().__init__()
        self.description = f"WAV file {path}"
        self.path = Path(path)
        self._wav = open_wav(self.path)
        if self._wav.frames == 0:
            self._wav.close()
            raise KwsError(f"{path}: contains no audio samples")
        self._resampler = StreamResampler(self._wav.samplerate, sample_rate)
        # Read about one chunk's worth of audio at the file's own rate per step.
        self._block_frames = max(1, round(chunk_samples * self._wav.samplerate / sample_rate))

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        while not stop.is_set():
            block = read_finite_block(self._wav, self.path, self._block_frames)
            last = block.shape[0] < self._block_frames
            audio = self._resampler(downmix(block), last=last)
            if audio.size:
                yield audio
            if last:
                return

    def close(self) -> None:
        self._wav.close()


class StdinSource(AudioSource):
    """Raw signed 16-bit little-endian PCM on a file descriptor (standard input), read as it arrives."""

    def __init__(self, rate: int, channels: int, sample_rate: int, chunk_samples: int, fd: int = STDIN_FD) -> None:
        super().__init__()
        check_rate(rate, "--stdin-rate")
        if channels < 1:
            raise KwsError(f"--stdin-channels must be >= 1, got {channels}")
        self.description = f"raw 16-bit PCM on standard input ({rate} Hz, {channels} channel(s))"
        self.fd, self.channels = fd, channels
        self.frame_bytes = PCM_BYTES * channels
        self.read_bytes = max(1, round(chunk_samples * rate / sample_rate)) * self.frame_bytes
        self.resample = StreamResampler(rate, sample_rate)

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        pending = b""
        while not stop.is_set():
            readable, _, _ = select.select([self.fd], [], [], POLL_SECONDS)
            if not readable:
                continue
            try:
                data = os.read(self.fd, self.read_bytes)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for odd platforms
                continue
            if not data:
                break
            pending += data
            usable = len(pending) - len(pending) % self.frame_bytes
            if usable:
                yield self.resample(pcm16_to_mono(pending[:usable], self.channels))
                pending = pending[usable:]
        tail = self.resample(np.zeros(0, np.float32), last=True)
        if tail.size:
            yield tail
