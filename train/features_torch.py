"""Torch mirror of `edge_runtime.features.LogMelFrontEnd`, for batched feature extraction on the GPU.

The window and filterbank come from the numpy contract itself, so only the framing and FFT are re-implemented
here; `tests/test_features.py` holds the two within a stated tolerance.
"""

from __future__ import annotations

import torch

from edge_runtime.features import FeatureSpec, analysis_window, mel_filterbank


class TorchLogMel(torch.nn.Module):
    """[batch, samples] float audio -> [batch, frames, n_mels] log-mel, valid framing like the numpy front-end."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("window", torch.from_numpy(analysis_window(spec)), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(spec)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        frames = audio.float().unfold(-1, spec.window_samples, spec.hop_samples)
        spectrum = torch.fft.rfft(frames * self.window, n=spec.n_fft, dim=-1)
        power = spectrum.real.square() + spectrum.imag.square()
        return torch.log(torch.clamp(power @ self.filterbank, min=spec.log_floor))
