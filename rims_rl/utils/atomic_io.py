"""Atomic file writes: write a temporary file next to the target, then ``os.replace`` it.

A run killed in the middle of a write leaves the previous file intact, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``.

    :param obj: anything ``torch.save`` accepts (a checkpoint dict)
    :param path: target file; its folder is created if missing
    :return: the path written
    """
    return _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8).

    :param text: the file's full content
    :param path: target file; its folder is created if missing
    :return: the path written
    """
    return _atomic_write(path, lambda f: f.write(text), "w")
