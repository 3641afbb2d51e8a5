"""Structured pruning: whole channels (and GRU hidden units) are removed, with fine-tuning after each step.

Importance is first-order Taylor on parameter groups (Molchanov et al., CVPR 2019): for a unit whose parameters
are the group W, I = sum over batches of (sum_{w in W} w * dL/dw)^2, the estimated change of the training loss when
the unit is switched off. Groups:
- DS-CNN stem or block output channel: the BatchNorm scale and shift of that channel (the convolution before a
  BatchNorm is scale-invariant, so its own weights would always give 0);
- CRNN conv channel: its filter and bias;
- CRNN GRU hidden unit of a layer: its rows of the input and hidden weights and biases, all three gates;
- CRNN attention unit: its row of the first energy layer and its weight in the second.
Each step keeps, per site, the most important channels up to that step's width; widths shrink geometrically from
the start to the target over the steps, so the network never loses too much at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from train.compress.bank import Bank
from train.compress.separable import dscnn_config, site_widths, with_widths
from train.models.crnn import CRNN
from train.models.dscnn import CausalDSCNN

IMPORTANCE_BATCHES = 20
IMPORTANCE_BATCH_SIZE = 128

Reducer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Site:
    """One prunable dimension: its parameters and, for each, how to sum w * dL/dw per unit."""

    name: str
    units: int
    parts: list[tuple[nn.Parameter, Reducer]]


def width_schedule(start: list[int], target: list[int], steps: int) -> list[list[int]]:
    """Widths after each of `steps` steps, shrinking geometrically from `start` to `target` (ends at `target`)."""
    if any(t > s for s, t in zip(start, target, strict=True)):
        raise ValueError(f"pruning cannot grow a network: start widths {start}, target {target}")
    return [
        [max(t, round(s * (t / s) ** ((step + 1) / steps))) for s, t in zip(start, target, strict=True)]
        for step in range(steps)
    ]


def taylor_importance(model: nn.Module, sites: list[Site], bank: Bank, device: torch.device, seed: int = 0):
    """Per-site arrays of unit importance, gathered on a few batches of the first bank view (cross-entropy on the
    labels, model in eval mode)."""
    generator = torch.Generator().manual_seed(seed)
    view = bank.views[0]
    order = torch.randperm(len(view), generator=generator)[: IMPORTANCE_BATCHES * IMPORTANCE_BATCH_SIZE]
    totals = [torch.zeros(site.units, dtype=torch.float64) for site in sites]
    model.eval()  # gradients in eval mode: BatchNorm statistics stay as they are
    for start in range(0, len(order), IMPORTANCE_BATCH_SIZE):
        chosen = order[start : start + IMPORTANCE_BATCH_SIZE]
        model.zero_grad(set_to_none=True)
        # cuDNN's GRU refuses a backward pass in eval mode: the CRNN's gradients come from torch's own GRU.
        with torch.backends.cudnn.flags(enabled=False):
            logits = model(view.features[chosen].to(device).float())
            nn.functional.cross_entropy(logits, view.labels[chosen].to(device)).backward()
        with torch.no_grad():
            for total, site in zip(totals, sites, strict=True):
                change = sum(reduce(param * param.grad) for param, reduce in site.parts)
                total += change.double().cpu() ** 2
    model.zero_grad(set_to_none=True)
    return [total.numpy() for total in totals]


def keep_most_important(importance: np.ndarray, count: int) -> torch.Tensor:
    """Indices of the `count` most important units, in their original order."""
    return torch.from_numpy(np.sort(np.argsort(-importance, kind="stable")[:count]))


# ---- the DS-CNN student ----


def _per_channel(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(1).sum(1) if tensor.dim() > 1 else tensor


def dscnn_sites(model: CausalDSCNN) -> list[Site]:
    norms = [model.stem[1], *(block.pointwise_norm for block in model.blocks)]
    if not all(isinstance(norm, nn.BatchNorm1d) for norm in norms):
        raise ValueError("prune the DS-CNN before folding its BatchNorms")
    names = ["stem", *(f"blocks.{i}" for i in range(len(model.blocks)))]
    return [
        Site(name, norm.num_features, [(norm.weight, _per_channel), (norm.bias, _per_channel)])
        for name, norm in zip(names, norms, strict=True)
    ]


def prune_dscnn(model: CausalDSCNN, keep: list[torch.Tensor]) -> tuple[CausalDSCNN, dict]:
    """A new, narrower DS-CNN holding the kept channels of each site (stem output, then each block output)."""
    config = dscnn_config(model)
    new_config = with_widths(config, [len(k) for k in keep])
    pruned = CausalDSCNN(model.n_mels, model.classifier.out_features, **new_config)
    source, target = model.state_dict(), pruned.state_dict()
    target.update({k: v for k, v in source.items() if k.startswith(("input_norm.", "stem_filter.", "stem_project."))})
    _copy_conv_norm(source, target, "stem.0", "stem.1", rows=keep[0])
    for index in range(len(model.blocks)):
        prefix, inputs, outputs = f"blocks.{index}.", keep[index], keep[index + 1]
        _copy_conv_norm(source, target, prefix + "depthwise", prefix + "depthwise_norm", rows=inputs)
        _copy_conv_norm(source, target, prefix + "pointwise", prefix + "pointwise_norm", rows=outputs, cols=inputs)
    target["classifier.weight"] = source["classifier.weight"][:, keep[-1]]
    target["classifier.bias"] = source["classifier.bias"]
    pruned.load_state_dict(target)
    return pruned, new_config


def _copy_conv_norm(source, target, conv: str, norm: str, rows: torch.Tensor, cols: torch.Tensor | None = None):
    weight = source[f"{conv}.weight"][rows]
    target[f"{conv}.weight"] = weight[:, cols] if cols is not None else weight
    for name in ("weight", "bias", "running_mean", "running_var"):
        target[f"{norm}.{name}"] = source[f"{norm}.{name}"][rows]
    target[f"{norm}.num_batches_tracked"] = source[f"{norm}.num_batches_tracked"]


# ---- the CRNN teacher (pruning alone, for the ablation) ----


def _gate_units(hidden: int) -> Reducer:
    """[3H, ...] gate-stacked rows (r, z, n) -> [H]: each unit's three rows summed."""
    return lambda tensor: _per_channel(tensor).view(3, hidden).sum(0)


def crnn_sites(model: CRNN) -> list[Site]:
    conv = model.conv[0]
    gru, hidden = model.gru, model.gru.hidden_size
    sites = [Site("conv", conv.out_channels, [(conv.weight, _per_channel), (conv.bias, _per_channel)])]
    for layer in range(gru.num_layers):
        parts = [
            (getattr(gru, f"{kind}_l{layer}"), _gate_units(hidden))
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        sites.append(Site(f"gru.{layer}", hidden, parts))
    energy, score = model.attention.energy[0], model.attention.energy[2]
    parts = [(energy.weight, _per_channel), (energy.bias, _per_channel), (score.weight, lambda t: t[0])]
    sites.append(Site("attention", energy.out_features, parts))
    return sites


def crnn_config(model: CRNN) -> dict:
    conv = model.conv[0]
    return {
        "conv_channels": conv.out_channels,
        "kernel_size": list(conv.kernel_size),
        "stride": list(conv.stride),
        "hidden_size": model.gru.hidden_size,
        "gru_layers": model.gru.num_layers,
    }


def prune_crnn(model: CRNN, conv_keep: torch.Tensor, gru_keep: list[torch.Tensor], attention_keep: torch.Tensor):
    """A new CRNN with the kept conv channels, GRU units per layer and attention units (one hidden size for all)."""
    hidden = len(gru_keep[0])
    if any(len(k) != hidden for k in [*gru_keep, attention_keep]):
        raise ValueError("the CRNN has one hidden size: keep as many units in every GRU layer and the attention")
    config = {**crnn_config(model), "conv_channels": len(conv_keep), "hidden_size": hidden}
    n_mels = model.input_norm.num_features
    pruned = CRNN(n_mels, model.classifier.out_features, **config)
    source, target = model.state_dict(), pruned.state_dict()
    target.update({k: v for k, v in source.items() if k.startswith("input_norm.")})
    target["conv.0.weight"] = source["conv.0.weight"][conv_keep]
    target["conv.0.bias"] = source["conv.0.bias"][conv_keep]
    freq = model.gru.input_size // model.conv[0].out_channels  # the GRU reads [channels * freq] per step
    inputs = (conv_keep[:, None] * freq + torch.arange(freq)[None, :]).flatten()
    old_hidden = model.gru.hidden_size
    for layer, units in enumerate(gru_keep):
        rows = torch.cat([gate * old_hidden + units for gate in range(3)])
        target[f"gru.weight_ih_l{layer}"] = source[f"gru.weight_ih_l{layer}"][rows][:, inputs]
        target[f"gru.weight_hh_l{layer}"] = source[f"gru.weight_hh_l{layer}"][rows][:, units]
        for kind in ("bias_ih", "bias_hh"):
            target[f"gru.{kind}_l{layer}"] = source[f"gru.{kind}_l{layer}"][rows]
        inputs = units
    last = gru_keep[-1]
    target["attention.energy.0.weight"] = source["attention.energy.0.weight"][attention_keep][:, last]
    target["attention.energy.0.bias"] = source["attention.energy.0.bias"][attention_keep]
    target["attention.energy.2.weight"] = source["attention.energy.2.weight"][:, attention_keep]
    target["attention.energy.2.bias"] = source["attention.energy.2.bias"]
    target["classifier.weight"] = source["classifier.weight"][:, last]
    target["classifier.bias"] = source["classifier.bias"]
    pruned.load_state_dict(target)
    return pruned, config


def site_widths_of(model: nn.Module) -> list[int]:
    if isinstance(model, CausalDSCNN):
        return site_widths(dscnn_config(model))
    return [site.units for site in crnn_sites(model)]


def prune_step(model: nn.Module, widths: list[int], bank: Bank, device: torch.device) -> tuple[nn.Module, dict]:
    """Remove the least important units so each site has `widths` units (no fine-tuning here)."""
    sites = dscnn_sites(model) if isinstance(model, CausalDSCNN) else crnn_sites(model)
    if len(widths) != len(sites):
        raise ValueError(f"{len(widths)} widths for {len(sites)} prunable sites ({[s.name for s in sites]})")
    importance = taylor_importance(model.to(device), sites, bank, device)
    keep = [keep_most_important(imp, width) for imp, width in zip(importance, widths, strict=True)]
    if isinstance(model, CausalDSCNN):
        return prune_dscnn(model.cpu(), keep)
    return prune_crnn(model.cpu(), keep[0], keep[1:-1], keep[-1])
