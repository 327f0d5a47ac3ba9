"""Generic helpers shared by the training code (no model code here): the run directory and its files."""

from .run_dir import RunDir, RunInUseError, atomic_torch_save, atomic_write, atomic_write_text, check_writable, try_lock

__all__ = [
    "RunDir",
    "RunInUseError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_text",
    "check_writable",
    "try_lock",
]
