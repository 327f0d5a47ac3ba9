"""RimPPO: sb3-contrib's RecurrentPPO with a per-mechanism rollout buffer, chunked training and RIM logging."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.policies import BasePolicy

from ..core.rim import compile_by_default
from .buffers import RimDictRolloutBuffer, RimRolloutBuffer, chunk_length
from .cores import RimCore
from .policies import CnnRimPolicy, MlpRimPolicy, MultiInputRimPolicy, RimActorCriticPolicy


class RimPPO(RecurrentPPO):
    """PPO (Schulman et al. 2017) for recurrent policies with a RIM core (Goyal et al., ICLR 2021).

    ``RecurrentPPO`` (sb3-contrib) with two changes, both in the rollout buffer:

    - it stores each step's state per mechanism, ``[n_steps, n_envs, U, H]`` (h and c, actor and critic),
      and the actor's active mechanisms, bool ``[n_steps, n_envs, U]``;
    - training minibatches are chunks of ``sequence_length`` steps that start from their stored states
      (episode starts inside a chunk reset the state), all chunks of a minibatch run by one call of the
      core: the core runs ``sequence_length`` steps per minibatch instead of up to ``n_steps`` with padding.

    After each rollout it logs ``rim/active_frequency_u{k}`` (how often mechanism k was active) and
    ``rim/selection_entropy`` (entropy in nats of the empirical distribution of active sets; at most
    ``log C(U, k_active)``, ``rim/selection_entropy_max``).

    :param policy: ``"MlpRimPolicy"``, ``"CnnRimPolicy"``, ``"MultiInputRimPolicy"`` or a
        :class:`RimActorCriticPolicy` subclass (with ``policy_kwargs=dict(core="lstm")`` the LSTM baseline)
    :param env: environment or its id
    :param sequence_length: steps per training chunk (default 16; capped at ``n_steps``), a divisor of
        ``batch_size``; ``None`` = the whole rollout of an environment (CleanRL's minibatches of whole envs).
        Any ``n_steps`` works: where the chunk length does not divide it, each environment's last chunk
        is shorter (padded and masked, as sb3-contrib pads its sequences). Truncated backpropagation:
        gradients do not flow into a chunk's stored start state.
    :param compile_core: run the RIM's time loop under ``torch.compile`` (``RIMCell.compile_sequence``):
        one graph per chunk length for training (chunks longer than 16 steps run as compiled blocks) and
        one for acting, several times faster per step on a CPU once compiled (the first rollout and update
        pay the compilation, about a minute per graph on a CPU, seconds from inductor's on-disk cache).
        ``None`` (default): on, unless the environment variable ``RIMS_RL_COMPILE`` is ``0`` (the test
        suite sets it). The LSTM core is already fused.
    :param args: positional arguments of ``RecurrentPPO`` after ``env`` (``learning_rate``, ``n_steps``...)
    :param kwargs: keyword arguments of ``RecurrentPPO``
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpRimPolicy": MlpRimPolicy,
        "CnnRimPolicy": CnnRimPolicy,
        "MultiInputRimPolicy": MultiInputRimPolicy,
    }

    def __init__(
        self,
        policy: str | type[RimActorCriticPolicy],
        env: Any,
        *args,
        sequence_length: int | None = 16,
        compile_core: bool | None = None,
        **kwargs,
    ):
        self.sequence_length = sequence_length
        self.compile_core = compile_core
        super().__init__(policy, env, *args, **kwargs)

    def _setup_model(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, RimActorCriticPolicy)):
            raise ValueError(
                f"RimPPO needs a RimActorCriticPolicy (MlpRimPolicy, CnnRimPolicy, MultiInputRimPolicy), "
                f"got {getattr(self.policy_class, '__name__', self.policy_class)}"
            )
        length = chunk_length(self.sequence_length, self.n_steps)
        if self.batch_size is not None and self.batch_size % length:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of sequence_length={length}")
        super()._setup_model()
        if self.compile_core is None:
            self.compile_core = compile_by_default()
        if self.compile_core:
            for core in (self.policy.lstm_actor, self.policy.lstm_critic):
                if isinstance(core, RimCore):
                    core.rim.compile_sequence()
        buffer_cls = RimDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else RimRolloutBuffer
        self.rollout_buffer = buffer_cls(
            self.n_steps,
            self.observation_space,
            self.action_space,
            self.policy.lstm_actor.state_shape,
            self.device,
            gae_lambda=self.gae_lambda,
            gamma=self.gamma,
            n_envs=self.n_envs,
            sequence_length=self.sequence_length,
            active_source=lambda: self.policy.last_active,
        )

    def train(self) -> None:
        """RecurrentPPO's update over the chunked minibatches, then the mechanism statistics."""
        super().train()
        if self.policy.core_kind == "rim":
            for name, value in mechanism_statistics(
                self.rollout_buffer.active, self.policy.lstm_actor.rim.k_active
            ).items():
                self.logger.record(f"rim/{name}", value)


def mechanism_statistics(active: np.ndarray, k_active: int) -> dict[str, float]:
    """Activation frequency of each mechanism and the entropy of the selected sets.

    :param active: bool [..., U], the active mechanisms at each step
    :param k_active: mechanisms active per step
    :return: ``active_frequency_u{k}`` for each mechanism k (fraction of steps it was active),
        ``selection_entropy`` (nats, of the empirical distribution of active sets) and
        ``selection_entropy_max`` = ``log C(U, k_active)``
    """
    active = active.reshape(-1, active.shape[-1])
    stats = {f"active_frequency_u{k}": float(f) for k, f in enumerate(active.mean(0))}
    codes = active.astype(np.int64) @ (1 << np.arange(active.shape[-1], dtype=np.int64))  # set -> bitmask
    p = np.unique(codes, return_counts=True)[1] / len(codes)
    stats["selection_entropy"] = float(-(p * np.log(p)).sum())
    stats["selection_entropy_max"] = math.log(math.comb(active.shape[-1], k_active))
    return stats
