"""The peer: pocketsphinx keyphrase spotting (its bundled US English model and CMU dictionary), on the same audio.

Its one knob is the keyphrase threshold (`kws_threshold`, 1e-1 .. 1e-60 in practice; smaller fires more). A sweep
costs one pass: the keyphrase is added once per threshold under its own dictionary word (same phones), and
pocketsphinx tracks each entry independently, which gives exactly the detections of separate runs (checked by
`tests/test_evaluate.py`). Audio goes in 10 s chunks with live cepstral mean normalisation, as a device would feed
it. The sweep variable is the exponent `k` of 1e-k, reported as threshold -k so that, as for our model, a higher
threshold means fewer detections.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.data.vocabulary import pronunciations_of

NAME = "pocketsphinx"
EXPONENTS = (1, 3, 5, 7, 10, 12, 15, 18, 20, 23, 26, 30, 34, 38, 42, 46, 50, 55, 60)
FRAMES_PER_SECOND = 100  # pocketsphinx's default frame rate
CHUNK_SECONDS = 10.0
SAMPLE_RATE = 16000  # the rate pocketsphinx's bundled en-us acoustic model expects (the peer's, not our FeatureSpec)


def version() -> str:
    from importlib import metadata

    return metadata.version("pocketsphinx")


@dataclass
class PeerResult:
    """Detection times per threshold (-exponent) for one recording, and the seconds it took."""

    detections: dict[float, np.ndarray]
    seconds: float

    def detect(self, threshold: float) -> np.ndarray:
        return self.detections.get(float(threshold), np.zeros(0))

    def peak(self) -> float:
        """Clip score: the strictest threshold that still fired (-inf when none did)."""
        fired = [t for t, times in self.detections.items() if times.size]
        return max(fired) if fired else float("-inf")


class PocketSphinxSpotter:
    """Keyphrase spotting for `keyword`; every word of it must be in the CMU dictionary."""

    def __init__(self, keyword: str, exponents: tuple[int, ...] = EXPONENTS) -> None:
        from pocketsphinx import Decoder

        phones = pronunciations_of(keyword)
        if not phones:
            raise ValueError(f"pocketsphinx cannot spot {keyword!r}: a word of it is not in its dictionary")
        self.keyword, self.exponents = keyword, exponents
        self.thresholds = tuple(-float(k) for k in exponents)
        self._decoder = Decoder(loglevel="FATAL")
        self._labels = {}
        with tempfile.TemporaryDirectory() as folder:
            keyphrases = Path(folder) / "keyphrases.kws"
            lines = []
            for exponent in exponents:
                label = f"kwsthreshold{exponent}"
                self._decoder.add_word(label, phones[0], True)
                self._labels[label] = -float(exponent)
                lines.append(f"{label} /1e-{exponent}/")
            keyphrases.write_text("\n".join(lines) + "\n", encoding="utf-8")
            self._decoder.add_kws("spot", str(keyphrases))
        self._decoder.activate_search("spot")

    def run(self, audio: np.ndarray) -> PeerResult:
        """Detections (end of the keyphrase, seconds) per threshold for float audio at 16 kHz."""
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        chunk = round(CHUNK_SECONDS * SAMPLE_RATE)
        started = time.perf_counter()
        decoder = self._decoder
        decoder.start_utt()
        for start in range(0, pcm.size, chunk):
            decoder.process_raw(pcm[start : start + chunk].tobytes(), False, False)
        decoder.end_utt()
        found: dict[float, list[float]] = {threshold: [] for threshold in self.thresholds}
        for segment in decoder.seg() or []:
            label = segment.word.strip()
            if label in self._labels:
                found[self._labels[label]].append(segment.end_frame / FRAMES_PER_SECOND)
        elapsed = time.perf_counter() - started
        return PeerResult({t: np.array(sorted(times)) for t, times in found.items()}, elapsed)
