"""Quantization: post-training full int8 for the deployed student, dynamic int8 for the teacher alone.

- The deployed student (BatchNorms folded first, `fold.py`) is quantized post-training by the conversion step,
  `python -m convert`: onnx2tf writes a full-integer TFLite (int8 weights per output channel, int8 activations
  with ranges calibrated on training windows, int8 input and output) and refuses to ship it unless it makes the
  float model's decision on at least 97% of the test windows. `convert_student` calls that pipeline's Python API.
- Quantization alone on the CRNN teacher (the ablation) is PyTorch dynamic quantization, as KWS_SPEED_UP did:
  int8 weights for the GRU and Linear layers, activations quantized on the fly, the conv left in float. (The
  TFLite int8 CRNN needs its GRU unrolled and comes out larger than the float model, so it is no use here.)
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from convert.pipeline import ConversionOptions, run_conversion


def dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with int8 GRU and Linear weights (CPU, eval mode)."""
    with warnings.catch_warnings():  # torch 2.9 announces the move of eager quantization to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.GRU, nn.Linear},
                                                      torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: the size measure of every torch row in the report."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def convert_student(checkpoint: Path, out: Path, data: Path | None = None, calibration_windows: int = 300, say=print):
    """Checkpoint -> edge bundle with the int8 TFLite (the convert pipeline); returns its manifest."""
    options = ConversionOptions(checkpoint=checkpoint, out=out, data=data, calibration_windows=calibration_windows)
    return run_conversion(options, say=say)
