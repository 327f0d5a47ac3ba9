"""Grouped layers: one weight set per mechanism, all mechanisms computed by one batched matmul.

Shapes use fixed letters: B batch, U mechanisms (units), D input size, H hidden size.
Grouped tensors keep the mechanism axis in front, ``[U, B, ...]``, so that one ``torch.baddbmm``
applies every mechanism's own weights at once (no Python loop over mechanisms, no block-diagonal
dense matrix).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class GroupLinear(nn.Module):
    """``num_units`` independent linear maps, applied together.

    Initialised like ``nn.Linear`` (uniform in ``±1/sqrt(in_features)``), independently per mechanism.

    :param in_features: input size D of each mechanism
    :param out_features: output size of each mechanism
    :param num_units: number of mechanisms U
    :param bias: whether each mechanism has a bias
    """

    def __init__(self, in_features: int, out_features: int, num_units: int, bias: bool = True):
        super().__init__()
        _check_positive(in_features=in_features, out_features=out_features, num_units=num_units)
        self.in_features, self.out_features, self.num_units = in_features, out_features, num_units
        self.weight = nn.Parameter(torch.empty(num_units, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_units, 1, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: [U, B, D] (mechanism axis first)
        :return: [U, B, out_features]
        """
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, num_units={self.num_units}, bias={self.bias is not None}"


class _GroupRNNCellBase(nn.Module):
    """Shared parameters of the grouped recurrent cells: ``w_ih [U, D, G*H]``, ``w_hh [U, H, G*H]``,
    biases ``[U, 1, G*H]`` (G = 4 gates for LSTM, 3 for GRU, in ``nn.LSTMCell``/``nn.GRUCell`` order)."""

    num_gates: int
    num_states: int

    def __init__(self, input_size: int, hidden_size: int, num_units: int):
        super().__init__()
        _check_positive(input_size=input_size, hidden_size=hidden_size, num_units=num_units)
        self.input_size, self.hidden_size, self.num_units = input_size, hidden_size, num_units
        g = self.num_gates * hidden_size
        self.w_ih = nn.Parameter(torch.empty(num_units, input_size, g))
        self.w_hh = nn.Parameter(torch.empty(num_units, hidden_size, g))
        self.b_ih = nn.Parameter(torch.empty(num_units, 1, g))
        self.b_hh = nn.Parameter(torch.empty(num_units, 1, g))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(hidden_size)``, as ``nn.LSTMCell``/``nn.GRUCell``; independent per mechanism."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.w_ih, self.w_hh, self.b_ih, self.b_hh):
            nn.init.uniform_(p, -bound, bound)

    def load_from_torch_cells(self, cells: list[nn.Module]) -> None:
        """Copy the weights of ``num_units`` ``nn.LSTMCell``/``nn.GRUCell`` into the grouped parameters."""
        if len(cells) != self.num_units:
            raise ValueError(f"expected {self.num_units} cells, got {len(cells)}")
        with torch.no_grad():
            for u, cell in enumerate(cells):
                self.w_ih[u].copy_(cell.weight_ih.t())
                self.w_hh[u].copy_(cell.weight_hh.t())
                self.b_ih[u, 0].copy_(cell.bias_ih)
                self.b_hh[u, 0].copy_(cell.bias_hh)

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: [U, B, D] :return: input part of the gates, bias included, [U, B, G*H]"""
        return torch.baddbmm(self.b_ih, x, self.w_ih)

    def hidden_gates(self, h: torch.Tensor) -> torch.Tensor:
        """:param h: [U, B, H] :return: hidden part of the gates, bias included, [U, B, G*H]"""
        return torch.baddbmm(self.b_hh, h, self.w_hh)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One step of every mechanism.

        :param x: input [U, B, D]
        :param state: (h, c) for LSTM or (h,) for GRU, each [U, B, H]
        :return: the new state, same shapes
        """
        return self.update(self.input_gates(x), self.hidden_gates(state[0]), state)

    def update(self, gi: torch.Tensor, gh: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class GroupLSTMCell(_GroupRNNCellBase):
    """``num_units`` independent ``nn.LSTMCell``s (gate order i, f, g, o), stepped together.

    :param input_size: input size D of each mechanism
    :param hidden_size: hidden size H of each mechanism
    :param num_units: number of mechanisms U
    """

    num_gates = 4
    num_states = 2

    def update(self, gi, gh, state):
        """:param gi: input gates [U, B, 4H], or ``None`` when ``gh`` holds the sum already
        :param gh: hidden gates [U, B, 4H]
        :param state: (h, c) [U, B, H]
        """
        gates = gh if gi is None else gi + gh
        s = gates.sigmoid()
        i, f, _, o = s.chunk(4, dim=-1)
        g = gates[..., 2 * self.hidden_size : 3 * self.hidden_size].tanh()
        c = torch.addcmul(f * state[1], i, g)
        return o * c.tanh(), c


class GroupGRUCell(_GroupRNNCellBase):
    """``num_units`` independent ``nn.GRUCell``s (gate order r, z, n), stepped together.

    :param input_size: input size D of each mechanism
    :param hidden_size: hidden size H of each mechanism
    :param num_units: number of mechanisms U
    """

    num_gates = 3
    num_states = 1

    def update(self, gi, gh, state):
        """:param gi: input gates [U, B, 3H] :param gh: hidden gates [U, B, 3H] :param state: (h,) [U, B, H]"""
        h = state[0]
        hs = self.hidden_size
        rz = (gi[..., : 2 * hs] + gh[..., : 2 * hs]).sigmoid()
        r, z = rz.chunk(2, dim=-1)
        n = torch.addcmul(gi[..., 2 * hs :], r, gh[..., 2 * hs :]).tanh()
        return (torch.lerp(n, h, z),)  # (1 - z) * n + z * h


CELLS = {"lstm": GroupLSTMCell, "gru": GroupGRUCell}
