"""ONNX Runtime execution providers, best first: TensorRT, then CUDA, then CPU.

A provider listed as available can still fail when the session is built (no TensorRT libraries, no GPU), so each
is tried in turn and the one the session really uses is reported.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from edge_runtime.errors import KwsError

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
CPU = "CPUExecutionProvider"


def candidate_providers(available: list[str] | None = None) -> list[str]:
    """The preferred providers this ONNX Runtime build offers, best first (CPU always last)."""
    offered = set(ort.get_available_providers() if available is None else available)
    return [name for name in PREFERENCE if name in offered or name == CPU]


def open_session(model: Path, available: list[str] | None = None) -> tuple[ort.InferenceSession, str]:
    """A session on the best provider that builds; returns it and the provider it runs on."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # a provider that cannot start is reported by the fallback, not as noise
    failures = []
    for name in candidate_providers(available):
        providers = [name] if name == CPU else [name, CPU]
        try:
            session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises plain exceptions for provider failures
            failures.append(f"{name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            continue
        used = session.get_providers()[0]
        if used == name:
            return session, used
        failures.append(f"{name}: not used by the session (fell back to {used})")
    raise KwsError(f"{model}: no ONNX Runtime provider could run it ({'; '.join(failures)})")
