"""Torch mirror of `edge_runtime.features.MelFrontEnd`, for batched feature extraction on the GPU.

The window, filterbank and PCEN smoother come from the numpy contract itself, so only the framing and FFT are
re-implemented here; `tests/test_features.py` holds the two within a stated tolerance.
"""

from __future__ import annotations

import torch

from edge_runtime.features import (
    LOG_MEL,
    PCEN_INPUT_SCALE,
    FeatureSpec,
    analysis_window,
    mel_filterbank,
    pcen_from_smoothed,
    smoother_matrices,
    smoother_start,
)


class TorchMelFrontEnd(torch.nn.Module):
    """[batch, samples] float audio -> [batch, frames, n_mels] log-mel or PCEN (as the spec names), valid framing
    like the numpy front-end; each signal is taken whole (PCEN's smoother starts as `smoother_start` says)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("window", torch.from_numpy(analysis_window(spec)), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(spec)), persistent=False)
        weights, carry = smoother_matrices(spec, max(spec.frames_per_clip, 1))
        self.register_buffer("smoother_weights", torch.from_numpy(weights).float(), persistent=False)
        self.register_buffer("smoother_carry", torch.from_numpy(carry).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        frames = audio.float().unfold(-1, spec.window_samples, spec.hop_samples)
        spectrum = torch.fft.rfft(frames * self.window, n=spec.n_fft, dim=-1)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = torch.clamp(power @ self.filterbank, min=spec.log_floor)
        if spec.front_end == LOG_MEL:
            return torch.log(mel)
        return self._pcen(mel)

    def _pcen(self, mel: torch.Tensor) -> torch.Tensor:
        count = mel.shape[-2]
        if count > self.smoother_weights.shape[0]:  # longer than a clip: matrices for this length, once
            weights, carry = (torch.from_numpy(m).float().to(mel.device) for m in smoother_matrices(self.spec, count))
        else:
            weights, carry = self.smoother_weights[:count, :count], self.smoother_carry[:count]
        energy = mel * PCEN_INPUT_SCALE
        smoothed = weights @ energy + carry[:, None] * smoother_start(energy, self.spec)[..., None, :]
        return pcen_from_smoothed(energy, smoothed)
