"""The one exception type that the command line turns into a one-line message.

Anything a user can get wrong (a file, a spec key, a rule) raises :class:`InputError`
with a message that says what was wrong and where (file, line, column or key). The CLI
prints it on one line and exits with status 2; no traceback.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input. ``str(err)`` is the full one-line message, location first."""
