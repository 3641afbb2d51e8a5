"""The microphone through PyAudio (PortAudio): chosen by index or name, opened at the model's rate when it can be,
otherwise at its native rate and resampled with soxr.

Robustness, because this runs unattended as a service:
- An input overflow (the device delivered faster than we read) is counted and logged, never raised: that chunk
  is lost and the stream goes on.
- A device that fails mid-stream (unplugged USB microphone: ALSA returns ENODEV, PortAudio an unanticipated host
  error) is closed and reopened with exponential backoff (`retry_initial_s`, doubling up to `retry_max_s`),
  forever; each attempt is logged. The backoff restarts only once audio flows again, so a device that opens but
  fails at once is retried with growing waits, not in a busy loop.
- At start, no input device at all, or no device matching `--device`, is one clear error (the list of input
  devices is in it), not a retry loop.
PortAudio's ALSA/JACK probing prints pages of noise on stderr when PyAudio starts, and a failing read prints its
own "Expression ... failed" lines; both are silenced so stderr carries only our own lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from .errors import KwsError
from .interpreter import native_stderr_silenced
from .sources import AudioSource, StreamResampler, check_rate, pcm16_to_mono

DEFAULT_RETRY_INITIAL_S = 1.0
DEFAULT_RETRY_MAX_S = 30.0
SAMPLE_FORMAT_BYTES = 2  # paInt16


class DeviceLost(Exception):
    """The open stream failed (not an overflow): close it and retry."""


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise KwsError(
            "the microphone needs pyaudio: pip install pyaudio (needs the portaudio19-dev package)"
        ) from None
    return pyaudio


def input_devices(audio) -> list[dict]:
    """PortAudio's devices that can capture, each {"index", "name", "channels", "rate"}."""
    devices = []
    for index in range(audio.get_device_count()):
        info = audio.get_device_info_by_index(index)
        if int(info.get("maxInputChannels", 0)) > 0:
            devices.append(
                {
                    "index": index,
                    "name": str(info["name"]),
                    "channels": int(info["maxInputChannels"]),
                    "rate": int(info["defaultSampleRate"]),
                }
            )
    return devices


def describe(devices: list[dict]) -> str:
    return ", ".join(f"{d['index']}: '{d['name']}'" for d in devices) or "none"


def pick_device(devices: list[dict], wanted: str | None, default_index: int | None) -> dict:
    """`wanted` is an index, or a case-insensitive part of a name (first match); None: the system default."""
    if not devices:
        raise KwsError(
            "no microphone: PortAudio finds no audio input device (is one plugged in and is this user in "
            "the 'audio' group?)"
        )
    if wanted is None:
        chosen = [d for d in devices if d["index"] == default_index] or devices
        return chosen[0]
    if wanted.strip().isdigit():
        chosen = [d for d in devices if d["index"] == int(wanted)]
    else:
        chosen = [d for d in devices if wanted.lower() in d["name"].lower()]
    if not chosen:
        raise KwsError(f"no input device matches --device '{wanted}'; input devices: {describe(devices)}")
    return chosen[0]


def choose_format(
    supported: Callable[[int, int], bool], device: dict, model_rate: int, forced_rate: int | None
) -> tuple[int, int]:
    """(rate, channels) to open: the model's rate in mono if the device takes it, else its native rate; stereo
    only for devices that refuse mono (channels are averaged afterwards)."""
    rates = [forced_rate] if forced_rate else [model_rate, device["rate"]]
    for rate in rates:
        for channels in sorted({1, min(2, device["channels"])}):
            if supported(rate, channels):
                return rate, channels
    raise KwsError(
        f"input device '{device['name']}' accepts neither {model_rate} Hz nor its native "
        f"{device['rate']} Hz as 16-bit audio"
    )


class MicrophoneSource(AudioSource):
    def __init__(
        self,
        device: str | None,
        sample_rate: int,
        chunk_samples: int,
        log: Callable[[str], None],
        forced_rate: int | None = None,
        retry_initial_s: float = DEFAULT_RETRY_INITIAL_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
    ) -> None:
        super().__init__()
        if forced_rate is not None:
            check_rate(forced_rate, "--mic-rate")
        self.pyaudio = _pyaudio()
        self.wanted, self.sample_rate, self.chunk_samples = device, sample_rate, chunk_samples
        self.forced_rate, self.log = forced_rate, log
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.reconnects = 0
        self._audio = self._stream = None
        try:
            self._open()  # at start a missing or unusable device is an error, not a retry loop
        except DeviceLost as error:
            raise KwsError(str(error)) from None

    def _open(self) -> None:
        pyaudio = self.pyaudio
        with native_stderr_silenced():
            self._audio = pyaudio.PyAudio()
        try:
            try:
                default = self._audio.get_default_input_device_info()["index"]
            except OSError:
                default = None
            device = pick_device(input_devices(self._audio), self.wanted, default)

            def supported(rate: int, channels: int) -> bool:
                try:
                    return bool(
                        self._audio.is_format_supported(
                            rate, input_device=device["index"], input_channels=channels, input_format=pyaudio.paInt16
                        )
                    )
                except ValueError:
                    return False

            with native_stderr_silenced():
                rate, channels = choose_format(supported, device, self.sample_rate, self.forced_rate)
                self.frames_per_read = max(1, round(self.chunk_samples * rate / self.sample_rate))
                self._stream = self._audio.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=device["index"],
                    frames_per_buffer=self.frames_per_read,
                )
        except OSError as error:
            self._close()
            raise DeviceLost(f"cannot open the input device: {error}") from None
        except KwsError:
            self._close()
            raise
        self.channels, self.device_rate = channels, rate
        self.resample = StreamResampler(rate, self.sample_rate)
        resampling = f", resampled to {self.sample_rate} Hz" if rate != self.sample_rate else ""
        self.description = f"microphone {device['index']}: '{device['name']}' at {rate} Hz{resampling}"

    def _close(self) -> None:
        stream, audio = self._stream, self._audio
        self._stream = self._audio = None
        with native_stderr_silenced():
            if stream is not None:
                try:
                    stream.stop_stream()
                    stream.close()
                except OSError:
                    pass
            if audio is not None:
                audio.terminate()

    def close(self) -> None:
        self._close()

    def _read(self) -> np.ndarray | None:
        """One buffer as mono float32 at the model rate; None after an overflow (counted, that buffer is lost)."""
        try:
            with native_stderr_silenced():  # a failing read prints PortAudio's internal "Expression ... failed"
                data = self._stream.read(self.frames_per_read, exception_on_overflow=True)
        except OSError as error:
            if getattr(error, "errno", None) == self.pyaudio.paInputOverflowed:
                self.overflows += 1
                self.dropped_samples += round(self.frames_per_read * self.sample_rate / self.device_rate)
                self.log(
                    f"warning: input overflow #{self.overflows}: {self.frames_per_read} samples lost "
                    "(the CPU fell behind the microphone)"
                )
                return None
            raise DeviceLost(str(error)) from None
        return self.resample(pcm16_to_mono(data, self.channels))

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        delay = self.retry_initial_s
        read_since_open = True
        while not stop.is_set():
            if self._stream is None:
                try:
                    self._open()
                except (DeviceLost, KwsError) as error:
                    self.log(f"warning: microphone not available ({error}); retrying in {delay:g} s")
                    stop.wait(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                self.reconnects += 1
                self.log(f"microphone back: {self.description}")
                read_since_open = False
            try:
                chunk = self._read()
            except DeviceLost as error:
                self._close()
                if read_since_open:  # it worked until now: reopen at once
                    self.log(f"warning: microphone lost ({error}); reopening")
                    continue
                self.log(f"warning: microphone lost again at once ({error}); reopening in {delay:g} s")
                stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            read_since_open, delay = True, self.retry_initial_s
            if chunk is not None and chunk.size:
                yield chunk


def list_devices() -> str:
    """One line per input device: index, name, channels, native rate."""
    pyaudio = _pyaudio()
    with native_stderr_silenced():
        audio = pyaudio.PyAudio()
    try:
        devices = input_devices(audio)
    finally:
        with native_stderr_silenced():
            audio.terminate()
    if not devices:
        return "no audio input devices"
    return "\n".join(f"{d['index']}: {d['name']} ({d['channels']} channels, {d['rate']} Hz)" for d in devices)
