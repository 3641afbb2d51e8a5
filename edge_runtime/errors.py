"""The one error type the edge runtime raises for bad input: a file, a bundle or an option it cannot use.

Its message is a single line that names the thing at fault and says what is allowed, so the CLI can print it as
`error: <message>` and exit without a traceback.
"""

from __future__ import annotations


class KwsError(Exception):
    """A user-facing failure: bad audio file, bad model bundle, missing interpreter."""
