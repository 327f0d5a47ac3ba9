"""Agent presets (``agents/*.yaml``, rl-zoo style) loaded into a dataclass that rejects unknown keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..utils.config import as_overrides, build_dataclass, merge, parse_overrides  # noqa: F401 -- parse_overrides: re-exported

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"
#: ``--agent`` names -> preset files
AGENTS = {"rim": "rim_ppo.yaml", "lstm": "lstm_ppo.yaml", "ppo": "ppo.yaml"}


@dataclass
class AgentConfig:
    """Every hyperparameter of a run, explicit. Field defaults are placeholders; presets set them all.

    :param algo: ``"rim_ppo"`` (``RimPPO``, RIM or LSTM core) or ``"ppo"`` (SB3's feedforward PPO)
    :param policy: policy alias (``"CnnRimPolicy"``, ``"CnnPolicy"``...)
    :param n_timesteps: total environment steps
    :param n_envs: parallel environments
    :param frame_stack: frames per observation (1 recurrent, 4 feedforward)
    :param episodic_life: a lost life ends the learner's episode (Atari)
    :param clip_reward: the learner sees ``sign(reward)`` (Atari)
    :param learning_rate: a number or a linear schedule ``"lin_2.5e-4"`` (zoo notation)
    :param clip_range: a number or ``"lin_0.1"``
    :param sequence_length: RimPPO's training chunk length (``None`` = whole rollouts)
    :param eval_freq: environment steps between evaluations (0 = none)
    :param eval_episodes: games per evaluation, raw full-game score
    :param checkpoint_freq: environment steps between checkpoints
    :param policy_kwargs: passed to the policy (``core``, ``rim_kwargs``, ``features_extractor_class`` by name)
    """

    algo: str = "rim_ppo"
    policy: str = "CnnRimPolicy"
    n_timesteps: int = 10_000_000
    n_envs: int = 8
    frame_stack: int = 1
    episodic_life: bool = False
    clip_reward: bool = True
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float | str = "lin_2.5e-4"
    clip_range: float | str = 0.1
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5
    sequence_length: int | None = 16
    eval_freq: int = 100_000
    eval_episodes: int = 5
    checkpoint_freq: int = 100_000
    policy_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> AgentConfig:
        """:raises ValueError: unknown keys (listing the allowed ones) or values of the wrong type"""
        config = build_dataclass(cls, data, "hyperparameter(s)", source)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        if self.algo not in ("rim_ppo", "ppo"):
            raise ValueError(f"algo must be 'rim_ppo' or 'ppo' in {source}, got {self.algo!r}")
        for name in ("n_timesteps", "n_envs", "frame_stack", "n_steps", "batch_size", "n_epochs", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer in {source}, got {value!r}")
        for name in ("eval_freq", "checkpoint_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer in {source}, got {value!r}")
        for name in ("learning_rate", "clip_range"):
            schedule(getattr(self, name), name)
        for name in ("ent_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm"):
            if not isinstance(getattr(self, name), (int, float)) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a number in {source}, got {getattr(self, name)!r}")
        if not isinstance(self.policy_kwargs, dict):
            raise ValueError(f"policy_kwargs must be a mapping in {source}, got {self.policy_kwargs!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def schedule(value: float | str, name: str = "value") -> float | Callable[[float], float]:
    """A constant, or ``"lin_X"``: linear from X to 0 over training (SB3 passes the remaining progress).

    :raises ValueError: neither a number nor ``lin_<number>``
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            pass
        else:
            return lambda progress_remaining: progress_remaining * start
    raise ValueError(f"{name} must be a number or 'lin_<number>', got {value!r}")


def load_agent(agent: str, env_kind: str, overrides: list[str] | dict[str, Any] | None = None) -> AgentConfig:
    """The preset of ``agent`` for ``env_kind`` (``"atari"``, ``"minatar"`` or ``"minigrid"``), with overrides.

    :param agent: a key of :data:`AGENTS`
    :param env_kind: the preset's section
    :param overrides: ``--hp`` ``KEY=VALUE`` strings or the same as a nested mapping
        (:func:`rims_rl.utils.config.as_overrides`)

    :raises ValueError: unknown agent (listing the known ones), unknown or malformed hyperparameters
    """
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; known: {', '.join(AGENTS)}")
    path = AGENTS_DIR / AGENTS[agent]
    with open(path) as f:
        presets = yaml.safe_load(f)
    if env_kind not in presets:
        raise ValueError(f"{path.name} has no {env_kind!r} section; it has {sorted(presets)}")
    data = merge(presets[env_kind], as_overrides(overrides))
    return AgentConfig.from_dict(data, source=f"{path.name} [{env_kind}] with --hp {overrides or []}")
