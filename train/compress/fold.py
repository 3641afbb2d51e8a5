"""BatchNorm folding: the DS-CNN's deployment form, a graph of convolutions with biases and nothing else.

In eval mode a BatchNorm is the per-channel affine map y = a x + b (a = gamma / sqrt(var + eps),
b = beta - mean a). It folds exactly into the convolution next to it:
- after a convolution W (the stem's and each block's norms): W' = a W (per output channel), bias' = a bias + b;
- before the stem (the input norm over mel bins): W'[o, m, :] = W[o, m, :] a[m], bias'[o] = sum_{m,j} W[o, m, j] b[m]
  (exact because the stem does not pad, so every input it reads went through the norm); with a stem filter (one
  channel per mel bin) into the filter instead: W'[m, 0, :] = W[m, 0, :] a[m], bias'[m] = sum_j W[m, 0, j] b[m];
  with a low-rank stem into its projection, which has no norm of its own.
The folded model computes the same function (checked to float rounding by `fold_dscnn`) and is built with
`CausalDSCNN(folded=True)`, so the MAC counter no longer counts any normalisation and the int8 TFLite has no
separate MUL/ADD for the input norm.
"""

from __future__ import annotations

import torch
from torch import nn

from train.compress.separable import dscnn_config
from train.models.dscnn import CausalDSCNN

FOLD_TOLERANCE = 1e-4  # largest allowed logit difference folded vs unfolded on random windows


def norm_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


def fold_after(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = norm_affine(norm)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    return conv.weight * scale[:, None, None], bias * scale + shift


def fold_before(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """`norm` on the input of `conv` (no padding) folded into its weight and a bias: a full convolution sums over
    every input channel; a depthwise one (one group per input channel) reads only its own."""
    scale, shift = norm_affine(norm)
    per_input = (slice(None), None, None) if conv.groups == conv.in_channels > 1 else (None, slice(None), None)
    return conv.weight * scale[per_input], (conv.weight * shift[per_input]).sum(dim=(1, 2))


@torch.no_grad()
def fold_dscnn(model: CausalDSCNN, frames: int, check_windows: int = 8) -> tuple[CausalDSCNN, dict]:
    """The folded twin of an (eval-mode) DS-CNN and its config; raises if the two disagree."""
    model = model.cpu().eval()
    config = {**dscnn_config(model), "folded": True}
    if dscnn_config(model)["folded"]:
        raise ValueError("the model is folded already")
    folded = CausalDSCNN(model.n_mels, model.classifier.out_features, **config).eval()
    # The front's convolutions in order, each with the norm after it (the projection has none). The input norm
    # folds into the first of them, the one that reads the features.
    front = [(model.stem[0], model.stem[1], folded.stem[0])]
    if model.project_conv is not None:
        front.insert(0, (model.stem_project, None, folded.stem_project))
    if model.filter_conv is not None:
        front.insert(0, (model.stem_filter[0], model.stem_filter[1], folded.stem_filter[0]))
    for index, (conv, norm, target) in enumerate(front):
        if index == 0:
            conv = _with(conv, *fold_before(conv, model.input_norm))
        _assign(target, *(fold_after(conv, norm) if norm is not None else _weights(conv)))
    for source, target in zip(model.blocks, folded.blocks, strict=True):
        _assign(target.depthwise, *fold_after(source.depthwise, source.depthwise_norm))
        _assign(target.pointwise, *fold_after(source.pointwise, source.pointwise_norm))
    folded.classifier.load_state_dict(model.classifier.state_dict())
    probe = torch.randn(check_windows, frames, model.n_mels) * 3.0
    difference = (folded(probe) - model(probe)).abs().max().item()
    if difference > FOLD_TOLERANCE:
        raise RuntimeError(f"folded model differs from the original by {difference:.3g} (> {FOLD_TOLERANCE})")
    return folded, config


def _with(conv: nn.Conv1d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv1d:
    """A stand-in conv carrying `weight` and `bias` (what `fold_after` reads)."""
    stand_in = nn.Conv1d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, groups=conv.groups, bias=True
    )
    stand_in.weight, stand_in.bias = nn.Parameter(weight), nn.Parameter(bias)
    return stand_in


def _weights(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
    return conv.weight, conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)


def _assign(conv: nn.Conv1d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
