"""WAV reading for the edge runtime: formats, downmix, soxr resampling, and one clear error per bad file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile

from edge_runtime.audio_io import read_audio
from edge_runtime.errors import KwsError

RATE = 16000


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


def test_44k1_stereo_float_sine_comes_out_at_16k_mono_with_the_same_frequency(tmp_path):
    tone = sine(1000, 44100, 2.0)
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.stack([tone, tone], axis=1), 44100, subtype="FLOAT")
    audio = read_audio(path, RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.shape[0] == 2 * RATE
    assert dominant_frequency(audio, RATE) == pytest.approx(1000, abs=1.0)
    middle = audio[RATE // 2 : -RATE // 2]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    reference = sine(1000, RATE, 2.0)
    assert np.max(np.abs(middle - reference[RATE // 2 : -RATE // 2])) < 0.01


def test_8k_stereo_24bit_is_averaged_and_upsampled(tmp_path):
    left, right = sine(440, 8000, 1.0, 0.6), sine(440, 8000, 1.0, 0.2)
    path = tmp_path / "low.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 8000, subtype="PCM_24")
    audio = read_audio(path, RATE)
    assert audio.shape[0] == RATE
    assert dominant_frequency(audio, RATE) == pytest.approx(440, abs=1.0)
    peak = np.max(np.abs(audio[RATE // 4 : -RATE // 4]))
    assert peak == pytest.approx(0.4, abs=0.005)  # (0.6 + 0.2) / 2


def test_opposite_channels_cancel_without_resampling(tmp_path):
    tone = sine(300, RATE, 0.5)
    path = tmp_path / "cancel.wav"
    soundfile.write(path, np.stack([tone, -tone, np.zeros_like(tone)], axis=1), RATE, subtype="PCM_16")
    audio = read_audio(path, RATE)
    assert audio.shape == tone.shape and np.max(np.abs(audio)) < 1e-4


@pytest.mark.parametrize(
    ("subtype", "step"), [("PCM_U8", 1 / 128), ("PCM_16", 1 / 32768), ("PCM_32", 1e-6), ("DOUBLE", 1e-7)]
)
def test_integer_and_float_sample_formats_read_to_the_same_values(tmp_path, subtype, step):
    tone = sine(500, RATE, 0.25)
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(path, tone, RATE, subtype=subtype)
    assert np.max(np.abs(read_audio(path, RATE) - tone)) <= step


def write_wav(path, rate=RATE):
    soundfile.write(path, sine(500, rate, 0.5), rate, subtype="PCM_16")
    return path


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[12:40] = b"\xff" * 28  # fmt chunk destroyed, RIFF header kept
    path.write_bytes(bytes(data))


def header_only(path):
    path.write_bytes(path.read_bytes()[:44])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "file is empty; allowed: WAV"),
        (truncated, "truncated WAV file (data chunk declares 16000 bytes, only 7978 present)"),
        (corrupt, "not a readable WAV file"),
        (header_only, "truncated WAV file"),
        (lambda p: p.write_text("just some text, not audio\n" * 20), "not a readable WAV file"),
        (lambda p: p.unlink(), "no such file"),
    ],
    ids=["empty", "truncated", "corrupt", "header-only", "text", "missing"],
)
def test_bad_files_raise_one_line_naming_the_file(tmp_path, damage, message):
    path = write_wav(tmp_path / "bad.wav")
    damage(path)
    with pytest.raises(KwsError) as raised:
        read_audio(path, RATE)
    text = str(raised.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


@pytest.mark.parametrize("rate", [4000, 96000])
def test_sample_rates_outside_8_to_48_khz_are_refused(tmp_path, rate):
    path = write_wav(tmp_path / "rate.wav", rate)
    with pytest.raises(KwsError, match=f"sample rate {rate} Hz is not supported; allowed: WAV at 8000-48000 Hz"):
        read_audio(path, RATE)


def test_other_containers_and_codecs_are_refused(tmp_path):
    flac = tmp_path / "tone.flac"
    soundfile.write(flac, sine(500, RATE, 0.5), RATE, format="FLAC")
    with pytest.raises(KwsError, match="FLAC/PCM_16 audio is not supported"):
        read_audio(flac, RATE)
    ulaw = tmp_path / "ulaw.wav"
    soundfile.write(ulaw, sine(500, RATE, 0.5), RATE, subtype="ULAW")
    with pytest.raises(KwsError, match="WAV/ULAW audio is not supported"):
        read_audio(ulaw, RATE)


def test_zero_samples_and_nan_samples_are_refused(tmp_path):
    empty = tmp_path / "zero.wav"
    soundfile.write(empty, np.zeros(0, np.float32), RATE, subtype="PCM_16")
    with pytest.raises(KwsError, match="contains no audio samples"):
        read_audio(empty, RATE)
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.array([0.0, np.nan, 0.1], np.float32), RATE, subtype="FLOAT")
    with pytest.raises(KwsError, match="NaN or infinite"):
        read_audio(nan, RATE)


def test_streamed_wav_with_unknown_data_size_is_read_to_the_end(tmp_path):
    """Writers that cannot seek (arecord to a pipe) leave 0xFFFFFFFF as the data size; that is not truncation."""
    path = write_wav(tmp_path / "stream.wav")
    data = bytearray(path.read_bytes())
    data_at = data.index(b"data")
    data[data_at + 4 : data_at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    assert read_audio(path, RATE).shape[0] == RATE // 2
