"""Atomic file writes. Device side: standard library only.

Every file a later run trusts (datasets, models, reports) is written to a temporary
name in the same directory and renamed into place, so an interrupted run leaves either
the old file or the new one, never half of one.
"""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest, suffix=""):
    """Yield a temporary path next to `dest`; rename it onto `dest` if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    tmp = Path(tmp)
    try:  # from here on, Ctrl-C anywhere still removes the temporary file
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model or report is for everyone
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(dest, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


def save_keras(model, dest) -> None:
    """`model.save` to `dest` (a .keras file) atomically: the recipes' one way to write a
    model (Keras picks the format from the suffix, so the temporary name keeps it)."""
    with atomic_path(dest, suffix=".keras") as tmp:
        model.save(tmp)
