"""MACs for the report's rows, all from the project's one counter (`train.compress.macs`).

- A window row (torch, ONNX, TFLite): `count_macs(model, frames_per_clip, n_mels)` of the float torch model in the
  checkpoint the row runs or was converted from (quantization does not change the count).
- The streaming row: MACs of one streaming step (`convert.stream_model.StreamingDSCNN` of that checkpoint, as the
  converter builds it), counted with the counter's own rules, times steps per second of audio.

torch is imported inside the functions: the module imports in any environment.
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.manifest import sha256_of

MS_PER_SECOND = 1000.0


def source_checkpoint(artifacts: Path, manifest: dict, repo: Path) -> tuple[Path | None, str]:
    """The checkpoint the bundle was converted from: the manifest's `source.checkpoint` (as written, then under the
    repository root), then `<artifacts>/train/<architecture>/best.pt`; the first whose sha256 matches the manifest's
    `source.checkpoint_sha256` (any, when the manifest records no hash). (None, why) when none does."""
    source = manifest.get("source", {})
    named, wanted = source.get("checkpoint"), source.get("checkpoint_sha256")
    candidates = []
    if named:
        candidates += [Path(named), repo / named]
    candidates.append(artifacts / "train" / manifest["model"]["architecture"] / "best.pt")
    seen = []
    for path in candidates:
        if path in seen or not path.is_file():
            continue
        seen.append(path)
        if wanted is None or sha256_of(path) == wanted:
            return path, "manifest source.checkpoint" if named and path in candidates[:2] else "artifacts/train"
    if seen:
        tried = ", ".join(map(str, seen))
        return None, f"no checkpoint here matches the manifest's source.checkpoint_sha256 (tried {tried})"
    return None, f"the source checkpoint {named or '(unnamed)'} is not here"


def window_macs(checkpoint: Path) -> dict:
    """MACs of one 1 s window of the checkpoint's float model, by `train.compress.macs.count_macs`."""
    from train.checkpoint import load_checkpoint
    from train.compress.macs import count_macs

    model, info = load_checkpoint(checkpoint)
    spec = info.feature_spec
    count = count_macs(model, spec.frames_per_clip, spec.n_mels)
    return {"macs": int(count.total), "architecture": info.architecture, "model_config": info.model_config,
            "frames": spec.frames_per_clip, "n_mels": spec.n_mels}


def streaming_macs(checkpoint: Path, outputs_per_step: int, phases: int = 1) -> dict:
    """MACs of one streaming step of the checkpoint's DS-CNN and per second of audio, where the runtime runs the
    step at `phases` phases of its stride (each phase a step per step's worth of frames).

    Counted with `train.compress.macs`'s rules on what the step computes: every Conv1d/Linear/BatchNorm on the step's
    frames (buffered context included), the head's moving average over `head_frames` per-frame logits (1 per averaged
    element) and the affine encode/decode of the state buffers (1 per element, as a BatchNorm's y = a x + b)."""
    import torch
    from torch import nn

    from convert.stream_model import StreamingDSCNN
    from train.checkpoint import load_checkpoint
    from train.compress.macs import conv_macs, linear_macs

    model, info = load_checkpoint(checkpoint)
    spec = info.feature_spec
    stream = StreamingDSCNN(model, spec, outputs_per_step).eval()
    layout = stream.layout
    counted = {"layers": 0}

    def layer_hook(module, _args, output):
        if isinstance(module, nn.Conv1d):
            counted["layers"] += conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            counted["layers"] += linear_macs(module, output)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            counted["layers"] += output.numel()

    handles = [m.register_forward_hook(layer_hook) for m in stream.modules()
               if isinstance(m, (nn.Conv1d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))]
    try:
        frames = torch.zeros(1, stream.frames_per_step * layout.n_mels)
        with torch.no_grad():
            probabilities, _ = stream(frames, stream.zero_state())
    finally:
        for handle in handles:
            handle.remove()
    steps = int(probabilities.shape[1])
    head = steps * layout.num_classes * layout.head_frames
    # Each buffered layer reads (buffer frames + new frames) decoded elements and encodes its new frames.
    new_frames = [stream.frames_per_step] + [steps] * (len(layout.buffers) - 1)
    state = sum(buffer.channels * (2 * new + buffer.frames)
                for buffer, new in zip(layout.buffers, new_frames, strict=True) if buffer.frames)
    per_step = counted["layers"] + head + state
    frames_per_second = MS_PER_SECOND / spec.hop_ms
    steps_per_second = frames_per_second / stream.frames_per_step * phases
    return {"macs_per_step": int(per_step), "steps_per_second": steps_per_second, "phases": phases,
            "macs_per_audio_second": per_step * steps_per_second,
            "breakdown_per_step": {"layers": int(counted["layers"]), "head_average": int(head),
                                   "state_encode_decode": int(state)},
            "frames_per_step": stream.frames_per_step, "outputs_per_step": steps}
