"""The argument parser every command of the project uses: a usage error is one line, not a usage dump; and the
option types its commands share.

argparse prints the whole usage block before its error message; on a device's journal or in a training log the
line that says what is wrong then sits under a screen of option names. This parser prints `PROG: error: MESSAGE
(see --help)` and exits with status 2, as argparse does. Subcommand parsers inherit it.
"""

from __future__ import annotations

import argparse

USAGE_ERROR = 2


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
