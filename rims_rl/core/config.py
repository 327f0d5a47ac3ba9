"""``RIMConfig``: every argument of a :class:`~rims_rl.core.RIM` but its input size, typed and checked.

The one description of a RIM that the RL policies (``rims_rl.rl.cores``, their ``rim_kwargs``) and the
supervised tasks (``rims_rl.tasks.models.CoreConfig``) both build through, with the core's argument names:
``hidden_size`` is the size H of one mechanism everywhere (docs/design.md §1.10).

    RIMConfig.from_dict({"hidden_size": 32, "k_active": 5}).build(input_size=8)  ->  a RIM
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rims_rl.utils.config import build_dataclass

from .attention import _check_dropout, _check_top_k
from .group_cells import _check_positive
from .rim import RIM, check_cell, check_k_active


@dataclasses.dataclass(frozen=True)
class RIMConfig:
    """The arguments of :class:`~rims_rl.core.RIM` except ``input_size``, with the same defaults (those of
    ``RIM`` and the keyword-only ``RIMCell`` arguments); invalid values raise ``ValueError`` at construction.

    :param hidden_size: hidden size H of each mechanism (paper: 100 for the sequence tasks, whose input
        values are 4x that, 400; ``RIM`` itself has no default)
    :param num_units: number of mechanisms U per layer (paper: 6)
    :param k_active: mechanisms active per step, 1..U (paper: 4 for the sequence tasks, 5 for RL)
    :param cell: ``"lstm"`` or ``"gru"``
    :param num_layers: number of stacked layers L
    :param input_key_size: input attention key size (paper: 64)
    :param input_value_size: input attention value size, the cell's input size; ``None`` = ``4 * hidden_size``,
        the paper's rule (its Table 3; the authors' Atari code: 4 x 85 = 340)
    :param num_input_heads: input attention heads (paper: 1 sequence tasks, 4 RL)
    :param input_dropout: dropout on the input attention probabilities, in [0, 1) (paper: 0.1; 0 for RL)
    :param comm_key_size: communication key size per head (paper: 32)
    :param comm_value_size: communication value size per head (paper: 32)
    :param num_comm_heads: communication heads (paper: 4)
    :param comm_dropout: dropout on the communication probabilities, in [0, 1) (paper: 0.1; 0 for RL)
    :param comm_top_k: sparse communication: each mechanism reads only its ``comm_top_k`` most attended
        mechanisms, 1..U; ``None`` = dense (paper)
    :param use_communication: ``False`` removes the communication step (an ablation)
    :param query_bias: a learned bias in each mechanism's input query (default; see ``RIMCell``);
        ``False`` gives the bias-free query of the authors' code
    """

    hidden_size: int = 100
    num_units: int = 6
    k_active: int = 4
    cell: str = "lstm"
    num_layers: int = 1
    input_key_size: int = 64
    input_value_size: int | None = None
    num_input_heads: int = 1
    input_dropout: float = 0.1
    comm_key_size: int = 32
    comm_value_size: int = 32
    num_comm_heads: int = 4
    comm_dropout: float = 0.1
    comm_top_k: int | None = None
    use_communication: bool = True
    query_bias: bool = True

    def __post_init__(self):
        # the core's own checks (RIMCell, InputAttention, CommunicationAttention), run before anything is built
        _check_positive(
            hidden_size=self.hidden_size,
            num_units=self.num_units,
            num_layers=self.num_layers,
            input_key_size=self.input_key_size,
            num_input_heads=self.num_input_heads,
            comm_key_size=self.comm_key_size,
            comm_value_size=self.comm_value_size,
            num_comm_heads=self.num_comm_heads,
        )
        if self.input_value_size is not None:
            _check_positive(input_value_size=self.input_value_size)
        check_k_active(self.k_active, self.num_units)
        check_cell(self.cell)
        _check_dropout("input_dropout", self.input_dropout)
        _check_dropout("comm_dropout", self.comm_dropout)
        _check_top_k(self.comm_top_k, self.num_units)
        for name in ("use_communication", "query_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(
        cls, mapping: Mapping[str, Any] | None, what: str = "RIM argument(s)", where: str | None = None
    ) -> RIMConfig:
        """A config from a mapping of some of its fields (the others keep their defaults).

        :param mapping: field values; ``None`` = all defaults
        :param what: what the keys are, for the unknown-key message (e.g. ``"rim_kwargs"``)
        :param where: where they were given (a file, a config), for the message
        :raises ValueError: an unknown key (``unknown <what> [...]; allowed: [...]``) or an invalid value
        """
        return build_dataclass(cls, mapping, what, where)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (ints, floats, strings, booleans and ``None``: JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)

    def build(self, input_size: int) -> RIM:
        """The :class:`~rims_rl.core.RIM` of this config on input elements of size ``input_size``."""
        return RIM(input_size, **self.to_dict())
