"""The default data source: the keyword and many distractors spoken by eSpeak NG and Piper, fully offline.

What is held out: eSpeak voices are split by *variant* (voice quality), not at random. A seeded shuffle of the
variants puts `HELD_OUT_VARIANT_FRACTION` of them in val only and as many in test only, each in every English
language voice; train never hears them. Piper has one voice (joe), present in every split; val and test draw
their scales from their own random streams and their ONNX Runtime noise from their own seeds. Noise-only clips
(groups "noise:*") appear in every split. meta.json lists the held-out variants and groups.

Work is planned in the parent (every random choice comes from the build seed), then synthesized in shards, each
in a fresh process: eSpeak keeps state between utterances, so only a fresh process replaying the same sequence
reproduces audio exactly. Shards never mix engines or splits and their size does not depend on the number of
workers, so a build is byte-identical for a given seed whatever `workers` is.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.features import FeatureSpec
from train.data.augment import NOISE_COLOURS, babble_noise, coloured_noise, synthetic_noise_bank
from train.data.clipset import SPLITS, ClipSetWriter, DataSource, base_meta, prepare_utterance, resample
from train.data.espeak import EspeakEngine, EspeakParams, EspeakVoice, english_languages, voice_variants
from train.data.piper_voice import PiperEngine, PiperParams, PiperVoiceFile
from train.data.homophones import without_homophones
from train.data.vocabulary import negative_vocabulary, normalize_keyword

SYNTHESIS_VERSION = 3  # bump when planning or processing changes, so old caches are not reused


@dataclass(frozen=True)
class SplitCounts:
    """Utterances of one split for size 1."""

    keyword_espeak: int
    keyword_piper: int
    other_espeak: int
    other_piper: int
    noise: int

    def scaled(self, size: int) -> SplitCounts:
        return SplitCounts(**{f.name: getattr(self, f.name) * size for f in fields(self)})

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


# Size 1: about 2,200 keyword and 7,000 other utterances in train. Piper (~45 ms per word on one core) dominates
# the build time; eSpeak takes well under a millisecond per word.
DEFAULT_COUNTS = {
    "train": SplitCounts(keyword_espeak=1400, keyword_piper=800, other_espeak=4400, other_piper=2000, noise=600),
    "val": SplitCounts(keyword_espeak=150, keyword_piper=100, other_espeak=450, other_piper=250, noise=60),
    "test": SplitCounts(keyword_espeak=150, keyword_piper=100, other_espeak=450, other_piper=250, noise=60),
}

HELD_OUT_VARIANT_FRACTION = 0.1  # of eSpeak variants, for val and again for test

# Per-utterance random settings (uniform); chosen to stay intelligible.
ESPEAK_RATE_WPM = (110, 260)
ESPEAK_PITCH = (15, 85)
ESPEAK_PITCH_RANGE = (20, 100)
ESPEAK_WORD_GAP = (0, 8)
PIPER_LENGTH_SCALE = (0.75, 1.35)
PIPER_NOISE_SCALE = (0.3, 0.9)
PIPER_NOISE_W_SCALE = (0.4, 1.1)

# Endings that change intonation (statement, exclamation, question, continuation); texts store the bare words.
ENDINGS = ("", ".", "!", "?", ",")
# How negatives are chosen: a Speech Commands word, a sound-alike, a hard negative made from the keyword's sound
# (`vocabulary.hard_negatives`), a filler word, a two-word phrase, or a run of words (continuous speech, of which
# the stored clip keeps the loudest second, words cut at its edges as in a live window).
NEGATIVE_KIND_WEIGHTS = {
    "command": 0.25, "confusable": 0.20, "hard": 0.20, "filler": 0.15, "phrase": 0.10, "sentence": 0.10,
}  # fmt: skip
SENTENCE_WORDS = (3, 7)

SPEECH_PEAK = 0.5  # every synthesized utterance is peak-normalised to -6 dBFS; training varies the gain
NOISE_CLIP_DBFS = (-45.0, -15.0)  # RMS level of noise-only clips
NEAR_SILENCE_DBFS = (-75.0, -55.0)  # RMS level of near-silence clips
NEAR_SILENCE_SHARE = 0.25  # of the noise-only clips
BABBLE_RECORDINGS, BABBLE_VOICES, NOISE_BANK_SECONDS = 4, 6, 10.0

# Utterances per shard (each shard pays for a fresh process, ~1 s, and for Piper a model load, ~0.6 s).
SHARD_SIZE = {"espeak": 2000, "piper": 250}


@dataclass(frozen=True)
class Request:
    """One utterance to synthesize; `options` are the engine's parameters."""

    index: int
    engine: str
    text: str
    spoken: str  # text with punctuation, as given to the engine
    label: int
    split: str
    group: str
    options: EspeakParams | PiperParams
    voice: EspeakVoice | None = None
    piper_voice: int = 0  # index into the build's Piper voices (0: the bundled joe)


@dataclass(frozen=True)
class Shard:
    engine: str
    seed: int
    requests: tuple[Request, ...]
    piper_voices: tuple[PiperVoiceFile, ...] = ()


def _rng(seed: int, *stream: int | str) -> np.random.Generator:
    """An independent random stream per purpose, so adding one draw somewhere does not shift the others."""
    words = [seed] + [zlib.crc32(part.encode()) if isinstance(part, str) else part for part in stream]
    return np.random.default_rng(np.random.SeedSequence(words))


def held_out_variants(seed: int) -> dict[str, list[str]]:
    """eSpeak variants per split; val and test each get their own share, train the rest."""
    variants = list(voice_variants())
    _rng(seed, "variants").shuffle(variants)
    share = max(1, round(len(variants) * HELD_OUT_VARIANT_FRACTION))
    return {
        "val": sorted(variants[:share]),
        "test": sorted(variants[share : 2 * share]),
        "train": sorted(variants[2 * share :]),
    }


def _uniform_int(rng: np.random.Generator, limits: tuple[int, int]) -> int:
    return int(rng.integers(limits[0], limits[1] + 1))


def _uniform(rng: np.random.Generator, limits: tuple[float, float]) -> float:
    return round(float(rng.uniform(*limits)), 4)


def _negative_text(rng: np.random.Generator, vocabulary: dict[str, list[str]], keyword: str) -> str:
    kinds = [kind for kind in NEGATIVE_KIND_WEIGHTS if kind in ("phrase", "sentence") or vocabulary.get(kind)]
    weights = np.array([NEGATIVE_KIND_WEIGHTS[kind] for kind in kinds])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    if kind == "phrase":
        words = vocabulary["filler"] + vocabulary["command"]
        return " ".join(words[i] for i in rng.choice(len(words), size=2))
    if kind == "sentence":
        words = [w for key in ("filler", "command", "confusable", "hard") for w in vocabulary.get(key, [])]
        while True:  # neighbouring words can say the keyword together ("hey" + "nova"): draw again
            count = int(rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1))
            text = " ".join(words[i] for i in rng.choice(len(words), size=count))
            if f" {keyword} " not in f" {text} ":
                return text
    words = vocabulary[kind]
    return words[rng.integers(len(words))]


def spoken_negatives(keyword: str) -> tuple[dict[str, list[str]], list[str]]:
    """The negative vocabulary the build speaks, without words eSpeak says like the keyword (`homophones`), and
    the words dropped for that."""
    return without_homophones(negative_vocabulary(keyword), keyword)


def plan_requests(
    keyword: str, counts: dict[str, SplitCounts], seed: int, piper_voices: Sequence[PiperVoiceFile] = ()
) -> list[Request]:
    """Every speech utterance of the build, in storage order, with all random choices made here. Piper utterances
    pick a voice (the bundled joe, then `piper_voices`) and one of its speakers uniformly."""
    voices_piper = [PiperVoiceFile.joe(), *piper_voices]
    vocabulary, _ = spoken_negatives(keyword)
    variants = held_out_variants(seed)
    languages = english_languages()
    requests: list[Request] = []
    for split in SPLITS:
        split_counts = counts[split]
        rng = _rng(seed, "plan", split)
        voices = [EspeakVoice(language, variant) for language in languages for variant in variants[split]]
        for engine, label, count in (
            ("espeak", 1, split_counts.keyword_espeak),
            ("piper", 1, split_counts.keyword_piper),
            ("espeak", 0, split_counts.other_espeak),
            ("piper", 0, split_counts.other_piper),
        ):
            for _ in range(count):
                piper_voice = 0
                text = keyword if label == 1 else _negative_text(rng, vocabulary, keyword)
                spoken = text + ENDINGS[rng.integers(len(ENDINGS))]
                if engine == "espeak":
                    voice = voices[rng.integers(len(voices))]
                    options = EspeakParams(
                        rate=_uniform_int(rng, ESPEAK_RATE_WPM),
                        pitch=_uniform_int(rng, ESPEAK_PITCH),
                        pitch_range=_uniform_int(rng, ESPEAK_PITCH_RANGE),
                        word_gap=_uniform_int(rng, ESPEAK_WORD_GAP),
                    )
                    group = voice.group
                else:
                    voice, speaker = None, 0
                    if len(voices_piper) > 1:  # draws only when there is a choice: the default plan stays as it was
                        piper_voice = int(rng.integers(len(voices_piper)))
                        speaker = int(rng.integers(voices_piper[piper_voice].num_speakers))
                    options = PiperParams(
                        length_scale=_uniform(rng, PIPER_LENGTH_SCALE),
                        noise_scale=_uniform(rng, PIPER_NOISE_SCALE),
                        noise_w_scale=_uniform(rng, PIPER_NOISE_W_SCALE),
                        speaker=speaker,
                    )
                    group = voices_piper[piper_voice].group(speaker)
                requests.append(
                    Request(len(requests), engine, text, spoken, label, split, group, options, voice, piper_voice)
                )
    return requests


def make_shards(requests: list[Request], seed: int, piper_voices: Sequence[PiperVoiceFile] = ()) -> list[Shard]:
    """Fixed-size shards per engine and split; Piper shards first (they are the slow ones)."""
    voices = (PiperVoiceFile.joe(), *piper_voices)
    shards = []
    for engine in ("piper", "espeak"):
        for split in SPLITS:
            chosen = [r for r in requests if r.engine == engine and r.split == split]
            size = SHARD_SIZE[engine]
            for number, start in enumerate(range(0, len(chosen), size)):
                shard_seed = int(_rng(seed, "shard", engine, split, number).integers(2**31))
                shards.append(Shard(engine, shard_seed, tuple(chosen[start : start + size]), voices))
    return shards


def synthesize_shard(shard: Shard, spec: FeatureSpec) -> list[tuple[int, np.ndarray]]:
    """Run in a fresh process: synthesize, resample, peak-normalise, trim and crop every request -> int16."""
    engines: dict[int, PiperEngine] = {}  # one per Piper voice the shard uses, each seeded with the shard's seed
    engine = EspeakEngine.shared() if shard.engine == "espeak" else None
    results = []
    for request in shard.requests:
        if shard.engine == "piper":
            if request.piper_voice not in engines:
                voice = shard.piper_voices[request.piper_voice] if shard.piper_voices else None
                engines[request.piper_voice] = PiperEngine(seed=shard.seed, threads=1, voice=voice)
            engine = engines[request.piper_voice]
            audio = engine.synthesize(request.spoken, request.options)
        else:
            audio = engine.synthesize(request.spoken, request.voice, request.options, seed=shard.seed)
        audio = resample(audio, engine.sample_rate, spec)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * (SPEECH_PEAK / peak)
        results.append((request.index, prepare_utterance(audio, spec)))
    return results


def synthesize_all(
    requests: list[Request], spec: FeatureSpec, seed: int, workers: int, progress: bool,
    piper_voices: Sequence[PiperVoiceFile] = (),
) -> list:
    """Audio (int16) for every request, in request order; each shard runs in a fresh worker process."""
    shards = make_shards(requests, seed, piper_voices)
    audio: list[np.ndarray | None] = [None] * len(requests)
    # A worker that dies (rather than raises) breaks the executor loudly instead of hanging, unlike Pool.
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(shards)), mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    )
    try:
        with tqdm(total=len(requests), unit="utt", desc="synthesizing", disable=not progress) as bar:
            for done in as_completed([executor.submit(synthesize_shard, shard, spec) for shard in shards]):
                results = done.result()
                for index, clip in results:
                    audio[index] = clip
                bar.update(len(results))
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()
    return audio


def noise_clip(rng: np.random.Generator, spec: FeatureSpec) -> tuple[np.ndarray, str]:
    """A clip-long noise-only or near-silence clip at a random level, and its group."""
    if rng.random() < NEAR_SILENCE_SHARE:
        colour, level_dbfs, group = "pink", rng.uniform(*NEAR_SILENCE_DBFS), "noise:silence"
    else:
        colour = NOISE_COLOURS[rng.integers(len(NOISE_COLOURS))]
        level_dbfs, group = rng.uniform(*NOISE_CLIP_DBFS), f"noise:{colour}"
    noise = coloured_noise(colour, spec.clip_samples, rng)
    return noise * np.float32(10 ** (level_dbfs / 20)), group


class SyntheticSource(DataSource):
    """`size` scales every count in `counts` (size 1 = DEFAULT_COUNTS); `workers` processes synthesize;
    `piper_voices`: extra Piper voice models (.onnx paths) whose speakers join the bundled joe."""

    name = "synthetic"

    def __init__(
        self,
        keyword: str = "sheila",
        size: int = 1,
        counts: dict[str, SplitCounts] | None = None,
        workers: int | None = None,
        progress: bool = True,
        piper_voices: Sequence[str | Path] = (),
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a whole number >= 1 (1 = the default size), got {size!r}")
        counts = DEFAULT_COUNTS if counts is None else counts
        if set(counts) != set(SPLITS):
            raise ValueError(f"counts must give every split {SPLITS}, got {sorted(counts)}")
        self.keyword = normalize_keyword(keyword)
        self.size = size
        self.counts = {split: counts[split].scaled(size) for split in SPLITS}
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self.progress = progress
        self.piper_voices = tuple(PiperVoiceFile.from_path(path) for path in piper_voices)

    def config(self) -> dict:
        config = {
            "keyword": self.keyword,
            "size": self.size,
            "counts": {split: asdict(counts) for split, counts in self.counts.items()},
            "synthesis_version": SYNTHESIS_VERSION,
        }
        if self.piper_voices:  # absent by default, so the default cache key does not depend on it
            config["piper_voices"] = [voice.identity() for voice in self.piper_voices]
        return config

    def build(self, spec: FeatureSpec, out_dir: Path, seed: int) -> None:
        requests = plan_requests(self.keyword, self.counts, seed, self.piper_voices)
        audio = synthesize_all(requests, spec, seed, self.workers, self.progress, self.piper_voices)
        writer = ClipSetWriter(spec)
        silent = []
        for request, clip in zip(requests, audio, strict=True):
            if not writer.add(clip, label=request.label, split=request.split, group=request.group, text=request.text):
                silent.append(request)
        rng = _rng(seed, "noise clips")
        for split in SPLITS:
            for _ in range(self.counts[split].noise):
                clip, group = noise_clip(rng, spec)
                writer.add(clip, label=0, split=split, group=group, text="", trim=False)
        self._add_noise_bank(writer, requests, audio, spec, seed)
        writer.write(out_dir, base_meta(self, spec, seed) | self._describe(seed, silent))

    def _add_noise_bank(
        self, writer: ClipSetWriter, requests: list[Request], audio: list, spec: FeatureSpec, seed: int
    ) -> None:
        rng = _rng(seed, "noise bank")
        for recording in synthetic_noise_bank(spec, rng):
            writer.add_noise(recording)
        # Babble from training negatives only, so val/test voices never leak into training through the noise.
        speech = [audio[r.index] for r in requests if r.split == "train" and r.label == 0 and audio[r.index].size]
        for _ in range(BABBLE_RECORDINGS if speech else 0):
            writer.add_noise(babble_noise(speech, BABBLE_VOICES, round(NOISE_BANK_SECONDS * spec.sample_rate), rng))

    def _describe(self, seed: int, silent: list[Request]) -> dict:
        variants = held_out_variants(seed)
        languages = english_languages()
        return {
            "held_out": {
                "rule": "eSpeak variants are split between train, val and test (each variant in every English "
                "language voice); Piper voices and noise clips are in every split, with separate random streams",
                **{
                    split: {
                        "espeak_variants": variants[split],
                        "espeak_groups": [EspeakVoice(lang, v).group for lang in languages for v in variants[split]],
                    }
                    for split in ("val", "test")
                },
            },
            "espeak_languages": list(languages),
            "parameter_ranges": {
                "espeak_rate_wpm": ESPEAK_RATE_WPM,
                "espeak_pitch": ESPEAK_PITCH,
                "espeak_pitch_range": ESPEAK_PITCH_RANGE,
                "espeak_word_gap": ESPEAK_WORD_GAP,
                "piper_length_scale": PIPER_LENGTH_SCALE,
                "piper_noise_scale": PIPER_NOISE_SCALE,
                "piper_noise_w_scale": PIPER_NOISE_W_SCALE,
            },
            "negative_vocabulary": spoken_negatives(self.keyword)[0],
            "dropped_homophones": spoken_negatives(self.keyword)[1],
            "piper_voices": [
                {"name": v.name, "speakers": v.num_speakers, "model": str(v.model)}
                for v in (PiperVoiceFile.joe(), *self.piper_voices)
            ],
            "dropped_silent_utterances": [f"{r.engine}:{r.group}:{r.spoken}" for r in silent],
        }
