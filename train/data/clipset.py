"""The stored form of a data set, and how a data source becomes one (built once, cached, reused).

A clip set is a folder with:
- `clips.npz`: `audio` (every utterance concatenated, int16 at the feature sample rate, mono), `offsets` and
  `lengths` (int64, in samples), `labels` (int8: 1 = keyword, 0 = anything else), `splits` (uint8: 0 train,
  1 val, 2 test), `groups` (speaker or voice id, e.g. "espeak:en-us+f3", "sc:0a7c2a8d") and `texts` (what was
  said, "" for noise);
- `noise.npz`: the background-noise bank for augmentation (`audio`, `offsets`, `lengths`);
- `meta.json`: source and its config, keyword, labels, feature spec, counts, seed, creation time, cache key.

Every utterance is trimmed of leading and trailing silence and at most one clip long (the loudest clip-long
window is kept); training places it at a random position inside a clip-long window (`train.data.augment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
import soundfile
import soxr

from edge_runtime.features import FeatureSpec

FORMAT_VERSION = 1
CLIPS_FILE = "clips.npz"
NOISE_FILE = "noise.npz"
META_FILE = "meta.json"
SPLITS = ("train", "val", "test")
# The split code of clips a training run leaves out (`ClipSet.leave_out`): in no split, so nothing reads them.
LEFT_OUT_CODE = 255
# The splits that choose weights, checkpoints and thresholds: what leaving a voice family out takes it from.
TRAINING_SPLITS = ("train", "val")
OTHER_LABEL = "_other_"
KEYWORD_LABEL_INDEX = 1
CLIP_ARRAYS = ("audio", "offsets", "lengths", "labels", "splits", "groups", "texts")
NOISE_ARRAYS = ("audio", "offsets", "lengths")
INT16_FULL_SCALE = 32768.0
# A fixed zip timestamp (the earliest zip allows) so the same clips give byte-identical files.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
CACHE_KEY_CHARS = 12

# Silence trimming: 10 ms frames; a frame is sound when within 40 dB of the loudest frame and above -60 dBFS.
# A 20 ms margin keeps soft onsets and releases (the "sh" of "sheila", a final "s").
TRIM_FRAME_MS = 10.0
TRIM_RELATIVE_DB = -40.0
TRIM_FLOOR_DBFS = -60.0
TRIM_MARGIN_MS = 20.0


# ---- audio as it must be stored ----


def to_mono(audio: np.ndarray) -> np.ndarray:
    """[samples] or [samples, channels] (soundfile's layout) -> float32 [samples], channels averaged."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        return audio.mean(axis=1, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected audio of shape [samples] or [samples, channels], got {audio.shape}")
    return audio


def resample(audio: np.ndarray, source_rate: int, spec: FeatureSpec) -> np.ndarray:
    """Mono float32 at `source_rate` -> float32 at the feature sample rate (soxr, high quality)."""
    audio = np.asarray(audio, dtype=np.float32)
    if source_rate == spec.sample_rate or audio.size == 0:
        return audio
    return soxr.resample(audio, source_rate, spec.sample_rate, quality="HQ").astype(np.float32)


def trim_silence(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Drop leading and trailing silence (see TRIM_*); an all-silent input gives an empty array."""
    frame = max(1, round(spec.sample_rate * TRIM_FRAME_MS / 1000))
    count = -(-audio.size // frame)
    if count == 0:
        return audio
    padded = np.zeros(count * frame, dtype=np.float32)
    padded[: audio.size] = audio
    rms = np.sqrt(np.mean(padded.reshape(count, frame) ** 2, axis=1))
    threshold = max(rms.max() * 10 ** (TRIM_RELATIVE_DB / 20), 10 ** (TRIM_FLOOR_DBFS / 20))
    sound = np.flatnonzero(rms >= threshold)
    if sound.size == 0:
        return audio[:0]
    margin = round(spec.sample_rate * TRIM_MARGIN_MS / 1000)
    start = max(0, sound[0] * frame - margin)
    end = min(audio.size, (sound[-1] + 1) * frame + margin)
    return audio[start:end]


def loudest_window(audio: np.ndarray, length: int) -> np.ndarray:
    """The `length`-sample window with the most energy (the input itself when not longer)."""
    if audio.size <= length:
        return audio
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    start = int(np.argmax(energy[length:] - energy[:-length]))
    return audio[start : start + length]


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * (INT16_FULL_SCALE - 1)).astype(np.int16)


def read_audio_file(path: Path, spec: FeatureSpec) -> np.ndarray:
    """Any WAV/FLAC soundfile reads (any rate, channel count, bit depth) -> float32 mono at the spec rate.
    Raises ValueError saying why when the file cannot be read."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as error:
        raise ValueError(f"unreadable audio ({error})") from error
    return resample(to_mono(audio), rate, spec)


class SkippedFiles:
    """Files a source could not use: each is reported on stderr when it happens, and counted at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.entries: list[str] = []

    def skip(self, name: str, reason: str) -> None:
        self.entries.append(f"{name}: {reason}")
        print(f"skipped {name}: {reason}", file=self.stream)

    def summarize(self, total: int) -> None:
        if self.entries:
            print(f"skipped {len(self.entries)} of {total} audio files (listed above)", file=self.stream)


def prepare_utterance(audio: np.ndarray, spec: FeatureSpec, trim: bool = True) -> np.ndarray:
    """Float audio at the spec rate -> int16 as stored: silence trimmed (unless `trim` is False), at most a clip."""
    audio = np.asarray(audio, dtype=np.float32)
    if trim:
        audio = trim_silence(audio, spec)
    return to_int16(loudest_window(audio, spec.clip_samples))


# ---- writing ----


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but with fixed zip timestamps so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIMESTAMP)
            with archive.open(info, "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)


def _concatenated(pieces: list[np.ndarray]) -> dict[str, np.ndarray]:
    lengths = np.array([piece.size for piece in pieces], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if pieces else lengths
    audio = np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(0, dtype=np.int16)
    return {"audio": audio, "offsets": offsets, "lengths": lengths}


def _str_array(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


class ClipSetWriter:
    """Collects utterances and noise, then writes the clip set atomically (temp folder, then rename)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._audio: list[np.ndarray] = []
        self._labels: list[int] = []
        self._splits: list[int] = []
        self._groups: list[str] = []
        self._texts: list[str] = []
        self._noise: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._audio)

    def add(self, audio: np.ndarray, *, label: int, split: str, group: str, text: str, trim: bool = True) -> bool:
        """Add one utterance (float at the spec rate, or int16 already prepared). Returns False, adding nothing,
        when only silence is left after trimming."""
        if label not in (0, 1):
            raise ValueError(f"label must be 0 (other) or 1 (keyword), got {label}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        audio = np.asarray(audio)
        if audio.dtype != np.int16:
            audio = prepare_utterance(audio, self.spec, trim=trim)
        elif audio.size > self.spec.clip_samples:
            raise ValueError(f"a prepared utterance has {audio.size} samples, more than a clip")
        if audio.size == 0:
            return False
        self._audio.append(audio)
        self._labels.append(label)
        self._splits.append(SPLITS.index(split))
        self._groups.append(group)
        self._texts.append(text)
        return True

    def add_noise(self, audio: np.ndarray) -> None:
        """A background-noise recording (float at the spec rate), any length."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size:
            self._noise.append(to_int16(audio))

    def counts(self) -> dict[str, dict[str, int]]:
        labels, splits = np.array(self._labels, dtype=np.int64), np.array(self._splits, dtype=np.int64)
        return {
            split: {
                "keyword": int(np.sum((splits == code) & (labels == 1))),
                "other": int(np.sum((splits == code) & (labels == 0))),
            }
            for code, split in enumerate(SPLITS)
        }

    def write(self, folder: Path, meta: dict) -> Path:
        """Write clips.npz, noise.npz and meta.json (plus counts) to `folder`, which must not exist yet."""
        folder = Path(folder)
        if folder.exists():
            raise ValueError(f"refusing to overwrite existing folder {folder}")
        if not self._audio:
            raise ValueError("no utterances to write")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            clips = _concatenated(self._audio) | {
                "labels": np.array(self._labels, dtype=np.int8),
                "splits": np.array(self._splits, dtype=np.uint8),
                "groups": _str_array(self._groups),
                "texts": _str_array(self._texts),
            }
            _write_npz(staging / CLIPS_FILE, clips)
            _write_npz(staging / NOISE_FILE, _concatenated(self._noise))
            full_meta = dict(meta) | {
                "sample_rate": self.spec.sample_rate,
                "num_utterances": len(self._audio),
                "num_noise_recordings": len(self._noise),
                "noise_seconds": round(sum(piece.size for piece in self._noise) / self.spec.sample_rate, 1),
                "counts": self.counts(),
            }
            (staging / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
            os.rename(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder


# ---- reading ----


class ClipSet:
    """A built clip set in memory. `utterance(i)` is float32 in -1..1 at the feature sample rate."""

    def __init__(self, folder: Path, clips: dict[str, np.ndarray], noise: dict[str, np.ndarray], meta: dict):
        self.folder = folder
        self.meta = meta
        self._audio = clips["audio"]
        self.offsets = clips["offsets"]
        self.lengths = clips["lengths"]
        self.labels = clips["labels"]
        self.splits = clips["splits"]
        self.groups = clips["groups"]
        self.texts = clips["texts"]
        self._noise = noise

    @classmethod
    def load(cls, folder: str | Path) -> ClipSet:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"clip set folder {folder} does not exist (build one with `python -m train.build_data`)")
        missing = [name for name in (CLIPS_FILE, META_FILE) if not (folder / name).is_file()]
        if missing:
            raise ValueError(
                f"{folder} is not a clip set: missing {', '.join(missing)} (expected {CLIPS_FILE}, {META_FILE})"
            )
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            clips = _read_npz(folder / CLIPS_FILE, CLIP_ARRAYS)
            noise = _read_npz(folder / NOISE_FILE, NOISE_ARRAYS) if (folder / NOISE_FILE).is_file() else None
        except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as error:
            raise ValueError(
                f"{folder} holds a corrupt clip set ({type(error).__name__}: {error}); rebuild it"
            ) from error
        _check_consistent(folder, clips, meta)
        return cls(folder, clips, noise or _concatenated([]), meta)

    def __len__(self) -> int:
        return int(self.labels.size)

    def utterance(self, index: int) -> np.ndarray:
        start = int(self.offsets[index])
        return self._audio[start : start + int(self.lengths[index])].astype(np.float32) / INT16_FULL_SCALE

    def indices(self, split: str, label: int | None = None) -> np.ndarray:
        """Indices of the utterances in `split` ("train", "val", "test"), optionally only those with `label`."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if label not in (None, 0, 1):
            raise ValueError(f"label must be None, 0 (other) or 1 (keyword), got {label!r}")
        chosen = self.splits == SPLITS.index(split)
        if label is not None:
            chosen &= self.labels == label
        return np.flatnonzero(chosen)

    def sampler(self, split: str, label: int | None = None) -> Callable[[np.random.Generator], np.ndarray]:
        """A function that draws a random utterance of `split` (with `label`, when given) with the rng it gets: the
        speech context of `Augmenter`, which must never be the keyword (label 0)."""
        chosen = self.indices(split, label)
        if chosen.size == 0:
            raise ValueError(f"the clip set has no {split} utterances with label {label} to draw from")
        return lambda rng: self.utterance(int(chosen[rng.integers(chosen.size)]))

    def leave_out(self, prefixes: list[str]) -> int:
        """Take every utterance whose group starts with one of `prefixes` ("piper", "espeak:en-gb", ...) out of the
        train and val splits, in place, and return how many; the test split keeps them, so a model trained without
        a voice family or synthesis engine is measured on it. The noise bank's babble is left as built."""
        if not prefixes:
            return 0
        groups = self.groups.astype(str)
        training = np.isin(self.splits, [SPLITS.index(split) for split in TRAINING_SPLITS])
        matched = np.zeros(len(self), dtype=bool)
        for prefix in prefixes:
            hits = training & np.char.startswith(groups, prefix)
            if not hits.any():
                known = sorted({group.split("+")[0] for group in groups[training]})
                raise ValueError(
                    f"--leave-out {prefix!r} matches no train or val utterance; groups start with e.g. "
                    f"{', '.join(known[:8])}"
                )
            matched |= hits
        splits = self.splits.copy()
        splits[matched] = LEFT_OUT_CODE
        for split in TRAINING_SPLITS:
            labels = self.labels[splits == SPLITS.index(split)]
            if not (labels == 1).any() or not (labels != 1).any():
                raise ValueError(
                    f"leaving out {', '.join(prefixes)} leaves the {split} split without keyword or other utterances"
                )
        self.splits = splits
        return int(matched.sum())

    def noise_bank(self) -> list[np.ndarray]:
        """Background-noise recordings, float32 in -1..1 (empty list when the source has none)."""
        audio, offsets, lengths = self._noise["audio"], self._noise["offsets"], self._noise["lengths"]
        return [audio[o : o + n].astype(np.float32) / INT16_FULL_SCALE for o, n in zip(offsets, lengths, strict=True)]


def _read_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise ValueError(f"{path.name} lacks arrays {missing}; expected {list(names)}")
        return {name: archive[name] for name in names}


def _check_consistent(folder: Path, clips: dict[str, np.ndarray], meta: dict) -> None:
    count = clips["labels"].size
    problems = [
        f"{name} has {clips[name].size} entries, labels {count}"
        for name in CLIP_ARRAYS[1:]
        if clips[name].size != count
    ]
    if not problems and count and int((clips["offsets"] + clips["lengths"]).max()) > clips["audio"].size:
        problems.append("offsets/lengths point past the end of the audio")
    if clips["audio"].dtype != np.int16:
        problems.append(f"audio is {clips['audio'].dtype}, expected int16")
    missing_meta = [key for key in ("keyword", "labels", "sample_rate", "cache_key") if key not in meta]
    if missing_meta:
        problems.append(f"meta.json lacks {missing_meta}")
    if problems:
        raise ValueError(f"{folder} holds a corrupt clip set: {'; '.join(problems)}; rebuild it")


# ---- sources and the build cache ----


class DataSource(ABC):
    """Where utterances come from. `config()` is everything that changes the result (it is hashed into the
    cache key together with the seed and the feature spec); `build` writes a clip set to `out_dir`."""

    name: str
    keyword: str

    @abstractmethod
    def config(self) -> dict: ...

    @abstractmethod
    def build(self, spec: FeatureSpec, out_dir: Path, seed: int) -> None: ...


def cache_key(source: DataSource, spec: FeatureSpec, seed: int) -> str:
    identity = {"format": FORMAT_VERSION, "source": source.name, "config": source.config(), "seed": seed}
    identity["feature_spec"] = spec.to_dict()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    return digest[:CACHE_KEY_CHARS]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "keyword"


def dataset_folder(source: DataSource, spec: FeatureSpec, cache_root: str | Path, seed: int) -> Path:
    return Path(cache_root) / f"{source.name}-{_slug(source.keyword)}-{cache_key(source, spec, seed)}"


def base_meta(source: DataSource, spec: FeatureSpec, seed: int) -> dict:
    """The meta.json fields every source writes; sources add their own (e.g. which voices are held out)."""
    return {
        "format_version": FORMAT_VERSION,
        "source": source.name,
        "source_config": source.config(),
        "keyword": source.keyword,
        "labels": [OTHER_LABEL, source.keyword],
        "feature_spec": spec.to_dict(),
        "seed": seed,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cache_key": cache_key(source, spec, seed),
    }


def is_complete(folder: Path, key: str) -> bool:
    """A finished build with this cache key (the atomic write means meta.json exists only when all files do)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("cache_key") == key and (folder / CLIPS_FILE).is_file()


def build_dataset(source: DataSource, spec: FeatureSpec, cache_root: str | Path, seed: int) -> Path:
    """Build `source` into `cache_root/<name>-<keyword>-<hash>` unless that folder already holds the same build."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    folder = dataset_folder(source, spec, cache_root, seed)
    key = cache_key(source, spec, seed)
    if is_complete(folder, key):
        return folder
    if folder.exists():
        # A stale or foreign build under our name (no matching meta.json): start again rather than mix files.
        shutil.rmtree(folder)
    source.build(spec, folder, seed)
    if not is_complete(folder, key):
        raise RuntimeError(f"source {source.name} did not write a complete clip set to {folder}")
    return folder
