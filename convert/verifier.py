"""The detector's second stage (`edge_runtime/verifier.py`): a larger checkpoint, converted into its own window
bundle in `OUT/verifier/` with the same pipeline and checks, named by the student's manifest.

Defaults chosen on the val streams, 0.7 s smoothing. The hop: with the default student and its CRNN teacher
(docs/quality.md, "Two stages"), teacher windows every 10, 50 or 100 ms gave the same mean FRR (8.6 / 8.5 / 8.5%),
so the cheapest. The gate: behind that one teacher any gate of 0.05-0.3 on the student's smoothed probability did as
well (8.5-8.8%), and 0.2 was kept; behind today's verifier of three wide teachers, which rejects more of what a lower
gate lets through, `make eval-val EVAL_GATES=...` gave a mean FRR at 0.5-5 FA/h of 2.0% at 0.15 against 2.9% at 0.2
(2.0-2.1% at 0.03-0.1, 5.4% at 0.3), with the fewest misses at 0.5 and 0.1 FA/h, for 1,442 verifier windows an hour
on speech without the keyword instead of 780 (docs/quality.md, "The gate behind the wider verifier").
"""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import CheckpointInfo, load_checkpoint

VERIFIER_FOLDER = "verifier"
DEFAULT_VERIFIER_GATE = 0.15
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
