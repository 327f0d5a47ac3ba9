"""Training runs: one run directory with the resolved config, TensorBoard events, atomic checkpoints,
raw-score evaluations and the final model (an SB3 zip and a weights-only export).

Run directory layout::

    config.yaml            env, agent, seed and every hyperparameter (the resolved preset)
    tb/<Algo>_1/           TensorBoard events: SB3's metrics, rim/* mechanism statistics and heatmaps
    checkpoints/           model_<steps>_steps.zip, written atomically (temp file + rename)
    evaluations.csv        timesteps, raw full-game score mean/std/min/max, mean length
    final_model.zip        SB3 zip (unpickles code: load only files you trust)
    final_weights.pt       weights-only export, readable with torch.load(..., weights_only=True)
"""

from __future__ import annotations

import csv
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Figure, HParam
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from .config import AgentConfig, load_agent, schedule
from .envs import make_atari_env, resolve_env
from .extractors import MinAtarCNN, SpatialNatureCNN
from .ppo import RimPPO

ALGOS: dict[str, type[BaseAlgorithm]] = {"rim_ppo": RimPPO, "ppo": PPO}
EXTRACTORS = {"NatureCNN": NatureCNN, "MinAtarCNN": MinAtarCNN, "SpatialNatureCNN": SpatialNatureCNN}
WEIGHTS_FORMAT = "rims_rl.weights/1"


def atomic_write(path: Path, write) -> None:
    """Write a file so that it is either complete or absent: ``write(f)`` into a temp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_env(env: str, config: AgentConfig, n_envs: int, seed: int | None, evaluation: bool = False) -> VecEnv:
    """The training env, or with ``evaluation`` whole games with raw rewards (no clipping, no episodic life)."""
    return make_atari_env(
        env, n_envs, seed, frame_stack=config.frame_stack,
        clip_reward=config.clip_reward and not evaluation, episodic_life=config.episodic_life and not evaluation,
    )


def policy_kwargs(config: AgentConfig) -> dict[str, Any]:
    """``config.policy_kwargs`` with the features extractor's name replaced by its class."""
    kwargs = dict(config.policy_kwargs)
    name = kwargs.get("features_extractor_class")
    if isinstance(name, str):
        if name not in EXTRACTORS:
            raise ValueError(f"unknown features_extractor_class {name!r}; known: {sorted(EXTRACTORS)}")
        kwargs["features_extractor_class"] = EXTRACTORS[name]
    return kwargs


def build_model(config: AgentConfig, env: VecEnv, seed: int | None, device: str = "auto",
                tensorboard_log: str | None = None) -> BaseAlgorithm:
    """A fresh ``RimPPO`` (RIM or LSTM core) or ``PPO`` from the config."""
    kwargs = dict(
        learning_rate=schedule(config.learning_rate, "learning_rate"), n_steps=config.n_steps,
        batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma, gae_lambda=config.gae_lambda,
        clip_range=schedule(config.clip_range, "clip_range"), ent_coef=config.ent_coef, vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm, policy_kwargs=policy_kwargs(config), seed=seed, device=device,
        tensorboard_log=tensorboard_log, verbose=0,
    )
    if config.algo == "rim_ppo":
        return RimPPO(config.policy, env, sequence_length=config.sequence_length, **kwargs)
    return PPO(config.policy, env, **kwargs)


class AtomicCheckpointCallback(BaseCallback):
    """Saves ``checkpoints/model_<steps>_steps.zip`` every ``save_freq`` env steps, atomically, keeping
    the newest ``keep``.

    :param save_freq: environment steps between checkpoints (0 = only at the end of training)
    :param directory: the checkpoints folder
    :param keep: how many checkpoints to keep
    """

    def __init__(self, save_freq: int, directory: Path, keep: int = 3):
        super().__init__()
        self.save_freq, self.directory, self.keep = save_freq, Path(directory), keep
        self._next = None

    def _on_training_start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.save_freq:
            self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self._next is not None and self.num_timesteps >= self._next:
            self.save()
            self._next += self.save_freq
        return True

    def save(self) -> Path:
        path = self.directory / f"model_{self.model.num_timesteps}_steps.zip"  # the model may be a step ahead
        atomic_write(path, self.model.save)
        for old in checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    found = [(int(p.stem.split("_")[1]), p) for p in Path(directory).glob("model_*_steps.zip")]
    return [p for _, p in sorted(found)]


class RawScoreEvalCallback(BaseCallback):
    """Evaluates every ``eval_freq`` env steps and at the end of training on whole games with raw
    scores, with SB3's ``evaluate_policy`` (recurrent state handled by ``predict``); appends a row to
    ``evaluations.csv`` and records ``eval/mean_reward``.

    :param eval_env: the evaluation env (no reward clipping, no episodic life)
    :param eval_freq: environment steps between evaluations (0 = only at the end)
    :param n_episodes: games per evaluation
    :param csv_path: the CSV file to append to
    :param deterministic: greedy actions
    """

    FIELDS = ("timesteps", "mean_score", "std_score", "min_score", "max_score", "mean_length", "episodes", "wall_time")

    def __init__(self, eval_env: VecEnv, eval_freq: int, n_episodes: int, csv_path: Path, deterministic: bool = False):
        super().__init__()
        self.eval_env, self.eval_freq, self.n_episodes, self.csv_path = eval_env, eval_freq, n_episodes, Path(csv_path)
        self.deterministic = deterministic
        self.last_eval_step = -1
        self.last_score: float | None = None
        self._next = None

    def _on_training_start(self) -> None:
        if self.eval_freq:
            self._next = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self._next is not None and self.num_timesteps >= self._next:
            self.evaluate()
            self._next += self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if self.last_eval_step != self.num_timesteps:
            self.evaluate()

    def evaluate(self) -> float:
        scores, lengths = evaluate_policy(self.model, self.eval_env, self.n_episodes, self.deterministic,
                                          return_episode_rewards=True, warn=False)
        row = dict(timesteps=self.num_timesteps, mean_score=float(np.mean(scores)), std_score=float(np.std(scores)),
                   min_score=float(np.min(scores)), max_score=float(np.max(scores)),
                   mean_length=float(np.mean(lengths)), episodes=len(scores), wall_time=round(time.time(), 3))
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.logger.record("eval/mean_reward", row["mean_score"])
        self.logger.record("eval/mean_ep_length", row["mean_length"])
        self.last_eval_step, self.last_score = self.num_timesteps, row["mean_score"]
        return row["mean_score"]


class MechanismHeatmapCallback(BaseCallback):
    """Every ``every`` rollouts, logs ``rim/active_mechanisms``: an image of which mechanisms were
    active (rows) at each step (columns) of the first environments' rollouts. RIM cores only.

    :param every: rollouts between images
    :param n_envs_shown: environments drawn, one panel each
    """

    def __init__(self, every: int = 10, n_envs_shown: int = 2):
        super().__init__()
        self.every, self.n_envs_shown, self._rollouts = every, n_envs_shown, 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        active = getattr(self.model.rollout_buffer, "active", None)
        if active is None or getattr(self.model.policy, "core_kind", None) != "rim":
            return
        self._rollouts += 1
        if self._rollouts % self.every != 1 and self.every > 1:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = min(self.n_envs_shown, active.shape[1])
        fig, axes = plt.subplots(shown, 1, figsize=(8, 1.2 * shown + 0.6), squeeze=False)
        for i in range(shown):
            ax = axes[i, 0]
            ax.imshow(active[:, i, :].T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
            ax.set_ylabel(f"env {i}\nmechanism")
        axes[-1, 0].set_xlabel("rollout step")
        fig.suptitle(f"active mechanisms (black) at {self.num_timesteps} steps")
        self.logger.record("rim/active_mechanisms", Figure(fig, close=True), exclude=("stdout", "log", "json", "csv"))
        plt.close(fig)


class ProgressCallback(BaseCallback):
    """A tqdm bar over the run's total steps, with steps/s and the latest scores in its postfix."""

    def __init__(self, total: int, evaluator: RawScoreEvalCallback | None = None):
        super().__init__()
        self.total, self.evaluator = total, evaluator
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", dynamic_ncols=True, smoothing=0.05)
        self._t0, self._s0, self._last = time.time(), self.num_timesteps, 0.0

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        now = time.time()
        if now - self._last > 1.0:
            self._last = now
            postfix = {"steps/s": f"{(self.num_timesteps - self._s0) / max(now - self._t0, 1e-9):.0f}"}
            episodes = self.model.ep_info_buffer
            if episodes:
                postfix["score"] = f"{np.mean([e['r'] for e in episodes]):.1f}"
            if self.evaluator is not None and self.evaluator.last_score is not None:
                postfix["eval"] = f"{self.evaluator.last_score:.1f}"
            self.bar.set_postfix(postfix, refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class HParamCallback(BaseCallback):
    """Sends the run's scalar hyperparameters to TensorBoard once, at the start of a fresh run."""

    def __init__(self, hparams: dict[str, Any]):
        super().__init__()
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}

    def _on_training_start(self) -> None:
        if self.num_timesteps == 0:
            self.logger.record("hparams", HParam(self.hparams, {"rollout/ep_rew_mean": 0.0, "eval/mean_reward": 0.0}),
                               exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


def export_weights(model: BaseAlgorithm, run_config: dict[str, Any], path: Path) -> None:
    """A weights-only export: the policy's ``state_dict`` and the run config, readable with
    ``torch.load(path, weights_only=True)`` (an SB3 zip unpickles code)."""
    data = {"format": WEIGHTS_FORMAT, "run": run_config,
            "state_dict": {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.policy.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(data, f))


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {path.name} not found")
    with open(path) as f:
        return yaml.safe_load(f)


def train(
    env: str,
    agent: str = "rim",
    seed: int = 0,
    total_timesteps: int | None = None,
    n_envs: int | None = None,
    device: str = "auto",
    run_dir: str | Path | None = None,
    hp: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[BaseCallback] | None = None,
) -> Path:
    """Train an agent on an Atari or MinAtar game, writing everything to one run directory.

    :param env: game name (``"Pong"``, ``"ALE/Breakout-v5"``, ``"MinAtar/Breakout"``)
    :param agent: ``"rim"``, ``"lstm"`` or ``"ppo"`` (a preset in ``agents/``)
    :param seed: seed of the model and of the environments
    :param total_timesteps: total env steps (default: the preset's ``n_timesteps``)
    :param n_envs: parallel environments (default: the preset's)
    :param device: torch device, ``"auto"`` = CUDA if available
    :param run_dir: the run directory (default ``runs/<env>-<agent>-s<seed>``)
    :param hp: ``key=value`` hyperparameter overrides
    :param resume: continue the run in ``run_dir`` from its last checkpoint (same step counter and
        TensorBoard run); its saved config is used
    :param progress: show a progress bar
    :param callbacks: extra SB3 callbacks, run after the run's own (e.g. the grid runner's timing record)
    :return: the run directory
    :raises ValueError, FileNotFoundError, FileExistsError: bad input, with a one-line message
    """
    kind, _ = resolve_env(env)
    run_dir = Path(run_dir or f"runs/{env.replace('/', '-')}-{agent}-s{seed}")
    checkpoint_dir = run_dir / "checkpoints"
    if resume:
        if not run_dir.is_dir():
            raise FileNotFoundError(f"cannot resume: run directory {run_dir} does not exist")
        saved = _read_run_config(run_dir)
        for key, given in (("env", env), ("agent", agent)):
            if saved[key] != given:
                raise ValueError(f"cannot resume {run_dir}: it was trained with {key}={saved[key]!r}, not {given!r}")
        config = AgentConfig.from_dict(saved["hyperparameters"], source=str(run_dir / "config.yaml"))
        if hp:
            raise ValueError(f"--hp cannot change a resumed run ({run_dir}); its config.yaml holds the hyperparameters")
        seed = saved["seed"]
        if total_timesteps is not None:
            config.n_timesteps = total_timesteps
    else:
        if (run_dir / "config.yaml").exists():
            raise FileExistsError(f"run directory {run_dir} already holds a run: pass --resume, or another --run-dir")
        config = load_agent(agent, kind, hp)
        if total_timesteps is not None:
            config.n_timesteps = total_timesteps
        if n_envs is not None:
            config.n_envs = n_envs
        config.validate("the command line")
    run_config = {"env": env, "agent": agent, "seed": seed, "hyperparameters": config.to_dict(),
                  "command": shlex.join(sys.argv)}

    venv = build_env(env, config, config.n_envs, seed)
    eval_env = build_env(env, config, min(config.eval_episodes, config.n_envs), seed + 10_000, evaluation=True)
    algo = ALGOS[config.algo]
    if resume and checkpoints(checkpoint_dir):
        latest = checkpoints(checkpoint_dir)[-1]
        model = algo.load(latest, env=venv, device=device, tensorboard_log=str(run_dir / "tb"))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", lambda f: f.write(yaml.safe_dump(run_config, sort_keys=False).encode()))
        model = build_model(config, venv, seed, device, tensorboard_log=str(run_dir / "tb"))
    remaining = config.n_timesteps - model.num_timesteps
    checkpointer = AtomicCheckpointCallback(config.checkpoint_freq, checkpoint_dir)
    evaluator = RawScoreEvalCallback(eval_env, config.eval_freq, config.eval_episodes, run_dir / "evaluations.csv")
    run_callbacks = [checkpointer, evaluator, MechanismHeatmapCallback(), HParamCallback(config.to_dict())]
    if progress:
        run_callbacks.append(ProgressCallback(config.n_timesteps, evaluator))
    run_callbacks += callbacks or []
    try:
        if remaining > 0:
            model.learn(remaining, callback=CallbackList(run_callbacks), reset_num_timesteps=not resume,
                        tb_log_name=algo.__name__)
    except KeyboardInterrupt:
        checkpointer.save()
        raise
    finally:
        venv.close()
        eval_env.close()
    atomic_write(run_dir / "final_model.zip", model.save)
    export_weights(model, run_config, run_dir / "final_weights.pt")
    return run_dir
