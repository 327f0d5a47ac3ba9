"""Evaluation rollouts of a trained agent: raw full-game scores, and a video of the game beside a strip
of which mechanisms are active at each step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from ..utils.run_dir import ACTIVITY_FILE, CONFIG_FILE, RunDir, atomic_write_text, check_writable
from .callbacks import success_rate
from .config import AgentConfig
from .envs import check_same_spaces, resolve_env
from .training import ALGOS, WEIGHTS_FORMAT, build_env, build_model


def _run_config_near(path: Path) -> dict[str, Any]:
    for folder in (path.parent, path.parent.parent):
        if (folder / CONFIG_FILE).is_file():
            return RunDir(folder).read_config()
    raise FileNotFoundError(f"no {CONFIG_FILE} next to {path} (or in its parent): cannot tell its env and agent")


def load_trained(path: str | Path, device: str = "cpu") -> tuple[BaseAlgorithm, dict[str, Any]]:
    """Load an agent from a run directory (its weights-only ``final_weights.pt``, else its SB3
    ``final_model.zip``, else its newest checkpoint), an SB3 zip inside a run directory, or a
    weights-only export.

    A weights-only export is read with ``torch.load(..., weights_only=True)``: tensors and plain values,
    no code. An SB3 zip is unpickled (SB3's ``load``), which can run code from the file: load only zips
    you trust (your own runs).

    :return: the model and the run config (``env``, ``agent``, ``seed``, ``hyperparameters``)
    :raises FileNotFoundError, ValueError: nothing loadable there, with a one-line message
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (give a run directory, a .zip model or a .pt weights file)")
    if path.is_dir():
        run = RunDir(path)
        candidates = [run.final_weights, run.final_model] + [p for _, p in run.checkpoints()[::-1]]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(
                f"{path} holds no {run.final_weights.name}, no {run.final_model.name} "
                f"and no checkpoints/model_<steps>_steps.zip"
            )
        path = found[0]
    if path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"{path} is not a rims_rl weights export (format {WEIGHTS_FORMAT})")
        run = data["run"]
        config = AgentConfig.from_dict(run["hyperparameters"], source=str(path))
        env = build_env(run["env"], config, 1, run["seed"], evaluation=True)
        model = build_model(config, env, run["seed"], device)
        model.policy.load_state_dict(data["state_dict"])
        env.close()
        return model, run
    if path.suffix != ".zip":
        raise ValueError(f"{path}: expected a run directory, a .zip model or a .pt weights file")
    run = _run_config_near(path)
    algo = ALGOS[run["hyperparameters"]["algo"]]
    return algo.load(path, device=device), run


def _game_image(obs: np.ndarray, height: int, kind: str = "atari") -> np.ndarray:
    """One observation as an RGB image of the given height: Atari ``[stack, 84, 84]`` (the newest frame),
    MinAtar ``[C, 10, 10]`` (one colour per channel) or MiniGrid's view ``[3, 7, 7]`` (drawn by MiniGrid,
    the agent at the bottom centre facing up)."""
    if kind == "minigrid":
        from minigrid.core.grid import Grid

        grid, visible = Grid.decode(obs.transpose(1, 2, 0))  # [x, y, 3], as MiniGrid encodes it
        img = grid.render(32, agent_pos=(grid.width // 2, grid.height - 1), agent_dir=3, highlight_mask=visible)
    elif obs.shape[0] <= 4 and obs.shape[-1] == 84:  # Atari, channel first
        img = np.repeat(obs[-1][..., None], 3, axis=-1)
    else:  # MinAtar channels
        import matplotlib

        colours = np.array(matplotlib.colormaps["tab10"].colors) * 255
        img = np.zeros((*obs.shape[1:], 3))
        for c in range(obs.shape[0]):
            img[obs[c] > 0] = colours[c % len(colours)]
    scale = max(1, height // img.shape[0])
    img = np.kron(img, np.ones((scale, scale, 1)))
    out = np.zeros((height, img.shape[1], 3))
    out[: img.shape[0]] = img[:height]
    return out.astype(np.uint8)


def _strip(history: list[np.ndarray], height: int, steps: int = 100, cell: int = 3) -> np.ndarray:
    """The last ``steps`` active masks as an image: one row band per mechanism, one column per step,
    white = active, the newest step on the right."""
    units = len(history[-1])
    grid = np.zeros((units, steps), dtype=np.uint8)
    recent = np.array(history[-steps:], dtype=np.uint8).T  # [U, t]
    grid[:, steps - recent.shape[1] :] = recent * 255
    band = height // units
    img = np.kron(grid, np.ones((band, cell), dtype=np.uint8))
    img[band - 1 :: band] = 60  # separators between mechanisms
    out = np.zeros((height, steps * cell), dtype=np.uint8)
    out[: img.shape[0]] = img
    return np.repeat(out[..., None], 3, axis=-1)


def evaluate(
    model: BaseAlgorithm,
    run: dict[str, Any],
    episodes: int = 10,
    deterministic: bool = False,
    seed: int = 12345,
    video: str | Path | None = None,
    max_steps: int = 200_000,
    still: str | Path | None = None,
    env: str | None = None,
) -> dict[str, Any]:
    """Play whole games with raw rewards (no clipping, no episodic life), on the run's env or zero-shot on another.

    :param model: the trained agent (recurrent state handled as ``predict`` does)
    :param run: its run config (``env``, ``hyperparameters``)
    :param episodes: games to play
    :param deterministic: greedy actions
    :param seed: the evaluation env's seed
    :param video: write an mp4 of the first game here (game | active mechanisms strip); checked for
        writing before any game is played
    :param max_steps: stop after this many steps in all (a safety net)
    :param still: write the last frame of the first game (game | active mechanisms strip) here as a PNG
    :param env: play this env instead of the run's (zero-shot: ``MiniGrid-MultiRoom-N4-S5-v1`` for an agent
        trained on ``MiniGrid-MultiRoom-N2-S4-v0``); it must have the agent's observation and action spaces
    :return: ``env`` (the env played), ``trained_on``, ``scores``, ``lengths`` and their mean/std/min/max;
        ``success_rate`` (share of episodes with a positive return) on MiniGrid; ``activation_frequency`` per
        mechanism for RIM agents
    :raises ValueError: bad ``episodes``, an unknown ``env``, or one whose spaces differ from the agent's (naming both)
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    played = run["env"] if env is None else env
    kind, _ = resolve_env(played)
    for path in (video, still):
        if path is not None:
            check_writable(path)  # before the games are played, not after
    config = AgentConfig.from_dict(run["hyperparameters"])
    env = build_env(played, config, 1, seed, evaluation=True)
    try:
        check_same_spaces(played, env, f"{run['env']} ({run['agent']})", model.observation_space, model.action_space)
    except ValueError:
        env.close()
        raise
    core = getattr(model.policy, "lstm_actor", None)
    writer = None
    if video is not None:
        import imageio.v2 as imageio

        Path(video).parent.mkdir(parents=True, exist_ok=True)
        writer = imageio.get_writer(str(video), fps=30, codec="libx264", quality=7, macro_block_size=2)
    obs, state, start = env.reset(), None, np.ones(1, dtype=bool)
    scores, lengths, history, frame = [], [], [], None
    try:
        for _ in range(max_steps):
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            active = getattr(core, "last_active", None)
            if active is not None:
                history.append(active[-1, 0].cpu().numpy().copy())
            if (writer is not None or still is not None) and not scores:
                game = _game_image(obs[0], 252, kind)
                parts = [game] if not history else [game, np.full((252, 8, 3), 30, np.uint8), _strip(history, 252)]
                frame = np.concatenate(parts, axis=1)
                if writer is not None:
                    writer.append_data(frame)
            obs, _, done, infos = env.step(action)
            start = done
            if done[0]:
                scores.append(float(infos[0]["episode"]["r"]))
                lengths.append(int(infos[0]["episode"]["l"]))
                if len(scores) == episodes:
                    break
    finally:
        env.close()
        if writer is not None:
            writer.close()
    if not scores:
        raise RuntimeError(f"no game finished within {max_steps} steps")
    if still is not None and frame is not None:
        import imageio.v2 as imageio

        imageio.imwrite(str(still), frame)
    result: dict[str, Any] = {
        "env": played,
        "trained_on": run["env"],
        "agent": run["agent"],
        "episodes": len(scores),
        "deterministic": deterministic,
        "mean_score": float(np.mean(scores)),
        "std_score": float(np.std(scores)),
        "min_score": float(np.min(scores)),
        "max_score": float(np.max(scores)),
        "mean_length": float(np.mean(lengths)),
        "scores": scores,
        "lengths": lengths,
    }
    if kind == "minigrid":
        result["success_rate"] = success_rate(scores)
    if history:
        result["activation_frequency"] = [round(float(f), 4) for f in np.mean(history, axis=0)]
    if video is not None:
        result["video"] = str(video)
    if still is not None:
        result["still"] = str(still)
    return result


def mechanism_activity(run_dir: str | Path, episodes: int = 3, seed: int = 12345) -> dict[str, Any] | None:
    """How often each mechanism of a finished RIM run's actor core is active, over ``episodes`` whole
    evaluation games (actions sampled, as in training's evaluations), written to the run's
    ``activations.json`` and returned; read from that file when it is already there.

    :param run_dir: the run directory (its ``final_weights.pt`` or ``final_model.zip`` is loaded)
    :param episodes: games played
    :param seed: the evaluation env's seed
    :return: ``{"frequency": [U] floats in [0, 1], "episodes", "steps", "mean_score", "model"}``, or
        ``None`` for a run whose actor core is not a RIM or whose model files are not here
    """
    run_dir = Path(run_dir)
    path = run_dir / ACTIVITY_FILE
    if path.is_file():
        return json.loads(path.read_text())
    run = RunDir(run_dir)
    hyperparameters = run.read_config()["hyperparameters"]
    if "Rim" not in hyperparameters["policy"] or hyperparameters.get("policy_kwargs", {}).get("core", "rim") != "rim":
        return None  # SB3's feedforward policy, or the RIM policy with an LSTM core
    model_file = next((p for p in (run.final_weights, run.final_model) if p.is_file()), None)
    if run.status() != "finished" or model_file is None:
        return None
    model, config = load_trained(model_file)
    result = evaluate(model, config, episodes, deterministic=False, seed=seed)
    activity = {
        "frequency": result["activation_frequency"],
        "episodes": result["episodes"],
        "steps": int(sum(result["lengths"])),
        "mean_score": result["mean_score"],
        "model": model_file.name,
    }
    atomic_write_text(json.dumps(activity, indent=2), path)
    return activity
