"""File modes that respect the umask, for files and folders made by ``tempfile``.

``tempfile.mkstemp`` creates files ``0600`` and ``mkdtemp`` folders ``0700`` whatever the
umask, so anything written atomically through them (temp file, then rename) would stay
unreadable to collaborators on shared storage. Every atomic writer calls
:func:`respect_umask` on its temporary file or folder before renaming it into place, so
results get the mode a plain ``open(path, "w")`` or ``mkdir`` would give them.

Examples
--------
>>> import os, tempfile
>>> old = os.umask(0o022)
>>> d = tempfile.mkdtemp()
>>> respect_umask(d)
>>> oct(os.stat(d).st_mode & 0o777), oct(current_umask())
('0o755', '0o22')
>>> _ = os.umask(old)
"""

from __future__ import annotations

import os
import stat

__all__ = ["current_umask", "respect_umask"]


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(path: str | os.PathLike, *, tree: bool = False) -> None:
    """Give ``path`` the mode ``open``/``mkdir`` would: ``0o666`` (files) or ``0o777``
    (folders) less the umask. Call it on a temporary file or folder before renaming it.

    ``tree=True`` also fixes everything under a folder (some writers, such as
    safetensors, create their files ``0600`` themselves)."""
    mask = current_umask()
    paths = [os.fspath(path)]
    if tree and os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            paths += [os.path.join(root, n) for n in dirs + files]
    for p in paths:
        full = 0o777 if stat.S_ISDIR(os.lstat(p).st_mode) else 0o666
        if not os.path.islink(p):
            os.chmod(p, full & ~mask)
