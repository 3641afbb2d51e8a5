"""The model zoo: every bundle folder (a `manifest.json` with an ONNX model) under a root, named by its path
relative to the root (`edge`, `run2/edge`). Clients choose a model by that name; paths never come from a client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import KwsError
from edge_runtime.manifest import MANIFEST_NAME, read_manifest

SEARCH_DEPTH = 3  # root/edge, root/<run>/edge, root/<group>/<run>/edge


@dataclass(frozen=True)
class ZooEntry:
    """One bundle: its zoo name, folder and what its manifest says about it."""

    name: str
    folder: Path
    keyword: str
    architecture: str
    threshold: float
    sample_rate: int
    streaming: bool
    onnx_file: str
    metrics: dict
    created_utc: str | None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "keyword": self.keyword,
            "architecture": self.architecture,
            "threshold": self.threshold,
            "sample_rate": self.sample_rate,
            "streaming": self.streaming,
            "created_utc": self.created_utc,
            "metrics": self.metrics,
        }


def read_entry(name: str, folder: Path) -> ZooEntry:
    """A zoo entry from a bundle folder; `KwsError` if it is not a bundle the server can score with."""
    manifest = read_manifest(folder / MANIFEST_NAME)
    onnx = manifest.get("artifacts", {}).get("onnx", {}).get("file")
    if not onnx or not (folder / onnx).is_file():
        raise KwsError(
            f"bundle {folder} has no ONNX model (manifest artifacts.onnx); convert it with `python -m convert`"
        )
    try:
        return ZooEntry(
            name=name,
            folder=folder,
            keyword=str(manifest["keyword"]),
            architecture=str(manifest.get("model", {}).get("architecture", "unknown")),
            threshold=float(manifest["detection"]["threshold"]),
            sample_rate=int(manifest["feature_spec"]["sample_rate"]),
            streaming="streaming" in manifest,
            onnx_file=onnx,
            metrics=manifest.get("metrics", {}).get("test", {}),
            created_utc=manifest.get("source", {}).get("created_utc"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise KwsError(f"manifest {folder / MANIFEST_NAME}: missing or malformed field ({error})") from None


class Zoo:
    """Bundles by name; `default` is the one used when a request names none."""

    def __init__(self, entries: list[ZooEntry], default: str) -> None:
        self.entries = {entry.name: entry for entry in entries}
        if default not in self.entries:
            raise KwsError(f"default model '{default}' is not in the zoo ({', '.join(self.entries) or 'empty'})")
        self.default = default

    def get(self, name: str | None) -> ZooEntry:
        chosen = name or self.default
        if chosen not in self.entries:
            raise KeyError(f"unknown model '{chosen}'; choose one of: {', '.join(sorted(self.entries))}")
        return self.entries[chosen]

    def names(self) -> list[str]:
        return sorted(self.entries)


def build_zoo(default_folder: Path, root: Path | None) -> Zoo:
    """The zoo of every bundle under `root` plus `default_folder` (which must load; others that fail are skipped)."""
    default_folder = default_folder.resolve()
    if not (default_folder / MANIFEST_NAME).is_file():
        raise KwsError(
            f"--model {default_folder}: no {MANIFEST_NAME} there; pass a bundle folder such as artifacts/edge"
        )
    entries: dict[Path, ZooEntry] = {}
    if root is not None:
        root = root.resolve()
        if not root.is_dir():
            raise KwsError(f"--models-root {root}: not a folder")
        for manifest in sorted(root.glob("**/" + MANIFEST_NAME)):
            folder = manifest.parent
            if len(folder.relative_to(root).parts) > SEARCH_DEPTH:
                continue
            try:
                entries[folder] = read_entry(_name(folder, root), folder)
            except KwsError:
                continue  # not a servable bundle (no ONNX model, an old format): left out of the zoo
    if default_folder not in entries:
        entries[default_folder] = read_entry(_name(default_folder, root), default_folder)
    return Zoo(list(entries.values()), entries[default_folder].name)


def _name(folder: Path, root: Path | None) -> str:
    if root is not None and folder.is_relative_to(root) and folder != root:
        return folder.relative_to(root).as_posix()
    return folder.name
