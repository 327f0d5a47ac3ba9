"""Rollout buffers that keep each mechanism's state and the active mask, and sample sequence chunks.

sb3-contrib's recurrent buffers cut a minibatch at every episode start, pad the pieces and run the core
over up to the whole rollout per minibatch. These buffers instead cut the rollout of every environment
into chunks of ``sequence_length`` steps; a minibatch is ``batch_size / sequence_length`` chunks, each
starting from the state stored before its first step (episode starts inside a chunk reset the state in
the core), so the core runs ``sequence_length`` steps per minibatch, all chunks in one call. When
``sequence_length`` does not divide ``n_steps``, each environment's last chunk is shorter: it is padded
at its end and masked out of the losses (sb3-contrib's ``mask``).

Shapes: n_steps rollout steps, n_envs environments, U mechanisms, H hidden size of a mechanism,
L layers, C chunks in a minibatch, T = ``sequence_length``, J = ceil(n_steps / T) chunks per environment.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import (
    RecurrentDictRolloutBufferSamples,
    RecurrentRolloutBufferSamples,
    RNNStates,
)

STATE_ARRAYS = ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
STEP_ARRAYS = ("actions", "values", "log_probs", "advantages", "returns", "episode_starts")


def chunk_length(sequence_length: int | None, n_steps: int) -> int:
    """The training chunk length T for a rollout of ``n_steps``: ``sequence_length`` capped at ``n_steps``,
    or ``n_steps`` for ``None``.

    :raises ValueError: ``sequence_length`` neither ``None`` nor a positive integer
    """
    if sequence_length is None:
        return n_steps
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
        raise ValueError(f"sequence_length must be None or a positive integer, got {sequence_length!r}")
    return min(sequence_length, n_steps)


class _MechanismStateChunks:
    """What the RIM buffers add to sb3-contrib's: per-mechanism state storage and chunked sampling.

    Arrays (besides the ``RolloutBuffer`` ones):
    ``hidden_states_pi``, ``cell_states_pi``, ``hidden_states_vf``, ``cell_states_vf``:
    ``[n_steps, n_envs, *state_shape]``, i.e. ``[n_steps, n_envs, U, H]`` for one layer (``[.., L, U, H]``
    for several), the state *before* each step; ``active``: bool ``[n_steps, n_envs, U]``, the actor
    core's active mechanisms at each step (its last layer; all True for an LSTM core, U = 1).
    """

    hidden_states_pi: np.ndarray
    cell_states_pi: np.ndarray
    hidden_states_vf: np.ndarray
    cell_states_vf: np.ndarray
    active: np.ndarray
    _recurrent_base: type  # the sb3-contrib buffer this one extends

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        state_shape: tuple[int, ...],
        device: torch.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        sequence_length: int | None = None,
        active_source: Callable[[], torch.Tensor | None] | None = None,
    ):
        self.state_shape, self.sequence_length = tuple(state_shape), chunk_length(sequence_length, buffer_size)
        self.num_units = self.state_shape[-2]
        self.active_source = active_source
        self._chunks: dict | None = None
        # the parent's own (h, c) arrays are unused: give them a dummy shape
        super().__init__(buffer_size, observation_space, action_space, (1, 1, 1, 1), device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs, *self.state_shape)
        for name in STATE_ARRAYS:
            setattr(self, name, np.zeros(shape, dtype=np.float32))
        self.active = np.ones((self.buffer_size, self.n_envs, self.num_units), dtype=bool)
        self._chunks = None

    def add(self, *args, lstm_states: RNNStates, **kwargs) -> None:
        """Add one step. ``lstm_states``: the state before the step, (h, c) per head, each [L, n_envs, U*H]."""
        for name, state in zip(STATE_ARRAYS, (*lstm_states.pi, *lstm_states.vf)):
            # [L, n_envs, U*H] -> [n_envs, L, U*H] -> [n_envs, *state_shape]
            getattr(self, name)[self.pos] = state.transpose(0, 1).reshape(self.n_envs, *self.state_shape).cpu().numpy()
        active = self.active_source() if self.active_source is not None else None
        if active is not None:
            self.active[self.pos] = active[-1].cpu().numpy()  # [T=1, n_envs, U] -> [n_envs, U]
        super(self._recurrent_base, self).add(*args, **kwargs)  # RolloutBuffer.add: states are stored above

    def _chunk(self, array: np.ndarray) -> torch.Tensor:
        """``[n_steps, n_envs, *shape]`` -> ``[n_envs * J, T, *shape]``, zero-padded at the end of each
        environment's rollout to J * T steps: chunk ``j`` of env ``e`` is row ``e * J + j``."""
        pad = -self.buffer_size % self.sequence_length
        if pad:
            array = np.concatenate([array, np.zeros((pad, *array.shape[1:]), dtype=array.dtype)])
        array = array.swapaxes(0, 1)  # [n_envs, J * T, ...]
        return self.to_torch(np.ascontiguousarray(array).reshape(-1, self.sequence_length, *array.shape[2:]))

    def _chunk_starts(self, array: np.ndarray) -> torch.Tensor:
        """The stored state at each chunk's first step: ``[n_steps, n_envs, *state_shape]`` ->
        ``[n_envs * J, L, U*H]``, rows ordered as in :meth:`_chunk`."""
        starts = array[:: self.sequence_length].swapaxes(0, 1)  # [n_envs, J, *state_shape]
        layers = 1 if len(self.state_shape) == 2 else self.state_shape[0]
        return self.to_torch(
            np.ascontiguousarray(starts).reshape(-1, layers, self.state_shape[-2] * self.state_shape[-1])
        )

    def _prepare_chunks(self) -> dict:
        chunks = {name: self._chunk(getattr(self, name)) for name in STEP_ARRAYS}
        chunks["mask"] = self._chunk(np.ones((self.buffer_size, self.n_envs), dtype=np.float32))  # 0 on padding
        chunks.update({name: self._chunk_starts(getattr(self, name)) for name in STATE_ARRAYS})
        if isinstance(self.observations, dict):
            chunks["observations"] = {key: self._chunk(obs) for key, obs in self.observations.items()}
        else:
            chunks["observations"] = self._chunk(self.observations)
        return chunks

    def get(self, batch_size: int | None = None) -> Generator[RecurrentRolloutBufferSamples, None, None]:
        """Shuffled minibatches of whole chunks, ``batch_size / sequence_length`` chunks each.

        :param batch_size: steps per minibatch, a multiple of ``sequence_length``; ``None`` = everything
        :return: samples in sb3-contrib's layout: per-step tensors ``[C * T, ...]`` chunk-major, states
            (h, c) per head ``[L, C, U*H]``, ``mask`` 1 on real steps, 0 on the padding of short last chunks
        """
        if not self.full:
            raise ValueError("the rollout buffer must be full before sampling from it")
        if batch_size is not None and batch_size % self.sequence_length:
            raise ValueError(f"batch_size={batch_size} must be a multiple of sequence_length={self.sequence_length}")
        if self._chunks is None:
            self._chunks = self._prepare_chunks()
        num_chunks = len(self._chunks["mask"])
        per_batch = num_chunks if batch_size is None else batch_size // self.sequence_length
        order = torch.as_tensor(np.random.permutation(num_chunks), device=self.device)
        for start in range(0, num_chunks, per_batch):
            yield self._get_chunk_samples(order[start : start + per_batch])

    def _get_chunk_samples(self, idx: torch.Tensor) -> RecurrentRolloutBufferSamples:
        """:param idx: chunk rows [C]"""
        c = self._chunks

        def steps(x: torch.Tensor) -> torch.Tensor:  # [C, T, ...] -> [C * T, ...]
            return x[idx].flatten(0, 1)

        def state(name: str) -> torch.Tensor:  # [C, L, U*H] -> [L, C, U*H]
            return c[name][idx].transpose(0, 1).contiguous()

        obs = c["observations"]
        observations = {key: steps(o) for key, o in obs.items()} if isinstance(obs, dict) else steps(obs)
        returns = steps(c["returns"])
        sample_cls = RecurrentDictRolloutBufferSamples if isinstance(obs, dict) else RecurrentRolloutBufferSamples
        return sample_cls(
            observations=observations,
            actions=steps(c["actions"]),
            old_values=steps(c["values"]),
            old_log_prob=steps(c["log_probs"]),
            advantages=steps(c["advantages"]),
            returns=returns,
            lstm_states=RNNStates(
                (state("hidden_states_pi"), state("cell_states_pi")),
                (state("hidden_states_vf"), state("cell_states_vf")),
            ),
            episode_starts=steps(c["episode_starts"]),
            mask=steps(c["mask"]),
        )


class RimRolloutBuffer(_MechanismStateChunks, RecurrentRolloutBuffer):
    """Rollout buffer of ``RimPPO``: per-mechanism states, active masks, chunked minibatches.

    :param buffer_size: n_steps per environment
    :param observation_space: observation space
    :param action_space: action space
    :param state_shape: one environment's state, ``(U, H)`` (or ``(L, U, H)``): the core's ``state_shape``
    :param device: torch device of the samples
    :param gae_lambda: GAE lambda
    :param gamma: discount factor
    :param n_envs: number of environments
    :param sequence_length: T, steps per training chunk (at most ``buffer_size``; a shorter last chunk is
        padded and masked when T does not divide ``buffer_size``); ``None`` = the whole rollout of an environment
    :param active_source: called at each ``add`` for the actor's active mask ``[1, n_envs, U]``
        (``None``, or returning ``None``: not recorded, all True)
    """

    _recurrent_base = RecurrentRolloutBuffer


class RimDictRolloutBuffer(_MechanismStateChunks, RecurrentDictRolloutBuffer):
    """:class:`RimRolloutBuffer` for Dict observations; same parameters."""

    _recurrent_base = RecurrentDictRolloutBuffer
