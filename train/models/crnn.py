"""The CRNN baseline of the KWS_SPEED_UP / DLA-course lineage: conv front, GRU, attention pooling (~70K params).

It becomes the teacher that compact students are distilled from.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPooling(nn.Module):
    """Softmax-weighted sum over time of the GRU outputs."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.energy = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.energy(sequence), dim=1)
        return (weights * sequence).sum(dim=1)


class CRNN(nn.Module):
    """[batch, frames, n_mels] log-mel -> [batch, num_classes] logits."""

    def __init__(
        self,
        n_mels: int,
        num_classes: int,
        conv_channels: int = 8,
        kernel_size: tuple[int, int] = (5, 20),
        stride: tuple[int, int] = (2, 8),
        hidden_size: int = 64,
        gru_layers: int = 2,
    ) -> None:
        super().__init__()
        kernel_size, stride = tuple(kernel_size), tuple(stride)
        # Per-mel-bin normalisation learned from data, so raw log-mel goes in unchanged on every platform.
        self.input_norm = nn.BatchNorm1d(n_mels)
        # The conv sees [batch, 1, n_mels, frames] as in the course baseline: kernel and stride are (freq, time).
        self.conv = nn.Sequential(nn.Conv2d(1, conv_channels, kernel_size, stride), nn.ReLU())
        conv_freq_out = (n_mels - kernel_size[0]) // stride[0] + 1
        self.gru = nn.GRU(conv_channels * conv_freq_out, hidden_size, num_layers=gru_layers, batch_first=True)
        self.attention = AttentionPooling(hidden_size)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        normed = self.input_norm(features.transpose(1, 2))  # [batch, n_mels, frames]
        conv_out = self.conv(normed.unsqueeze(1))  # [batch, channels, freq', time']
        sequence = conv_out.flatten(1, 2).transpose(1, 2)  # [batch, time', channels * freq']
        gru_out, _ = self.gru(sequence)
        return self.classifier(self.attention(gru_out))
