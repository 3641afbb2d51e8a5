"""A model bundle: `manifest.json` plus the model file it names, checked before anything is scored.

The manifest is the model's contract (written by `convert/manifest_writer.py`): feature spec, labels, keyword,
detection settings, and the exact model file (sha256) with its input/output shapes, dtypes and quantization.
`load_bundle` checks every one of those against the file on disk and against what the interpreter reports, so a
model and a front-end can never silently mismatch. Each failure is a `KwsError` saying what was expected and what
was found.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import KwsError
from .features import FeatureSpec
from .interpreter import DEFAULT_THREADS, OUTPUT_MEANINGS, OUTPUT_PROBABILITIES, TensorInfo, TfliteModel

MANIFEST_FORMAT = "kws-edge-manifest/1"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class DetectionSettings:
    """How window probabilities become detections (see `detector.py`)."""

    threshold: float
    refractory_seconds: float
    window_hop_seconds: float

    def problems(self, spec: FeatureSpec) -> list[str]:
        """What is wrong with these settings for this front-end (empty when nothing is)."""
        problems = []
        if not 0.0 <= self.threshold <= 1.0:
            problems.append(f"threshold {self.threshold} must be in 0..1")
        if not self.refractory_seconds >= 0:
            problems.append(f"refractory_seconds {self.refractory_seconds} must be >= 0")
        if spec.whole_hops(self.window_hop_seconds) is None:
            problems.append(
                f"window_hop_seconds {self.window_hop_seconds} must be a positive multiple of the "
                f"feature hop ({spec.hop_ms / 1000.0} s)"
            )
        return problems


@dataclass
class Bundle:
    """A loaded, checked model bundle, ready to score features."""

    manifest_path: Path
    keyword: str
    labels: list[str]
    keyword_index: int
    feature_spec: FeatureSpec
    detection: DetectionSettings
    model: TfliteModel
    manifest: dict


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_of(folder_or_manifest: str | Path) -> Path:
    """A bundle is named by its folder or by its manifest file."""
    path = Path(folder_or_manifest)
    return path / MANIFEST_NAME if path.is_dir() else path


def read_manifest(path: Path) -> dict:
    """Parse the JSON and check the format tag; nothing else."""
    if not path.is_file():
        raise KwsError(f"model bundle {path} not found (give a folder holding {MANIFEST_NAME}, or the manifest file)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KwsError(f"manifest {path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise KwsError(f"manifest {path}: format must be '{MANIFEST_FORMAT}', found {found!r}")
    return manifest


@dataclass(frozen=True)
class BundleHeader:
    """What every model of a bundle shares, read and checked: labels, keyword, feature contract, detection."""

    path: Path
    manifest: dict
    fields: _Fields
    labels: list
    keyword: str
    keyword_index: int
    spec: FeatureSpec
    detection: DetectionSettings

    def shared(self) -> tuple:
        """The leading fields of `Bundle` and `StreamBundle`, in their order."""
        return self.path, self.keyword, self.labels, self.keyword_index, self.spec, self.detection


def read_bundle_header(folder_or_manifest: str | Path) -> BundleHeader:
    """The manifest's shared fields (`load_bundle` and `stream_manifest.load_stream_bundle` start here)."""
    path = manifest_path_of(folder_or_manifest)
    manifest = read_manifest(path)
    fields = _Fields(path)
    labels = fields.get(manifest, "labels", list)
    keyword = fields.get(manifest, "keyword", str)
    keyword_index = fields.get(manifest, "keyword_index", int)
    if len(labels) < 2 or not all(isinstance(label, str) for label in labels):
        raise KwsError(f"manifest {path}: labels must be a list of at least 2 names, found {labels!r}")
    if not 0 <= keyword_index < len(labels) or labels[keyword_index] != keyword:
        raise KwsError(f"manifest {path}: keyword_index {keyword_index} must point at '{keyword}' in {labels}")
    spec = _feature_spec(fields.get(manifest, "feature_spec", dict), path)
    detection = _detection(fields.get(manifest, "detection", dict), spec, fields)
    return BundleHeader(path, manifest, fields, labels, keyword, keyword_index, spec, detection)


def load_bundle(folder_or_manifest: str | Path, num_threads: int = DEFAULT_THREADS) -> Bundle:
    """Read, check and load a bundle; `KwsError` on the first thing that does not match."""
    header = read_bundle_header(folder_or_manifest)
    model_entry = header.fields.get(header.manifest, "model", dict)
    model = _checked_model(model_entry, header.path, header.spec, len(header.labels), header.fields, num_threads)
    return Bundle(*header.shared(), model, header.manifest)


class _Fields:
    """Typed access to manifest fields; a missing or mistyped field names itself and the expected type."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, mapping: dict, key: str, kind: type | tuple[type, ...], where: str = ""):
        name = f"{where}.{key}" if where else key
        if key not in mapping:
            raise KwsError(f"manifest {self.path}: '{name}' is missing")
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a JSON true is never a valid count or shape.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise KwsError(f"manifest {self.path}: '{name}' must be {expected}, found {value!r}")
        return value


def _feature_spec(values: dict, path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.from_dict(values)
    except (TypeError, ValueError) as error:
        raise KwsError(f"manifest {path}: feature_spec is not usable: {error}") from None


def _detection(values: dict, spec: FeatureSpec, fields: _Fields) -> DetectionSettings:
    number = (int, float)
    settings = DetectionSettings(
        threshold=float(fields.get(values, "threshold", number, "detection")),
        refractory_seconds=float(fields.get(values, "refractory_seconds", number, "detection")),
        window_hop_seconds=float(fields.get(values, "window_hop_seconds", number, "detection")),
    )
    problems = settings.problems(spec)
    if problems:
        raise KwsError(f"manifest {fields.path}: detection: " + "; ".join(problems))
    return settings


def _checked_model(
    entry: dict, path: Path, spec: FeatureSpec, num_classes: int, fields: _Fields, num_threads: int
) -> TfliteModel:
    """The model file must be the one the manifest describes, and the interpreter must agree with the manifest."""
    model_path = path.parent / fields.get(entry, "file", str, "model")
    expected_sha = fields.get(entry, "sha256", str, "model")
    expected_bytes = fields.get(entry, "bytes", int, "model")
    if not model_path.is_file():
        raise KwsError(f"manifest {path}: model file {model_path} does not exist")
    size, sha = model_path.stat().st_size, sha256_of(model_path)
    if size != expected_bytes or sha != expected_sha:
        raise KwsError(
            f"model file {model_path} is not the one in the manifest: expected sha256 {expected_sha} "
            f"({expected_bytes} bytes), found {sha} ({size} bytes)"
        )
    window_shape = [1, spec.frames_per_clip, spec.n_mels]
    declared_input = _declared_tensor(fields.get(entry, "input", dict, "model"), "model.input", fields)
    declared_output = _declared_tensor(fields.get(entry, "output", dict, "model"), "model.output", fields)
    if declared_input.shape != window_shape:
        raise KwsError(
            f"manifest {path}: feature_spec makes windows of shape {window_shape} ({spec.clip_seconds} s at "
            f"{spec.sample_rate} Hz, {spec.n_mels} mels), but model.input.shape is {declared_input.shape}"
        )
    if declared_output.shape != [1, num_classes]:
        raise KwsError(
            f"manifest {path}: {num_classes} labels need model.output.shape [1, {num_classes}], "
            f"found {declared_output.shape}"
        )
    model = TfliteModel(model_path, num_threads=num_threads, output_meaning=output_meaning(entry, path))
    _compare(declared_input, model.input, "input", path)
    _compare(declared_output, model.output, "output", path)
    precision = fields.get(entry, "precision", str, "model")
    if precision != model.precision:
        raise KwsError(f"manifest {path}: model.precision is '{precision}' but the model's input is {model.precision}")
    return model


def output_meaning(model_entry: dict, path: Path | str) -> str:
    """What the window model's output holds (`model.output.meaning`); a manifest written before the field existed
    describes a graph that ends in a softmax."""
    meaning = model_entry.get("output", {}).get("meaning", OUTPUT_PROBABILITIES)
    if meaning not in OUTPUT_MEANINGS:
        raise KwsError(
            f"manifest {path}: model.output.meaning is {meaning!r}; allowed: {', '.join(map(repr, OUTPUT_MEANINGS))}"
        )
    return meaning


def _declared_tensor(values: dict, where: str, fields: _Fields) -> TensorInfo:
    shape = fields.get(values, "shape", list, where)
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise KwsError(f"manifest {fields.path}: '{where}.shape' must be a list of integers, found {shape!r}")
    return TensorInfo(
        name=fields.get(values, "name", str, where),
        shape=shape,
        dtype=fields.get(values, "dtype", str, where),
        scale=float(fields.get(values, "scale", (int, float), where)),
        zero_point=fields.get(values, "zero_point", int, where),
    )


def _compare(declared: TensorInfo, actual: TensorInfo, role: str, path: Path) -> None:
    mismatches = [
        f"{key} expected {getattr(declared, key)!r}, found {getattr(actual, key)!r}"
        for key in ("name", "shape", "dtype", "zero_point")
        if getattr(declared, key) != getattr(actual, key)
    ]
    if not math.isclose(declared.scale, actual.scale, rel_tol=1e-6, abs_tol=0.0):
        mismatches.append(f"scale expected {declared.scale!r}, found {actual.scale!r}")
    if mismatches:
        raise KwsError(f"manifest {path} does not match the model's {role}: " + "; ".join(mismatches))
