"""WAV files in, mono float32 at the feature spec's sample rate out; everything else is refused at the door.

Accepted: WAV (RIFF/WAVEX/RF64) at 8-48 kHz, any channel count, 8/16/24/32-bit integer or 32/64-bit float
samples. Channels are averaged to mono, and the signal is resampled with soxr (a proper band-limited resampler,
never by hand). Empty, truncated, corrupt or non-audio files raise `KwsError` with one line naming the file.

`read_audio` returns a file whole; `read_audio_blocks` yields it in blocks of bounded size (soxr's streaming
resampler keeps its state across blocks), so a recording of hours is never held in memory. Both give the same
samples: soxr's output does not depend on how its input is cut.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from .errors import KwsError

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
ACCEPTED_FORMATS = ("WAV", "WAVEX", "RF64")
ACCEPTED_SUBTYPES = ("PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
ACCEPTED_AUDIO = (
    f"WAV at {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, any number of channels, "
    "8/16/24/32-bit integer or 32/64-bit float samples"
)
ALLOWED = f"allowed: {ACCEPTED_AUDIO}"
BLOCK_SECONDS = 1.0  # `read_audio_blocks`: audio read from the file per block


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a WAV file as mono float32 in -1..1 at `sample_rate` Hz."""
    path = Path(path)
    audio, file_rate = read_wav(path)
    return resample(downmix(audio), file_rate, sample_rate)


def read_audio_blocks(path: str | Path, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """`read_audio` block by block: mono float32 blocks at `sample_rate` Hz, each from about `block_seconds` of the
    file, whose concatenation is exactly what `read_audio` returns. The file is checked on the first `next()`;
    a fault further in (NaN samples, a read error) raises `KwsError` when its block is reached."""
    path = Path(path)
    with open_wav(path) as wav:
        if wav.frames == 0:
            raise KwsError(f"{path}: contains no audio samples; {ALLOWED}")
        resampler = StreamResampler(wav.samplerate, sample_rate)
        block_frames = max(1, round(block_seconds * wav.samplerate))
        while True:
            block = read_finite_block(wav, path, block_frames)
            last = block.shape[0] < block_frames
            audio = resampler(downmix(block), last=last)
            if audio.size:
                yield audio
            if last:
                return


class StreamResampler:
    """soxr's streaming resampler (state kept across chunks); identity when the rates match."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32")

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return audio
        return self._stream.resample_chunk(audio, last=last)


def downmix(audio: np.ndarray) -> np.ndarray:
    """[frames, channels] -> [frames], averaging the channels."""
    return audio.mean(axis=1, dtype=np.float64).astype(np.float32) if audio.shape[1] > 1 else audio[:, 0]


def open_wav(path: Path):
    """Open a WAV file after checking it is one this runtime accepts; returns an open `soundfile.SoundFile`.

    Long recordings are then read block by block (`read_finite_block`) rather than whole."""
    if not path.is_file():
        raise KwsError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    if path.stat().st_size == 0:
        raise KwsError(f"{path}: file is empty; {ALLOWED}")
    import soundfile  # here, not at the top: libsndfile costs 3 MB of RSS that a microphone service does not need

    try:
        wav = soundfile.SoundFile(path)
    except soundfile.SoundFileError as error:
        reason = str(error).replace(f"Error opening {str(path)!r}: ", "").strip()
        raise KwsError(f"{path}: not a readable WAV file ({reason}); {ALLOWED}") from None
    try:
        if wav.format not in ACCEPTED_FORMATS or wav.subtype not in ACCEPTED_SUBTYPES:
            raise KwsError(f"{path}: {wav.format}/{wav.subtype} audio is not supported; {ALLOWED}")
        if not MIN_SAMPLE_RATE <= wav.samplerate <= MAX_SAMPLE_RATE:
            raise KwsError(f"{path}: sample rate {wav.samplerate} Hz is not supported; {ALLOWED}")
        check_not_truncated(path)
    except BaseException:
        wav.close()
        raise
    return wav


def read_finite_block(wav, path: Path, frames: int = -1) -> np.ndarray:
    """Up to `frames` frames (all with -1) as float32 [frames, channels]; NaN or infinite samples are refused."""
    import soundfile

    try:
        block = wav.read(frames, dtype="float32", always_2d=True)
    except soundfile.SoundFileError as error:
        raise KwsError(f"{path}: not a readable WAV file ({error}); {ALLOWED}") from None
    if not np.isfinite(block).all():
        raise KwsError(f"{path}: contains NaN or infinite samples")
    return block


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples as float32 [frames, channels] and the file's sample rate, after checking the file is a sound WAV."""
    with open_wav(path) as wav:
        audio, file_rate = read_finite_block(wav, path), wav.samplerate
    if audio.shape[0] == 0:
        raise KwsError(f"{path}: contains no audio samples; {ALLOWED}")
    return audio, file_rate


def check_not_truncated(path: Path) -> None:
    """Refuse a RIFF file whose data chunk claims more bytes than the file holds (libsndfile would read it short).

    Streaming writers put 0 or 0xFFFFFFFF in the size when they cannot seek back; those are taken as "to the end".
    """
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64 and friends: left to libsndfile
        offset = 12
        while offset + 8 <= file_size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = file_size - offset - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise KwsError(
                        f"{path}: truncated WAV file (data chunk declares {chunk_size} bytes, only {available} present)"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr's high-quality setting; identity when the rates already match."""
    if from_rate == to_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)
