"""The manifest's `streaming` section: the streaming model file and its contract, checked before anything runs.

Written by `convert/streaming.py`. The section names the int8 step (`file`, `sha256`, `bytes`), its four tensors
(`frames` [1, frames_per_step * n_mels], `state` [1, state_size] -> `probabilities` [1, outputs_per_step,
classes], `state_out` [1, state_size]) with their quantization, what the `probabilities` tensor holds (`output`:
class logits since the step stopped ending in a softmax; a section without the field is from before, and its
step's output is read as probabilities), how outputs line up with feature frames (`stride_frames`,
`output_frame_offset`), how many steps of silence prime the state (`prime_steps`), the smoothing window of the
detector, at how many phases of the model's stride the runtime runs the step (`phases`; a section without it is
from before, and runs at one), and the float32 twin kept for checking. A `verifier` section beside it names the
second stage (`verifier.py`), loaded with the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import KwsError
from .features import FeatureSpec
from .interpreter import OUTPUT_MEANINGS, OUTPUT_PROBABILITIES, TensorInfo
from .manifest import (
    MANIFEST_NAME,
    DetectionSettings,
    _declared_tensor,
    _Fields,
    read_bundle_header,
    sha256_of,
)
from .verifier import VerifierEntry, verifier_entry

SECTION = "streaming"
TENSOR_ROLES = ("frames", "state", "probabilities", "state_out")
FLOAT32_KEY = "float32"


@dataclass(frozen=True)
class StreamingEntry:
    """A checked streaming model description (the file's sha256 matched; the interpreter is checked on load)."""

    path: Path
    spec: FeatureSpec
    precision: str
    frames_per_step: int
    outputs_per_step: int
    stride_frames: int
    output_frame_offset: int
    state_size: int
    prime_steps: int
    smoothing_seconds: float
    tensors: dict[str, TensorInfo]
    output_meaning: str = OUTPUT_PROBABILITIES  # what the `probabilities` role holds: logits or probabilities
    phases: int = 1  # copies of the step the runtime runs, each `stride_frames / phases` frames behind the last

    @property
    def phase_lags(self) -> list[int]:
        """Frames each phase's copy of the step runs behind the first: spread evenly over one stride."""
        return [round(k * self.stride_frames / self.phases) for k in range(self.phases)]

    @property
    def output_period_s(self) -> float:
        """Seconds between successive keyword scores: one stride, shared among the phases."""
        return self.stride_frames * self.spec.hop_ms / 1000.0 / self.phases


@dataclass(frozen=True)
class StreamBundle:
    """What `run` and `bench` need from a bundle: labels, detection settings and the streaming model."""

    manifest_path: Path
    keyword: str
    labels: list[str]
    keyword_index: int
    spec: FeatureSpec
    detection: DetectionSettings
    stream: StreamingEntry
    manifest: dict
    verifier: VerifierEntry | None = None  # the second stage (`verifier.py`), when the bundle has one


def load_stream_bundle(
    folder_or_manifest: str | Path, float32: bool = False, with_verifier: bool = True
) -> StreamBundle:
    """Read and check a bundle's streaming model (`float32=True`: its float32 twin, for checks); with
    `with_verifier=False` its verifier, if any, is neither loaded nor used (the streaming model alone)."""
    header = read_bundle_header(folder_or_manifest)
    if SECTION not in header.manifest:
        architecture = header.manifest.get("model", {}).get("architecture", "unknown")
        raise KwsError(
            f"manifest {header.path} has no streaming model (architecture '{architecture}'); only a dscnn streams: "
            "convert a dscnn checkpoint with `python -m convert`"
        )
    section = header.fields.get(header.manifest, SECTION, dict)
    entry = _streaming_entry(section, header.path, header.spec, len(header.labels), header.fields, float32)
    verifier = verifier_entry(header.manifest, header.path, header.spec, header.keyword) if with_verifier else None
    return StreamBundle(*header.shared(), entry, header.manifest, verifier)


def entry_from_section(section: dict, folder: Path, spec: FeatureSpec, float32: bool = False) -> StreamingEntry:
    """Check a `streaming` section whose files lie in `folder` (the conversion checks its files this way before
    the manifest exists)."""
    path = Path(folder) / MANIFEST_NAME
    fields = _Fields(path)
    tensors = fields.get(section, "tensors", dict, SECTION)
    num_classes = fields.get(fields.get(tensors, "probabilities", dict, SECTION), "shape", list, SECTION)[-1]
    return _streaming_entry(section, path, spec, num_classes, fields, float32)


def _streaming_entry(
    section: dict, path: Path, spec: FeatureSpec, num_classes: int, fields: _Fields, float32: bool
) -> StreamingEntry:
    where = SECTION
    counts = {
        key: fields.get(section, key, int, where)
        for key in ("frames_per_step", "outputs_per_step", "stride_frames", "state_size", "prime_steps")
    }
    offset = fields.get(section, "output_frame_offset", int, where)
    smoothing = float(fields.get(section, "smoothing_seconds", (int, float), where))
    problems = [f"{where}.{key} must be >= 1, found {value}" for key, value in counts.items() if value < 1]
    if counts["frames_per_step"] != counts["outputs_per_step"] * counts["stride_frames"]:
        problems.append(f"{where}: frames_per_step must equal outputs_per_step * stride_frames, found {counts}")
    if not smoothing >= 0:
        problems.append(f"{where}.smoothing_seconds must be >= 0, found {smoothing}")
    phases = section.get("phases", 1)
    if type(phases) is not int or not 1 <= phases <= counts["stride_frames"]:
        problems.append(f"{where}.phases must be a whole number from 1 to stride_frames "
                        f"({counts['stride_frames']}), found {phases!r}")
    output_meaning = section.get("output", OUTPUT_PROBABILITIES)
    if output_meaning not in OUTPUT_MEANINGS:
        problems.append(f"{where}.output is {output_meaning!r}; allowed: {', '.join(map(repr, OUTPUT_MEANINGS))}")
    if problems:
        raise KwsError(f"manifest {path}: " + "; ".join(problems))
    file_entry = fields.get(section, FLOAT32_KEY, dict, where) if float32 else section
    file_where = f"{where}.{FLOAT32_KEY}" if float32 else where
    model_path = _checked_file(file_entry, path, fields, file_where)
    tensors_where = f"{file_where}.tensors"
    tensor_values = fields.get(file_entry, "tensors", dict, file_where)
    tensors = {
        role: _declared_tensor(fields.get(tensor_values, role, dict, tensors_where), f"{tensors_where}.{role}", fields)
        for role in TENSOR_ROLES
    }
    expected_shapes = {
        "frames": [1, counts["frames_per_step"] * spec.n_mels],
        "state": [1, counts["state_size"]],
        "probabilities": [1, counts["outputs_per_step"], num_classes],
        "state_out": [1, counts["state_size"]],
    }
    wrong = [
        f"{role} {tensors[role].shape} (expected {shape})"
        for role, shape in expected_shapes.items()
        if tensors[role].shape != shape
    ]
    if wrong:
        raise KwsError(
            f"manifest {path}: {tensors_where} shapes do not fit the feature spec and step: " + "; ".join(wrong)
        )
    state, state_out = tensors["state"], tensors["state_out"]
    if (state.dtype, state.scale, state.zero_point) != (state_out.dtype, state_out.scale, state_out.zero_point):
        raise KwsError(
            f"manifest {path}: state and state_out must share dtype, scale and zero point so the state can be fed "
            f"back unchanged; found {state} and {state_out}"
        )
    return StreamingEntry(
        path=model_path,
        spec=spec,
        precision=tensors["frames"].dtype,
        frames_per_step=counts["frames_per_step"],
        outputs_per_step=counts["outputs_per_step"],
        stride_frames=counts["stride_frames"],
        output_frame_offset=offset,
        state_size=counts["state_size"],
        prime_steps=counts["prime_steps"],
        smoothing_seconds=smoothing,
        tensors=tensors,
        output_meaning=output_meaning,
        phases=phases,
    )


def _checked_file(entry: dict, path: Path, fields: _Fields, where: str) -> Path:
    model_path = path.parent / fields.get(entry, "file", str, where)
    expected_sha = fields.get(entry, "sha256", str, where)
    expected_bytes = fields.get(entry, "bytes", int, where)
    if not model_path.is_file():
        raise KwsError(f"manifest {path}: streaming model file {model_path} does not exist")
    size, sha = model_path.stat().st_size, sha256_of(model_path)
    if size != expected_bytes or sha != expected_sha:
        raise KwsError(
            f"streaming model file {model_path} is not the one in the manifest: expected sha256 {expected_sha} "
            f"({expected_bytes} bytes), found {sha} ({size} bytes)"
        )
    return model_path
