"""Training loop for the supervised tasks: run directory, metrics, TensorBoard, atomic checkpoints, resume.

A run directory holds ``config.json`` (the resolved config), ``checkpoint.pt`` (model, optimiser,
step, random states: tensors and plain values, written atomically and read with
``torch.load(..., weights_only=True)``), ``metrics.json`` and ``metrics.csv`` (one row per evaluation)
and TensorBoard event files. Calling :func:`train` on a directory that holds a checkpoint of the same
config resumes it. The lock and the atomic writes are :mod:`rims_rl.utils.run_dir`'s, shared with the
reinforcement-learning runs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..core.rim import compile_by_default
from ..utils.config import as_overrides, build_dataclass, merge
from ..utils.run_dir import LOCK_FILE, RunDir, atomic_torch_save, atomic_write_text
from .balls import BallsTask
from .copying import CopyingTask
from .mnist import MnistTask
from .models import MODELS, SequenceModel, drop_parameters_absent_from
from .task import SupervisedTask

LR_SCHEDULES = ("constant", "cosine")
#: a checkpoint (without an evaluation) at least this often, in seconds of training, between evaluations
CHECKPOINT_SECONDS = 600.0
__all__ = [
    "CONFIG_VERSION",
    "LOCK_FILE",
    "LR_SCHEDULES",
    "PRESETS_DIR",
    "SPEED_SETTINGS",
    "TASKS",
    "TrainConfig",
    "compiles",
    "flush_denormals",
    "load_preset",
    "prepare_model",
    "resolve_device",
    "train",
    "train_step",
    "upgrade_config",
]
TASKS: dict[str, type[SupervisedTask]] = {t.name: t for t in (CopyingTask, MnistTask, BallsTask)}
#: :class:`TrainConfig` fields that change a run's speed, not its result: a run may resume with them changed,
#: and the report never tells runs apart by them
SPEED_SETTINGS = ("num_threads", "compile")
#: the vocabulary of configs written now (:attr:`TrainConfig.version`)
CONFIG_VERSION = 2
#: version-1 names of ``core`` keys -> today's (applied at once: v1 ``hidden_size`` is the baseline's size)
_V1_CORE_NAMES = {"unit_size": "hidden_size", "rim_cell": "cell", "hidden_size": "lstm_hidden_size"}
#: ``<task>.yaml``: each task's preset (TrainConfig keys), beside the agents' presets
PRESETS_DIR = Path(__file__).resolve().parents[2] / "agents" / "supervised"


@dataclass
class TrainConfig:
    """Everything that defines a supervised run (saved as ``config.json``).

    :param task: ``"copying"``, ``"mnist"`` or ``"balls"``
    :param model: ``"rim"``, ``"lstm"`` or ``"gru"``
    :param seed: seeds the model init, dropout and the training data stream
    :param steps: optimiser steps
    :param batch_size: sequences per step
    :param lr: Adam learning rate
    :param lr_schedule: ``"constant"`` or ``"cosine"`` (decays from ``lr`` to 0 at ``steps``:
        ``lr * (1 + cos(pi * step / steps)) / 2``; a function of the step, so a resumed run follows it
        exactly, but extending a finished cosine run to more steps raises the rate again)
    :param grad_clip: gradient-norm clip (``None`` = off)
    :param eval_every: evaluate, log and checkpoint every this many steps (and at the end); between evaluations
        a checkpoint every :data:`CHECKPOINT_SECONDS` of training, so a killed run loses at most that much
    :param num_threads: ``torch.set_num_threads`` (``None`` = leave as is; a resumed run may change it)
    :param compile: train the RIM's time loop under ``torch.compile`` (:meth:`rims_rl.core.RIM.compile_sequence`,
        blocks of at most 16 steps; evaluation runs eagerly): 1.4-1.8x faster per step on a CPU at the paper's
        sizes (copying, sequential MNIST), after a first step that compiles (minutes on a CPU). The environment variable
        ``RIMS_RL_COMPILE=0`` turns it off too. Not part of the result: a resumed run may change it
    :param core: :class:`~rims_rl.tasks.models.CoreConfig` fields except ``model``
    :param options: the task's option fields (e.g. ``train_gap`` for copying)
    :param version: the vocabulary of ``core`` (:data:`CONFIG_VERSION`); a saved config without it is older
        and is read through :func:`upgrade_config` (:meth:`from_saved`)
    """

    task: str = "copying"
    model: str = "rim"
    seed: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    eval_every: int = 250
    num_threads: int | None = None
    compile: bool = True
    core: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    version: int = CONFIG_VERSION

    def __post_init__(self):
        if self.version != CONFIG_VERSION:
            raise ValueError(
                f"version must be {CONFIG_VERSION} (older saved configs are read with "
                f"TrainConfig.from_saved), got {self.version!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {sorted(TASKS)}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; allowed: {list(MODELS)}")
        for name in ("steps", "batch_size", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; allowed: {LR_SCHEDULES}")
        if "model" in self.core:
            raise ValueError("set the core type with TrainConfig.model, not core['model']")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (``config.json``), rejecting unknown keys."""
        return build_dataclass(cls, values, "train config key(s)")

    @classmethod
    def from_saved(cls, values: dict) -> TrainConfig:
        """Build from a saved ``config.json`` of any version (:func:`upgrade_config`), rejecting unknown keys."""
        return cls.from_dict(upgrade_config(values))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def lr_at(self, step: int) -> float:
        """The learning rate for optimiser step ``step`` (0-based)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr

    def make_task(self) -> SupervisedTask:
        """The task with this config's options and core."""
        return TASKS[self.task](self.options, {"model": self.model, **self.core})


def upgrade_config(values: dict) -> dict:
    """A saved supervised config (``config.json``, a checkpoint's ``config``) in today's vocabulary: the one place
    where old names are translated, so that runs saved before a rename still resume and report.

    Version 1 (no ``version`` key) named the RIM's per-mechanism size ``core.unit_size``, its cell
    ``core.rim_cell`` and the LSTM/GRU baseline's size ``core.hidden_size``; version 2 names them as
    :class:`rims_rl.core.RIM`'s arguments, ``hidden_size`` and ``cell``, and the baseline's ``lstm_hidden_size``.

    :param values: the saved mapping (not changed)
    :return: a new mapping with ``version`` = :data:`CONFIG_VERSION`
    """
    values = dict(values)
    if "version" not in values:
        values["core"] = {_V1_CORE_NAMES.get(k, k): v for k, v in (values.get("core") or {}).items()}
        values["version"] = CONFIG_VERSION
    return values


def load_preset(task: str, overrides: list[str] | dict | None = None, **values) -> TrainConfig:
    """The config of a new run of ``task``: its preset (``agents/supervised/<task>.yaml``), then ``values``
    (``model``, ``seed``...), then ``overrides`` (``--hp``).

    :param task: a key of :data:`TASKS`
    :param overrides: ``KEY=VALUE`` strings (dotted: ``core.hidden_size=64``) or the same as a nested mapping
    :param values: further :class:`TrainConfig` values, applied before ``overrides``
    :raises ValueError: an unknown task, or unknown keys (of the preset, ``values`` or ``overrides``)
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {sorted(TASKS)}")
    path = PRESETS_DIR / f"{task}.yaml"
    preset = yaml.safe_load(path.read_text()) or {}
    data = merge(merge(preset, {"task": task, **values}), as_overrides(overrides))
    return build_dataclass(TrainConfig, data, "train config key(s)", f"{path.name} or its overrides")


def resolve_device(name: str) -> torch.device:
    """The device named ``name`` (``cpu``, ``cuda``, ``cuda:N``), with a clear error for a malformed name or a GPU
    this machine does not have."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown --device {name!r}; allowed: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported --device {name!r}; allowed: cpu, cuda, cuda:N")
    return device


def train_step(
    task: SupervisedTask, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, grad_clip: float | None
) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step on ``batch`` (from ``task.sample_batch``): loss, backward, gradient-norm clip, step.

    :return: the loss (a scalar tensor) and the task's extra per-batch metrics
    """
    loss, extra = task.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss, extra


def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=list)


#: a run's evaluation rows, one per evaluation (``metrics.csv`` beside it holds the same)
METRICS_FILE = "metrics.json"


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_text(_json(rows), run_dir / METRICS_FILE)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buf.getvalue(), run_dir / "metrics.csv")


def _normalise(config: TrainConfig) -> dict:
    """The config as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(_json(config.to_dict()))


def flush_denormals() -> None:
    """Flush denormal floats to zero (``torch.set_flush_denormal``): without it, gradients decaying along a
    long sequence made the backward of ``nn.LSTM(16, 600)`` on sequential MNIST (196 steps) about 30x
    slower on a CPU. The setting belongs to a thread, and torch's worker threads copy it when they start:
    call this before the process's first multi-threaded op (:func:`train` does, first thing). Warns where
    torch's worker threads started earlier and still keep denormals."""
    if not torch.set_flush_denormal(True):  # a CPU without the flag: nothing to do
        return
    tiny = torch.full((1 << 17,), 1e-30) * 1e-10  # 1e-40 is a denormal; large enough to run on every thread
    if tiny.count_nonzero():
        warnings.warn(
            "denormal floats are flushed only in the main thread: torch's worker threads started before "
            "rims_rl.tasks.training.flush_denormals(); call it first thing in the process (long LSTM "
            "backwards can be ~30x slower on a CPU)",
            stacklevel=2,
        )


def compiles(config: TrainConfig) -> bool:
    """Whether a run of ``config`` compiles its RIM loop: a RIM with ``compile`` on, unless ``RIMS_RL_COMPILE=0``."""
    return config.model == "rim" and config.compile and compile_by_default()


def prepare_model(config: TrainConfig, model: SequenceModel) -> SequenceModel:
    """Where :func:`compiles`, compile the RIM's loop for training (:meth:`rims_rl.core.RIM.compile_sequence`,
    ``inference=False``: evaluations run eagerly).

    :param config: the run's config
    :param model: the task's model
    :return: ``model``
    """
    if compiles(config):
        model.core.rnn.compile_sequence(inference=False)
    return model


def _metrics(run_dir: Path) -> list[dict]:
    """The run's evaluation rows (``metrics.json``; ``[]`` before its first evaluation)."""
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def _finished(rows: list[dict], steps: int) -> bool:
    """Whether a run with these evaluation rows has trained ``steps`` steps."""
    return bool(rows) and rows[-1]["step"] >= steps


def run_status(config: TrainConfig, run_dir: str | Path) -> str:
    """What :func:`train` would do with ``config`` in ``run_dir``, without doing it (the queue's check). It does
    not compare configs: :func:`train` refuses a directory that holds another one.

    :return: ``"finished"`` (its last evaluation reached ``config.steps``: nothing to do), ``"busy"`` (another
        process holds its lock: refused) or ``"todo"`` (train or resume it)
    """
    run_dir = Path(run_dir)
    if _finished(_metrics(run_dir), config.steps):
        return "finished"
    return "busy" if RunDir(run_dir).in_use() else "todo"


def train(
    config: TrainConfig, run_dir: str | Path, progress: bool = True, log=print, device: str | torch.device = "cpu"
) -> list[dict]:
    """Train (or resume) a run, holding a lock on its directory (``.lock``) so that no other process
    trains it at the same time.

    :param config: the run's config
    :param run_dir: output folder; if it holds a checkpoint, the run resumes from it (the saved
        config must equal ``config``)
    :param progress: show a tqdm progress bar
    :param log: function called with one-line status messages
    :param device: where the model trains (``"cpu"``, ``"cuda"``); not part of the config, so a run
        may resume on another device than it started on (the data are drawn on the CPU either way)
    :return: the metrics rows, one per evaluation (``step``, ``time_s``, ``train/loss``, test metrics)
    :raises ValueError: bad config, a directory holding another run, an unwritable one, or one in use by
        another process (:class:`~rims_rl.utils.run_dir.RunInUseError`); nothing is written before the
        task and the model have been built
    """
    with contextlib.ExitStack() as stack:
        return _train(config, Path(run_dir), progress, log, torch.device(device), stack)


def _train(
    config: TrainConfig, run_dir: Path, progress: bool, log, device: torch.device, stack: contextlib.ExitStack
) -> list[dict]:
    """The body of :func:`train`; the directory's lock is entered on ``stack`` (released when it closes)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    flush_denormals()  # before torch's worker threads start, so that they flush too
    config_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.pt"
    if config_path.exists():
        saved = _normalise(TrainConfig.from_saved(json.loads(config_path.read_text())))  # fills new defaults
        # more (or fewer) steps may be asked, and other speed settings (like the device)
        speed = {key: getattr(config, key) for key in SPEED_SETTINGS}  # not part of the result
        if {**saved, "steps": config.steps, **speed} != _normalise(config):
            raise ValueError(
                f"{run_dir} holds a run with a different config; use another run directory "
                f"or resume it with its own config ({config_path})"
            )
        rows = _metrics(run_dir)
        if _finished(rows, config.steps):  # with or without its checkpoint
            log(f"{run_dir} is finished (step {rows[-1]['step']}); nothing to do")
            return rows
        if (run_dir / METRICS_FILE).exists() and not ckpt_path.exists():  # results kept without their checkpoint
            raise ValueError(
                f"{run_dir} holds metrics up to step {rows[-1]['step'] if rows else 0} but no "
                f"checkpoint.pt to resume from; use another run directory"
            )
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    task = config.make_task()  # checks the options (and loads data) before anything is written
    model = prepare_model(config, task.make_model().to(device))  # and the core's sizes
    if compiles(config):
        log("the first training step compiles the RIM loop (minutes on a CPU; --hp compile=false runs it eagerly)")
    stack.enter_context(RunDir(run_dir).lock())  # creates the folder, probed for writing
    atomic_write_text(_json(config.to_dict()), config_path)
    ckpt = (
        torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    )  # tensors, plain values
    if ckpt is not None:
        drop_parameters_absent_from(model, ckpt["model"])  # before the optimizer sees the parameters
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data_gen = torch.Generator().manual_seed(config.seed)
    step, rows, elapsed, running = 0, [], 0.0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the parameters' device
        data_gen.set_state(ckpt["data_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:  # GPU dropout has its own generator
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        step, rows, elapsed, running = ckpt["step"], ckpt["metrics"], ckpt["elapsed_s"], ckpt.get("running_loss")
        log(f"resumed {run_dir} at step {step}/{config.steps} on {device}")
    elif device.type != "cpu":
        log(f"training {run_dir} on {device}")

    writer = SummaryWriter(str(run_dir), purge_step=step or None)
    if step == 0:
        writer.add_text("config", f"```\n{_json(config.to_dict())}\n```")

    def evaluate_and_save(train_loss: float) -> None:
        model.eval()
        eval_gen = torch.Generator().manual_seed(10_000 + config.seed)  # the same test set at every evaluation
        metrics = task.evaluate(model, eval_gen)
        model.train()
        row = {"step": step, "time_s": round(elapsed, 1), "train/loss": train_loss, **metrics}
        rows.append(row)
        for k, v in row.items():
            if k != "step":
                writer.add_scalar(k, v, step)
        writer.flush()
        _write_metrics(run_dir, rows)
        save(train_loss)

    def save(train_loss: float) -> None:
        nonlocal saved_at
        saved_at = time.monotonic()
        writer.flush()
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data_rng": data_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "step": step,
                "metrics": rows,
                "elapsed_s": elapsed,
                "running_loss": train_loss,
                "config": config.to_dict(),
            },
            ckpt_path,
        )

    saved_at = time.monotonic()
    model.train()
    bar = tqdm(
        total=config.steps, initial=step, disable=not progress, desc=f"{config.task}/{config.model}", dynamic_ncols=True
    )
    while step < config.steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        loss, extra = train_step(
            task, model, optimizer, task.sample_batch(config.batch_size, data_gen), config.grad_clip
        )
        step += 1
        elapsed += time.perf_counter() - t0
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        writer.add_scalar("train/batch_loss", loss.item(), step)
        if config.lr_schedule != "constant":
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        for k, v in extra.items():
            writer.add_scalar(f"train/{k}", v, step)
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if step % config.eval_every == 0 or step == config.steps:
            evaluate_and_save(running)
            line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items())
            bar.write(line) if progress else log(line)
        elif time.monotonic() - saved_at >= CHECKPOINT_SECONDS:  # long evaluation intervals lose little when killed
            save(running)
    bar.close()
    writer.close()
    return rows
