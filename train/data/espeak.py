"""eSpeak NG speech through ctypes, on the library and voice data shipped by the `espeakng_loader` wheel.

Fully offline and very fast (well under a millisecond per word), with many voices: every English language voice
(en, en-us, en-gb-scotland, en-029, ...) combined with every voice variant in `espeak-ng-data/voices/!v/`.

The library keeps global state, some of which (e.g. the pitch-flutter phase in its wave generator) carries from
one utterance to the next and survives `espeak_Terminate` + `espeak_Initialize`. Identical requests therefore give
identical audio only when a fresh process makes the same sequence of calls; `train.data.synthetic` runs each
shard of work in a fresh process for that reason. Use one `EspeakEngine` per process (`EspeakEngine.shared()`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cache
from pathlib import Path

import espeakng_loader
import numpy as np

# Constants from espeak-ng's speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize in the calling thread, deliver via the callback
POS_CHARACTER = 1  # espeak_POSITION_TYPE
ESPEAK_CHARS_UTF8 = 1  # espeak_Synth flags: the text is UTF-8
EE_OK = 0
INT16_FULL_SCALE = 32768.0


class Parameter(IntEnum):
    """espeak_PARAMETER values used here."""

    RATE = 1  # words per minute
    PITCH = 3  # base pitch, 0..100
    RANGE = 4  # pitch range (intonation), 0..100
    WORD_GAP = 7  # extra pause between words, units of 10 ms at the default rate


# What the library accepts (speak_lib.h); `EspeakParams` rejects anything outside.
RATE_LIMITS = (80, 450)
PITCH_LIMITS = (0, 100)
RANGE_LIMITS = (0, 100)
WORD_GAP_LIMITS = (0, 100)

# Language voices whose text is not written in the Latin alphabet (Shavian English).
NON_LATIN_LANGUAGES = frozenset({"en-shaw"})
DEFAULT_VARIANT = ""


def data_path() -> Path:
    return Path(espeakng_loader.get_data_path())


@dataclass(frozen=True, order=True)
class EspeakVoice:
    """A language voice plus an optional variant (`en-us` + `f3` -> "en-us+f3")."""

    language: str
    variant: str = DEFAULT_VARIANT

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def group(self) -> str:
        """Speaker id as stored in a clip set."""
        return f"espeak:{self.name}"


@dataclass(frozen=True)
class EspeakParams:
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0

    def __post_init__(self) -> None:
        for name, value, (low, high) in (
            ("rate", self.rate, RATE_LIMITS),
            ("pitch", self.pitch, PITCH_LIMITS),
            ("pitch_range", self.pitch_range, RANGE_LIMITS),
            ("word_gap", self.word_gap, WORD_GAP_LIMITS),
        ):
            if not low <= value <= high:
                raise ValueError(f"eSpeak {name} {value} is outside the allowed {low}..{high}")


# libespeak-ng (espeakng_loader 0.2.4) crashes the process (SIGSEGV in its wave generator) on some sentences when
# the "Demonic" variant (base pitch 43 Hz, intonation 10) gets a wide pitch range: measured 2026-11-23, e.g. range
# 90-100 at pitch 15-50 on "can contain nested compound statements"; range <= 65 never crashed on 300 sentences x 2
# rates x 3 English voices x pitches 15-85. Long, varied text (the evaluation streams) reaches it; a crash there
# kills a whole build, so callers that synthesize sentences cap the range for these variants.
SENTENCE_RANGE_CAPS = {"Demonic": 60}


def sentence_safe(voice: EspeakVoice, params: EspeakParams) -> EspeakParams:
    """`params` with the pitch range capped where `voice`'s variant is known to crash the library on sentences."""
    cap = SENTENCE_RANGE_CAPS.get(voice.variant)
    return replace(params, pitch_range=min(params.pitch_range, cap)) if cap is not None else params


def _language_code(voice_file: Path) -> str | None:
    for line in voice_file.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "language":
            return fields[1].lower()
    return None


@cache
def english_languages() -> tuple[str, ...]:
    """English language voices in the bundled data, by voice file name (what espeak_SetVoiceByName accepts), sorted.

    A voice file counts as English when its primary `language` line starts with "en"."""
    names = set()
    for path in (data_path() / "lang").rglob("*"):
        code = _language_code(path) if path.is_file() else None
        if code and code.split("-")[0] == "en" and code not in NON_LATIN_LANGUAGES:
            names.add(path.name.lower())
    return tuple(sorted(names))


@cache
def voice_variants() -> tuple[str, ...]:
    """Variant names in `voices/!v/` plus the default (""); names with spaces cannot be addressed and are skipped."""
    names = [path.name for path in (data_path() / "voices" / "!v").iterdir() if path.is_file() and " " not in path.name]
    return (DEFAULT_VARIANT, *sorted(names))


def english_voices() -> list[EspeakVoice]:
    return [EspeakVoice(language, variant) for language in english_languages() for variant in voice_variants()]


def check_voice(voice: EspeakVoice) -> None:
    """The library silently falls back to a default for an unknown variant, so check names against the data."""
    if voice.language not in english_languages():
        raise ValueError(f"eSpeak language {voice.language!r} not found; available: {', '.join(english_languages())}")
    if voice.variant not in voice_variants():
        raise ValueError(f"eSpeak variant {voice.variant!r} not found in {data_path() / 'voices' / '!v'}")


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine:
    """The initialised library of this process; `synthesize` returns float32 mono at `sample_rate`."""

    _shared: EspeakEngine | None = None

    @classmethod
    def shared(cls) -> EspeakEngine:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), 0)
        if sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({sample_rate}) with data at {data_path()}")
        self.sample_rate = sample_rate
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline when the Python object goes away.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count: int, _events) -> int:
        if samples and count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: EspeakVoice, params: EspeakParams, seed: int = 0) -> np.ndarray:
        check_voice(voice)
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.name.encode()) != EE_OK:
            raise ValueError(f"eSpeak could not select voice {voice.name!r}")
        # Parameters persist between calls, so every one is set every time.
        for parameter, value in (
            (Parameter.RATE, params.rate),
            (Parameter.PITCH, params.pitch),
            (Parameter.RANGE, params.pitch_range),
            (Parameter.WORD_GAP, params.word_gap),
        ):
            lib.espeak_SetParameter(parameter, value, 0)
        lib.espeak_ng_SetRandSeed(seed)
        encoded = text.encode("utf-8")
        self._chunks = []
        status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r} in voice {voice.name}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = []
        return audio.astype(np.float32) / INT16_FULL_SCALE

    def phonemes(self, texts: list[str], language: str) -> list[str]:
        """What `language` (e.g. "en-gb-x-rp") says for each of `texts`, in eSpeak's ASCII phoneme mnemonics
        ("S'i:l@"), one space between the phonemes of successive clauses. No audio is made."""
        if self._lib.espeak_SetVoiceByName(language.encode()) != EE_OK:
            raise ValueError(f"eSpeak could not select voice {language!r}")
        said = []
        for text in texts:
            remaining = ctypes.c_char_p(text.encode("utf-8"))
            pieces = []
            while remaining.value:  # the library advances `remaining` past each clause it converts
                pieces.append(self._lib.espeak_TextToPhonemes(ctypes.byref(remaining), ESPEAK_CHARS_UTF8, 0))
            said.append(" ".join(piece.decode() for piece in pieces if piece))
        return said
