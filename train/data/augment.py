"""Training-time augmentation (numpy only), and the synthetic noise that feeds it.

`Augmenter.window` turns one stored utterance into a clip-long training window: sometimes another vocal tract
length (the formants alone move), sometimes each formant moved by a factor of its own, sometimes a pseudo-speaker
(the utterance resampled, so pitch, formants and tempo move together), a random time shift (the whole utterance stays
inside), sometimes a synthetic room, sometimes other speech before and after it (the context a word has live),
background noise at a random SNR (sometimes none), sometimes a cheap microphone's band limits and tilt, and a
random gain. `centered_window` is the deterministic version for evaluation. About 0.5 ms per window on one core
(0.06 ms without speakers, rooms, channels and context).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from edge_runtime.features import FeatureSpec

# Defaults of the random ranges (all uniform).
SNR_DB = (0.0, 30.0)  # speech power over noise power, measured over the utterance itself
NOISE_PROBABILITY = 0.8  # share of windows that get background noise
GAIN_DB = (-12.0, 6.0)  # applied last; the result is clipped to -1..1
# Noise level for utterances with (next to) no energy of their own, e.g. near-silence clips, where an SNR is
# meaningless.
QUIET_NOISE_DBFS = (-60.0, -30.0)
SILENT_POWER = 1e-8  # -80 dBFS: below this an utterance counts as silent

NOISE_COLOURS = ("white", "pink", "brown")
_COLOUR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
NOISE_BANK_RMS = 0.1  # level of generated noise recordings (-20 dBFS); the Augmenter rescales them anyway
HUM_MAINS_HZ = (50.0, 60.0)
HUM_HARMONICS = 6
HUM_NOISE_SHARE = 0.05  # broadband noise under the hum, relative to its RMS

# Pseudo-speakers, rooms and channels (each applied to a share of the windows; see `Augmenter.window`). Measured
# on the long-audio evaluation (docs/quality.md): FRR at 10 FA/h 36% -> 24%, clip ROC AUC 0.9983 -> 0.9992, for
# ~0.4 ms more CPU per training window (~1.5 min per model at the default size and epochs).
SPEED_PROBABILITY = 0.5  # resample the utterance by a factor: pitch, formants and tempo move together
SPEED_FACTOR = (0.88, 1.12)
# Vocal-tract-length perturbation: the formants alone move, by a factor drawn log-uniformly (pitch and tempo stay).
# The range spans a vocal tract from about 0.75 to 1.35 times the speaker's own: children and large adults, and
# with the speed change on top a little beyond.
VTLP_PROBABILITY = 0.5
VTLP_FACTOR = (0.75, 1.35)
# Formant warping: eSpeak's voice variants scale each formant by a factor of its own (in the training variants'
# files F1-F3 run from 50% of normal, `travis`'s F1, to 150%, `Alicia`'s F2), which VTLP's one stretch cannot make:
# it moves every formant together. A share of the windows (off by default; `--formant-warp P`) gets the envelope
# around each of the first four formants of a neutral vocal tract (a 17.5 cm tube: 500, 1500, 2500, 3500 Hz) moved
# by its own factor, drawn log-uniformly from that span; pitch and timing stay, as with VTLP.
FORMANT_WARP_PROBABILITY = 0.0
FORMANT_WARP_FACTOR = (0.5, 1.5)
FORMANT_CENTRES_HZ = (500.0, 1500.0, 2500.0, 3500.0)
FORMANT_MIN_GAP_HZ = 250.0  # moved formants keep at least this far apart, in their order
# Fresh babble: the noise bank holds 40 s of babble, which a model hears thousands of times over and can learn by
# heart. A share of the noisy windows gets babble made for that window instead, from 1-8 talkers of training
# negatives (never the keyword), at the window's SNR.
BABBLE_PROBABILITY = 0.0
BABBLE_TALKERS = (1, 8)
ROOM_PROBABILITY = 0.5  # convolve the window with a synthetic room impulse response
ROOM_BANK_SIZE = 64  # rooms drawn once per Augmenter
CHANNEL_PROBABILITY = 0.25  # band-limit and tilt the window like a cheap microphone
CHANNEL_LOW_HZ = (60.0, 400.0)
CHANNEL_HIGH_HZ = (3000.0, 7800.0)
CHANNEL_TILT_DB = (-8.0, 8.0)
# Speech context: live, a word is rarely alone in its window. People say it between sentences, so the window
# around it also holds the end of what came before and the start of what comes after (the evaluation streams put
# 0.1-0.6 s of pause there). A share of the windows gets other (never keyword) speech in the free space before and
# after the utterance, a pause away, at about its level, in the same room.
CONTEXT_PROBABILITY = 0.5
CONTEXT_PAUSE_S = (0.05, 0.5)
CONTEXT_LEVEL_DB = (-6.0, 3.0)  # relative to the utterance's own level
# Whispered pseudo-speakers: people whisper to a device at night, and eSpeak has one whispering variant per sex, of
# which training gets at most one. A share of the windows (off by default; `--whisper P`) gets its utterance
# re-excited by noise under its own spectral envelope: the words and formants stay, the voicing goes.
WHISPER_PROBABILITY = 0.0
WHISPER_FRAME_S = 0.032  # analysis frames (512 samples at 16 kHz), hopped by a quarter: Hann windows sum to a constant
WHISPER_LIFTER_S = 0.0015  # cepstrum kept below 1.5 ms: the vocal tract's envelope, not the pitch (2.5-12 ms)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def _at_rms(audio: np.ndarray, rms: float) -> np.ndarray:
    level = _rms(audio)
    return (audio * (rms / level) if level > 0 else audio).astype(np.float32)


def coloured_noise(colour: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown Gaussian noise with unit RMS, float32 [num_samples]."""
    if colour not in _COLOUR_EXPONENT:
        raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")
    white = rng.standard_normal(num_samples)
    if colour == "white" or num_samples < 2:
        return _at_rms(white, 1.0)
    spectrum = np.fft.rfft(white)
    frequency = np.arange(spectrum.size, dtype=np.float64)
    frequency[0] = frequency[1]  # no infinite DC gain
    shaped = np.fft.irfft(spectrum / frequency ** (_COLOUR_EXPONENT[colour] / 2), n=num_samples)
    return _at_rms(shaped - shaped.mean(), 1.0)


def mains_hum(mains_hz: float, num_samples: int, spec: FeatureSpec, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: harmonics of `mains_hz` with random phases and falling levels, over a little white noise."""
    t = np.arange(num_samples) / spec.sample_rate
    hum = np.zeros(num_samples)
    for harmonic in range(1, HUM_HARMONICS + 1):
        hum += np.sin(2 * np.pi * mains_hz * harmonic * t + rng.uniform(0, 2 * np.pi)) / harmonic
    hum = _at_rms(hum, 1.0) + HUM_NOISE_SHARE * rng.standard_normal(num_samples)
    return _at_rms(hum, 1.0)


def babble_noise(utterances: list[np.ndarray], voices: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Several voices talking at once: `voices` tracks of random utterances back to back, summed."""
    if not utterances:
        raise ValueError("babble needs at least one utterance")
    return _babble(lambda: utterances[rng.integers(len(utterances))], voices, num_samples, rng)


def _babble(draw: Callable[[], np.ndarray], voices: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`voices` tracks, each starting within the first quarter, of utterances from `draw()` back to back with short
    gaps, each utterance at unit RMS; the sum at NOISE_BANK_RMS."""
    mix = np.zeros(num_samples, dtype=np.float64)
    for _ in range(voices):
        position = int(rng.integers(0, num_samples // 4 + 1))
        while position < num_samples:
            piece = np.asarray(draw(), dtype=np.float64)[: num_samples - position]
            if piece.size == 0:  # an empty utterance would never move the track on
                break
            mix[position : position + piece.size] += _at_rms(piece, 1.0)
            position += piece.size + int(rng.integers(0, piece.size // 2 + 1))
    return _at_rms(mix, NOISE_BANK_RMS)


def fresh_babble(
    speech: Callable[[np.random.Generator], np.ndarray], voices: int, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """`num_samples` of babble never heard before: `voices` talkers of utterances drawn by `speech(rng)`, cut from
    the middle of a mix twice as long, so that every talker is already speaking when it starts; at NOISE_BANK_RMS."""
    mix = _babble(lambda: speech(rng), voices, 2 * num_samples, rng)
    start = num_samples // 2
    return _at_rms(mix[start : start + num_samples], NOISE_BANK_RMS)


def synthetic_noise_bank(spec: FeatureSpec, rng: np.random.Generator, seconds: float = 10.0) -> list[np.ndarray]:
    """Two recordings of each noise colour and one hum per mains frequency, at NOISE_BANK_RMS."""
    num_samples = round(seconds * spec.sample_rate)
    bank = [
        _at_rms(coloured_noise(colour, num_samples, rng), NOISE_BANK_RMS) for colour in NOISE_COLOURS for _ in range(2)
    ]
    bank += [_at_rms(mains_hum(hz, num_samples, spec, rng), NOISE_BANK_RMS) for hz in HUM_MAINS_HZ]
    return bank


def _check_range(name: str, limits: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(value) for value in limits)
    if low > high:
        raise ValueError(f"{name} range must be (low, high) with low <= high, got {limits}")
    return low, high


class Augmenter:
    """Random clip-long windows from stored utterances; all randomness comes from `rng`."""

    def __init__(
        self,
        spec: FeatureSpec,
        noise_bank: list[np.ndarray],
        rng: np.random.Generator,
        snr_db: tuple[float, float] = SNR_DB,
        noise_probability: float = NOISE_PROBABILITY,
        gain_db: tuple[float, float] = GAIN_DB,
        quiet_noise_dbfs: tuple[float, float] = QUIET_NOISE_DBFS,
        speed_probability: float | None = None,
        room_probability: float | None = None,
        channel_probability: float | None = None,
        context_speech: Callable[[np.random.Generator], np.ndarray] | None = None,
        context_probability: float = CONTEXT_PROBABILITY,
        whisper_probability: float | None = None,
        vtlp_probability: float | None = None,
        babble_probability: float | None = None,
        formant_warp_probability: float | None = None,
    ) -> None:
        """The speed, room, channel, whisper, VTLP, babble and formant-warp probabilities default to the module's
        SPEED_/ROOM_/CHANNEL_/WHISPER_/VTLP_/BABBLE_/FORMANT_WARP_PROBABILITY (read when called).
        `context_speech(rng)` draws a random utterance that is not the keyword: the speech context around a share
        (`context_probability`) of the windows, and the talkers of fresh babble (`babble_probability` of the noisy
        windows); None adds neither."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
        self.speed_probability = SPEED_PROBABILITY if speed_probability is None else speed_probability
        self.room_probability = ROOM_PROBABILITY if room_probability is None else room_probability
        self.channel_probability = CHANNEL_PROBABILITY if channel_probability is None else channel_probability
        self.whisper_probability = WHISPER_PROBABILITY if whisper_probability is None else whisper_probability
        self.vtlp_probability = VTLP_PROBABILITY if vtlp_probability is None else vtlp_probability
        self.babble_probability = BABBLE_PROBABILITY if babble_probability is None else babble_probability
        self.formant_warp_probability = (
            FORMANT_WARP_PROBABILITY if formant_warp_probability is None else formant_warp_probability
        )
        for name, value in (
            ("noise_probability", noise_probability),
            ("speed_probability", self.speed_probability),
            ("room_probability", self.room_probability),
            ("channel_probability", self.channel_probability),
            ("context_probability", context_probability),
            ("whisper_probability", self.whisper_probability),
            ("vtlp_probability", self.vtlp_probability),
            ("babble_probability", self.babble_probability),
            ("formant_warp_probability", self.formant_warp_probability),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        self.spec = spec
        self.rng = rng
        self.snr_db = _check_range("snr_db", snr_db)
        self.gain_db = _check_range("gain_db", gain_db)
        self.quiet_noise_dbfs = _check_range("quiet_noise_dbfs", quiet_noise_dbfs)
        self.noise_probability = noise_probability
        self.context_speech = context_speech
        self.context_probability = context_probability if context_speech is not None else 0.0
        if context_speech is None:
            self.babble_probability = 0.0
        self.noise_bank = [np.asarray(noise, dtype=np.float32) for noise in noise_bank if np.size(noise) > 0]
        if any(noise.ndim != 1 for noise in self.noise_bank):
            raise ValueError("noise bank recordings must be mono arrays of shape [samples]")
        # The rooms are drawn on first use (Augmenters that only centre windows never pay for them) from a seed
        # drawn now, so they do not depend on when that use comes: a resumed training run gets the same rooms.
        self._room_seed = int(rng.integers(2**63)) if self.room_probability > 0 else 0
        self._rooms: list[np.ndarray] = []

    def _room(self) -> np.ndarray:
        if not self._rooms:
            rooms = np.random.default_rng(self._room_seed)
            self._rooms = [
                synthetic_rir(self.spec, rooms, rooms.uniform(*RT60_S), rooms.uniform(*DRR_DB))
                for _ in range(ROOM_BANK_SIZE)
            ]
        return self._rooms[int(self.rng.integers(len(self._rooms)))]

    def _speed(self, utterance: np.ndarray) -> np.ndarray:
        """A pseudo-speaker: the utterance played `factor` times faster (soxr), kept only if it still fits."""
        import soxr

        factor = self.rng.uniform(*SPEED_FACTOR)
        rate = self.spec.sample_rate
        changed = soxr.resample(utterance, rate, rate / factor, quality="LQ").astype(np.float32)
        return changed if changed.size <= self.spec.clip_samples else utterance

    def _vtlp(self, utterance: np.ndarray) -> np.ndarray:
        """(Sometimes) the utterance from another vocal tract length. Its draws come from a generator seeded by
        `self.rng`'s state, which they leave as it was: switching VTLP on or off changes no other draw, so its effect
        is measured on otherwise identical windows (a new stream of draws moves long-audio FRR as a new seed does)."""
        side = self._side_rng("vtlp")
        if side.random() >= self.vtlp_probability:
            return utterance
        factor = float(np.exp(side.uniform(*np.log(VTLP_FACTOR))))
        return vocal_tract_warped(utterance, self.spec, factor)

    def _formant_warp(self, utterance: np.ndarray) -> np.ndarray:
        """(Sometimes) the utterance with each formant moved by a factor of its own; side draws, as VTLP's."""
        side = self._side_rng("formant-warp")
        if side.random() >= self.formant_warp_probability:
            return utterance
        factors = np.exp(side.uniform(*np.log(FORMANT_WARP_FACTOR), size=len(FORMANT_CENTRES_HZ)))
        return formant_warped(utterance, self.spec, factors)

    def _side_rng(self, purpose: str) -> np.random.Generator:
        """A generator seeded by `self.rng`'s state and `purpose`, which leaves that state as it was."""
        state = repr(self.rng.bit_generator.state).encode()
        if purpose != "vtlp":  # VTLP's seed predates the purpose; kept so its windows stay as they were
            state += b"/" + purpose.encode()
        return np.random.default_rng(int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little"))

    def window(self, utterance: np.ndarray) -> np.ndarray:
        """float32 [clip_samples]: (sometimes) the utterance whispered, (sometimes) from another vocal tract
        length, (sometimes) with its formants moved one by one, (sometimes) a pseudo-speaker's version of it,
        shifted, (sometimes) in a room, plus noise at a random SNR (sometimes none), (sometimes) through a cheap
        channel, random gain."""
        length = self.spec.clip_samples
        utterance = np.asarray(utterance, dtype=np.float32)
        if utterance.size > length:  # stored utterances never are; a random clip-long piece otherwise
            start = int(self.rng.integers(0, utterance.size - length + 1))
            utterance = utterance[start : start + length]
        if self.whisper_probability and utterance.size and self.rng.random() < self.whisper_probability:
            utterance = whispered(utterance, self.spec, self.rng)
        if self.vtlp_probability and utterance.size:
            utterance = self._vtlp(utterance)
        if self.formant_warp_probability and utterance.size:
            utterance = self._formant_warp(utterance)
        if self.speed_probability and utterance.size and self.rng.random() < self.speed_probability:
            utterance = self._speed(utterance)
        room = None
        if self.room_probability and utterance.size and self.rng.random() < self.room_probability:
            # The reverberant tail may run past the window's end and is cut there, as a live window would.
            room = self._room()
            utterance = reverberate(utterance, room, full=True)[:length]
        offset = int(self.rng.integers(0, length - utterance.size + 1))
        window = np.zeros(length, dtype=np.float32)
        window[offset : offset + utterance.size] = utterance
        if self.context_probability and utterance.size and self.rng.random() < self.context_probability:
            self._add_context(window, offset, utterance, room)
        if self.noise_bank and self.rng.random() < self.noise_probability:
            window += self._noise_for(utterance)
        if self.channel_probability and self.rng.random() < self.channel_probability:
            low, high = self.rng.uniform(*CHANNEL_LOW_HZ), self.rng.uniform(*CHANNEL_HIGH_HZ)
            window = band_limit(window, self.spec, low, high, self.rng.uniform(*CHANNEL_TILT_DB))
        gain = 10 ** (self.rng.uniform(*self.gain_db) / 20)
        return np.clip(window * np.float32(gain), -1.0, 1.0)

    def _add_context(self, window: np.ndarray, offset: int, utterance: np.ndarray, room: np.ndarray | None) -> None:
        """Other speech, in place, in the free space before and after `utterance` (which starts at `offset`): the
        end of one utterance, a pause, the utterance, a pause, the start of another."""
        rate, level = self.spec.sample_rate, _rms(utterance)
        before_end = offset - round(self.rng.uniform(*CONTEXT_PAUSE_S) * rate)
        after_start = offset + utterance.size + round(self.rng.uniform(*CONTEXT_PAUSE_S) * rate)
        for before in (True, False):
            room_for = before_end if before else window.size - after_start
            if room_for <= 0:
                continue
            piece = np.asarray(self.context_speech(self.rng), dtype=np.float32)
            if piece.size == 0 or _rms(piece) <= np.sqrt(SILENT_POWER):
                continue
            piece = _at_rms(piece, level * 10 ** (self.rng.uniform(*CONTEXT_LEVEL_DB) / 20))
            if before:  # its end, ending a pause before the utterance; its reverberant tail runs on into the pause
                piece = piece[-room_for:]
                wet = reverberate(piece, room, full=True) if room is not None else piece
                start = before_end - piece.size
                window[start : start + wet.size] += wet[: window.size - start]
            else:  # its start, after the pause
                piece = piece[:room_for]
                window[after_start : after_start + piece.size] += reverberate(piece, room) if room is not None else piece

    def _noise_for(self, utterance: np.ndarray) -> np.ndarray:
        # Fresh babble's draws come from a side generator, like VTLP's: the bank segment is drawn either way, so
        # switching it on changes no other draw.
        side = self._side_rng("babble") if self.babble_probability else None
        segment = self._noise_segment()
        if side is not None and side.random() < self.babble_probability:
            talkers = int(side.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
            segment = fresh_babble(self.context_speech, talkers, segment.size, side)
        noise_power = float(np.mean(np.square(segment, dtype=np.float64)))
        if noise_power <= 0:
            return np.zeros_like(segment)
        speech_power = float(np.mean(np.square(utterance, dtype=np.float64))) if utterance.size else 0.0
        if speech_power > SILENT_POWER:
            target_power = speech_power / 10 ** (self.rng.uniform(*self.snr_db) / 10)
        else:
            target_power = 10 ** (self.rng.uniform(*self.quiet_noise_dbfs) / 10)
        return segment * np.float32(np.sqrt(target_power / noise_power))

    def _noise_segment(self) -> np.ndarray:
        length = self.spec.clip_samples
        noise = self.noise_bank[int(self.rng.integers(len(self.noise_bank)))]
        if noise.size < length:
            return np.resize(noise, length)
        start = int(self.rng.integers(0, noise.size - length + 1))
        return noise[start : start + length]

    def centered_window(self, utterance: np.ndarray) -> np.ndarray:
        """float32 [clip_samples]: the utterance centred (its middle kept if too long), no noise, no gain."""
        length = self.spec.clip_samples
        utterance = np.asarray(utterance, dtype=np.float32)
        if utterance.size > length:
            start = (utterance.size - length) // 2
            utterance = utterance[start : start + length]
        window = np.zeros(length, dtype=np.float32)
        offset = (length - utterance.size) // 2
        window[offset : offset + utterance.size] = utterance
        return window


def _envelope_analysis(audio: np.ndarray, spec: FeatureSpec):
    """Short-time spectra of `audio` and their cepstrally smoothed log envelopes (the vocal tract's shape, without
    the harmonics of the voice): (spectra, log envelopes, analysis window, hop, padded length)."""
    hop = max(1, round(WHISPER_FRAME_S * spec.sample_rate / 4))
    n_fft = 4 * hop
    padded = np.pad(audio, (n_fft, n_fft + hop - (audio.size % hop)))
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann: overlap-adds to 1.5 at hop n_fft / 4
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * window
    spectra = np.fft.rfft(frames, axis=-1)
    cepstrum = np.fft.irfft(np.log(np.abs(spectra) + 1e-7), n=n_fft, axis=-1)
    keep = max(1, round(WHISPER_LIFTER_S * spec.sample_rate))
    cepstrum[:, keep : n_fft - keep + 1] = 0.0
    return spectra, np.fft.rfft(cepstrum, axis=-1).real, window, hop, padded.size


def _resynthesized(spectra: np.ndarray, window: np.ndarray, hop: int, padded_size: int, like: np.ndarray):
    """Overlap-add of the frames' inverse spectra, cut to `like`'s span and brought to its RMS. float32."""
    n_fft = window.size
    pieces = np.fft.irfft(spectra, n=n_fft, axis=-1) * window
    out = np.zeros(padded_size, dtype=np.float64)
    for index, piece in enumerate(pieces):  # ~130 frames per second of audio
        out[index * hop : index * hop + n_fft] += piece
    return _at_rms(out[n_fft : n_fft + like.size], _rms(like))


def whispered(utterance: np.ndarray, spec: FeatureSpec, rng: np.random.Generator) -> np.ndarray:
    """The utterance as a whisper: each short-time spectrum's envelope (cepstrally smoothed, so the harmonics of
    the voice are gone) over random-phase noise, overlap-added; same length and RMS. float32."""
    audio = np.asarray(utterance, dtype=np.float32)
    if audio.size == 0:
        return audio
    spectra, log_envelope, window, hop, padded_size = _envelope_analysis(audio, spec)
    phase = np.exp(2j * np.pi * rng.random(log_envelope.shape))
    return _resynthesized(np.exp(log_envelope) * phase, window, hop, padded_size, audio)


def vocal_tract_warped(utterance: np.ndarray, spec: FeatureSpec, factor: float) -> np.ndarray:
    """The utterance from a vocal tract `1 / factor` times as long: each short-time spectrum's envelope is
    stretched along frequency by `factor` (a formant at f moves to factor * f), while the voice's harmonics, its
    pitch, phase and timing stay (vocal-tract-length perturbation, VTLP, on the waveform). Same length and RMS.
    float32."""
    audio = np.asarray(utterance, dtype=np.float32)
    if audio.size == 0 or factor == 1.0:
        return audio
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    spectra, log_envelope, window, hop, padded_size = _envelope_analysis(audio, spec)
    bins = np.arange(log_envelope.shape[1], dtype=np.float64)
    warped = np.stack([np.interp(bins / factor, bins, frame) for frame in log_envelope])
    return _resynthesized(spectra * np.exp(warped - log_envelope), window, hop, padded_size, audio)


def formant_targets_hz(factors) -> np.ndarray:
    """Where `formant_warped` moves the neutral formants (FORMANT_CENTRES_HZ) for these factors: each to its factor
    times itself, then pushed up where needed to stay FORMANT_MIN_GAP_HZ above the one below (the warp must keep
    frequencies in order)."""
    targets = np.asarray(FORMANT_CENTRES_HZ, dtype=np.float64) * np.asarray(factors, dtype=np.float64)
    for index in range(1, targets.size):
        targets[index] = max(targets[index], targets[index - 1] + FORMANT_MIN_GAP_HZ)
    return targets


def formant_warped(utterance: np.ndarray, spec: FeatureSpec, factors) -> np.ndarray:
    """The utterance with each formant region moved by a factor of its own: each short-time spectrum's envelope is
    warped along frequency, piecewise linearly, so that the neutral formant FORMANT_CENTRES_HZ[k] lands at
    `formant_targets_hz(factors)[k]` (0 Hz stays, above the last formant the envelope stretches by the last
    factor); the voice's harmonics, pitch, phase and timing stay. Equal factors are VTLP by that factor. Same length
    and RMS. float32."""
    factors = np.asarray(factors, dtype=np.float64)
    if factors.shape != (len(FORMANT_CENTRES_HZ),) or not np.all(factors > 0):
        raise ValueError(f"factors must be {len(FORMANT_CENTRES_HZ)} numbers > 0 (one per formant), got {factors}")
    audio = np.asarray(utterance, dtype=np.float32)
    if audio.size == 0 or np.all(factors == 1.0):
        return audio
    spectra, log_envelope, window, hop, padded_size = _envelope_analysis(audio, spec)
    hz_per_bin = spec.sample_rate / window.size
    sources = np.asarray(FORMANT_CENTRES_HZ, dtype=np.float64)
    targets = formant_targets_hz(factors)
    far = 2.0 * spec.sample_rate  # a knot beyond Nyquist carries the last factor's stretch to the top
    target_knots = np.concatenate([[0.0], targets, [targets[-1] + far]])
    source_knots = np.concatenate([[0.0], sources, [sources[-1] + far / factors[-1]]])
    bins = log_envelope.shape[1]
    source_bins = np.interp(np.arange(bins) * hz_per_bin, target_knots, source_knots) / hz_per_bin
    # Linear interpolation of every frame at the same positions (np.interp, frame by frame, is 10x slower).
    below = np.clip(np.floor(source_bins).astype(np.int64), 0, bins - 1)
    above = np.minimum(below + 1, bins - 1)
    weight = np.clip(source_bins - below, 0.0, 1.0)
    warped = log_envelope[:, below] * (1.0 - weight) + log_envelope[:, above] * weight
    return _resynthesized(spectra * np.exp(warped - log_envelope), window, hop, padded_size, audio)


# ---- rooms and channels (used by the evaluation streams, and by training when `room_probability` > 0) ----

RT60_S = (0.15, 0.7)  # reverberation time: 60 dB decay
DRR_DB = (0.0, 12.0)  # direct-to-reverberant energy ratio
RIR_MAX_S = 0.5  # the impulse response is cut here (a 0.8 s RT60 has fallen by 37 dB by then)
RIR_PREDELAY_S = 0.004  # first reflections start this long after the direct path
RIR_DAMPING_HZ = (2500.0, 7000.0)  # the reverberant tail loses high frequencies faster: one-pole low-pass corner


def synthetic_rir(spec: FeatureSpec, rng: np.random.Generator, rt60_s: float, drr_db: float) -> np.ndarray:
    """A room impulse response: a unit direct path at t=0, then exponentially decaying low-passed noise with
    `rt60_s` reverberation time, scaled so the direct/reverberant energy ratio is `drr_db`. float32."""
    if not rt60_s > 0:
        raise ValueError(f"rt60_s must be > 0, got {rt60_s}")
    length = max(2, round(spec.sample_rate * min(rt60_s, RIR_MAX_S)))
    t = np.arange(length) / spec.sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60_s)  # ln(1000): amplitude -60 dB at rt60
    corner = rng.uniform(*RIR_DAMPING_HZ)
    alpha = float(np.exp(-2 * np.pi * corner / spec.sample_rate))
    for i in range(1, length):  # short loop (<= ~11k samples): a one-pole low-pass, no scipy needed
        tail[i] += alpha * tail[i - 1] - alpha * tail[i]
    tail[: round(RIR_PREDELAY_S * spec.sample_rate)] = 0.0
    energy = float(np.sum(tail**2))
    if energy > 0:
        tail *= np.sqrt(10 ** (-drr_db / 10) / energy)
    tail[0] = 1.0
    return tail.astype(np.float32)


def fast_fft_size(size: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= size: FFT lengths numpy transforms quickly."""
    best = 1 << max(size - 1, 0).bit_length()
    power3 = 1
    while power3 < best:
        power35 = power3
        while power35 < best:
            candidate = power35 * (1 << max(0, -(-size // power35) - 1).bit_length())
            best = min(best, candidate)
            power35 *= 5
        power3 *= 3
    return best


def reverberate(audio: np.ndarray, rir: np.ndarray, full: bool = False) -> np.ndarray:
    """`audio` convolved with `rir` (FFT overlap-add in blocks, so long streams stay cheap), float32; as long as
    `audio`, or with the whole reverberant tail when `full`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        return audio
    if full or audio.size <= 4 * rir.size:  # short input: one transform of a fast size
        n = fast_fft_size(audio.size + rir.size - 1)
        wet = np.fft.irfft(np.fft.rfft(audio, n) * np.fft.rfft(rir, n), n)
        return wet[: audio.size + rir.size - 1 if full else audio.size].astype(np.float32)
    n = 1 << (2 * max(rir.size, 1) - 1).bit_length()  # FFT size >= block + rir - 1 with block >= rir
    block = n - rir.size + 1
    response = np.fft.rfft(rir, n)
    wet = np.zeros(audio.size + n, dtype=np.float64)
    for start in range(0, audio.size, block):
        piece = np.fft.irfft(np.fft.rfft(audio[start : start + block], n) * response, n)
        wet[start : start + n] += piece
    return wet[: audio.size].astype(np.float32)


def band_limit(audio: np.ndarray, spec: FeatureSpec, low_hz: float, high_hz: float, tilt_db: float = 0.0) -> np.ndarray:
    """A cheap microphone/channel: everything below `low_hz` and above `high_hz` removed (FFT brick wall with
    short ramps), and a spectral tilt of `tilt_db` from low to high frequencies. float32, same length."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size < 2:
        return audio
    spectrum = np.fft.rfft(audio)
    frequency = np.fft.rfftfreq(audio.size, 1.0 / spec.sample_rate)
    ramp = 0.1  # octaves-ish softness as a share of the corner frequency
    gain = np.clip((frequency - low_hz * (1 - ramp)) / max(low_hz * ramp, 1.0), 0.0, 1.0)
    gain *= np.clip((high_hz * (1 + ramp) - frequency) / max(high_hz * ramp, 1.0), 0.0, 1.0)
    gain *= 10 ** (tilt_db * (frequency / frequency[-1] - 0.5) / 20)
    return np.fft.irfft(spectrum * gain, n=audio.size).astype(np.float32)
