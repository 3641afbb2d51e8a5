"""Google Speech Commands (v1 or v2) as users download and unpack it.

Layout: one folder per word (`yes/0a7c2a8d_nohash_0.wav`, ...), `validation_list.txt` and `testing_list.txt`
listing the val and test files as "word/file.wav" (everything else is train), and `_background_noise_/` with long
noise recordings (the noise bank). The keyword's folder is label 1, every other word label 0. The speaker id is
the part of a file name before "_nohash_" (so the official lists keep each speaker in one split).
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

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
BACKGROUND_FOLDER = "_background_noise_"
SPEAKER_SEPARATOR = "_nohash_"
AUDIO_SUFFIX = ".wav"


def speaker_of(file_name: str) -> str:
    stem = Path(file_name).stem
    return stem.split(SPEAKER_SEPARATOR)[0] if SPEAKER_SEPARATOR in stem else stem


def _stable_rank(relative: str) -> str:
    return hashlib.sha1(relative.encode("utf-8")).hexdigest()


class SpeechCommandsSource(DataSource):
    """The keyword against every other word. `max_per_word` caps the clips kept of each other word (a seed-free,
    hash-chosen subset, stable between builds); None keeps all (v2 is ~105k clips, ~3 GB in memory)."""

    name = "speech-commands"

    def __init__(self, root: str | Path, keyword: str, max_per_word: int | None = None, progress: bool = True):
        self.root = Path(root).expanduser().resolve()
        self.keyword = normalize_keyword(keyword)
        if max_per_word is not None and max_per_word < 1:
            raise ValueError(f"max_per_word must be >= 1 or None (keep all), got {max_per_word}")
        self.max_per_word = max_per_word
        self.progress = progress
        self._config: dict | None = None
        self._check_layout()

    def _check_layout(self) -> None:
        if not self.root.is_dir():
            raise ValueError(f"Speech Commands folder {self.root} does not exist")
        missing = [name for name in (VALIDATION_LIST, TESTING_LIST) if not (self.root / name).is_file()]
        if missing:
            found = sorted(path.name for path in self.root.iterdir())[:12]
            raise ValueError(
                f"{self.root} does not look like Speech Commands: expected {VALIDATION_LIST}, {TESTING_LIST} and one "
                f"folder per word; missing {', '.join(missing)}; found {found}"
            )
        words = self.words()
        if self.keyword not in words:
            raise ValueError(f"no folder for keyword '{self.keyword}' in {self.root}; word folders: {', '.join(words)}")
        if len(words) < 2:
            raise ValueError(f"{self.root} has only the keyword folder; other words are needed as negatives")

    def words(self) -> list[str]:
        return sorted(
            path.name for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(("_", "."))
        )

    def _files(self) -> list[str]:
        """Relative paths ("word/file.wav") of the clips used, sorted; other words capped at max_per_word."""
        chosen = []
        for word in self.words():
            names = sorted(
                f"{word}/{path.name}" for path in (self.root / word).iterdir() if path.suffix.lower() == AUDIO_SUFFIX
            )
            if word != self.keyword and self.max_per_word is not None:
                names = sorted(sorted(names, key=_stable_rank)[: self.max_per_word])
            chosen += names
        return chosen

    def _listed(self, list_name: str) -> set[str]:
        lines = (self.root / list_name).read_text(encoding="utf-8").splitlines()
        return {line.strip() for line in lines if line.strip()}

    def config(self) -> dict:
        # Computed once: it walks every file, and the cache key asks for it several times.
        if self._config is None:
            self._config = self._describe_files()
        return self._config

    def _describe_files(self) -> dict:
        files = self._files()
        listing = hashlib.sha256()
        for relative in files:
            listing.update(f"{relative}:{(self.root / relative).stat().st_size}\n".encode())
        for list_name in (VALIDATION_LIST, TESTING_LIST):
            listing.update((self.root / list_name).read_bytes())
        return {
            "root": str(self.root),
            "keyword": self.keyword,
            "max_per_word": self.max_per_word,
            "files": len(files),
            "listing_sha256": listing.hexdigest()[:16],
        }

    def build(self, spec: FeatureSpec, out_dir: Path, seed: int) -> None:
        validation, testing = self._listed(VALIDATION_LIST), self._listed(TESTING_LIST)
        files = self._files()
        writer = ClipSetWriter(spec)
        skipped = SkippedFiles()
        for relative in tqdm(files, unit="file", desc="reading", disable=not self.progress):
            word, file_name = relative.split("/", 1)
            try:
                audio = read_audio_file(self.root / relative, spec)
            except ValueError as error:
                skipped.skip(relative, str(error))
                continue
            split = "val" if relative in validation else "test" if relative in testing else "train"
            label = 1 if word == self.keyword else 0
            if not writer.add(audio, label=label, split=split, group=f"sc:{speaker_of(file_name)}", text=word):
                skipped.skip(relative, "only silence")
        noise_paths = self._noise_files()
        noise_files = self._add_noise_bank(writer, spec, seed, noise_paths, skipped)
        skipped.summarize(len(files) + len(noise_paths))
        if not any(writer.counts()[split]["keyword"] for split in writer.counts()):
            raise ValueError(f"no usable '{self.keyword}' clips in {self.root / self.keyword}")
        meta = base_meta(self, spec, seed) | {
            "words": self.words(),
            "noise_files": noise_files,
            "skipped_files": skipped.entries,
        }
        writer.write(out_dir, meta)

    def _noise_files(self) -> list[Path]:
        folder = self.root / BACKGROUND_FOLDER
        return sorted(folder.glob(f"*{AUDIO_SUFFIX}")) if folder.is_dir() else []

    def _add_noise_bank(
        self, writer: ClipSetWriter, spec: FeatureSpec, seed: int, paths: list[Path], skipped: SkippedFiles
    ) -> list[str]:
        """`_background_noise_/*.wav`; generated noise instead (with a warning) when there is none."""
        used = []
        for path in paths:
            try:
                writer.add_noise(read_audio_file(path, spec))
                used.append(path.name)
            except ValueError as error:
                skipped.skip(f"{BACKGROUND_FOLDER}/{path.name}", str(error))
        if not used:
            folder = self.root / BACKGROUND_FOLDER
            print(f"warning: no noise recordings in {folder}; augmenting with generated noise", file=skipped.stream)
            for recording in synthetic_noise_bank(spec, np.random.default_rng(seed)):
                writer.add_noise(recording)
        return used
