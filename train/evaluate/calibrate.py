"""Writing the chosen detection threshold into a bundle's manifest, saying where it came from.

convert/ writes the manifest with the validation-balanced threshold; this replaces only the threshold of the
evaluated detector (`detection.threshold`, or `verifier.threshold` for a two-stage detector) and adds its
`threshold_source` (what chose it, the target and what was measured), then checks that the edge runtime still
loads the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

from convert.manifest_writer import write_manifest
from edge_runtime.manifest import load_bundle, manifest_path_of, read_manifest
from edge_runtime.stream_manifest import load_stream_bundle

THRESHOLD_SOURCE_METHOD = "long-audio evaluation: lowest threshold within the target false accepts per hour"


def write_threshold(bundle: str | Path, threshold: float, source: dict, section: str = "detection") -> Path:
    """Set `<section>.threshold` (0..1) and `<section>.threshold_source` (= `source` + the method) in place;
    `section` is "detection" or "verifier"."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in 0..1, got {threshold}")
    path = manifest_path_of(bundle)
    manifest = read_manifest(path)
    values = manifest.get(section)
    if not isinstance(values, dict):
        raise ValueError(f"manifest {path} has no {section} section")
    values["threshold"] = float(threshold)
    values["threshold_source"] = {"method": THRESHOLD_SOURCE_METHOD, **json.loads(json.dumps(source))}
    write_manifest(path.parent, manifest)
    load_bundle(path)  # the runtime must accept what was written
    if section == "verifier":
        load_stream_bundle(path)
    return path
