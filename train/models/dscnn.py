"""A compact student built for streaming: depthwise-separable 1-D convolutions over time, mel bins as channels.

Causal and unpadded in time: each output frame depends only on past input frames, and no layer pads the time
axis, so a streaming step that buffers each layer's last (kernel - 1) * dilation inputs computes exactly what the
whole-window model computes. The head averages the last layer's frames, which a stream keeps as a running sum.

Four options serve compression (`train.compress`); their defaults build the original model:
- `block_channels`: each block's output channels (structured pruning leaves blocks of different widths);
- `stem_filter`: taps of a per-mel-bin temporal filter (a depthwise convolution) that takes the stem's stride, so
  a stem that hops several frames still reads every frame, for `stem_filter` MACs per mel bin and output;
  `stem_average` fixes its taps to a moving average (an anti-aliasing filter before the stride) instead of
  learning them;
- `stem_rank`: a low-rank stem: a linear projection of the mel bins onto `stem_rank` components (no norm, no
  activation: a learned counterpart of the cepstral transform that turns log-mel into MFCCs) before the stem, which
  then reads the components; n_mels x C MACs per stem output become (n_mels + C) x rank. Neighbouring mel bins
  are strongly correlated, so few components keep most of what the stem reads. Measured (docs/compression.md):
  with rank 10 and stride 4 the budget student gained a point of test-window accuracy but missed far more keywords
  on long audio, so the default stem stays full;
- `folded`: the deployment form, with every BatchNorm folded into the convolution next to it (the input norm
  into the stem or the stem filter, the others into the convolution before them), so the graph is convolutions
  with biases only.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int, folded: bool) -> nn.Module:
    return nn.Identity() if folded else nn.BatchNorm1d(channels)


class SeparableBlock(nn.Module):
    """Depthwise temporal conv (dilated, no padding) then pointwise conv, each followed by BN + ReLU."""

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, out_channels: int | None = None, folded: bool = False
    ) -> None:
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, groups=channels, bias=folded)
        self.depthwise_norm = _norm(channels, folded)
        self.pointwise = nn.Conv1d(channels, out_channels, 1, bias=folded)
        self.pointwise_norm = _norm(out_channels, folded)

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
        block_channels: tuple[int, ...] | None = None,
        folded: bool = False,
        stem_filter: int = 0,
        stem_average: bool = False,
        stem_rank: int = 0,
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        block_channels = tuple(block_channels) if block_channels is not None else (channels,) * len(dilations)
        if len(block_channels) != len(dilations):
            raise ValueError(f"block_channels has {len(block_channels)} entries, dilations {len(dilations)}")
        self.input_norm = _norm(n_mels, folded)
        # The strided stem lowers the frame rate: the rest of the network runs every `stem_stride` frames. With a
        # stem filter, the filter hops and the stem convolution reads each of its outputs.
        if stem_filter < 0 or (stem_filter and stem_kernel != 1):
            raise ValueError(
                f"stem_filter must be 0 (none) or a number of taps with stem_kernel 1 (a depthwise-separable stem: "
                f"the filter, then a pointwise stem), got stem_filter {stem_filter} with stem_kernel {stem_kernel}"
            )
        if stem_average and not stem_filter:
            raise ValueError("stem_average fixes the stem filter's taps to a moving average; it needs stem_filter > 0")
        if stem_rank < 0 or (stem_rank and stem_kernel != 1):
            raise ValueError(
                f"stem_rank must be 0 (a full stem) or a number of mel components with stem_kernel 1, got stem_rank "
                f"{stem_rank} with stem_kernel {stem_kernel}"
            )
        self.stem_average = stem_average
        self.stem_stride = stem_stride  # input frames per output frame
        self.stem_filter = (
            nn.Sequential(
                nn.Conv1d(n_mels, n_mels, stem_filter, stride=stem_stride, groups=n_mels, bias=folded),
                _norm(n_mels, folded),
            )
            if stem_filter
            else nn.Identity()
        )
        if stem_average:  # an average over the frames the stride skips: nothing to learn, nothing to overfit
            with torch.no_grad():
                self.stem_filter[0].weight.fill_(1.0 / stem_filter)
            self.stem_filter[0].weight.requires_grad_(False)
        # The first convolution that reads the (filtered) features takes the stride: the projection if there is one.
        self.stem_project = (
            nn.Conv1d(n_mels, stem_rank, 1, stride=1 if stem_filter else stem_stride, bias=folded)
            if stem_rank
            else nn.Identity()
        )
        self.stem = nn.Sequential(
            nn.Conv1d(
                stem_rank or n_mels, channels, stem_kernel, stride=1 if stem_filter or stem_rank else stem_stride,
                bias=folded,
            ),
            _norm(channels, folded),
            nn.ReLU(),
        )
        widths = (channels, *block_channels)
        self.blocks = nn.Sequential(
            *(
                SeparableBlock(widths[i], kernel_size, d, out_channels=widths[i + 1], folded=folded)
                for i, d in enumerate(dilations)
            )
        )
        self.classifier = nn.Linear(widths[-1], num_classes)

    @property
    def filter_conv(self) -> nn.Conv1d | None:
        """The stem filter's convolution, or None without a stem filter."""
        return self.stem_filter[0] if isinstance(self.stem_filter, nn.Sequential) else None

    @property
    def project_conv(self) -> nn.Conv1d | None:
        """The low-rank stem's projection onto mel components, or None with a full stem."""
        return self.stem_project if isinstance(self.stem_project, nn.Conv1d) else None

    @property
    def front(self) -> nn.Sequential:
        """Stem filter and projection (if any) and stem: the layers from normalised features to the first block's
        input."""
        return nn.Sequential(self.stem_filter, self.stem_project, self.stem)

    def frame_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_mels] -> the last block's output frames, [batch, channels, frames'] (one per stride)."""
        return self.blocks(self.front(self.input_norm(features.transpose(1, 2))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.frame_outputs(features).mean(dim=2))

    def sliding_logits(self, features: torch.Tensor, window_frames: int) -> torch.Tensor:
        """Logits of every `window_frames` window of a long [1, frames, n_mels] input that starts on a multiple of
        the stem stride, [windows, num_classes], in one pass: as the streaming model scores a stream. Exact,
        because no layer pads time: the window starting at frame i * stride owns output frames i..i + n - 1."""
        if features.shape[1] < window_frames:
            return features.new_zeros((0, self.classifier.out_features))
        per_window = self.frame_outputs(features[:1, :window_frames]).shape[2]
        frames = self.frame_outputs(features[:1])
        means = nn.functional.avg_pool1d(frames, per_window, stride=1)
        return self.classifier(means[0].transpose(0, 1))
