"""Atari, MinAtar and MiniGrid environments as Stable-Baselines3 vector envs, from one factory
(:func:`make_atari_env`).

Atari, DeepMind preprocessing (Mnih et al. 2015; Machado et al. 2018 for the evaluation protocol):
noop reset (up to 30), fire on reset, frame skip 4 with a max-pool over the last two frames, 84x84
grayscale, optional reward clipping and episodic life, frame stack (1 for recurrent agents, 4 for
feedforward). Two implementations:

- ``backend="ale"`` (default): ``ale_py``'s C++ ``AtariVectorEnv`` behind an SB3 ``VecEnv`` adapter,
  :class:`AleVecEnv`; observations ``[n_envs, stack, 84, 84]`` uint8, channel first.
- ``backend="sb3"``: SB3's ``make_atari_env`` (``AtariWrapper`` in a ``DummyVecEnv``) and
  ``VecFrameStack``; observations ``[n_envs, 84, 84, stack]``.

Either way the episode statistics in ``info["episode"]`` are the *raw* game score and length of whole
games (not clipped, not per life), so ``rollout/ep_rew_mean`` reads like a paper's number.

MinAtar (Young & Tian 2019, the ``minatar`` package): ``MinAtar/Breakout`` etc. as ``[C, 10, 10]``
uint8 observations in {0, 1}, sticky actions 0.1, the minimal action set.

MiniGrid and BabyAI (Chevalier-Boisvert et al. 2023, the ``minigrid`` package; any registered
``MiniGrid-*``/``BabyAI-*`` id, and this project's ``RIMs-*`` tasks, :mod:`rims_rl.rl.minigrid_envs`): the
standard partially observed 7x7 symbolic view (``minigrid.wrappers.ImgObsWrapper``: object, colour and state
indices per cell; BabyAI's mission text is dropped), channel first through SB3's ``VecTransposeImage``:
observations ``[n_envs, 3, 7, 7]`` uint8, 7 actions. Rewards are MiniGrid's: ``1 - 0.9 * steps / max_steps``
on success, else 0.
"""

from __future__ import annotations

import difflib
import re
import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack, VecTransposeImage
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

MINATAR_GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def atari_games() -> dict[str, str]:
    """Short names (``"Pong"``, ``"BeamRider"``) of the ROMs that ship with ``ale_py`` -> ROM ids."""
    from ale_py import roms

    return {_camel(rom): rom for rom in roms.get_all_rom_ids()}


#: prefixes of the gymnasium ids resolved as MiniGrid envs
MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-", "RIMs-")


def minigrid_ids() -> list[str]:
    """Every registered MiniGrid, BabyAI and ``RIMs-*`` gymnasium id (importing ``minigrid`` registers them)."""
    import minigrid  # noqa: F401 -- registers MiniGrid-* and BabyAI-*

    from .minigrid_envs import register_envs

    register_envs()
    return [env_id for env_id in gym.registry if env_id.startswith(MINIGRID_PREFIXES)]


def resolve_env(name: str) -> tuple[str, str]:
    """Map a user's env name to ``("atari", rom_id)``, ``("minatar", game)`` or ``("minigrid", gym_id)``.

    Accepts short names (``Pong``, ``pong``, ``space_invaders``), ALE ids (``ALE/Pong-v5``,
    ``PongNoFrameskip-v4``), MinAtar names (``MinAtar/Breakout``, ``MinAtar/Breakout-v1``) and registered
    MiniGrid / BabyAI ids (``MiniGrid-MultiRoom-N2-S4-v0``, ``BabyAI-GoToRedBall-v0``,
    ``RIMs-PickupDistractors-Train-v0``).

    :raises ValueError: unknown name, listing close matches
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"env must be a non-empty string, got {name!r}")
    if name.startswith(MINIGRID_PREFIXES):
        ids = minigrid_ids()
        if name in ids:
            return "minigrid", name
        close = difflib.get_close_matches(name, ids, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see rims_rl.rl.envs.minigrid_ids()"
        raise ValueError(f"unknown MiniGrid env {name!r}{hint}")
    if name.lower().startswith("minatar/"):
        game = re.sub(r"-v\d+$", "", name.split("/", 1)[1])
        for short, internal in MINATAR_GAMES.items():
            if game.lower() in (short.lower(), internal):
                return "minatar", internal
        raise ValueError(f"unknown MinAtar game {name!r}; known: " + ", ".join(f"MinAtar/{g}" for g in MINATAR_GAMES))
    games = atari_games()
    base = name.split("/", 1)[1] if name.startswith("ALE/") else name
    base = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", base)
    for short, rom in games.items():
        if base.lower() in (short.lower(), rom):
            return "atari", rom
    candidates = list(games) + [f"MinAtar/{g}" for g in MINATAR_GAMES]
    close = difflib.get_close_matches(base, candidates, n=5, cutoff=0.5)
    close += [c for c in candidates if base.lower() in c.lower() and c not in close][: 5 - len(close)]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see rims_rl.rl.envs.atari_games()"
    raise ValueError(f"unknown env {name!r}{hint}")


class AleVecEnv(VecEnv):
    """SB3 ``VecEnv`` over ``ale_py``'s C++ ``AtariVectorEnv`` (DeepMind preprocessing in C++).

    The C++ env runs without reward clipping and without episodic life; both happen here so that the
    episode statistics stay the raw score of whole games. With ``episodic_life`` a lost life ends the
    learner's episode (``done``, no bootstrap, recurrent state reset) while the game goes on.

    :param game: ROM id, e.g. ``"pong"`` (see :func:`resolve_env`)
    :param n_envs: number of environments
    :param seed: environment ``i`` is seeded with ``seed + i``; ``None`` = random
    :param frame_stack: frames stacked per observation (1 for recurrent agents)
    :param clip_reward: rewards passed to the learner are ``sign(r)``
    :param episodic_life: a lost life ends the learner's episode
    :param noop_max: up to this many no-ops on reset
    :param repeat_action_probability: sticky actions (0 as ``NoFrameskip-v4``, 0.25 as ``-v5``)
    :param max_episode_frames: a game is truncated after this many frames (108k = 30 minutes)
    :param num_threads: C++ worker threads (0 = one per env, capped by the library)
    """

    def __init__(
        self,
        game: str,
        n_envs: int,
        seed: int | None = None,
        frame_stack: int = 1,
        clip_reward: bool = True,
        episodic_life: bool = False,
        noop_max: int = 30,
        repeat_action_probability: float = 0.0,
        max_episode_frames: int = 108_000,
        num_threads: int = 0,
    ):
        from ale_py.vector_env import AtariVectorEnv

        self._env = AtariVectorEnv(
            game,
            n_envs,
            stack_num=frame_stack,
            reward_clipping=False,
            episodic_life=False,
            noop_max=noop_max,
            repeat_action_probability=repeat_action_probability,
            max_num_frames_per_episode=max_episode_frames,
            autoreset_mode="SameStep",
            num_threads=num_threads,
        )
        self.render_mode = None
        super().__init__(n_envs, self._env.single_observation_space, self._env.single_action_space)
        self.game, self.clip_reward, self.episodic_life, self._seed = game, clip_reward, episodic_life, seed
        self._returns = np.zeros(n_envs)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._lives = np.zeros(n_envs, dtype=np.int64)
        self._actions: np.ndarray | None = None
        self._t0 = time.time()

    def reset(self) -> VecEnvObs:
        obs, info = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first reset only, as SB3 does
        self._returns[:] = 0
        self._lengths[:] = 0
        self._lives[:] = info["lives"]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self._env.step(self._actions)
        game_over = terminated | truncated
        self._returns += reward
        self._lengths += 1
        lives = info["lives"]
        life_lost = self.episodic_life & (lives < self._lives) & ~game_over
        dones = game_over | life_lost
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            if game_over[i]:
                infos[i]["terminal_observation"] = info["final_obs"][i]
                infos[i]["episode"] = {
                    "r": float(self._returns[i]),
                    "l": int(self._lengths[i]),
                    "t": round(time.time() - self._t0, 6),
                }
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                self._returns[i] = 0
                self._lengths[i] = 0
            else:  # a life lost, the game goes on: the observation is the next step of the same game
                infos[i]["terminal_observation"] = obs[i]
                infos[i]["TimeLimit.truncated"] = False
        self._lives = lives.astype(np.int64)
        rewards = np.sign(reward) if self.clip_reward else reward
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self._env.close()

    # the rest of the VecEnv interface: the C++ env has no per-env Python objects
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise NotImplementedError(f"AleVecEnv has no per-env methods ({method_name!r}); use backend='sb3'")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def get_images(self) -> list[np.ndarray]:
        raise NotImplementedError("AleVecEnv does not render; use backend='sb3' for rgb frames")


class MinAtarEnv(gym.Env):
    """One MinAtar game as a gymnasium env: observations ``[C, 10, 10]`` uint8 in {0, 1}, the minimal
    action set, sticky actions.

    :param game: ``"breakout"``, ``"space_invaders"``, ``"asterix"``, ``"freeway"`` or ``"seaquest"``
    :param sticky_action_prob: probability of repeating the last action (MinAtar default 0.1)
    :param max_episode_steps: truncate an episode after this many steps
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str, sticky_action_prob: float = 0.1, max_episode_steps: int = 100_000):
        import minatar

        self._env = minatar.Environment(game, sticky_action_prob=sticky_action_prob)
        self._actions = self._env.minimal_action_set()
        h, w, c = self._env.state_shape()
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self.game, self.max_episode_steps, self._t = game, max_episode_steps, 0

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self._env.state().transpose(2, 0, 1), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        self._env.reset()
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        reward, terminated = self._env.act(self._actions[int(action)])
        self._t += 1
        return self._obs(), float(reward), bool(terminated), self._t >= self.max_episode_steps, {}

    def render(self) -> np.ndarray:
        """An RGB image [10*8, 10*8, 3]: one colour per channel."""
        state = self._env.state()
        colours = np.array(__import__("matplotlib").colormaps["tab10"].colors)[: state.shape[-1]] * 255
        img = np.zeros((*state.shape[:2], 3))
        for c in range(state.shape[-1]):
            img[state[..., c]] = colours[c]
        return np.kron(img, np.ones((8, 8, 1))).astype(np.uint8)


def make_minatar_env(game: str, n_envs: int = 8, seed: int | None = None, **env_kwargs) -> VecEnv:
    """``n_envs`` MinAtar games in a ``DummyVecEnv`` with SB3's ``Monitor`` (raw episode returns).

    :param game: a MinAtar name accepted by :func:`resolve_env` or an internal id such as ``"breakout"``
    """
    from stable_baselines3.common.env_util import make_vec_env

    internal = game if game in MINATAR_GAMES.values() else resolve_env(game if "/" in game else f"MinAtar/{game}")[1]
    return make_vec_env(lambda: MinAtarEnv(internal, **env_kwargs), n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)


def check_same_spaces(
    env: str, venv: VecEnv, reference: str, observation_space: gym.Space, action_space: gym.Space
) -> None:
    """An agent of ``reference`` can play ``env`` zero-shot only if both have the same observation and action spaces.

    :param env: the name of the env to play
    :param venv: that env
    :param reference: the agent's env (or its run), named in the error
    :param observation_space: the agent's observation space
    :param action_space: the agent's action space
    :raises ValueError: the spaces differ, naming both
    """
    if venv.observation_space != observation_space or venv.action_space != action_space:
        raise ValueError(
            f"cannot play {env} with an agent of {reference}: {env} has observations {venv.observation_space} "
            f"and actions {venv.action_space}, the agent {observation_space} and {action_space}"
        )


def make_minigrid_env(env_id: str, n_envs: int = 8, seed: int | None = None) -> VecEnv:
    """``n_envs`` copies of a MiniGrid / BabyAI env in a ``DummyVecEnv``: SB3's ``Monitor`` (raw episode
    returns), ``minigrid.wrappers.ImgObsWrapper`` (the 7x7x3 partial view alone) and SB3's ``VecTransposeImage``.

    :param env_id: a registered id accepted by :func:`resolve_env` (``"MiniGrid-DoorKey-5x5-v0"``)
    :param n_envs: number of environments
    :param seed: env ``i`` gets ``seed + i`` at its first reset (later episodes draw new layouts)
    :return: observations ``[n_envs, 3, 7, 7]`` uint8 (object, colour, state indices), ``Discrete(7)`` actions
    """
    from minigrid.wrappers import ImgObsWrapper
    from stable_baselines3.common.env_util import make_vec_env

    kind, env_id = resolve_env(env_id)
    if kind != "minigrid":
        raise ValueError(f"{env_id!r} is not a MiniGrid env; known: rims_rl.rl.envs.minigrid_ids()")
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=ImgObsWrapper, vec_env_cls=DummyVecEnv)
    return VecTransposeImage(venv)


def make_atari_env(
    env: str,
    n_envs: int = 8,
    seed: int | None = None,
    frame_stack: int = 1,
    clip_reward: bool = True,
    episodic_life: bool = False,
    backend: str = "ale",
    **kwargs,
) -> VecEnv:
    """An Atari game as an SB3 vector env, DeepMind preprocessing; or a MinAtar game or a MiniGrid env.

    :param env: ``"Pong"``, ``"BeamRider"``, ``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``, a MinAtar
        name such as ``"MinAtar/Breakout"`` or a MiniGrid / BabyAI id such as ``"MiniGrid-DoorKey-5x5-v0"``
        (for those two ``frame_stack``, ``clip_reward``, ``episodic_life`` and ``backend`` do not apply;
        see :func:`make_minatar_env`, :func:`make_minigrid_env`)
    :param n_envs: number of parallel environments
    :param seed: env ``i`` gets ``seed + i``
    :param frame_stack: 1 for recurrent agents, 4 for feedforward ones
    :param clip_reward: the learner sees ``sign(reward)``; episode statistics stay raw
    :param episodic_life: a lost life ends the learner's episode (episode statistics: whole games)
    :param backend: ``"ale"`` (C++ vector env, fast) or ``"sb3"`` (SB3's ``make_atari_env``)
    :param kwargs: passed to :class:`AleVecEnv` (``noop_max``, ``repeat_action_probability``...)
    :raises ValueError: unknown env (with close matches), bad sizes or backend
    """
    kind, game = resolve_env(env)
    if not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    if kind == "minatar":
        return make_minatar_env(game, n_envs, seed)
    if kind == "minigrid":
        return make_minigrid_env(game, n_envs, seed)
    if not isinstance(frame_stack, int) or frame_stack < 1:
        raise ValueError(f"frame_stack must be a positive integer, got {frame_stack!r}")
    if backend == "ale":
        return AleVecEnv(game, n_envs, seed, frame_stack, clip_reward, episodic_life, **kwargs)
    if backend == "sb3":
        import ale_py
        from stable_baselines3.common.env_util import make_atari_env as sb3_make_atari_env

        gym.register_envs(ale_py)
        venv = sb3_make_atari_env(
            f"{_camel(game)}NoFrameskip-v4",
            n_envs=n_envs,
            seed=seed,
            wrapper_kwargs=dict(clip_reward=clip_reward, terminal_on_life_loss=episodic_life),
        )
        return VecFrameStack(venv, frame_stack) if frame_stack > 1 else venv
    raise ValueError(f"backend must be 'ale' or 'sb3', got {backend!r}")
