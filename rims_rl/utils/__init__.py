"""Generic helpers shared by the training code (no model code here)."""

from .atomic_io import atomic_torch_save, atomic_write_text
from .locking import try_lock

__all__ = ["atomic_torch_save", "atomic_write_text", "try_lock"]
