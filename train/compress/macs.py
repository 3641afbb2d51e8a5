"""Multiply-accumulates (MACs) of one forward pass on one window: the counter behind every MAC figure we report.

Counted per module with forward hooks on a batch of one `[1, frames, n_mels]` window, with these rules (the
first three are thop's):
- Conv1d/Conv2d: output elements x (input channels / groups) x kernel elements (bias adds are not counted);
- Linear: output elements x input features;
- GRU: thop's `count_gru`: per layer, time step and sequence, 3 H (I + H) for the gate products plus 13 H for the
  biases and element-wise gate arithmetic (10 H of them without biases), I input and H hidden units;
- BatchNorm in eval mode: 1 per element (y = a x + b); folded BatchNorms are gone from the model and cost nothing;
- the CRNN's attention pooling: T x H for the softmax-weighted sum (its two Linear layers count as Linears);
- the DS-CNN's mean over time: 1 per averaged element;
- activations, softmax and the log-mel front-end: 0 (the front-end is the same for every model).
Quantization does not change the count: a quantized model has the MACs of the float model it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from train.models.crnn import AttentionPooling
from train.models.dscnn import CausalDSCNN

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def gru_cell_macs(input_size: int, hidden_size: int, bias: bool = True) -> int:
    """thop's `_count_gru_cell`: one step of one GRU layer for one sequence, 3 H (I + H) + 7 H (+ 6 H with biases)."""
    gate = (input_size + hidden_size) * hidden_size + hidden_size  # W_i x + W_h h and their sum, for r and z
    total = 2 * (gate + (2 * hidden_size if bias else 0))
    total += gate + (2 * hidden_size if bias else 0)  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    total += hidden_size  # r * (W_hn h + b_hn)
    total += 3 * hidden_size  # h' = (1 - z) * n + z * h
    return total


def gru_macs(module: nn.GRU, inputs: torch.Tensor) -> int:
    if module.bidirectional:
        raise ValueError("the MAC counter does not handle bidirectional GRUs")
    batch, steps = (inputs.shape[0], inputs.shape[1]) if module.batch_first else (inputs.shape[1], inputs.shape[0])
    per_step = gru_cell_macs(module.input_size, module.hidden_size, module.bias)
    per_step += (module.num_layers - 1) * gru_cell_macs(module.hidden_size, module.hidden_size, module.bias)
    return per_step * steps * batch


@dataclass
class MacCount:
    total: int
    by_module: dict[str, int] = field(default_factory=dict)


@torch.no_grad()
def count_macs(model: nn.Module, frames: int, n_mels: int) -> MacCount:
    """MACs of `model` on one `[1, frames, n_mels]` window (the model is put in eval mode and left there)."""
    model.eval()
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str, module: nn.Module):
        def hook(_module, args, output):
            counts[name] = counts.get(name, 0) + _module_macs(model, module, args, output)

        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook_for(name or "(model)", module)))
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, frames, n_mels, device=device))
    finally:
        for handle in handles:
            handle.remove()
    counts = {name: value for name, value in counts.items() if value}
    return MacCount(total=sum(counts.values()), by_module=counts)


def _module_macs(model: nn.Module, module: nn.Module, args: tuple, output) -> int:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return conv_macs(module, output)
    if isinstance(module, nn.Linear):
        return linear_macs(module, output)
    if isinstance(module, nn.GRU):
        return gru_macs(module, args[0])
    if isinstance(module, _NORMS):
        return output.numel()
    if isinstance(module, AttentionPooling):
        return args[0].numel()  # weights [b, T, 1] times sequence [b, T, H], summed over T
    if isinstance(module, nn.Sequential) and isinstance(model, CausalDSCNN) and module is model.blocks:
        return output.numel()  # the head's mean over time reads every element of the last block's output
    return 0
