"""The causal DS-CNN as a streaming step with explicit state: new feature frames + state in, logits + state out.

The window model sees `frames_per_clip` frames and averages its last layer over time. The step sees only the new
frames: every temporal convolution keeps its last `context` input frames in the state, the strided stem consumes
`stride` frames per output, and the head keeps the last layer's per-frame logits (the classifier is affine, so
the mean of per-frame logits is the logits of the mean) to average them over the window's length. Because no
layer pads in time and every convolution is causal, step outputs equal the window model's on the matching window.
The step ends in the window's class logits, not a softmax, for the reason the window model does
(`edge_runtime.interpreter.OUTPUT_LOGITS`): an int8 softmax has steps of 1/256, and a detector that works at a
fraction of a false accept per hour decides among probabilities above 0.99, where keywords and the worst
non-keywords would tie. The runtime applies the softmax in float.

The state is one flat tensor `[1, N]` (measured: many separate state tensors came out of onnx2tf scrambled and
renamed; two flat tensors did not). Each layer's buffer is a channel-major `[channels, frames]` block of it.

In int8 one tensor has one scale, and the buffers hold very different ranges (per-frame logits about +-20,
ReLU activations 0..9, normalised features +-2): with one scale the small ones got a few dozen levels and the
int8 stream drifted from the window model. So each buffer is stored affinely encoded, its calibration range
mapped onto [-STATE_RANGE, STATE_RANGE] (`encode_state`), and decoded when read: every buffer gets all 256 levels.

The layers are read from the module (kernel sizes, dilations, strides of its Conv1d layers), never assumed, so a
compressed configuration (other channels, dilations, stride, folded BatchNorms) streams as long as it stays a
`CausalDSCNN`: an input transform that works per frame, a stem that starts with a strided Conv1d, blocks whose
Conv1d layers have stride 1 and no padding, and a Linear classifier over the time-averaged last layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edge_runtime.features import FeatureSpec
from train.models.dscnn import CausalDSCNN

FRAMES_INPUT, STATE_INPUT = "frames", "state"
STATE_RANGE = 1.0  # every buffer's calibration range is stored as -STATE_RANGE..STATE_RANGE
MIN_BUFFER_RANGE = 1e-6  # a buffer that never varied keeps the identity encoding
# The output's role keeps the name it had when the step ended in a softmax; the manifest's `streaming.output` says
# what it holds (class logits now).
PROBABILITIES_OUTPUT, STATE_OUTPUT = "probabilities", "state_out"


class NotStreamable(ValueError):
    """The model is not a causal, unpadded DS-CNN this exporter can turn into a streaming step."""


@dataclass(frozen=True)
class Buffer:
    """One layer's slice of the flat state: its last `frames` inputs of `channels` channels, channel-major."""

    name: str
    channels: int
    frames: int

    @property
    def size(self) -> int:
        return self.channels * self.frames


@dataclass(frozen=True)
class StreamLayout:
    """What a streaming step of a given model needs, derived from the model's layers and the feature spec."""

    n_mels: int
    num_classes: int
    stride: int  # input frames per stem output: outputs come every `stride` feature frames
    stem_extent: int  # input frames one stem output reads
    window_frames: int  # frames_per_clip: the window model's input length
    head_frames: int  # last-layer frames the window model averages
    buffers: tuple[Buffer, ...]

    @property
    def state_size(self) -> int:
        return sum(buffer.size for buffer in self.buffers)

    @property
    def used_window_frames(self) -> int:
        """Window frames the window model actually reads: a strided stem may leave the last few unread."""
        stem_outputs = (self.window_frames - self.stem_extent) // self.stride + 1
        return (stem_outputs - 1) * self.stride + self.stem_extent

    def prime_steps(self, frames_per_step: int) -> int:
        """Steps after which the state no longer depends on where it started (it has seen one whole window)."""
        return math.ceil(self.window_frames / frames_per_step) + 1

    @classmethod
    def of(cls, model: nn.Module, spec: FeatureSpec) -> StreamLayout:
        if not isinstance(model, CausalDSCNN):
            raise NotStreamable(f"only the causal DS-CNN streams; this model is a {type(model).__name__}")
        stem_conv = _first_conv(model.front, "stem")
        if stem_conv.padding != (0,):
            raise NotStreamable(f"the stem convolution pads time by {stem_conv.padding}; streaming needs no padding")
        stride, stem_extent = stem_conv.stride[0], _extent(stem_conv)
        buffers = [Buffer("stem", stem_conv.in_channels, max(stem_extent - stride, 0))]
        for index, block in enumerate(model.blocks):
            convs = [m for m in block.modules() if isinstance(m, nn.Conv1d)]
            if not convs or any(c.stride != (1,) or c.padding != (0,) for c in convs):
                raise NotStreamable(f"block {index} must hold stride-1, unpadded Conv1d layers")
            context = sum(_extent(c) - 1 for c in convs)
            buffers.append(Buffer(f"block{index}", convs[0].in_channels, context))
        num_classes = model.classifier.out_features
        with torch.no_grad():
            probe = torch.zeros(1, spec.n_mels, spec.frames_per_clip)
            head_frames = int(model.blocks(model.front(model.input_norm(probe))).shape[-1])
        buffers.append(Buffer("head", num_classes, head_frames - 1))
        return cls(
            n_mels=spec.n_mels,
            num_classes=num_classes,
            stride=stride,
            stem_extent=stem_extent,
            window_frames=spec.frames_per_clip,
            head_frames=head_frames,
            buffers=tuple(buffers),
        )


def _first_conv(module: nn.Module, where: str) -> nn.Conv1d:
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d):
            return layer
    raise NotStreamable(f"the {where} holds no Conv1d")


def _extent(conv: nn.Conv1d) -> int:
    """Input frames one output of `conv` reads."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0] + 1


class StreamingDSCNN(nn.Module):
    """`forward(frames [1, steps * stride * n_mels], state [1, N])` -> `(logits [1, steps, classes],
    state_out [1, N])`: `steps` outputs per call, each the window model's logits on the window that ends with that
    output's last stem frame."""

    def __init__(self, model: CausalDSCNN, spec: FeatureSpec, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps per call must be >= 1, got {steps}")
        self.layout = StreamLayout.of(model, spec)
        self.spec = spec
        self.steps = steps
        self.input_norm, self.stem, self.blocks, self.classifier = (
            model.input_norm,
            model.front,
            model.blocks,
            model.classifier,
        )
        # Per buffer: stored = value * scale + offset (identity until `encode_state`).
        self.encoding: list[tuple[float, float]] = [(1.0, 0.0)] * len(self.layout.buffers)

    def encode_state(self, ranges: list[tuple[float, float]]) -> None:
        """Store each buffer's (low, high) range as -STATE_RANGE..STATE_RANGE."""
        self.encoding = []
        for low, high in ranges:
            if high - low < MIN_BUFFER_RANGE:
                self.encoding.append((1.0, 0.0))
                continue
            scale = 2 * STATE_RANGE / (high - low)
            self.encoding.append((scale, -STATE_RANGE - low * scale))

    @property
    def frames_per_step(self) -> int:
        return self.steps * self.layout.stride

    def zero_state(self) -> torch.Tensor:
        return torch.zeros(1, self.layout.state_size)

    def forward(self, frames: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layout = self.layout
        buffers = iter(zip(layout.buffers, self.encoding, strict=True))
        kept: list[torch.Tensor] = []
        offset = 0

        def extended(new: torch.Tensor) -> torch.Tensor:
            """[1, C, T] new frames behind this layer's buffered frames; the buffer's new content goes to `kept`."""
            nonlocal offset
            buffer, (scale, shift) = next(buffers)
            if buffer.frames == 0:
                return new
            old = state[:, offset : offset + buffer.size].reshape(1, buffer.channels, buffer.frames)
            offset += buffer.size
            if (scale, shift) == (1.0, 0.0):
                joined = torch.cat([old, new], dim=2)
                kept.append(joined[:, :, -buffer.frames :].reshape(1, buffer.size))
                return joined
            # Joined and kept in the encoded space (so in int8 the concatenation and the kept slice share the state's
            # scale), decoded only for the layer that reads it.
            joined = torch.cat([old, new * scale + shift], dim=2)
            kept.append(joined[:, :, -buffer.frames :].reshape(1, buffer.size))
            return joined * (1.0 / scale) - shift / scale

        x = frames.reshape(1, self.frames_per_step, layout.n_mels).transpose(1, 2)
        x = self.stem(extended(self.input_norm(x)))
        for block in self.blocks:
            x = block(extended(x))
        logits = self.classifier(x.transpose(1, 2)).transpose(1, 2)  # [1, classes, steps]
        window_logits = nn.functional.avg_pool1d(extended(logits), layout.head_frames, stride=1)
        return window_logits.transpose(1, 2), torch.cat(kept, dim=1) if kept else state[:, :0]


def window_start_of_output(layout: StreamLayout, output_index: int) -> int:
    """First frame of the window whose window-model output equals stream output `output_index` (0-based over all
    outputs; frame 0 is the first frame fed after priming). Negative starts reach into the priming frames."""
    return last_frame_of_output(layout, output_index) + 1 - layout.used_window_frames


def last_frame_of_output(layout: StreamLayout, output_index: int) -> int:
    """Newest feature frame stream output `output_index` has read (frame 0 is the first frame fed after priming)."""
    stem_buffer = layout.buffers[0].frames
    return output_index * layout.stride - stem_buffer + layout.stem_extent - 1
