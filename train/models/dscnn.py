"""A compact student built for streaming: depthwise-separable 1-D convolutions over time, mel bins as channels.

Causal and unpadded in time: each output frame depends only on past input frames, and no layer pads the time
axis, so a streaming step that buffers each layer's last (kernel - 1) * dilation inputs computes exactly what the
whole-window model computes. The head averages the last layer's frames, which a stream keeps as a running sum.
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableBlock(nn.Module):
    """Depthwise temporal conv (dilated, no padding) then pointwise conv, each followed by BN + ReLU."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, groups=channels, bias=False)
        self.depthwise_norm = nn.BatchNorm1d(channels)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)
        self.pointwise_norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.depthwise_norm(self.depthwise(x)))
        return torch.relu(self.pointwise_norm(self.pointwise(x)))


class CausalDSCNN(nn.Module):
    """[batch, frames, n_mels] log-mel -> [batch, num_classes] logits."""

    def __init__(
        self,
        n_mels: int,
        num_classes: int,
        channels: int = 64,
        stem_kernel: int = 3,
        stem_stride: int = 2,
        kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
    ) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_mels)
        # The strided stem halves the frame rate: the rest of the network runs every 20 ms instead of every 10 ms.
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, channels, stem_kernel, stride=stem_stride, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(SeparableBlock(channels, kernel_size, d) for d in dilations))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.input_norm(features.transpose(1, 2))))
        return self.classifier(x.mean(dim=2))
