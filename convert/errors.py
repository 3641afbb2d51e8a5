"""The conversion's user-facing failure: one line for the user, optional detail lines (e.g. a log tail) above it."""

from __future__ import annotations

EXIT_FAILED = 1  # a step ran and failed: onnx2tf, a numeric check
EXIT_BAD_INPUT = 2  # nothing could start: missing checkpoint or data, bad option


class ConversionError(Exception):
    def __init__(self, message: str, details: str = "", exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.details = details
        self.exit_code = exit_code
