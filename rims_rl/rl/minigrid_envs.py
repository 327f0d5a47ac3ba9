"""MiniGrid tasks of this project: a pick-up task with novel distractors at evaluation (in the spirit of the RIM
paper's generalisation experiments), registered as gymnasium ids by :func:`register_envs`.

- ``RIMs-PickupDistractors-Train-v0``: pick up the yellow ball in a 7x7 room among distractors (keys and balls)
  whose colours are red, green or blue.
- ``RIMs-PickupDistractors-Test-v0``: the same task, the distractors' colours purple or grey: colours never seen
  in training.

Both have MiniGrid's observation (the 7x7x3 symbolic partial view, through :mod:`rims_rl.rl.envs`) and action
spaces, so a policy trained on one is evaluated zero-shot on the other.
"""

from __future__ import annotations

import gymnasium as gym
from minigrid.core.constants import COLOR_NAMES
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Key
from minigrid.envs.fetch import FetchEnv

#: the object to pick up, in every variant
TARGET = ("ball", "yellow")
#: distractor colours seen in training ...
TRAIN_COLOURS = ("red", "green", "blue")
#: ... and the held-out ones, seen only at evaluation
TEST_COLOURS = ("purple", "grey")
#: registered id -> distractor colours
DISTRACTOR_ENVS = {
    "RIMs-PickupDistractors-Train-v0": TRAIN_COLOURS,
    "RIMs-PickupDistractors-Test-v0": TEST_COLOURS,
}


class PickupDistractorsEnv(FetchEnv):
    """MiniGrid's ``FetchEnv`` with a fixed target (a yellow ball, so the task needs no mission text) and
    distractors drawn from given colours. Picking up the target ends the episode with MiniGrid's reward
    ``1 - 0.9 * steps / max_steps``; picking up a distractor ends it with 0 (``FetchEnv.step``).

    :param distractor_colours: colours the distractors are drawn from (MiniGrid colour names, not yellow)
    :param size: the room's side, walls included
    :param num_distractors: distractors per episode (keys and balls, random types and colours)
    :param max_steps: episode limit (default ``5 * size**2``, as ``FetchEnv``)
    :param kwargs: passed to ``MiniGridEnv`` (``render_mode``...)
    :raises ValueError: an unknown colour, the target's colour, or fewer than one distractor
    """

    def __init__(
        self,
        distractor_colours: tuple[str, ...] = TRAIN_COLOURS,
        size: int = 7,
        num_distractors: int = 3,
        max_steps: int | None = None,
        **kwargs,
    ):
        bad = [c for c in distractor_colours if c not in COLOR_NAMES or c == TARGET[1]]
        if not distractor_colours or bad:
            raise ValueError(
                f"distractor_colours must be MiniGrid colours other than {TARGET[1]!r}, got {distractor_colours!r}; "
                f"allowed: {[c for c in COLOR_NAMES if c != TARGET[1]]}"
            )
        if not isinstance(num_distractors, int) or num_distractors < 1:
            raise ValueError(f"num_distractors must be a positive integer, got {num_distractors!r}")
        self.distractor_colours = tuple(distractor_colours)
        super().__init__(size=size, numObjs=num_distractors + 1, max_steps=max_steps, **kwargs)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.place_obj(Ball(TARGET[1]))
        for _ in range(self.numObjs - 1):
            colour = self._rand_elem(self.distractor_colours)
            self.place_obj(Key(colour) if self._rand_bool() else Ball(colour))
        self.place_agent()
        self.targetType, self.targetColor = TARGET
        self.mission = f"get a {TARGET[1]} {TARGET[0]}"


def register_envs() -> None:
    """Register the ids of :data:`DISTRACTOR_ENVS` with gymnasium (once; later calls do nothing)."""
    for env_id, colours in DISTRACTOR_ENVS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="rims_rl.rl.minigrid_envs:PickupDistractorsEnv",
                kwargs={"distractor_colours": colours},
            )
