"""An append-only JSON-lines log that never takes the detector down.

A service runs for months; its log disk can fill up or vanish. A write that fails is reported once on stderr and
the file log is switched off; the detector carries on (detections still go to stdout, which journald keeps).
"""

from __future__ import annotations

import contextlib
import sys


class AppendOnlyLog:
    def __init__(self, path: str | None, what: str) -> None:
        """Open `path` for appending (None: no file log). An unopenable file is the caller's error to report."""
        self.path, self.what = path, what
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - closed in close()

    @property
    def active(self) -> bool:
        return self._file is not None

    def write_line(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as error:
            print(f"warning: cannot write {self.what} {self.path} ({error.strerror}); writing it is switched off, "
                  "detection goes on", file=sys.stderr, flush=True)
            self._discard()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                self._discard()
            self._file = None

    def _discard(self) -> None:
        """Drop the file without flushing what it still buffers (the flush is what failed)."""
        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            file.close()
        # A failed close leaves the buffer in place; closing the descriptor directly releases it.
        with contextlib.suppress(OSError, ValueError):
            import os

            os.close(file.fileno())
