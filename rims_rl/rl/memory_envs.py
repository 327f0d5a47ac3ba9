"""Small environments that need memory: a feedforward policy cannot solve them, a recurrent one can."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv


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
