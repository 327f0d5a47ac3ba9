"""Run a comparison grid: every cell (agent × game × seed) is one ``rims_rl.rl.training.train`` run in
its own run directory, trained in a fresh process, ``workers`` at a time (or as Ray tasks).

Run directories are read and written through :mod:`rims_rl.utils.run_dir`.

- Before anything runs (:func:`check_grid`, also for ``--dry-run``), every distinct cell configuration is
  resolved and its model built once, the runs folder is probed, and a cell whose run directory holds
  a run of another configuration (any resolved hyperparameter, the env, agent, seed or budget) is refused.
- A cell whose run directory holds ``final_model.zip`` or ``done.json`` is finished and skipped.
  ``done.json`` (written when a run finishes) keeps a run directory finished without its model
  files, so a grid's run directories can be kept in a repository with only their small files (logs,
  evaluations, TensorBoard events) and the grid resumed elsewhere.
- A cell with a ``config.yaml`` but no final model was interrupted: it resumes from its newest
  checkpoint that loads (``train(..., resume=True)``).
- A cell holds its run directory's lock (``.lock``, the one ``train`` takes) while it trains, so two
  grid processes never train the same run; a locked cell is reported as running elsewhere and skipped.
- Progress (one tqdm bar over the whole grid's env steps) is read from each cell's ``timing.json``,
  which :class:`TimingCallback` rewrites after every rollout: segments of training with their steps
  and seconds (a resumed run adds a segment), from which the report takes wall time and steps/s.
- Ctrl-C (or SIGTERM to the grid process) asks every running cell to save a checkpoint and stop; run
  the same command again to continue.

Extra files a cell writes into its run directory: ``cell.yaml`` (its label in the grid, its overrides as
one mapping, files written before issue 20 hold them as a list of ``key=value`` strings, both YAML; and its
zero-shot ``eval_envs`` if any),
``timing.json`` and ``train.log`` (the cell's stdout and stderr).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from ..utils.run_dir import (
    CELL_FILE,
    LOCK_FILE,
    LOG_FILE,
    TIMING_FILE,
    RunDir,
    RunInUseError,
    atomic_write_text,
    check_writable,
    identity_differences,
    read_timing,
)
from .config import Cell, GridConfig

__all__ = [
    "CELL_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "TIMING_FILE",
    "GridResult",
    "TimingCallback",
    "cell_status",
    "cell_steps",
    "check_grid",
    "read_timing",
    "run_cell",
    "run_grid",
]


class TimingCallback(BaseCallback):
    """Records the run's training segments in ``timing.json``: ``{"segments": [{"start_step",
    "end_step", "seconds"}, ...]}``, rewritten atomically after every rollout and at the end. Seconds
    are wall-clock seconds of ``learn`` (rollouts, updates and evaluations); a resumed run appends a
    segment starting at its checkpoint's step, so steps redone after a crash count twice, as their
    cost did.

    :param path: the ``timing.json`` file
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.segments: list[dict] = []
        self._t0 = 0.0

    def _on_training_start(self) -> None:
        self.segments = read_timing(self.path)
        self.segments.append(
            {"start_step": int(self.num_timesteps), "end_step": int(self.num_timesteps), "seconds": 0.0}
        )
        self._t0 = time.time()
        self._write()

    def _write(self) -> None:
        self.segments[-1].update(end_step=int(self.num_timesteps), seconds=round(time.time() - self._t0, 3))
        atomic_write_text(json.dumps({"segments": self.segments}), self.path)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._write()

    def _on_training_end(self) -> None:
        self._write()


def cell_status(cell: Cell) -> str:
    """``"finished"``, ``"partial"`` (a run was started: resume it) or ``"new"`` (:meth:`RunDir.status`)."""
    return RunDir(cell.run_dir).status()


def cell_steps(cell: Cell) -> int:
    """Env steps the cell has done so far (its target when finished), from ``timing.json``."""
    if cell_status(cell) == "finished":
        return cell.timesteps
    segments = read_timing(cell.run_dir / TIMING_FILE)
    return min(int(segments[-1]["end_step"]), cell.timesteps) if segments else 0


def _cell_config(cell: Cell):
    """The cell's resolved configuration, as ``train`` resolves a new run's."""
    from ..rl.training import resolve_config

    return resolve_config(cell.env, cell.agent, cell.hp, cell.timesteps, cell.n_envs)


def _check_existing(cell: Cell) -> str | None:
    """A run directory that holds a run of another configuration -> the reason (its differences)."""
    from ..rl.config import AgentConfig
    from ..rl.training import run_config

    run = RunDir(cell.run_dir)
    if not run.config_path.is_file():
        return None
    saved = run.read_config()
    try:
        saved = run_config(saved["env"], saved["agent"], saved["seed"], AgentConfig.from_dict(saved["hyperparameters"]))
    except (KeyError, TypeError, ValueError) as e:
        return f"{cell.run_dir} holds a run whose {run.config_path.name} cannot be read ({e})"
    differences = identity_differences(saved, run_config(cell.env, cell.agent, cell.seed, _cell_config(cell)))
    if differences:
        return (
            f"{cell.run_dir} holds a run with {'; '.join(differences)}: the grid's configuration changed; "
            f"use another runs_dir (or move that run away)"
        )
    return None


def check_grid(cells: list[Cell]) -> None:
    """Everything the cells need, checked before anything runs or is written: each distinct
    configuration resolved and its model built once (on the CPU), the run directories writable, and
    no existing run directory holding another configuration.

    :raises ValueError: the first problem, in one line
    """
    from ..rl.training import check_buildable

    built = set()
    for cell in cells:
        config = _cell_config(cell)
        key = (cell.env, yaml.safe_dump(config.to_dict()), cell.eval_envs)
        if key not in built:
            try:
                check_buildable(cell.env, config, cell.seed, cell.eval_envs)
            except ValueError as e:
                raise ValueError(f"{cell.name}: {e}") from None
            built.add(key)
        problem = _check_existing(cell)
        if problem:
            raise ValueError(problem)
        check_writable(cell.run_dir, folder=True)


def run_cell(cell: Cell, device: str = "cpu", threads: int = 1) -> str:
    """Train one cell in this process: fresh, resumed, or not at all if finished or locked elsewhere.

    :param cell: the cell
    :param device: torch device
    :param threads: torch threads
    :return: ``"done"`` (already finished), ``"trained"`` or ``"locked"`` (another process trains it)
    :raises ValueError, FileNotFoundError, FileExistsError: from ``train``
    """
    import torch

    from ..rl.training import train

    run = RunDir(cell.run_dir)
    if run.status() == "finished":
        return "done"
    try:
        with run.lock():
            if run.status() == "finished":  # finished by another process between the check and the lock
                return "done"
            problem = _check_existing(cell)
            if problem:
                raise ValueError(problem)
            atomic_write_text(
                yaml.safe_dump(
                    {
                        "label": cell.label,
                        "agent": cell.agent,
                        "env": cell.env,
                        "seed": cell.seed,
                        "timesteps": cell.timesteps,
                        "hp": cell.hp,
                        **({"eval_envs": list(cell.eval_envs)} if cell.eval_envs else {}),
                    },
                    sort_keys=False,
                ),
                cell.run_dir / CELL_FILE,
            )
            torch.set_num_threads(threads)
            # train takes the same lock again (shared by this RunDir) and writes done.json at the end
            train(
                cell.env,
                cell.agent,
                cell.seed,
                cell.timesteps,
                cell.n_envs,
                device,
                run,
                cell.hp,
                resume=run.status() == "partial",
                progress=False,
                callbacks=[TimingCallback(cell.run_dir / TIMING_FILE)],
                eval_envs=list(cell.eval_envs),
            )
            return "trained"
    except RunInUseError:
        return "locked"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupt_once(signum, frame):
    """A cell's first SIGINT/SIGTERM stops training (``train`` then saves a checkpoint); later ones
    (Ctrl-C reaches the whole process group and the grid forwards it too) must not break that save."""
    signal.signal(signal.SIGINT, _ignore)  # a Python no-op, not SIG_IGN: a signal already pending finds a handler
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt


def _ignore(signum, frame):
    pass


def _cell_process(cell: Cell, device: str, threads: int, queue) -> None:
    """Entry point of a cell's process: output to ``train.log``, result (or error) to ``queue``.
    SIGTERM acts as Ctrl-C: ``train`` saves a checkpoint before the process ends."""
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(cell.run_dir / LOG_FILE, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {cell.name} (pid {os.getpid()})", flush=True)
    try:
        result = ("ok", run_cell(cell, device, threads))
    except KeyboardInterrupt:
        result = ("interrupted", "checkpoint saved")
    except Exception as e:  # noqa: BLE001 -- reported to the grid, which carries on with the other cells
        traceback.print_exc()
        result = ("error", f"{type(e).__name__}: {e}".splitlines()[0])
    print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {result[0]}: {result[1]}", flush=True)
    queue.put((str(cell.run_dir), *result))


@dataclass
class GridResult:
    """What a grid run did.

    :param trained: cells trained to the end in this call
    :param skipped: cells already finished
    :param locked: cells another process was training
    :param failed: cell name -> one-line error
    :param interrupted: the grid was stopped (Ctrl-C / SIGTERM); running cells saved checkpoints
    """

    trained: list[str]
    skipped: list[str]
    locked: list[str]
    failed: dict[str, str]
    interrupted: bool = False


class _Progress:
    """One tqdm bar over the grid's env steps, polled from the cells' ``timing.json``."""

    def __init__(self, cells: list[Cell], enabled: bool):
        self.cells = cells
        self.bar = tqdm(
            total=sum(c.timesteps for c in cells),
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not enabled,
            smoothing=0.02,
            desc="grid",
        )
        self.bar.update(self._steps())
        self._shown = self.bar.n

    def _steps(self) -> int:
        return sum(cell_steps(c) for c in self.cells)

    def update(self, done: int, running: int, failed: int) -> None:
        steps = self._steps()
        self.bar.update(max(steps - self._shown, 0))
        self._shown = max(steps, self._shown)
        self.bar.set_postfix_str(
            f"cells {done}/{len(self.cells)} done, {running} running" + (f", {failed} failed" if failed else ""),
            refresh=True,
        )

    def close(self) -> None:
        self.bar.close()


def run_grid(
    config: GridConfig,
    workers: int | None = None,
    backend: str = "local",
    progress: bool = True,
    poll_seconds: float = 2.0,
    ray_address: str | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> GridResult:
    """Train every unfinished cell of the grid.

    :param config: the grid
    :param workers: cells at a time (default ``config.workers``)
    :param backend: ``"local"`` (a fresh process per cell, ``workers`` at a time) or ``"ray"`` (one Ray
        task per cell; needs ``pip install rims_rl[ray]`` and a file system shared with the workers)
    :param progress: show the tqdm bar
    :param poll_seconds: how often the bar and the running cells are checked
    :param ray_address: the Ray cluster to join (``None``: start a local instance, or ``RAY_ADDRESS``)
    :param log: where one-line notes go (finished, failed and skipped cells)
    :return: what was trained, skipped and failed
    :raises ValueError: a cell that cannot be built, a run directory that holds another configuration
        (:func:`check_grid`), or an unknown backend
    """
    workers = workers or config.workers
    cells = config.cells()
    check_grid(cells)
    result = GridResult([], [c.name for c in cells if cell_status(c) == "finished"], [], {})
    todo = [c for c in cells if cell_status(c) != "finished"]
    log(
        f"grid {config.name}: {len(cells)} cells, {len(result.skipped)} finished, "
        f"{sum(cell_status(c) == 'partial' for c in todo)} to resume, "
        f"{sum(cell_status(c) == 'new' for c in todo)} new; "
        f"{workers} at a time ({backend}), runs in {config.runs_dir}"
    )
    if not todo:
        return result
    bar = _Progress(cells, progress)
    try:
        if backend == "local":
            _run_local(todo, config, workers, bar, result, poll_seconds, log)
        elif backend == "ray":
            _run_ray(todo, config, workers, bar, result, poll_seconds, ray_address, log)
        else:
            raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    finally:
        bar.close()
    return result


def _record(result: GridResult, cell: Cell, status: str, message: str, log: Callable[[str], None]) -> None:
    if status == "ok" and message == "locked":
        result.locked.append(cell.name)
        log(f"skipped {cell.name}: another process is training it")
    elif status == "ok" and message == "done":
        result.skipped.append(cell.name)
        log(f"skipped {cell.name}: another process finished it")
    elif status == "ok":
        result.trained.append(cell.name)
        log(f"finished {cell.name}")
    elif status == "interrupted":
        result.interrupted = True
    else:
        result.failed[cell.name] = message
        log(f"FAILED {cell.name}: {message} (see {cell.run_dir / LOG_FILE})")


def _run_local(
    todo: list[Cell],
    config: GridConfig,
    workers: int,
    bar: _Progress,
    result: GridResult,
    poll_seconds: float,
    log: Callable[[str], None],
) -> None:
    # a fresh process per cell (memory freed after each), forked from a server that imported the
    # training stack once: cells start in a fraction of a second instead of re-importing torch
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["rims_rl.experiments._preload"])
    queue = ctx.Queue()
    pending, running = list(todo), {}
    # SIGTERM (the grid is being stopped) acts as Ctrl-C: the cells checkpoint and stop
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        while pending or running:
            while pending and len(running) < workers:
                cell = pending.pop(0)
                proc = ctx.Process(
                    target=_cell_process,
                    args=(cell, config.device, config.threads_per_cell, queue),
                    name=f"cell {cell.name}",
                )
                proc.start()
                running[str(cell.run_dir)] = (cell, proc)
            _drain(queue, running, result, log, timeout=poll_seconds)
            for key, (cell, proc) in list(running.items()):
                if not proc.is_alive():
                    _drain(queue, running, result, log, timeout=0.5)
                    if key in running:  # died without a word (killed, out of memory)
                        running.pop(key)
                        result.failed[cell.name] = f"process ended with exit code {proc.exitcode}"
                        log(
                            f"FAILED {cell.name}: process ended with exit code {proc.exitcode} "
                            f"(see {cell.run_dir / LOG_FILE}); rerun the grid to resume it"
                        )
            bar.update(len(result.skipped) + len(result.trained), len(running), len(result.failed))
    except KeyboardInterrupt:
        result.interrupted = True
        for _, proc in running.values():
            if proc.is_alive():  # Ctrl-C in a terminal reached them already; a second one is ignored
                os.kill(proc.pid, signal.SIGINT)
        deadline = time.time() + 120
        for _, proc in running.values():
            proc.join(max(deadline - time.time(), 0.1))
            if proc.is_alive():
                proc.terminate()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _drain(queue, running: dict, result: GridResult, log: Callable[[str], None], timeout: float) -> None:
    import queue as queue_module

    try:
        item = queue.get(timeout=timeout)
    except queue_module.Empty:
        return
    while True:
        run_dir, status, message = item
        if run_dir in running:
            cell, proc = running.pop(run_dir)
            proc.join(5)
            _record(result, cell, status, message, log)
        try:
            item = queue.get_nowait()
        except queue_module.Empty:
            return


def _run_ray(
    todo: list[Cell],
    config: GridConfig,
    workers: int,
    bar: _Progress,
    result: GridResult,
    poll_seconds: float,
    ray_address: str | None,
    log: Callable[[str], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'rims_rl[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=config.threads_per_cell, max_retries=0)(_ray_cell)
    pending, running = list(todo), {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                cell = pending.pop(0)
                running[remote.remote(cell, config.device, config.threads_per_cell)] = cell
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_seconds)
            for ref in ready:
                cell = running.pop(ref)
                try:
                    status, message = ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- a task that died (worker killed, out of memory)
                    status, message = "error", f"{type(e).__name__}: {e}".splitlines()[0]
                _record(result, cell, status, message, log)
            bar.update(len(result.skipped) + len(result.trained), len(running), len(result.failed))
    except KeyboardInterrupt:
        result.interrupted = True
        for ref in running:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: train() saves a checkpoint
        ray.wait(list(running), num_returns=len(running), timeout=120)
    finally:
        if started:
            ray.shutdown()


def _ray_cell(cell: Cell, device: str, threads: int) -> tuple[str, str]:
    """A Ray task: one cell, output appended to its ``train.log``."""
    import contextlib

    cell.run_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(cell.run_dir / LOG_FILE, "a", buffering=1) as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {cell.name} (ray, pid {os.getpid()})", flush=True)
        try:
            return "ok", run_cell(cell, device, threads)
        except KeyboardInterrupt:
            return "interrupted", "checkpoint saved"
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            return "error", f"{type(e).__name__}: {e}".splitlines()[0]
