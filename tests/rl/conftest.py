"""Shared helpers of the RL tests: tiny RIMs, tiny environments (one torch thread: ``tests/conftest.py``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: a RIM small enough for fast tests (6 mechanisms of 4 units, 5 active: the paper's RL competition)
TINY_RIM = dict(
    hidden_size=4, input_key_size=8, input_value_size=8, comm_key_size=4, comm_value_size=4, num_comm_heads=2
)
TINY_POLICY = dict(rim_kwargs=TINY_RIM, net_arch=dict(pi=[8], vf=[8]))


class SpacesEnv(gym.Env):
    """Random observations of any space; reward 1 when the first action component is positive
    (so that advantages are not all zero); episodes of random length 2..6, ended by truncation
    (``truncate=True``) or termination.

    :param observation_space: what to observe
    :param action_space: what to act with
    :param truncate: end episodes by truncation (time limit) instead of termination
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, truncate: bool = False):
        self.observation_space, self.action_space, self.truncate = observation_space, action_space, truncate
        self._left = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._left = int(self.np_random.integers(2, 7))
        return self.observation_space.sample(), {}

    def step(self, action):
        reward = float(np.asarray(action).reshape(-1)[0] > 0)
        self._left -= 1
        end = self._left <= 0
        return self.observation_space.sample(), reward, end and not self.truncate, end and self.truncate, {}


def box(*shape, dtype=np.float32, low=-1.0, high=1.0):
    return spaces.Box(low, high, shape, dtype=dtype)


IMAGE = spaces.Box(0, 255, (1, 44, 44), dtype=np.uint8)  # NatureCNN's last feature map: 2 x 2 positions
