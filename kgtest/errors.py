"""The one exception type that the command line turns into a one-line message.

Anything a user can get wrong (a file, a spec key, a rule) raises :class:`InputError`
with a message that says what was wrong and where (file, line, column or key). The CLI
prints it on one line and exits with status 2; no traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["InputError", "reading"]


class InputError(ValueError):
    """Bad user input. ``str(err)`` is the full one-line message, location first."""


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an error while reading a user's file into one :class:`InputError` line.

    ``OSError`` (missing, a folder, no permission) -> ``PATH: cannot read WHAT file
    (reason)``; ``UnicodeDecodeError`` -> ``PATH: not a UTF-8 text file``.

    >>> with reading("no/such.dl", "rules"):
    ...     _ = open("no/such.dl").read()
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: no/such.dl: cannot read rules file (No such file or directory)
    """
    try:
        yield
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} file ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
