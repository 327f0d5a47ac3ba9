"""Recurrent cores of the RIM policies, with sb3-contrib's state layout: ``(h, c)``, each ``[L, B, S]``.

sb3-contrib's ``RecurrentPPO`` sizes its state and rollout buffer from ``policy.lstm_actor.num_layers``
and ``.hidden_size`` and stores exactly one ``(h, c)`` pair per head. Both cores here accept and return
that pair: :class:`RimCore` views its flat ``[L, B, U*H]`` state as ``[L, B, U, H]`` inside (a GRU
cell's placeholder ``c`` stays zero), :class:`LstmCore` is an ``nn.LSTM``. Both handle episode starts
inside a sequence in one call.

Shapes: T time, B batch (environments or sequence chunks), L layers, U mechanisms, H hidden size of a
mechanism, S = U*H the flat state size, N input elements, D size of one element, F = N*D features.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from rims_rl.core import RIMConfig
from rims_rl.core.rim import default_input_value_size

State = tuple[torch.Tensor, torch.Tensor]

#: Paper RL setting (Goyal et al. 2021, appendix): 6 mechanisms, 5 active, 4 input heads, no dropout.
#: Why two defaults of ``k_active`` (the one place this is explained): the paper activates 4 of 6 mechanisms
#: for its sequence tasks (copying, sequential MNIST, bouncing balls), which is ``rims_rl.core.RIM``'s default
#: and the supervised tasks' (``rims_rl.tasks.models.CoreConfig``), and 5 of 6 for RL (its Atari runs), which
#: is this default and the RL presets' (``agents/rim_ppo.yaml``). Each follows the paper's setting for its
#: domain; neither is changed to match the other (``--hp policy_kwargs.rim_kwargs.k_active=4`` for k = 4 in RL).
RL_RIM_DEFAULTS: dict[str, Any] = dict(
    num_units=6, k_active=5, cell="lstm", num_input_heads=4, input_dropout=0.0, comm_dropout=0.0
)

#: Keys ``rim_kwargs`` accepts: the fields of :class:`~rims_rl.core.RIMConfig` (the ``RIM`` arguments and
#: every keyword-only ``RIMCell`` argument).
RIM_KWARGS = tuple(f.name for f in dataclasses.fields(RIMConfig))


def resolve_rim_kwargs(rim_kwargs: dict[str, Any] | None, lstm_hidden_size: int, n_lstm_layers: int) -> dict[str, Any]:
    """Complete the user's ``rim_kwargs`` with the paper RL defaults and check them through
    :class:`~rims_rl.core.RIMConfig` (unknown keys, invalid values: ``ValueError`` here, at policy construction).

    :param rim_kwargs: the user's RIM arguments (keys from ``RIM_KWARGS``), or ``None``
    :param lstm_hidden_size: the policy's ``lstm_hidden_size``: by default each of the U mechanisms gets
        ``lstm_hidden_size // U`` units, so the RIM state is about as large as the LSTM baseline's
    :param n_lstm_layers: the policy's ``n_lstm_layers``, the default ``num_layers``
    :return: a new dict with every RIM argument the core is built with, as saved models and ``config.yaml``
        store it: the RL defaults, ``num_layers``, ``hidden_size``, ``input_value_size`` and the given keys
        (``RIMConfig.from_dict(...)`` of it is the core's full configuration)
    """
    given = dict(rim_kwargs or {})
    out = {**RL_RIM_DEFAULTS, "num_layers": n_lstm_layers, **given}
    units = out["num_units"]
    if not (isinstance(units, int) and units > 0):
        raise ValueError(f"rim_kwargs['num_units'] must be a positive integer, got {units!r}")
    if "hidden_size" not in out:
        if lstm_hidden_size < units:
            raise ValueError(
                f"lstm_hidden_size={lstm_hidden_size} leaves no hidden units for num_units={units} "
                "mechanisms: pass rim_kwargs['hidden_size']"
            )
        out["hidden_size"] = lstm_hidden_size // units
    RIMConfig.from_dict(out, "rim_kwargs")  # every key and value checked (one unknown-key check)
    if out.get("input_value_size") is None:
        out["input_value_size"] = default_input_value_size(out["hidden_size"])  # the core's rule, for the saved config
    return out


def orthogonal_init_(core: nn.Module) -> nn.Module:
    """The one initialisation scheme of both cores of the comparison (CleanRL's ``ppo_atari_lstm.py``
    for its LSTM): every weight matrix orthogonal (gain 1), every bias zero, except a RIM's query bias
    (uniform in ``±1/sqrt(H)``, which breaks the mechanisms' tie at a zero state, see ``RIMCell``).

    Grouped RIM weights ``[U, D_in, D_out]`` get an orthogonal matrix per mechanism, as each mechanism's
    own ``nn.LSTM`` weights would; ``nn.LSTM``'s stacked gate matrices ``[4S, D]`` are orthogonal as one
    matrix, as in CleanRL.

    :param core: a :class:`RimCore` or :class:`LstmCore`
    :return: the core, initialised in place
    """
    with torch.no_grad():
        for name, p in core.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("query.bias"):
                continue
            if "bias" in leaf or leaf.startswith("b_"):
                nn.init.zeros_(p)
            elif p.dim() == 3:
                for w in p:  # one [D_in, D_out] matrix per mechanism
                    nn.init.orthogonal_(w)
            else:
                nn.init.orthogonal_(p)
    return core


def torch_default_init_(core: nn.Module) -> nn.Module:
    """PyTorch's own initialisation of each module, left as built: ``nn.LSTM`` and the RIM's grouped cells
    uniform in ``±1/sqrt(hidden size)`` (as ``nn.LSTMCell``), the attention projections as ``nn.Linear``."""
    return core


#: ``core_init`` schemes: each is applied to both cores of a comparison alike
CORE_INITS = {"orthogonal": orthogonal_init_, "torch": torch_default_init_}


def lstm_size_matching(parameters: int, input_size: int, num_layers: int = 1) -> int:
    """The hidden size S of an ``nn.LSTM`` on ``input_size`` features with about ``parameters`` parameters:
    the largest S with ``4 (S·F + S² + 2S) + (L - 1)·4 (2S² + 2S) <= parameters``.

    :param parameters: the count to match (e.g. a RIM core's)
    :param input_size: features size F
    :param num_layers: L
    """

    def count(s: int) -> int:
        return 4 * (s * input_size + s * s + 2 * s) + (num_layers - 1) * 4 * (2 * s * s + 2 * s)

    s = 1
    while count(s + 1) <= parameters:
        s += 1
    return s


class RimCore(nn.Module):
    """A :class:`~rims_rl.core.RIM` behind sb3-contrib's LSTM interface.

    ``num_layers`` and ``hidden_size`` are what sb3-contrib reads to size states (``hidden_size`` is the
    flat state size S = U*H, not the size of one mechanism: that is ``unit_size``). The policy
    initialises both cores by one scheme (``CORE_INITS``).

    :param input_size: flat features size F = N*D from the features extractor
    :param num_elements: N, the number of input elements the features hold (``[.., N*D]`` is viewed as
        ``[.., N, D]``); 1 = the whole feature vector is one element (paper)
    :param rim_kwargs: ``RIM`` arguments: ``hidden_size`` (H, required), ``num_units``, ``k_active``,
        ``cell``, ``num_layers`` and the ``RIMCell`` keywords (attention sizes, heads, dropout...)
    """

    #: set by the policy: steps of backpropagation through time in training (``None``: whole sequences)
    truncate_bptt: int | None = None

    def __init__(self, input_size: int, num_elements: int, rim_kwargs: dict[str, Any]):
        super().__init__()
        if input_size % num_elements:
            raise ValueError(f"features size {input_size} is not a multiple of num_elements={num_elements}")
        if "hidden_size" not in rim_kwargs:
            raise ValueError("rim_kwargs must give hidden_size, the size H of one mechanism (resolve_rim_kwargs does)")
        self.rim = RIMConfig.from_dict(rim_kwargs, "rim_kwargs").build(input_size // num_elements)
        self.input_size, self.num_elements = input_size, num_elements
        self.num_layers, self.num_units, self.unit_size = self.rim.num_layers, self.rim.num_units, self.rim.hidden_size
        self.hidden_size = self.num_units * self.unit_size
        self.last_active: torch.Tensor | None = None

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one environment's state in the RIM rollout buffer: ``(U, H)``, ``(L, U, H)`` if L > 1."""
        return (
            (self.num_units, self.unit_size)
            if self.num_layers == 1
            else (self.num_layers, self.num_units, self.unit_size)
        )

    def forward(
        self, xs: torch.Tensor, state: State, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Run the RIM over a sequence; an episode start zeroes that row's state before the step.

        :param xs: features [T, B, F]
        :param state: (h, c), each [L, B, U*H] (``c`` is a zero placeholder for GRU cells)
        :param episode_starts: [T, B], 1 where an episode starts
        :return: out [T, B, U*H], the new (h, c) [L, B, U*H], active mask bool [T, B, U] (last layer),
            which is also kept in ``last_active``
        """
        t, b = xs.shape[:2]
        if self.num_elements > 1:
            xs = xs.unflatten(-1, (self.num_elements, -1))  # [T, B, N*D] -> [T, B, N, D]
        units = (self.num_layers, b, self.num_units, self.unit_size)
        rim_state = tuple(s.reshape(units) for s in state[: self.rim.num_states])  # [L, B, U*H] -> [L, B, U, H]
        out, rim_state, active = self.rim(xs, rim_state, episode_starts)
        h = rim_state[0].flatten(2)  # [L, B, U, H] -> [L, B, U*H]
        c = rim_state[1].flatten(2) if len(rim_state) > 1 else torch.zeros_like(h)
        self.last_active = active
        return out, (h, c), active


class LstmCore(nn.LSTM):
    """An ``nn.LSTM`` (the baseline core, docs/design.md §5) that resets states at episode starts inside a sequence.

    Runs one fused ``nn.LSTM`` call per stretch of steps without a reset. The policy initialises both
    cores by one scheme (``CORE_INITS``).

    :param input_size: features size F
    :param hidden_size: LSTM hidden size S
    :param num_layers: L
    :param lstm_kwargs: other ``nn.LSTM`` arguments (``dropout``...)
    """

    num_units = 1
    #: set by the policy: steps of backpropagation through time in training (``None``: whole sequences)
    truncate_bptt: int | None = None

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **lstm_kwargs):
        unknown = sorted(set(lstm_kwargs) - {"bias", "dropout"})
        if unknown:
            raise ValueError(
                f"lstm_kwargs accepts only 'bias' and 'dropout' (time-major, one direction), got {unknown}"
            )
        super().__init__(input_size, hidden_size, num_layers=num_layers, **lstm_kwargs)
        self.last_active: torch.Tensor | None = None

    @property
    def unit_size(self) -> int:
        return self.hidden_size

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one environment's state in the rollout buffer: ``(1, S)``, ``(L, 1, S)`` if L > 1."""
        return (1, self.hidden_size) if self.num_layers == 1 else (self.num_layers, 1, self.hidden_size)

    def forward(self, xs: torch.Tensor, state: State, episode_starts: torch.Tensor) -> tuple[torch.Tensor, State, None]:
        """:param xs: features [T, B, F]
        :param state: (h, c), each [L, B, S]
        :param episode_starts: [T, B], 1 where an episode starts: that row's state is zeroed before the step
        :return: out [T, B, S], the new (h, c), ``None`` (an LSTM has no active mask)
        """
        reset_at = episode_starts.bool().any(1).nonzero().flatten().tolist()
        cuts = [t for t in reset_at if t > 0]
        outs = []
        for start, piece in zip([0, *cuts], xs.tensor_split(cuts, dim=0)):
            if start in reset_at:
                keep = (1.0 - episode_starts[start].to(xs.dtype)).view(1, -1, 1)
                state = (state[0] * keep, state[1] * keep)
            out, state = super().forward(piece, state)
            outs.append(out)
        return torch.cat(outs) if len(outs) > 1 else outs[0], state, None
