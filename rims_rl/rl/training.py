"""Training runs: one run directory (its layout and files: :mod:`rims_rl.utils.run_dir`) with the
resolved config, TensorBoard events, atomic checkpoints, raw-score evaluations and the final model (an
SB3 zip and a weights-only export).

Everything a run needs is checked before its directory is created: the config is resolved, the envs and
the model are built once (the model is the one trained) and the output folders are probed. A run trains
only while it holds its directory's lock. A resume starts from the newest checkpoint (or final model)
that loads, and first drops what the killed run logged after it (evaluation rows, TensorBoard steps).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecEnv

from ..utils.run_dir import RunDir, atomic_torch_save, atomic_write, check_writable, identity_differences
from .callbacks import (
    AtomicCheckpointCallback,
    EveryNTimestepsAligned,
    HParamCallback,
    MechanismHeatmapCallback,
    ProgressCallback,
    RawScoreEvalCallback,
)
from .config import AgentConfig, load_agent, schedule
from .envs import check_same_spaces, make_atari_env, resolve_env
from .extractors import MinAtarCNN, MiniGridCNN, SpatialNatureCNN
from .policies import parameter_counts
from .ppo import RimPPO

ALGOS: dict[str, type[BaseAlgorithm]] = {"rim_ppo": RimPPO, "ppo": PPO}
EXTRACTORS = {
    "NatureCNN": NatureCNN,
    "MinAtarCNN": MinAtarCNN,
    "MiniGridCNN": MiniGridCNN,
    "SpatialNatureCNN": SpatialNatureCNN,
}
WEIGHTS_FORMAT = "rims_rl.weights/1"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_env(env: str, config: AgentConfig, n_envs: int, seed: int | None, evaluation: bool = False) -> VecEnv:
    """The training env, or with ``evaluation`` whole games with raw rewards (no clipping, no episodic life)."""
    return make_atari_env(
        env,
        n_envs,
        seed,
        frame_stack=config.frame_stack,
        clip_reward=config.clip_reward and not evaluation,
        episodic_life=config.episodic_life and not evaluation,
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


def build_model(
    config: AgentConfig, env: VecEnv, seed: int | None, device: str = "auto", tensorboard_log: str | None = None
) -> BaseAlgorithm:
    """A fresh ``RimPPO`` (RIM or LSTM core) or ``PPO`` from the config.

    :raises ValueError: a value the algorithm or the policy refuses (``k_active`` above ``num_units``, a
        negative learning rate, an unknown ``rim_kwargs`` key...), in one line
    """
    kwargs = dict(
        learning_rate=schedule(config.learning_rate, "learning_rate"),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=schedule(config.clip_range, "clip_range"),
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs(config),
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=0,
    )
    try:
        if config.algo == "rim_ppo":
            return RimPPO(config.policy, env, sequence_length=config.sequence_length, **kwargs)
        return PPO(config.policy, env, **kwargs)
    except (TypeError, AssertionError) as e:  # a policy_kwargs key or value the policy cannot take
        raise ValueError(f"cannot build the model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def resolve_config(
    env: str,
    agent: str = "rim",
    hp: list[str] | dict[str, Any] | None = None,
    total_timesteps: int | None = None,
    n_envs: int | None = None,
) -> AgentConfig:
    """The full configuration of a new run: the preset of ``agent`` for the game's kind, ``--hp``
    overrides, then the total steps and env count.

    :raises ValueError: unknown env, agent or hyperparameter, or a value of the wrong type
    """
    kind, _ = resolve_env(env)
    config = load_agent(agent, kind, hp)
    if total_timesteps is not None:
        config.n_timesteps = total_timesteps
    if n_envs is not None:
        config.n_envs = n_envs
    config.validate("the command line")
    return config


def run_config(env: str, agent: str, seed: int, config: AgentConfig) -> dict[str, Any]:
    """What identifies a run in its ``config.yaml`` (see :data:`rims_rl.utils.run_dir.IDENTITY_KEYS`)."""
    return {"env": env, "agent": agent, "seed": seed, "hyperparameters": config.to_dict()}


def check_buildable(env: str, config: AgentConfig, seed: int = 0, eval_envs: tuple[str, ...] = ()) -> dict[str, int]:
    """Build the run's env and model once on the CPU, as ``train`` would, and drop them; and each of
    ``eval_envs``, checking that it has the env's observation and action spaces.

    :return: the policy's parameter counts (:func:`~rims_rl.rl.policies.parameter_counts`)
    :raises ValueError: a value the env, the algorithm or the policy refuses; an evaluation env of other spaces
    """
    venv = build_env(env, config, config.n_envs, seed)
    try:
        for name in eval_envs:
            other = build_env(name, config, 1, seed, evaluation=True)
            try:
                check_same_spaces(name, other, env, venv.observation_space, venv.action_space)
            finally:
                other.close()
        return parameter_counts(build_model(config, venv, seed, "cpu").policy)
    finally:
        venv.close()


def export_weights(model: BaseAlgorithm, run_config: dict[str, Any], path: Path) -> None:
    """A weights-only export: the policy's ``state_dict`` and the run config, readable with
    ``torch.load(path, weights_only=True)`` (an SB3 zip unpickles code)."""
    data = {
        "format": WEIGHTS_FORMAT,
        "run": run_config,
        "state_dict": {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.policy.state_dict().items()},
    }
    atomic_torch_save(data, path)


def export_half_precision(source: Path, dest: Path) -> Path:
    """A weights-only export with its floating-point tensors in float16, half the size (for files kept in
    a repository); loading casts them back to the model's float32.

    :param source: a weights-only export (``final_weights.pt``)
    :param dest: the file written (atomically)
    :raises ValueError: ``source`` is not a weights export
    """
    data = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{source} is not a rims_rl weights export (format {WEIGHTS_FORMAT})")
    halves = {}  # one copy of a tensor stored under several names (a features extractor shared by actor and critic)
    for key, value in data["state_dict"].items():
        if torch.is_tensor(value) and value.is_floating_point():
            alias = (value.data_ptr(), value.shape, value.stride())
            halves.setdefault(alias, value.half())
            data["state_dict"][key] = halves[alias]
    data["dtype"] = "float16"
    return atomic_torch_save(data, dest)


class _PurgingTensorBoardOutputFormat(TensorBoardOutputFormat):
    """SB3's TensorBoard output whose new event file starts with a purge at ``purge_step``: TensorBoard
    then hides the events at and after that step left by a killed process (``SummaryWriter(purge_step=...)``)."""

    def __init__(self, folder: str | Path, purge_step: int):  # noqa: D107 -- super() would open a second file
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self._is_closed = False


def _learn(
    run: RunDir,
    model: BaseAlgorithm,
    config: AgentConfig,
    eval_env: VecEnv,
    run_info: dict[str, Any],
    resumed: bool,
    progress: bool,
    callbacks: list[BaseCallback],
    log: Callable[[str], None],
    extra_envs: dict[str, VecEnv] | None = None,
) -> None:
    """Train ``model`` to ``config.n_timesteps`` in ``run`` (whose lock is held), after dropping what a
    killed run logged beyond the model's step, then save the final model, its weights and ``done.json``.
    ``extra_envs`` (zero-shot evaluation envs by name) are evaluated with the training env; a MiniGrid run or
    one with such envs writes ``env_evaluations.csv`` (success rates)."""
    step = model.num_timesteps
    dropped = run.truncate_evaluations(step)
    if dropped:
        log(f"{run}: dropped {dropped} evaluation row(s) after step {step}, from the run that was stopped")
    algo = type(model)
    tb = run.tb_folder(algo.__name__)
    # a fresh run's file starts at step 0 (nothing to hide); a resumed one hides its predecessor's steps > step
    model.set_logger(Logger(str(tb), [_PurgingTensorBoardOutputFormat(tb, step + 1 if step else 0)]))
    checkpointer = AtomicCheckpointCallback(run)
    per_env = bool(extra_envs) or resolve_env(run_info["env"])[0] == "minigrid"
    evaluator = RawScoreEvalCallback(
        eval_env, config.eval_episodes, run, env_name=run_info["env"] if per_env else None, extra_envs=extra_envs
    )
    run_callbacks = [
        EveryNTimestepsAligned(config.checkpoint_freq, checkpointer),
        EveryNTimestepsAligned(config.eval_freq, evaluator),  # and once at the end
        MechanismHeatmapCallback(),
        HParamCallback(config.to_dict()),
    ]
    if progress:
        run_callbacks.append(ProgressCallback(evaluator))
    run_callbacks += callbacks
    if getattr(model, "compile_core", False) and getattr(model.policy, "core_kind", None) == "rim":
        log(
            "compiling the RIM loop in the first rollout and update (about a minute on a CPU, seconds once "
            "cached; RIMS_RL_COMPILE=0 turns it off)"
        )
    try:
        model.learn(
            config.n_timesteps - step,
            callback=CallbackList(run_callbacks),
            reset_num_timesteps=not resumed,
            tb_log_name=algo.__name__,
        )
    except KeyboardInterrupt:
        checkpointer.save()
        raise
    finally:
        model.logger.close()
    atomic_write(run.final_model, model.save)
    export_weights(model, run_info, run.final_weights)
    run.mark_done(
        {
            "env": run_info["env"],
            "agent": run_info["agent"],
            "seed": run_info["seed"],
            "steps": int(model.num_timesteps),
        }
    )


def _load_newest(
    run: RunDir, algo: type[BaseAlgorithm], venv: VecEnv, device: str, log: Callable[[str], None]
) -> BaseAlgorithm | None:
    """The newest checkpoint (or final model) of ``run`` that loads, saying which ones did not;
    ``None`` if there is none.

    :raises ValueError: there are some, and none loads
    """
    candidates = run.resume_candidates()
    failed = []
    for _, path in candidates:
        try:
            model = algo.load(path, env=venv, device=device)
        except Exception as e:  # noqa: BLE001 -- a truncated or foreign file: fall back to an older one
            failed.append(path.name)
            log(
                f"{run}: {path.relative_to(run.path)} cannot be loaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); trying an older one"
            )
            continue
        if failed:
            log(f"{run}: resuming from {path.relative_to(run.path)} ({model.num_timesteps} steps) instead")
        return model
    if candidates:
        raise ValueError(
            f"cannot resume {run}: none of its {len(candidates)} checkpoint(s) can be loaded "
            f"({', '.join(failed)}); move them aside to train it again from step 0"
        )
    return None


def _is_done(run: RunDir, target: int, log: Callable[[str], None]) -> bool:
    """Whether ``run`` is finished at ``target`` steps or beyond (saying so)."""
    try:
        reached = run.finished_steps() if run.status() == "finished" else None
    except ValueError:  # an unreadable final model: resume from the newest checkpoint that loads
        reached = None
    if reached is not None and target <= reached:
        log(f"{run} is finished ({reached} steps); nothing to do (a larger --total-timesteps continues it)")
        return True
    return False


def train(
    env: str,
    agent: str = "rim",
    seed: int | None = None,
    total_timesteps: int | None = None,
    n_envs: int | None = None,
    device: str = "auto",
    run_dir: str | Path | RunDir | None = None,
    hp: list[str] | dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[BaseCallback] | None = None,
    log: Callable[[str], None] = _stderr,
    eval_envs: list[str] | None = None,
) -> Path:
    """Train an agent on an Atari or MinAtar game or a MiniGrid env, writing everything to one run directory.

    Nothing is written before the whole run has been checked: the config resolved, the envs and the
    model built, the output folders probed. The run trains while holding its directory's lock.

    :param env: game name (``"Pong"``, ``"ALE/Breakout-v5"``, ``"MinAtar/Breakout"``)
    :param agent: ``"rim"``, ``"lstm"`` or ``"ppo"`` (a preset in ``agents/``)
    :param seed: seed of the model and of the environments (default 0; on resume, the saved one)
    :param total_timesteps: total env steps (default: the preset's ``n_timesteps``; on resume, the saved
        one; a larger value continues a finished run from its final model)
    :param n_envs: parallel environments (default: the preset's)
    :param device: torch device, ``"auto"`` = CUDA if available
    :param run_dir: the run directory (default ``runs/<env>-<agent>-s<seed>``)
    :param hp: hyperparameter overrides: ``--hp`` ``KEY=VALUE`` strings or the same as a nested mapping
    :param resume: continue the run in ``run_dir`` from its newest checkpoint that loads (same step counter
        and TensorBoard run); its saved config is used, and ``seed``, ``n_envs`` and ``hp``, when given,
        must resolve to the same configuration. A finished run is left as it is unless
        ``total_timesteps`` is larger than the steps it reached; a run stopped before its first
        checkpoint trains again from step 0, saying so.
    :param progress: show a progress bar
    :param callbacks: extra SB3 callbacks, run after the run's own (e.g. the grid runner's timing record)
    :param log: where one-line notes go (fallbacks, dropped rows, nothing to do); default stderr
    :param eval_envs: envs the agent also plays zero-shot at each evaluation (same observation and action spaces
        as ``env``; rows in ``env_evaluations.csv``); recorded in ``config.yaml`` as ``eval_envs``, outside the
        run's identity (default: none; on resume, the saved ones)
    :return: the run directory
    :raises ValueError, FileNotFoundError, FileExistsError: bad input, with a one-line message
        (:class:`~rims_rl.utils.run_dir.RunInUseError`: another process trains the run)
    """
    resolve_env(env)
    for name in eval_envs or []:
        resolve_env(name)
    run = (
        run_dir
        if isinstance(run_dir, RunDir)
        else RunDir(run_dir or f"runs/{env.replace('/', '-')}-{agent}-s{0 if seed is None else seed}")
    )
    with contextlib.ExitStack() as stack:
        if resume:
            if not run.path.is_dir():
                raise FileNotFoundError(f"cannot resume: run directory {run} does not exist")
            saved = run.read_config()
            config = AgentConfig.from_dict(saved["hyperparameters"], source=str(run.config_path))
            wanted_config = AgentConfig.from_dict(saved["hyperparameters"], source=str(run.config_path))
            if hp:  # given again on resume: must resolve to the saved configuration
                wanted_config = resolve_config(env, agent, hp)
            if n_envs is not None:
                wanted_config.n_envs = n_envs
            wanted = run_config(env, agent, saved.get("seed") if seed is None else seed, wanted_config)
            differences = identity_differences(
                run_config(saved["env"], saved["agent"], saved["seed"], config),
                wanted,
                ignore=("hyperparameters.n_timesteps",),
            )
            if differences:
                raise ValueError(f"cannot resume {run}: it was trained with {'; '.join(differences)}")
            seed = saved["seed"]
            config.n_timesteps = total_timesteps or config.n_timesteps
            if _is_done(run, config.n_timesteps, log):  # checked before the lock: a finished run is left untouched
                return run.path
            stack.enter_context(run.lock())
            if _is_done(run, config.n_timesteps, log):  # finished by another process meanwhile
                return run.path
            finished = run.status() == "finished"
            info = {**saved, **run_config(env, agent, seed, config)}
            eval_envs = saved.get("eval_envs", []) if eval_envs is None else eval_envs
        else:
            if run.status() != "new":
                raise FileExistsError(f"run directory {run} already holds a run: pass --resume, or another --run-dir")
            config = resolve_config(env, agent, hp, total_timesteps, n_envs)
            seed = 0 if seed is None else seed
            info = {**run_config(env, agent, seed, config), "parameters": None, "command": shlex.join(sys.argv)}
        if eval_envs:  # outside the identity (IDENTITY_KEYS): more evaluation envs do not change the run
            info["eval_envs"] = list(eval_envs)
        else:
            info.pop("eval_envs", None)

        venv = build_env(env, config, config.n_envs, seed)
        stack.callback(venv.close)
        eval_env = build_env(env, config, min(config.eval_episodes, config.n_envs), seed + 10_000, evaluation=True)
        stack.callback(eval_env.close)
        extra_envs = {}
        for name in eval_envs or []:
            extra_envs[name] = build_env(name, config, min(config.eval_episodes, config.n_envs), seed + 20_000, True)
            stack.callback(extra_envs[name].close)
            check_same_spaces(name, extra_envs[name], env, venv.observation_space, venv.action_space)
        algo = ALGOS[config.algo]
        model = _load_newest(run, algo, venv, device, log) if resume else None
        if resume and model is None:
            if finished:  # kept without its model files (done.json and logs only)
                raise ValueError(
                    f"cannot continue {run}: it is finished, and neither its {run.final_model.name} "
                    f"nor a checkpoint is there to continue from"
                )
            log(f"{run} has no checkpoint to resume from: training it again from step 0")
        if model is None:
            model = build_model(config, venv, seed, device)
        info["parameters"] = parameter_counts(model.policy)

        if not resume:
            stack.enter_context(run.lock())  # creates the folder: everything above has been checked
            if run.status() != "new":  # another process started it meanwhile
                raise FileExistsError(f"run directory {run} already holds a run: pass --resume, or another --run-dir")
        for folder in (run.checkpoint_dir, run.tb_folder(algo.__name__)):
            folder.mkdir(parents=True, exist_ok=True)
            check_writable(folder, folder=True)
        if not resume or info != saved:  # a resume records a new total or the parameter counts
            run.write_config(info)
        resumed = resume and model.num_timesteps > 0
        _learn(run, model, config, eval_env, info, resumed, progress, callbacks or [], log, extra_envs)
    return run.path
