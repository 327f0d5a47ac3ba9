"""Small environments that need memory (a feedforward policy cannot solve them, a recurrent one can) and the
memory suite of ``benchmarks/ppo_memory.py``: CartPole without velocities and tasks of POPGym (``popgym``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.wrappers import FlattenObservation, TimeLimit


class CartPoleNoVelEnv(CartPoleEnv):
    """CartPole with the velocities removed from the observation: ``[x, theta]``. sb3-contrib's memory
    benchmark for its LSTM policy (its ``tests/test_lstm.py``): a feedforward policy gets ~50 out of 500,
    a recurrent one ~450+ in 50k steps. Wrap it in ``TimeLimit(env, 500)``."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    @staticmethod
    def _positions(full_obs: np.ndarray) -> np.ndarray:
        return np.asarray(full_obs[[0, 2]], dtype=np.float32)  # x, theta (drop x_dot, theta_dot)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return self._positions(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return self._positions(obs), reward, terminated, truncated, info


class CueRecallEnv(gym.Env):
    """Remember a cue across a delay: the first observation shows one of ``num_cues`` cues (one-hot),
    then ``delay`` blank steps follow, then a query step (last observation entry 1) where the action
    must name the cue: reward 1 if it does, else 0; the episode ends there.

    The query observation is the same whatever the cue, so a feedforward policy's expected return is at
    most ``1 / num_cues``; a policy that remembers gets 1.

    :param num_cues: number of cues and actions
    :param delay: blank steps between the cue and the query
    """

    def __init__(self, num_cues: int = 2, delay: int = 3):
        if not (isinstance(num_cues, int) and num_cues >= 2):
            raise ValueError(f"num_cues must be an integer >= 2, got {num_cues!r}")
        if not (isinstance(delay, int) and delay >= 0):
            raise ValueError(f"delay must be a non-negative integer, got {delay!r}")
        self.num_cues, self.delay = num_cues, delay
        self.observation_space = spaces.Box(0.0, 1.0, (num_cues + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_cues)
        self._cue, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.delay + 1:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue, self._t = int(self.np_random.integers(self.num_cues)), 0
        return self._obs(), {}

    def step(self, action):
        query = self._t == self.delay + 1
        reward = float(query and int(action) == self._cue)
        self._t += 1
        return self._obs(), reward, query, False, {}


@dataclass(frozen=True)
class MemoryTask:
    """One task of the memory suite (``benchmarks/ppo_memory.py``).

    :param name: the task's name, a key of :data:`MEMORY_TASKS`
    :param kind: what it asks of memory (``"recall"``, ``"counting"``, ``"sequence"``, ``"control"``)
    :param make: builds one env (observations already flat: a ``Box``)
    :param max_return: the best possible episode return (POPGym: 1.0; CartPole-NoVel: 500)
    :param random_return: mean episode return of a uniformly random policy, measured by
        :func:`random_return` (1000 episodes, seed 0; ``tests/rl/test_memory_envs.py`` re-measures it);
        0 of the normalised return
    :param description: one line on the task
    """

    name: str
    kind: str
    make: Callable[[], gym.Env]
    max_return: float
    random_return: float
    description: str

    def normalise(self, returns):
        """``(return - random) / (max - random)``: 0 is the random policy, 1 the best possible return."""
        return (np.asarray(returns, dtype=float) - self.random_return) / (self.max_return - self.random_return)


def make_cartpole_novel() -> gym.Env:
    """``CartPoleNoVelEnv`` with sb3-contrib's 500-step limit."""
    return TimeLimit(CartPoleNoVelEnv(), max_episode_steps=500)


def make_popgym(name: str) -> gym.Env:
    """A POPGym env (``popgym.envs.<name>``, Morad et al., ICLR 2023) with its observations flattened for
    SB3: ``Discrete``, ``MultiDiscrete`` and ``Tuple`` observations become one-hot ``Box`` vectors
    (gymnasium's ``FlattenObservation``), so every agent, sb3-contrib's included, sees the same input.

    :param name: a POPGym class name, e.g. ``"RepeatPreviousEasy"``
    """
    import popgym.envs

    env_class = getattr(popgym.envs, name, None)
    if not (isinstance(env_class, type) and issubclass(env_class, gym.Env)):
        raise ValueError(f"unknown POPGym env {name!r}; e.g. RepeatPreviousEasy, CountRecallEasy, AutoencodeEasy")
    env = env_class()
    return env if isinstance(env.observation_space, spaces.Box) else FlattenObservation(env)


def _task(name: str, kind: str, max_return: float, random: float, description: str, make=None) -> MemoryTask:
    return MemoryTask(name, kind, make or partial(make_popgym, name), max_return, random, description)


#: the memory suite: CartPole without velocities (sb3-contrib's benchmark) and POPGym's easy tasks of
#: different kinds. POPGym's episode returns lie in [-1, 1] (the CartPoles' in [0, 1]).
MEMORY_TASKS: dict[str, MemoryTask] = {
    t.name: t
    for t in (
        _task(
            "CartPoleNoVel",
            "control",
            500.0,
            22.55,
            "CartPole, positions only, 500 steps (sb3-contrib's benchmark)",
            make_cartpole_novel,
        ),
        _task("RepeatPreviousEasy", "recall", 1.0, -0.499, "output the suit seen 4 cards ago"),
        _task("RepeatFirstEasy", "recall", 1.0, -0.497, "output the suit of the episode's first card"),
        _task("CountRecallEasy", "counting", 1.0, -0.929, "how often has the queried colour been dealt so far"),
        _task("AutoencodeEasy", "sequence", 1.0, -0.494, "watch a deck, then output it in reverse order"),
        _task(
            "NoisyPositionOnlyCartPoleEasy",
            "control",
            1.0,
            0.112,
            "CartPole, noisy positions (sigma 0.1) only, 200 steps",
        ),
        _task(
            "HigherLowerEasy", "counting", 1.0, 0.0, "guess whether the next card is higher or lower (counting helps)"
        ),
    )
}

#: the tasks a suite runs by default
DEFAULT_MEMORY_TASKS = (
    "CartPoleNoVel",
    "RepeatPreviousEasy",
    "RepeatFirstEasy",
    "CountRecallEasy",
    "AutoencodeEasy",
    "NoisyPositionOnlyCartPoleEasy",
)


def make_memory_env(task: str) -> gym.Env:
    """One env of a suite task (:data:`MEMORY_TASKS`).

    :raises ValueError: an unknown task, listing the known ones
    """
    if task not in MEMORY_TASKS:
        raise ValueError(f"unknown memory task {task!r}; allowed: {', '.join(MEMORY_TASKS)}")
    return MEMORY_TASKS[task].make()


def random_return(task: str, episodes: int = 1000, seed: int = 0) -> float:
    """Mean episode return of uniformly random actions on a suite task.

    :param task: a key of :data:`MEMORY_TASKS`
    :param episodes: episodes played
    :param seed: seeds the env and the action space
    """
    env = make_memory_env(task)
    env.action_space.seed(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    return total / episodes
