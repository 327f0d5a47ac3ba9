"""Attention of RIMs: input attention with a null element, top-k competition, communication attention.

Shapes: T time, B batch, U mechanisms, N input elements, D input size, H hidden size,
K key size, V value size, heads the number of attention heads. Per-mechanism tensors keep the
mechanism axis first, ``[U, B, ...]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .group_cells import GroupLinear, _check_positive


def _check_dropout(name: str, p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p!r}")


def _check_top_k(top_k: int | None, num_units: int) -> None:
    if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= num_units):
        raise ValueError(f"comm_top_k must be None or an integer in 1..num_units={num_units}, got {top_k!r}")


class InputAttention(nn.Module):
    """Multi-head key-value attention of each mechanism over the input elements and a null element.

    The null element is an all-zero input prepended to the elements, so its value is the value
    projection's bias. Keys carry no bias: a key bias ``b`` would add the same ``q·b`` to the score of
    every element of a query and cancel in the softmax, so the null element's score is exactly 0.
    Each mechanism has its own query projection of its hidden state; softmax runs over the ``N + 1``
    elements, scores are scaled by ``1/sqrt(K)``, and values are averaged over heads (Goyal et al. 2021).

    :param input_size: size D of one input element
    :param hidden_size: hidden size H of each mechanism (queries are computed from it)
    :param num_units: number of mechanisms U
    :param key_size: key and query size K per head (paper: 64)
    :param value_size: value size V (paper: 400 for the sequence tasks)
    :param num_heads: number of heads (paper: 1 for the sequence tasks, 4 for RL)
    :param dropout: dropout on the attention probabilities (paper: 0.1 supervised, 0 for RL)
    :param query_bias: a learned bias per mechanism in the query projection, so that a zero hidden
        state still gives each mechanism its own, input-dependent scores (see ``RIMCell``)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_units: int,
        key_size: int = 64,
        value_size: int = 400,
        num_heads: int = 1,
        dropout: float = 0.1,
        query_bias: bool = True,
    ):
        super().__init__()
        _check_positive(key_size=key_size, value_size=value_size, num_heads=num_heads)
        _check_dropout("input_dropout", dropout)
        self.key_size, self.value_size, self.num_heads = key_size, value_size, num_heads
        self.scale = 1.0 / math.sqrt(key_size)
        self.key = nn.Linear(input_size, num_heads * key_size, bias=False)
        self.value = nn.Linear(input_size, num_heads * value_size)
        self.query = GroupLinear(hidden_size, num_heads * key_size, num_units, bias=query_bias)
        self.dropout = nn.Dropout(dropout)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (pre-scaled) and values of the elements, the null element first.

        :param x: elements [..., N, D]
        :return: keys [..., N+1, heads, K] and values [..., N+1, heads, V]
        """
        k = self.key(x).unflatten(-1, (self.num_heads, self.key_size)) * self.scale
        v = self.value(x).unflatten(-1, (self.num_heads, self.value_size))
        k0 = k.new_zeros(k[..., :1, :, :].shape)
        v0 = self.value.bias.view(self.num_heads, self.value_size).expand_as(v[..., :1, :, :])
        return torch.cat([k0, k], dim=-3), torch.cat([v0, v], dim=-3)

    def attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param q: queries [U, B, heads*K]
        :param keys: [B, N+1, heads, K] from :meth:`keys_values`
        :param values: [B, N+1, heads, V]
        :return: attended values [U, B, V] and the probability on the null element [U, B] (head mean)
        """
        q = q.unflatten(-1, (self.num_heads, self.key_size))
        probs = torch.einsum("ubhk,bnhk->ubhn", q, keys).softmax(dim=-1)
        null_prob = probs[..., 0].mean(dim=-1)
        attended = torch.einsum("ubhn,bnhv->ubv", self.dropout(probs), values) / self.num_heads
        return attended, null_prob

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param h: hidden states [U, B, H]
        :param x: input elements [B, N, D]
        :return: attended values [U, B, V], null-element probability [U, B]
        """
        return self.attend(self.query(h), *self.keys_values(x))


def select_active(null_prob: torch.Tensor, k_active: int, largest: bool = False) -> torch.Tensor:
    """The competition: the ``k_active`` mechanisms with the least attention on the null element.

    :param null_prob: attention on the null element [U, B]
    :param k_active: how many mechanisms are active per batch row
    :param largest: the scores given are attention on the input instead (a decreasing function of the
        null attention), so the largest win
    :return: bool mask [U, B] with exactly ``k_active`` True per column
    """
    if k_active == null_prob.shape[0]:
        return torch.ones_like(null_prob, dtype=torch.bool)
    idx = torch.topk(null_prob, k_active, dim=0, largest=largest, sorted=False).indices
    return torch.zeros_like(null_prob, dtype=torch.bool).scatter_(0, idx, True)


class CommunicationAttention(nn.Module):
    """Multi-head attention among mechanisms: each mechanism queries keys and values of all mechanisms.

    Queries, keys and values are per-mechanism projections of the hidden states, computed by one
    grouped matmul; the heads' contexts go through a per-mechanism output projection. The caller adds
    the result residually to the active mechanisms only.

    :param hidden_size: hidden size H of each mechanism
    :param num_units: number of mechanisms U
    :param key_size: key and query size K per head (paper: 32)
    :param value_size: value size V per head (paper: 32)
    :param num_heads: number of heads (paper: 4)
    :param dropout: dropout on the attention probabilities (paper: 0.1 supervised, 0 for RL)
    :param top_k: sparse attention: each query keeps only its ``top_k`` largest probabilities,
        renormalised; ``None`` = dense
    """

    def __init__(
        self,
        hidden_size: int,
        num_units: int,
        key_size: int = 32,
        value_size: int = 32,
        num_heads: int = 4,
        dropout: float = 0.1,
        top_k: int | None = None,
    ):
        super().__init__()
        _check_positive(comm_key_size=key_size, comm_value_size=value_size, num_comm_heads=num_heads)
        _check_dropout("comm_dropout", dropout)
        _check_top_k(top_k, num_units)
        self.key_size, self.value_size, self.num_heads, self.top_k = key_size, value_size, num_heads, top_k
        self.scale = 1.0 / math.sqrt(key_size)
        self.qkv = GroupLinear(hidden_size, num_heads * (2 * key_size + value_size), num_units, bias=False)
        self.out = GroupLinear(num_heads * value_size, hidden_size, num_units, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """:param h: hidden states [U, B, H]
        :return: the communication update [U, B, H] (to be added to the active mechanisms)
        """
        return self.attend(h, self.scaled_qkv_weight())

    def scaled_qkv_weight(self) -> torch.Tensor:
        """The qkv weight [U, H, heads*(2K+V)] with the scores' 1/sqrt(K) folded into the query columns."""
        w = self.qkv.weight
        scale = torch.ones(self.num_heads, 2 * self.key_size + self.value_size, dtype=w.dtype, device=w.device)
        scale[:, : self.key_size] = self.scale
        return w * scale.flatten()

    def attend(self, h: torch.Tensor, qkv_weight: torch.Tensor) -> torch.Tensor:
        """The update from hidden states and the (query-scaled) qkv weight [U, H, heads*(2K+V)].

        With a handful of mechanisms, broadcast products beat ``einsum``'s permutes and bmm calls.
        """
        qkv = torch.bmm(h, qkv_weight).unflatten(-1, (self.num_heads, -1))  # [U, B, heads, 2K+V]
        q, k, v = qkv.split([self.key_size, self.key_size, self.value_size], dim=-1)
        probs = (q.unsqueeze(1) * k).sum(-1).softmax(dim=1)  # [U (query), W (key), B, heads], over W
        if self.top_k is not None and self.top_k < probs.shape[1]:
            kth = probs.topk(self.top_k, dim=1).values[:, -1:]
            probs = probs * (probs >= kth)
            probs = probs / (probs.sum(dim=1, keepdim=True) + 1e-8)
        context = (self.dropout(probs).unsqueeze(-1) * v).sum(1)  # [U, B, heads, V]
        return self.out(context.flatten(-2))
