"""SpecAugment-style masking of log-mel batches during training (Park et al. 2019, without time warping).

Why: the held-out voices differ from the training voices mostly in their formants (eSpeak variants shift single
formants, which resampling a whole voice cannot imitate), so a model that leans on a few mel bands fails on them.
Hiding random bands and short stretches of frames makes it use the whole pattern. The masks are small next to a
1 s window (98 frames x 40 mels): a keyword stays audible, so its label stays true.

Masked cells take the mean of their own window, not zero: zero is a loud value on a log scale whose floor is
log(1e-6). The masks are drawn from torch's global CPU generator, which training checkpoints save and restore, so
a resumed run draws the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpecAugment:
    freq_masks: int = 2
    freq_width: int = 5  # each mask hides 0..freq_width mel bins
    time_masks: int = 2
    time_width: int = 8  # each mask hides 0..time_width frames (10 ms each)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_mels] -> the same shape with masked cells set to each window's mean."""
        batch, frames, n_mels = features.shape
        hidden = _band_masks(batch, n_mels, self.freq_masks, self.freq_width)[:, None, :]
        hidden = hidden | _band_masks(batch, frames, self.time_masks, self.time_width)[:, :, None]
        fill = features.mean(dim=(1, 2), keepdim=True)
        return torch.where(hidden.to(features.device), fill, features)


def _band_masks(batch: int, length: int, count: int, max_width: int) -> torch.Tensor:
    """[batch, length] bool: `count` bands per row, each of a random width 0..max_width at a random start."""
    positions = torch.arange(length)
    hidden = torch.zeros(batch, length, dtype=torch.bool)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1))
        start = (torch.rand(batch, 1) * (length - width + 1)).long()
        hidden |= (positions >= start) & (positions < start + width)
    return hidden
