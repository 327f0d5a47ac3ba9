"""The callbacks of a training run (:func:`rims_rl.rl.training.train`), built on SB3's where SB3 has one.

- Schedules: :class:`EveryNTimestepsAligned`, SB3's ``EveryNTimesteps`` kept on the multiples of its period,
  so that a resumed run checkpoints and evaluates at the same steps as an uninterrupted one.
- Checkpoints: :class:`AtomicCheckpointCallback`, run by an :class:`EveryNTimestepsAligned`. SB3's
  ``CheckpointCallback`` counts calls, not env steps (its count restarts at 0 on resume), and writes with
  a plain ``model.save``: both its schedule and its write would be replaced, so it is not subclassed.
- Evaluation: :class:`RawScoreEvalCallback`, run by an :class:`EveryNTimestepsAligned`. It calls SB3's
  ``evaluate_policy`` as SB3's ``EvalCallback`` does (on the raw-score env, so the scores are whole
  games' raw ones), but ``EvalCallback`` does not fit: it counts calls, not env steps; it writes only
  ``evaluations.npz`` (our ``evaluations.csv`` rows would need its per-episode results, which it keeps
  only when it writes that file); and it dumps the logger at each evaluation, which would write the last
  update's pending ``train/*`` values at the evaluation's step instead of at the rollout's end.
- Progress: :class:`ProgressCallback`, SB3's ``ProgressBarCallback`` with a plain tqdm bar over the run's
  whole step count (a resumed run starts part-way) and steps/s and scores in its postfix.
- :class:`MechanismHeatmapCallback` and :class:`HParamCallback` have no SB3 counterpart. The heatmap counts
  rollouts, not steps: it draws the finished rollout buffer at a rollout's end, which ``EveryNTimesteps``
  (called at each step) cannot catch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EveryNTimesteps, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Figure, HParam
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from ..utils.run_dir import RunDir, atomic_write


class EveryNTimestepsAligned(EveryNTimesteps):
    """SB3's ``EveryNTimesteps`` on the multiples of ``n_steps``: ``callback`` runs at the first step at or
    past each multiple of ``n_steps`` (SB3's counts from the last trigger and from 0, so it would drift when
    ``n_steps`` is not a multiple of the env count, and fire at once after a resume), and at the end of
    training ``callback.on_training_end`` runs too.

    :param n_steps: environment steps between triggers (0 = never)
    :param callback: the callback run at each trigger
    """

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self.last_time_trigger = self.num_timesteps - self.num_timesteps % self.n_steps if self.n_steps else 0

    def _on_step(self) -> bool:
        return super()._on_step() if self.n_steps else True

    def _on_event(self) -> bool:
        self.last_time_trigger -= self.last_time_trigger % self.n_steps  # the multiple just passed
        return super()._on_event()

    def _on_training_end(self) -> None:
        self.callback.on_training_end()


class AtomicCheckpointCallback(BaseCallback):
    """Each time it is called, saves the model to ``checkpoints/model_<steps>_steps.zip``
    (:meth:`RunDir.checkpoint_path`) atomically (a temporary file renamed: an interrupted write leaves no
    partial checkpoint) and keeps the newest ``keep``. :meth:`save` alone serves a save on interrupt.

    :param run: the run directory
    :param keep: how many checkpoints to keep
    """

    def __init__(self, run: RunDir, keep: int = 3):
        super().__init__()
        self.run, self.keep = run, keep

    def _on_step(self) -> bool:
        self.save()
        return True

    def save(self) -> Path:
        """Save a checkpoint now (at the model's step) and drop the old ones.

        :return: the checkpoint written
        """
        path = self.run.checkpoint_path(self.model.num_timesteps)  # the model may be a step ahead
        atomic_write(path, self.model.save)
        for _, old in self.run.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


class RawScoreEvalCallback(BaseCallback):
    """Each time it is called, and at the end of training unless that step was evaluated, evaluates on
    whole games with raw scores with SB3's ``evaluate_policy`` (recurrent state handled by ``predict``),
    appends a row to ``evaluations.csv`` and records ``eval/mean_reward`` and ``eval/mean_ep_length`` (the
    evaluation at the end, which comes after ``learn``'s last log dump, is written to the logger's outputs
    at once).

    With ``env_name`` (MiniGrid runs, runs with evaluation envs) each evaluation also appends a row per env to
    ``env_evaluations.csv``, with the success rate (episodes with a positive return): the training env's, then
    each env of ``extra_envs`` played zero-shot with as many episodes, recorded as ``eval/<env>/mean_reward``
    and ``eval/<env>/success_rate``.

    :param eval_env: the evaluation env (no reward clipping, no episodic life)
    :param n_episodes: games per evaluation
    :param run: the run directory whose ``evaluations.csv`` gets the rows
    :param deterministic: greedy actions
    :param env_name: the training env's name in ``env_evaluations.csv`` (``None``: no such rows)
    :param extra_envs: zero-shot evaluation envs by name (their spaces those of ``eval_env``)
    """

    def __init__(
        self,
        eval_env: VecEnv,
        n_episodes: int,
        run: RunDir,
        deterministic: bool = False,
        env_name: str | None = None,
        extra_envs: dict[str, VecEnv] | None = None,
    ):
        super().__init__()
        self.eval_env, self.n_episodes, self.run, self.deterministic = eval_env, n_episodes, run, deterministic
        self.env_name, self.extra_envs = env_name, dict(extra_envs or {})
        self.last_eval_step = -1
        self.last_score: float | None = None

    def _on_step(self) -> bool:
        self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.last_eval_step != self.model.num_timesteps:
            self.evaluate()
            # learn() dumped its last logs before this evaluation: write its values alone now (dumping
            # everything would log the last update's train/* a second time at this step)
            values = {k: v for k, v in self.logger.name_to_value.items() if k.startswith("eval/")}
            for fmt in self.logger.output_formats:
                fmt.write(values, {k: self.logger.name_to_excluded.get(k, ()) for k in values}, self.last_eval_step)
            for key in values:
                del self.logger.name_to_value[key]

    def evaluate(self) -> float:
        """Evaluate now, at the model's step.

        :return: the mean raw score
        """
        step = self.model.num_timesteps
        scores, lengths = evaluate_policy(
            self.model, self.eval_env, self.n_episodes, self.deterministic, return_episode_rewards=True, warn=False
        )
        row = dict(
            timesteps=step,
            mean_score=float(np.mean(scores)),
            std_score=float(np.std(scores)),
            min_score=float(np.min(scores)),
            max_score=float(np.max(scores)),
            mean_length=float(np.mean(lengths)),
            episodes=len(scores),
            wall_time=round(time.time(), 3),
        )
        self.run.append_evaluation(row)
        self.logger.record("eval/mean_reward", row["mean_score"])
        self.logger.record("eval/mean_ep_length", row["mean_length"])
        if self.env_name is not None:
            self.run.append_env_evaluation(_env_row(self.env_name, step, scores, lengths))
            self.logger.record("eval/success_rate", success_rate(scores))
            for name, env in self.extra_envs.items():
                extra = _env_row(name, step, *self._play(env))
                self.run.append_env_evaluation(extra)
                self.logger.record(f"eval/{name}/mean_reward", extra["mean_score"])
                self.logger.record(f"eval/{name}/success_rate", extra["success_rate"])
        self.last_eval_step, self.last_score = step, row["mean_score"]
        return row["mean_score"]

    def _play(self, env: VecEnv) -> tuple[list[float], list[int]]:
        return evaluate_policy(
            self.model, env, self.n_episodes, self.deterministic, return_episode_rewards=True, warn=False
        )


def success_rate(scores: list[float] | np.ndarray) -> float:
    """The share of episodes with a positive return: MiniGrid's success (its reward is positive only at the goal).

    :param scores: episode returns ``[N]``, ``N >= 1``
    """
    return float(np.mean(np.asarray(scores, dtype=float) > 0))


def _env_row(env: str, step: int, scores: list[float], lengths: list[int]) -> dict[str, Any]:
    """A row of ``env_evaluations.csv`` (:data:`rims_rl.utils.run_dir.ENV_EVALUATION_FIELDS`)."""
    return dict(
        env=env,
        timesteps=step,
        mean_score=float(np.mean(scores)),
        std_score=float(np.std(scores)),
        success_rate=success_rate(scores),
        mean_length=float(np.mean(lengths)),
        episodes=len(scores),
        wall_time=round(time.time(), 3),
    )


class MechanismHeatmapCallback(BaseCallback):
    """Every ``every`` rollouts (the first one included), logs ``rim/active_mechanisms``: an image of which
    mechanisms were active (rows) at each step (columns) of the first environments' rollouts. RIM cores only.

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


class ProgressCallback(ProgressBarCallback):
    """SB3's progress bar, as a plain tqdm bar over the run's whole step count (``learn``'s
    ``total_timesteps``; a resumed run starts part-way), with steps/s and the latest scores in its postfix.

    :param evaluator: the evaluation whose latest score the postfix shows (``None``: none)
    """

    def __init__(self, evaluator: RawScoreEvalCallback | None = None):
        super().__init__()
        self.evaluator = evaluator

    def _on_training_start(self) -> None:
        self.pbar = tqdm(
            total=self.locals["total_timesteps"],
            initial=self.num_timesteps,
            unit="step",
            dynamic_ncols=True,
            smoothing=0.05,
        )
        self._t0, self._s0, self._last = time.time(), self.num_timesteps, 0.0

    def _on_step(self) -> bool:
        self.pbar.update(self.num_timesteps - self.pbar.n)
        now = time.time()
        if now - self._last > 1.0:
            self._last = now
            postfix = {"steps/s": f"{(self.num_timesteps - self._s0) / max(now - self._t0, 1e-9):.0f}"}
            episodes = self.model.ep_info_buffer
            if episodes:
                postfix["score"] = f"{np.mean([e['r'] for e in episodes]):.1f}"
            if self.evaluator is not None and self.evaluator.last_score is not None:
                postfix["eval"] = f"{self.evaluator.last_score:.1f}"
            self.pbar.set_postfix(postfix, refresh=False)
        return True


class HParamCallback(BaseCallback):
    """Sends the run's scalar hyperparameters to TensorBoard once, at the start of a fresh run.

    :param hparams: the hyperparameters (values that are not numbers, strings or booleans are left out)
    """

    def __init__(self, hparams: dict[str, Any]):
        super().__init__()
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}

    def _on_training_start(self) -> None:
        if self.num_timesteps == 0:
            self.logger.record(
                "hparams",
                HParam(self.hparams, {"rollout/ep_rew_mean": 0.0, "eval/mean_reward": 0.0}),
                exclude=("stdout", "log", "json", "csv"),
            )

    def _on_step(self) -> bool:
        return True
