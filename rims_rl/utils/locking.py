"""An exclusive, non-blocking lock on a run directory, so that two processes never train the same run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def try_lock(path: str | os.PathLike) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Yields ``True`` if this process holds the lock, ``False`` if another process holds it (nothing
    waits). The lock is released at the end of the block, or by the OS if the process dies.
    """
    with open(Path(path), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
