"""Real feature windows from the clip set a checkpoint was trained on: for int8 calibration and for evaluation.

Each utterance is placed in the centre of a clip-long window (`Augmenter.centered_window`, deterministic, no
noise) and goes through the numpy front-end the device runs (`MelFrontEnd`), so calibration and scores see
exactly the features the device computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.features import FeatureSpec, MelFrontEnd
from train.data.augment import Augmenter
from train.data.clipset import ClipSet

CALIBRATION_SEED = 0


@dataclass(frozen=True)
class LabelledWindows:
    """Feature windows [n, frames, n_mels] float32 and their labels (1 keyword, 0 other)."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class WindowMaker:
    """Centered feature windows of clip-set utterances."""

    def __init__(self, clipset: ClipSet, spec: FeatureSpec) -> None:
        self.clipset = clipset
        self.spec = spec
        self.front_end = MelFrontEnd(spec)
        # centered_window uses neither noise nor randomness: no noise bank to decode, any seed.
        self.augmenter = Augmenter(spec, [], np.random.default_rng(CALIBRATION_SEED))

    def windows(self, indices: np.ndarray) -> LabelledWindows:
        shape = (len(indices), self.spec.frames_per_clip, self.spec.n_mels)
        features = np.empty(shape, dtype=np.float32)
        for row, index in enumerate(indices):
            features[row] = self.front_end.frames(self.augmenter.centered_window(self.clipset.utterance(int(index))))
        return LabelledWindows(features, np.asarray(self.clipset.labels[indices], dtype=np.int64))

    def split(self, split: str) -> LabelledWindows:
        return self.windows(self.clipset.indices(split))

    def calibration(self, count: int, seed: int = CALIBRATION_SEED) -> LabelledWindows:
        """`count` training windows, up to half of them keyword utterances so the int8 ranges cover both classes."""
        rng = np.random.default_rng(seed)
        keyword, other = self.clipset.indices("train", label=1), self.clipset.indices("train", label=0)
        take_keyword = min(len(keyword), count // 2)
        take_other = min(len(other), count - take_keyword)
        take_keyword = min(len(keyword), count - take_other)  # top up with keywords when others run short
        chosen = np.concatenate(
            [rng.choice(keyword, take_keyword, replace=False), rng.choice(other, take_other, replace=False)]
        )
        return self.windows(np.sort(chosen))
