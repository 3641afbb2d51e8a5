"""Evaluation streams: long recordings with the keyword at known times (positive) or never (negative), cached.

Voices: the eSpeak NG variants that the training clip set held out for its *test* split (never heard in training,
nor used to pick checkpoints or thresholds), in every English language voice, each stream with its own rate,
pitch, intonation and word gap; a small share is Piper joe (a voice training did hear, with new seeds and texts),
reported as its own family. Texts come from `text.py`, acoustics from `scenes.py`, all random choices from the
evaluation seed, which is independent of every training seed.

A positive stream is speech with the keyword spoken between sentences (a short pause on each side, as people do
before a command); its known times are the keyword's first and last sound sample after silence trimming. A negative
stream is speech (or, for `noise_only_share` of the hours, noise alone) that never says the keyword.

Work is planned in the parent and synthesized in fixed shards, each in a fresh process (eSpeak keeps state between
utterances, see `train.data.espeak`), so a build is the same for a seed whatever the worker count. The result is
cached in `<cache_root>/eval-<keyword>-<hash>/` (`index.json` + one int16 `.npy` per stream), written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.features import LOG_MEL, FeatureSpec
from train.data.augment import babble_noise
from train.data.clipset import resample, to_int16, trim_silence
from train.data.espeak import EspeakEngine, EspeakParams, EspeakVoice, english_languages, sentence_safe
from train.data.piper_voice import PiperParams
from train.data.synthetic import _rng
from train.data.vocabulary import normalize_keyword
from train.evaluate.scenes import draw_scene, render
from train.evaluate.text import text_source

STREAMS_VERSION = 1  # bump when planning or rendering changes, so old caches are not reused
INDEX_FILE = "index.json"
FAMILY_ESPEAK, FAMILY_PIPER, FAMILY_NOISE = "espeak-held-out", "piper-joe-seen", "noise"

# Per-stream voice settings (uniform); the keyword gets its own small jitter on top.
RATE_WPM = (120, 220)
PITCH = (15, 85)
PITCH_RANGE = (10, 100)
WORD_GAP = (0, 4)
PIPER_LENGTH_SCALE = (0.8, 1.3)
PIPER_NOISE_SCALE = (0.4, 0.8)
PIPER_NOISE_W_SCALE = (0.5, 1.0)
KEYWORD_ENDINGS = ("", ",", "!", "?", ".")
SENTENCES_BEFORE_KEYWORD = (1, 3)
PAUSE_S = (0.15, 0.9)  # between sentences
KEYWORD_PAUSE_S = (0.1, 0.6)  # before and after the keyword
LEAD_IN_S = (0.3, 1.5)
UTTERANCE_LEVEL_DB = (-3.0, 3.0)  # each utterance's loudness around the stream's speech level
KEYWORD_LEVEL_DB = (-6.0, 6.0)
PIPER_SECONDS_PER_SHARD = 600.0  # Piper is ~45 ms per word: keep its shards small


@dataclass(frozen=True)
class StreamConfig:
    """Everything that changes the streams (hashed into the cache folder's name)."""

    keyword: str
    held_out_variants: tuple[str, ...]
    positives: int = 400  # keyword occurrences in all positive streams together
    keywords_per_stream: int = 8
    piper_positive_share: float = 0.2
    negative_hours: float = 10.0
    negative_stream_seconds: float = 300.0
    noise_only_share: float = 0.1  # of the negative hours
    piper_negative_hours: float = 0.25  # part of negative_hours
    babble_recordings: int = 4
    seed: int = 2024

    def __post_init__(self) -> None:
        problems = []
        if self.positives < 1 or self.keywords_per_stream < 1:
            problems.append("positives and keywords_per_stream must be >= 1")
        if not self.negative_hours > 0 or not self.negative_stream_seconds >= 10:
            problems.append("negative_hours must be > 0 and negative_stream_seconds >= 10")
        if not 0 <= self.piper_positive_share <= 1 or not 0 <= self.noise_only_share < 1:
            problems.append("piper_positive_share must be in 0..1 and noise_only_share in 0..<1")
        if not 0 <= self.piper_negative_hours <= self.negative_hours * (1 - self.noise_only_share):
            problems.append("piper_negative_hours must fit in the speech part of negative_hours")
        if not self.held_out_variants:
            problems.append("no held-out eSpeak variants: evaluation needs voices that training never heard")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class StreamPlan:
    index: int
    kind: str  # "positive" | "negative"
    family: str
    engine: str  # "espeak" | "piper" | "none"
    seconds: float  # target length (negatives) or 0 (positives: as long as their keywords need)
    keywords: int
    seed: int


@dataclass
class Stream:
    """A built stream: metadata from the index plus, once loaded, its audio (float32)."""

    index: int
    kind: str
    family: str
    voice: str
    seconds: float
    keyword_spans: list[tuple[float, float]]
    scene: dict
    file: str


def plan_streams(config: StreamConfig) -> list[StreamPlan]:
    plans: list[StreamPlan] = []
    seeds = _rng(config.seed, "stream seeds")

    def add(kind, family, engine, seconds, keywords):
        plans.append(StreamPlan(len(plans), kind, family, engine, seconds, keywords, int(seeds.integers(2**31))))

    piper_keywords = round(config.positives * config.piper_positive_share)
    for family, engine, total in (
        (FAMILY_ESPEAK, "espeak", config.positives - piper_keywords),
        (FAMILY_PIPER, "piper", piper_keywords),
    ):
        for start in range(0, total, config.keywords_per_stream):
            add("positive", family, engine, 0.0, min(config.keywords_per_stream, total - start))
    noise_seconds = config.negative_hours * 3600 * config.noise_only_share
    piper_seconds = config.piper_negative_hours * 3600
    espeak_seconds = config.negative_hours * 3600 - noise_seconds - piper_seconds
    for family, engine, total in (
        (FAMILY_ESPEAK, "espeak", espeak_seconds),
        (FAMILY_PIPER, "piper", piper_seconds),
        (FAMILY_NOISE, "none", noise_seconds),
    ):
        count = int(np.ceil(total / config.negative_stream_seconds - 1e-9)) if total > 0 else 0
        for _ in range(count):
            add("negative", family, engine, total / count, 0)
    return plans


def make_shards(plans: list[StreamPlan]) -> list[list[StreamPlan]]:
    """Fixed shards: one engine each, about 10 minutes of eSpeak or noise audio, less for Piper."""
    shards = []
    for engine in ("piper", "espeak", "none"):
        budget = PIPER_SECONDS_PER_SHARD if engine == "piper" else 3000.0
        current, used = [], 0.0
        for plan in (p for p in plans if p.engine == engine):
            length = plan.seconds or plan.keywords * 8.0
            if current and used + length > budget:
                shards.append(current)
                current, used = [], 0.0
            current.append(plan)
            used += length
        if current:
            shards.append(current)
    return shards


# ---- synthesis (runs in worker processes) ----


class _Speaker:
    """One stream's voice: an eSpeak voice with fixed settings, or Piper joe with fixed scales."""

    def __init__(self, plan: StreamPlan, variants: tuple[str, ...], rng: np.random.Generator, spec: FeatureSpec):
        self.spec, self.rng = spec, rng
        self.engine_name = plan.engine
        if plan.engine == "piper":
            from train.data.piper_voice import PiperEngine

            self.engine = PiperEngine(seed=plan.seed, threads=1)
            self.params = PiperParams(
                length_scale=round(float(rng.uniform(*PIPER_LENGTH_SCALE)), 3),
                noise_scale=round(float(rng.uniform(*PIPER_NOISE_SCALE)), 3),
                noise_w_scale=round(float(rng.uniform(*PIPER_NOISE_W_SCALE)), 3),
            )
            self.name = "piper:joe"
        else:
            languages = english_languages()
            language = languages[int(rng.integers(len(languages)))]
            self.voice = EspeakVoice(language, variants[int(rng.integers(len(variants)))])
            self.engine = EspeakEngine.shared()
            drawn = EspeakParams(
                rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
                pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
                pitch_range=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                word_gap=int(rng.integers(WORD_GAP[0], WORD_GAP[1] + 1)),
            )
            self.params = sentence_safe(self.voice, drawn)  # after all draws: the random sequence is unchanged
            self.name = self.voice.group
        self.seed = plan.seed

    def say(self, text: str, level_db: float) -> np.ndarray:
        """Trimmed float32 speech at the feature rate, RMS at -20 dBFS + `level_db`."""
        if self.engine_name == "piper":
            audio = self.engine.synthesize(text, self.params)
        else:
            audio = self.engine.synthesize(text, self.voice, self.params, seed=self.seed)
        audio = trim_silence(resample(audio, self.engine.sample_rate, self.spec), self.spec)
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
        return (audio * np.float32(10 ** ((-20.0 + level_db) / 20) / rms)).astype(np.float32) if rms > 0 else audio


def _silence(rng: np.random.Generator, limits: tuple[float, float], spec: FeatureSpec) -> np.ndarray:
    return np.zeros(round(rng.uniform(*limits) * spec.sample_rate), dtype=np.float32)


def _speech_track(plan: StreamPlan, config: StreamConfig, spec: FeatureSpec, rng: np.random.Generator):
    """(speech, speaking mask, keyword spans in seconds, voice name) of one speech stream, before acoustics."""
    speaker = _Speaker(plan, config.held_out_variants, rng, spec)
    text = text_source(config.keyword)
    pieces, speaking, spans, length = [], [], [], 0

    def append(audio: np.ndarray, is_speech: bool) -> None:
        nonlocal length
        pieces.append(audio)
        speaking.append(np.full(audio.size, is_speech))
        length += audio.size

    append(_silence(rng, LEAD_IN_S, spec), False)
    target = round(plan.seconds * spec.sample_rate)
    for _ in range(plan.keywords):
        for _ in range(int(rng.integers(SENTENCES_BEFORE_KEYWORD[0], SENTENCES_BEFORE_KEYWORD[1] + 1))):
            append(speaker.say(text.sentence(rng), rng.uniform(*UTTERANCE_LEVEL_DB)), True)
            append(_silence(rng, PAUSE_S, spec), False)
        append(_silence(rng, KEYWORD_PAUSE_S, spec), False)
        spoken = config.keyword + KEYWORD_ENDINGS[int(rng.integers(len(KEYWORD_ENDINGS)))]
        keyword = speaker.say(spoken, rng.uniform(*KEYWORD_LEVEL_DB))
        spans.append((length / spec.sample_rate, (length + keyword.size) / spec.sample_rate))
        append(keyword, True)
        append(_silence(rng, KEYWORD_PAUSE_S, spec), False)
    while length < target or plan.keywords:  # negatives: up to their length; positives: one closing sentence
        append(speaker.say(text.sentence(rng), rng.uniform(*UTTERANCE_LEVEL_DB)), True)
        append(_silence(rng, PAUSE_S, spec), False)
        if plan.keywords:
            break
    speech = np.concatenate(pieces)
    mask = np.concatenate(speaking)
    if target:
        speech, mask = speech[:target], mask[:target]
    return speech, mask, spans, speaker.name


def build_stream(plan: StreamPlan, config: StreamConfig, spec: FeatureSpec, babble: list) -> tuple[np.ndarray, dict]:
    """int16 audio and index entry of one stream."""
    rng = np.random.default_rng(plan.seed)
    if plan.engine == "none":
        samples = round(plan.seconds * spec.sample_rate)
        speech, speaking, spans, voice = np.zeros(samples, np.float32), np.zeros(samples, bool), [], "none"
        scene = draw_scene(rng, noise_only=True)
    else:
        speech, speaking, spans, voice = _speech_track(plan, config, spec, rng)
        scene = draw_scene(rng)
    audio = to_int16(render(speech, speaking, scene, spec, rng, babble))
    entry = {
        "index": plan.index,
        "kind": plan.kind,
        "family": plan.family,
        "voice": voice,
        "seconds": round(audio.size / spec.sample_rate, 3),
        "keyword_spans": [[round(a, 4), round(b, 4)] for a, b in spans],
        "scene": scene.to_dict(),
        "file": f"{plan.index:05d}.npy",
    }
    return audio, entry


def build_shard(shard: list[StreamPlan], config: StreamConfig, spec: FeatureSpec, babble: list, folder: Path) -> list:
    """Run in a fresh process: build and save every stream of the shard; returns their index entries."""
    entries = []
    for plan in shard:
        audio, entry = build_stream(plan, config, spec, babble)
        np.save(folder / entry["file"], audio)
        entries.append(entry)
    return entries


def build_babble(config: StreamConfig, spec: FeatureSpec) -> list[np.ndarray]:
    """Run in a fresh process: babble recordings (60 s) from held-out voices saying evaluation text."""
    rng = _rng(config.seed, "babble")
    plan = StreamPlan(-1, "babble", FAMILY_ESPEAK, "espeak", 0.0, 0, int(rng.integers(2**31)))
    text = text_source(config.keyword)
    utterances = []
    for _ in range(6):  # six speakers, five sentences each
        speaker = _Speaker(plan, config.held_out_variants, rng, spec)
        utterances += [speaker.say(text.sentence(rng), 0.0) for _ in range(5)]
    return [babble_noise(utterances, 6, 60 * spec.sample_rate, rng) for _ in range(config.babble_recordings)]


# ---- the cache ----


def audio_spec(spec: FeatureSpec) -> dict:
    """What of a feature spec the streams' audio depends on, as the cache key records it: all of it but the
    front-end, which only changes what a model computes from the same audio (log-mel and PCEN models share streams;
    the spec stays whole in the key, with log-mel, so folders built before PCEN keep their names)."""
    return dataclasses.replace(spec, front_end=LOG_MEL).to_dict()


def cache_key(config: StreamConfig, spec: FeatureSpec) -> str:
    identity = {"version": STREAMS_VERSION, "config": asdict(config), "feature_spec": audio_spec(spec)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def stream_folder(config: StreamConfig, spec: FeatureSpec, cache_root: Path) -> Path:
    slug = "-".join(normalize_keyword(config.keyword).replace("'", "").split())
    return Path(cache_root) / f"eval-{slug}-{cache_key(config, spec)}"


def build_streams(
    config: StreamConfig, spec: FeatureSpec, cache_root: Path, workers: int = 1, progress: bool = True
) -> Path:
    """The cached stream folder for `config`, built first if needed."""
    folder = stream_folder(config, spec, cache_root)
    if (folder / INDEX_FILE).is_file():
        return folder
    plans = plan_streams(config)
    shards = make_shards(plans)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
            babble = pool.submit(build_babble, config, spec).result()
        entries = []
        executor = ProcessPoolExecutor(max(1, min(workers, len(shards))), mp_context=context, max_tasks_per_child=1)
        try:
            jobs = [executor.submit(build_shard, shard, config, spec, babble, staging) for shard in shards]
            bar = tqdm(total=len(plans), unit="stream", desc="evaluation streams", disable=None if progress else True)
            with bar:
                for done in as_completed(jobs):
                    result = done.result()
                    entries += result
                    bar.update(len(result))
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown()
        entries.sort(key=lambda entry: entry["index"])
        index = {
            "version": STREAMS_VERSION,
            "cache_key": cache_key(config, spec),
            "config": asdict(config),
            "feature_spec": audio_spec(spec),
            "streams": entries,
        }
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_streams(folder: Path) -> list[Stream]:
    """Streams of a built folder, in index order, without their audio (see `stream_audio`)."""
    try:
        index = json.loads((Path(folder) / INDEX_FILE).read_text(encoding="utf-8"))
        return [
            Stream(
                index=e["index"], kind=e["kind"], family=e["family"], voice=e["voice"], seconds=e["seconds"],
                keyword_spans=[tuple(span) for span in e["keyword_spans"]], scene=e["scene"], file=e["file"],
            )
            for e in index["streams"]
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder} holds no usable evaluation streams ({error}); delete it to rebuild") from error


def stream_audio(folder: Path, stream: Stream) -> np.ndarray:
    """A stream's audio, float32 in -1..1 (loaded one stream at a time: ten hours would not fit in memory)."""
    try:
        return np.load(Path(folder) / stream.file).astype(np.float32) / 32768.0
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}/{stream.file} is unreadable ({error}); delete {folder} to rebuild") from error
