"""The detector's second stage (`edge_runtime/verifier.py`): a larger checkpoint, converted into its own window
bundle in `OUT/verifier/` with the same pipeline and checks, named by the student's manifest.

Defaults chosen on the val streams with the default student and its CRNN teacher, 0.7 s smoothing (docs/quality.md,
"Two stages"): a gate of 0.05-0.3 on the student's smoothed probability gave the same mean FRR (8.5-8.8%; 0.2
opened the gate about 20 times an hour on speech without the keyword), and teacher windows every 10, 50 or 100 ms
the same too (8.6 / 8.5 / 8.5%), so the cheapest.
"""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import CheckpointInfo, load_checkpoint

VERIFIER_FOLDER = "verifier"
DEFAULT_VERIFIER_GATE = 0.2
DEFAULT_VERIFIER_HOP_SECONDS = 0.1


def verifier_problems(checkpoint: Path, student: CheckpointInfo, gate: float, hop_seconds: float) -> list[str]:
    """What makes `checkpoint` unusable as the verifier of `student` (empty: nothing)."""
    problems = []
    if not 0.0 <= gate <= 1.0:
        problems.append(f"--verifier-gate {gate} must be in 0..1")
    if student.feature_spec.whole_hops(hop_seconds) is None:
        problems.append(f"--verifier-hop-seconds {hop_seconds} must be a positive multiple of the feature hop "
                        f"({student.feature_spec.hop_ms / 1000.0} s)")  # fmt: skip
    try:
        _, info = load_checkpoint(checkpoint)
    except ValueError as error:
        return [*problems, f"--verifier: {error}"]
    if info.feature_spec != student.feature_spec:
        problems.append(f"--verifier {checkpoint} reads other features than the checkpoint: "
                        f"{info.feature_spec.to_dict()} vs {student.feature_spec.to_dict()}")  # fmt: skip
    if (info.keyword, list(info.labels)) != (student.keyword, list(student.labels)):
        problems.append(f"--verifier {checkpoint} spots {info.keyword!r} with labels {list(info.labels)}, the "
                        f"checkpoint {student.keyword!r} with {list(student.labels)}")  # fmt: skip
    return problems


def verifier_section(gate: float, hop_seconds: float, threshold: float) -> dict:
    """The manifest's `verifier` section. `threshold` applies to the verifier's mean probability (the verifier's
    own validation threshold until `make eval` chooses one on long audio); `detection.threshold` stays the
    student's, for the window scan and the server, which score the student alone."""
    return {"folder": VERIFIER_FOLDER, "gate": float(gate), "hop_seconds": float(hop_seconds),
            "threshold": float(threshold)}  # fmt: skip
