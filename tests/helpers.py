"""What several test modules share: loading a script of the repository as a module."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]  # the repository root


def load_script(path: str) -> ModuleType:
    """A script of the repository (``"scripts/compare.py"``, ``"benchmarks/ppo_memory.py"``) as a module, registered
    in ``sys.modules`` under its file's stem (a script's dataclasses look their module up there).

    :param path: the script's path relative to the repository root
    """
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
