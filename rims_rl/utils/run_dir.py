"""The run directory, in one place: its layout, status, identity, lock, checkpoints, evaluation log and
atomic writes. Every entry point (``scripts/train_ppo.py``, the grid's cells, ``scripts/train_supervised.py``)
trains a run only while it holds the run's lock, and reads and writes its files through this module.

Layout of a reinforcement-learning run (``rims_rl.rl.training.train``)::

    config.yaml            env, agent, seed, every hyperparameter (the resolved preset), the policy's
                           parameter counts and the command
    .lock                  flock-ed by the process that trains the run (released when it ends or dies)
    tb/<Algo>_1/           TensorBoard events; a resumed run adds an event file that hides the steps its
                           killed predecessor logged after the checkpoint it resumes from
    checkpoints/           model_<steps>_steps.zip, written atomically (other files there are ignored)
    evaluations.csv        raw-score evaluations (:data:`EVALUATION_FIELDS`), one row per evaluated step
    env_evaluations.csv    MiniGrid runs and runs with evaluation envs: one row per evaluated step and env (the
                           training env and each zero-shot evaluation env), with the success rate
                           (:data:`ENV_EVALUATION_FIELDS`)
    final_model.zip        SB3 zip (unpickles code: load only files you trust)
    final_weights.pt       weights-only export, readable with ``torch.load(..., weights_only=True)``
    done.json              written last: the run trained to its end (kept when the model files are not)

The grid runner adds ``cell.yaml`` (the cell's label), ``timing.json`` (training segments) and
``train.log``; the comparison report adds ``activations.json`` to a finished RIM run (how often each
mechanism is active over a few evaluation games, :func:`rims_rl.rl.evaluation.mechanism_activity`). A
supervised run (``rims_rl.tasks.training``) has its own files but the same lock and atomic writes.

A run is identified by its whole resolved configuration (:data:`IDENTITY_KEYS`): resuming compares it
(:func:`identity_differences`) and the report never averages runs whose :func:`config_id` differs.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch
import yaml

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
EVALUATIONS_FILE = "evaluations.csv"
FINAL_MODEL = "final_model.zip"
FINAL_WEIGHTS = "final_weights.pt"
DONE_FILE = "done.json"
CELL_FILE = "cell.yaml"
TIMING_FILE = "timing.json"
LOG_FILE = "train.log"
ACTIVITY_FILE = "activations.json"
ENV_EVALUATIONS_FILE = "env_evaluations.csv"
EVALUATION_FIELDS = (
    "timesteps",
    "mean_score",
    "std_score",
    "min_score",
    "max_score",
    "mean_length",
    "episodes",
    "wall_time",
)
#: the columns of ``env_evaluations.csv``: the evaluated env (the training env or a zero-shot one), and the share
#: of episodes with a positive return (MiniGrid's success) beside the raw score
ENV_EVALUATION_FIELDS = (
    "env",
    "timesteps",
    "mean_score",
    "std_score",
    "success_rate",
    "mean_length",
    "episodes",
    "wall_time",
)
#: the keys of ``config.yaml`` that identify a run (not ``parameters``, derived, nor ``command``)
IDENTITY_KEYS = ("env", "agent", "seed", "hyperparameters")
_CHECKPOINT_NAME = re.compile(r"model_(\d+)_steps\.zip")


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], binary: bool = True) -> Path:
    """Write a file so that it is either complete or absent: ``write(f)`` into a temporary file beside
    ``path``, fsync, ``os.replace``. A run killed in the middle leaves the previous file intact.

    :param path: the target file; its folder is created if missing
    :param write: called with the open temporary file
    :param binary: open the temporary file in binary mode (else text, UTF-8)
    :return: the path written
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # open(): the umask's mode
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail now, with a one-line error, if ``path`` cannot be written later: a probe file is created and
    removed in its folder (the nearest existing one, so nothing is left behind).

    :param path: a file to be written, or with ``folder`` a folder to be written into
    :param folder: ``path`` is a folder
    :return: ``path``
    :raises ValueError: the path is not writable (read-only, not a folder, a pseudo file system...)
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; give a file name")
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot write {path}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"cannot write {path}: no file can be created in {probe} ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def try_lock(path: str | os.PathLike) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Yields ``True`` if this process holds the lock, ``False`` if another holder has it (nothing
    waits). The lock is released at the end of the block, or by the OS if the process dies.
    """
    with open(Path(path), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RunInUseError(ValueError):
    """Another process holds the run directory's lock."""


def identity(run_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run config (``config.yaml``) that identifies the run, as it reads back from YAML."""
    return yaml.safe_load(yaml.safe_dump({k: run_config.get(k) for k in IDENTITY_KEYS}))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def identity_differences(saved: dict[str, Any], wanted: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """How ``wanted`` differs from the run config ``saved``, one ``"key=<saved>, not <wanted>"`` per
    differing (dotted, leading ``hyperparameters.`` left out) key.

    :param saved: the run's ``config.yaml``
    :param wanted: the configuration asked for (same keys)
    :param ignore: dotted keys not compared (``"hyperparameters.n_timesteps"``: a run may be extended)
    """
    old, new = _flatten(identity(saved)), _flatten(identity(wanted))
    absent = object()

    def show(value: Any) -> str:
        return "(absent)" if value is absent else repr(value)

    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k.startswith("hyperparameters."), k)):
        before, after = old.get(key, absent), new.get(key, absent)
        if key not in ignore and before != after:
            out.append(f"{key.removeprefix('hyperparameters.')}={show(before)}, not {show(after)}")
    return out


def config_id(run_config: dict[str, Any]) -> str:
    """A short hash of the run's identity without its seed: runs with the same id differ only by seed."""
    values = {k: v for k, v in identity(run_config).items() if k != "seed"}
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:6]


def zip_steps(path: str | os.PathLike) -> int:
    """``num_timesteps`` of an SB3 zip, read from its JSON ``data`` entry (nothing is unpickled).

    :raises ValueError: not an SB3 zip
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a readable SB3 model ({type(e).__name__}: {e})") from None


def read_timing(path: str | os.PathLike) -> list[dict]:
    """The training segments of a ``timing.json`` (``[]`` if absent or unreadable)."""
    try:
        return list(json.loads(Path(path).read_text())["segments"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


class RunDir:
    """One run directory (see the module docstring for its files).

    :param path: the folder (it need not exist yet)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_depth = 0

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def evaluations_path(self) -> Path:
        return self.path / EVALUATIONS_FILE

    @property
    def final_model(self) -> Path:
        return self.path / FINAL_MODEL

    @property
    def final_weights(self) -> Path:
        return self.path / FINAL_WEIGHTS

    def tb_folder(self, algo_name: str) -> Path:
        """The TensorBoard folder of the run, ``tb/<algo_name>_1`` (the one SB3 names for a fresh run)."""
        return self.path / TB_DIR / f"{algo_name}_1"

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> str:
        """``"finished"`` (``done.json`` or ``final_model.zip``), ``"partial"`` (``config.yaml``: a run was
        started) or ``"new"``."""
        if (self.path / DONE_FILE).is_file() or self.final_model.is_file():
            return "finished"
        return "partial" if self.config_path.is_file() else "new"

    def finished_steps(self) -> int | None:
        """The env steps a finished run reached (``done.json``, else its final model); ``None`` if not finished.

        :raises ValueError: finished by a ``final_model.zip`` that cannot be read
        """
        try:
            return int(json.loads((self.path / DONE_FILE).read_text())["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return zip_steps(self.final_model) if self.final_model.is_file() else None

    def mark_done(self, info: dict[str, Any]) -> None:
        """Write ``done.json`` (``info`` must hold ``steps``): the run trained to its end."""
        atomic_write_text(json.dumps(info), self.path / DONE_FILE)

    def read_config(self) -> dict[str, Any]:
        """The run config (``config.yaml``).

        :raises FileNotFoundError: not a run directory
        """
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory: {CONFIG_FILE} not found")
        return yaml.safe_load(self.config_path.read_text()) or {}

    def write_config(self, run_config: dict[str, Any]) -> None:
        atomic_write_text(yaml.safe_dump(run_config, sort_keys=False), self.config_path)

    # -- lock -----------------------------------------------------------------------------------
    def in_use(self) -> bool:
        """Whether another process (or another ``RunDir``/:func:`try_lock`) holds the run's lock, so that
        :meth:`lock` would raise :class:`RunInUseError`; nothing is created."""
        if self._lock_depth or not (self.path / LOCK_FILE).is_file():
            return False
        with try_lock(self.path / LOCK_FILE) as held:
            return not held

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run's lock (``.lock``) for the ``with`` block, creating the folder if missing; nested
        blocks on the same object share it (the grid locks a cell, then ``train`` locks it again).

        :raises RunInUseError: another process (or another ``RunDir``/:func:`try_lock`) holds it
        :raises ValueError: the folder cannot be created or written
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the run directory {self.path}: {e.strerror or e}") from None
        check_writable(self.path, folder=True)
        with try_lock(self.path / LOCK_FILE) as held:
            if not held:
                raise RunInUseError(f"{self.path} is in use by another process (it holds the lock {LOCK_FILE})")
            self._lock_depth = 1
            try:
                yield self
            finally:
                self._lock_depth = 0

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(steps, path)`` of every ``checkpoints/model_<steps>_steps.zip``, oldest first; other files
        there (``model_best_steps.zip``, temporary files) are ignored."""
        found = []
        if self.checkpoint_dir.is_dir():
            for p in self.checkpoint_dir.iterdir():
                match = _CHECKPOINT_NAME.fullmatch(p.name)
                if match and p.is_file():
                    found.append((int(match.group(1)), p))
        return sorted(found)

    def checkpoint_path(self, steps: int) -> Path:
        return self.checkpoint_dir / f"model_{steps}_steps.zip"

    def resume_candidates(self) -> list[tuple[int, Path]]:
        """What a resume may start from, newest first: the checkpoints and a final model (placed by
        :meth:`finished_steps`, before a checkpoint of the same step)."""
        found = [(steps, 0, p) for steps, p in self.checkpoints()]
        if self.final_model.is_file():
            try:
                found.append((self.finished_steps() or 0, 1, self.final_model))
            except ValueError:
                found.append((-1, 1, self.final_model))  # unreadable: tried last, reported then
        return [(steps, p) for steps, _, p in sorted(found, reverse=True)]

    # -- evaluation log -------------------------------------------------------------------------
    @property
    def env_evaluations_path(self) -> Path:
        return self.path / ENV_EVALUATIONS_FILE

    def read_evaluations(self, path: Path | None = None) -> list[dict[str, str]]:
        """The rows of ``evaluations.csv`` (or of ``path``, e.g. :attr:`env_evaluations_path`)."""
        path = path or self.evaluations_path
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def append_evaluation(self, row: dict[str, Any]) -> None:
        """Append a row (:data:`EVALUATION_FIELDS`) to ``evaluations.csv``, writing its header first if new."""
        self._append(self.evaluations_path, EVALUATION_FIELDS, row)

    def append_env_evaluation(self, row: dict[str, Any]) -> None:
        """Append a row (:data:`ENV_EVALUATION_FIELDS`) to ``env_evaluations.csv``, writing its header first if new."""
        self._append(self.env_evaluations_path, ENV_EVALUATION_FIELDS, row)

    @staticmethod
    def _append(path: Path, fields: tuple[str, ...], row: dict[str, Any]) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def truncate_evaluations(self, step: int) -> int:
        """Drop the rows of ``evaluations.csv`` (and of ``env_evaluations.csv``) after ``step`` (those a killed
        run wrote after the checkpoint being resumed), atomically.

        :return: the number of rows dropped from ``evaluations.csv``
        """
        dropped = {}
        for path in (self.evaluations_path, self.env_evaluations_path):
            rows = self.read_evaluations(path)
            kept = [r for r in rows if int(r["timesteps"]) <= step]
            if len(kept) < len(rows):
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)
                atomic_write_text(buf.getvalue(), path)
            dropped[path] = len(rows) - len(kept)
        return dropped[self.evaluations_path]
