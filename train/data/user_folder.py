"""A user's own recordings: `positive/` (the keyword) and `negative/` (anything else), optional `noise/`.

Audio files may have any sample rate, channel count and bit depth soundfile reads; channels are averaged and
soxr resamples to the feature rate. Sub-folders are fine; a file's group is its folder (e.g. "folder:positive/ann"),
so one speaker per sub-folder keeps the groups meaningful. The split is a hash of the file's path relative to the
root: 80/10/10, stable when files are added or removed. A file that cannot be read is reported by name and
skipped, with a count at the end; no usable positive (or negative) file is an error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.features import FeatureSpec
from train.data.augment import synthetic_noise_bank
from train.data.clipset import ClipSetWriter, DataSource, SkippedFiles, base_meta, read_audio_file
from train.data.vocabulary import normalize_keyword

POSITIVE_FOLDER, NEGATIVE_FOLDER, NOISE_FOLDER = "positive", "negative", "noise"
AUDIO_SUFFIXES = (".wav", ".wave", ".flac")
# Percent of files per split by path hash: train below 80, val below 90, test the rest.
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}
HASH_BUCKETS = 100


def split_of(relative_path: str) -> str:
    """Deterministic split from a hash of the relative path (independent of the other files and of the seed)."""
    bucket = int(hashlib.sha1(relative_path.encode("utf-8")).hexdigest(), 16) % HASH_BUCKETS
    upper = 0
    for split, percent in SPLIT_PERCENT.items():
        upper += percent
        if bucket < upper:
            return split
    raise AssertionError("SPLIT_PERCENT must add up to HASH_BUCKETS")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES)


class FolderSource(DataSource):
    """`keyword` names the positive class (default: the root folder's name)."""

    name = "folder"

    def __init__(self, root: str | Path, keyword: str | None = None, progress: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ValueError(f"data folder {self.root} does not exist")
        missing = [name for name in (POSITIVE_FOLDER, NEGATIVE_FOLDER) if not (self.root / name).is_dir()]
        if missing:
            found = sorted(path.name for path in self.root.iterdir())[:12]
            raise ValueError(
                f"{self.root} must hold '{POSITIVE_FOLDER}/' and '{NEGATIVE_FOLDER}/' folders of audio files "
                f"(optional '{NOISE_FOLDER}/'); missing {', '.join(missing)}; found {found}"
            )
        self.keyword = normalize_keyword(keyword if keyword is not None else self.root.name.replace("_", " "))
        self.progress = progress
        self._config: dict | None = None

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _speech_files(self) -> list[tuple[Path, int]]:
        return [(path, 1) for path in _audio_files(self.root / POSITIVE_FOLDER)] + [
            (path, 0) for path in _audio_files(self.root / NEGATIVE_FOLDER)
        ]

    def _noise_files(self) -> list[Path]:
        folder = self.root / NOISE_FOLDER
        return _audio_files(folder) if folder.is_dir() else []

    def config(self) -> dict:
        # Computed once: it walks every file, and the cache key asks for it several times.
        if self._config is None:
            self._config = self._describe_files()
        return self._config

    def _describe_files(self) -> dict:
        listing = hashlib.sha256()
        paths = [path for path, _ in self._speech_files()] + self._noise_files()
        for path in paths:
            stat = path.stat()
            listing.update(f"{self._relative(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return {
            "root": str(self.root),
            "keyword": self.keyword,
            "files": len(paths),
            "listing_sha256": listing.hexdigest()[:16],
        }

    def build(self, spec: FeatureSpec, out_dir: Path, seed: int) -> None:
        files = self._speech_files()
        if not any(label == 1 for _, label in files):
            raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {self.root / POSITIVE_FOLDER}")
        writer = ClipSetWriter(spec)
        skipped = SkippedFiles()
        for path, label in tqdm(files, unit="file", desc="reading", disable=not self.progress):
            relative = self._relative(path)
            try:
                audio = read_audio_file(path, spec)
            except ValueError as error:
                skipped.skip(relative, str(error))
                continue
            group = f"folder:{Path(relative).parent.as_posix()}"
            text = self.keyword if label == 1 else ""
            if not writer.add(audio, label=label, split=split_of(relative), group=group, text=text):
                skipped.skip(relative, "only silence")
        noise_paths = self._noise_files()
        noise_files = self._add_noise_bank(writer, spec, seed, noise_paths, skipped)
        skipped.summarize(len(files) + len(noise_paths))
        counts = writer.counts()
        for label_name, folder in (("keyword", POSITIVE_FOLDER), ("other", NEGATIVE_FOLDER)):
            if not any(counts[split][label_name] for split in counts):
                raise ValueError(
                    f"none of the files in {self.root / folder} could be used (see the skipped files above)"
                )
        meta = base_meta(self, spec, seed) | {
            "split_rule": f"sha1 of the relative path, percent per split {SPLIT_PERCENT}",
            "noise_files": noise_files,
            "skipped_files": skipped.entries,
        }
        writer.write(out_dir, meta)

    def _add_noise_bank(
        self, writer: ClipSetWriter, spec: FeatureSpec, seed: int, paths: list[Path], skipped: SkippedFiles
    ) -> list[str]:
        """Generated noise always, plus the user's own `noise/` recordings when present."""
        for recording in synthetic_noise_bank(spec, np.random.default_rng(seed)):
            writer.add_noise(recording)
        used = []
        for path in paths:
            try:
                writer.add_noise(read_audio_file(path, spec))
                used.append(self._relative(path))
            except ValueError as error:
                skipped.skip(self._relative(path), str(error))
        return used
