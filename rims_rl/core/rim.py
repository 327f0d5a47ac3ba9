"""Recurrent Independent Mechanisms: ``RIMCell`` (one step) and ``RIM`` (a sequence, stacked layers).

Goyal et al., "Recurrent Independent Mechanisms", ICLR 2021 (arXiv 1909.10893).

Shapes: T time, B batch, U mechanisms, N input elements, D input size, H hidden size per mechanism.
The public state is a tuple of ``[B, U, H]`` tensors, ``(h, c)`` for LSTM cells and ``(h,)`` for GRU
cells; inside the time loop the mechanism axis goes first, ``[U, B, H]``, for batched matmuls.

Speed (see docs/design.md §2): everything that does not depend on the state is computed for all T steps
before the loop. With a single input element the input attention is a 2-way softmax between the
element and the null element, so the gate input of mechanism u is
``W_u·(Σ_h p_h V_h(x) + (1 - p_h) V_h(0)) / heads + b_u``: the products ``W_u V_h(x)`` are one big matmul
before the loop (one head; with several heads, ``W_v x``, mixed per step by the heads' attention ``p``)
and each step only scales them by the attention ``p``. Under ``torch.compile`` the element's score
``q·k = h·(W_q k) + b_q·k`` has its key folded into the query weights before the loop too.

The literal definition of one step, one mechanism at a time, is ``rims_rl/core/reference.py``
(``reference_step``); the tests hold this module equal to it, with and without dropout.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import nn

from .attention import CommunicationAttention, InputAttention, select_active
from .group_cells import CELLS, _check_positive

State = tuple[torch.Tensor, ...]
#: the longest time loop :meth:`RIMCell.compile_sequence` unrolls into one graph; longer sequences run as blocks
MAX_COMPILED_BLOCK = 16
#: environment variable: ``0`` turns the trainers' default compilation of the RIM loop off (the tests set it)
COMPILE_ENV = "RIMS_RL_COMPILE"
#: inductor options for a loop compiled on a CPU: a C++ wrapper calls the graph's kernels with no Python between
#: them (the RL training chunk 0.8-0.9x the time, the same kernels and results; docs/design.md §2.6)
CPU_COMPILE_OPTIONS = {"cpp_wrapper": True}


def compile_by_default() -> bool:
    """Whether trainers compile the RIM loop when not told: unless the environment sets ``RIMS_RL_COMPILE=0``."""
    return os.environ.get(COMPILE_ENV, "1") != "0"


def block_length(t: int, block: int) -> int:
    """The length of the blocks a compiled sequence of ``t`` steps runs as: ``t`` itself if it is at most
    ``block``; else the largest divisor of ``t`` in ``[block / 2, block]`` (one graph: 196 -> 14), or
    failing that ``ceil(t / ceil(t / block))`` (equal blocks but a shorter last one: two graphs)."""
    if t <= block:
        return t
    for length in range(block, (block + 1) // 2 - 1, -1):
        if t % length == 0:
            return length
    return -(-t // -(-t // block))


def default_input_value_size(hidden_size: int) -> int:
    """The paper's input value size for mechanisms of ``hidden_size`` units: 4x (its Table 3)."""
    return 4 * hidden_size


def check_k_active(k_active: int, num_units: int) -> None:
    """:raises ValueError: ``k_active`` is not an integer in 1..``num_units``"""
    if not (isinstance(k_active, int) and 1 <= k_active <= num_units):
        raise ValueError(f"k_active must be an integer in 1..num_units={num_units}, got {k_active!r}")


def check_cell(cell: str) -> None:
    """:raises ValueError: ``cell`` is not one of :data:`~rims_rl.core.group_cells.CELLS`"""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")


class RIMCell(nn.Module):
    """One step of a layer of Recurrent Independent Mechanisms.

    Input attention with a null element selects the ``k_active`` mechanisms that attend least to the
    null element; those update their own LSTM/GRU cell and then read the other mechanisms through
    communication attention. Inactive mechanisms keep their state exactly.

    :param input_size: size D of one input element
    :param hidden_size: hidden size H of each mechanism
    :param num_units: number of mechanisms U (paper: 6)
    :param k_active: mechanisms active per step, 1..U (paper: 4 for the sequence tasks, 5 for RL)
    :param cell: ``"lstm"`` or ``"gru"``
    :param input_key_size: input attention key size (paper: 64)
    :param input_value_size: input attention value size, the cell's input size; ``None`` (default) =
        ``4 * hidden_size``, the paper's rule (its Table 3: values are 4x one mechanism's size, e.g. 400
        for mechanisms of 100; the authors' Atari code: 4 x 85 = 340)
    :param num_input_heads: input attention heads (paper: 1 sequence tasks, 4 RL)
    :param input_dropout: dropout on the input attention probabilities (paper: 0.1; 0 for RL)
    :param comm_key_size: communication key size per head (paper: 32)
    :param comm_value_size: communication value size per head (paper: 32)
    :param num_comm_heads: communication heads (paper: 4)
    :param comm_dropout: dropout on the communication probabilities (paper: 0.1; 0 for RL)
    :param comm_top_k: sparse communication: each mechanism reads only its ``comm_top_k`` most
        attended mechanisms; ``None`` = dense (paper)
    :param use_communication: ``False`` removes the communication step (an ablation)
    :param query_bias: give each mechanism's input query a learned bias (default). Without it a zero
        state (every sequence or episode start) makes every query zero, all null-attention scores tie and
        ``topk`` leaves out the same mechanism index every time; with it, each mechanism's score at a
        zero state is ``b_u · k(x)``, which depends on the input and differs between mechanisms (a learned
        initial query). ``False`` gives the bias-free query of the authors' code
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_units: int = 6,
        k_active: int = 4,
        cell: str = "lstm",
        *,
        input_key_size: int = 64,
        input_value_size: int | None = None,
        num_input_heads: int = 1,
        input_dropout: float = 0.1,
        comm_key_size: int = 32,
        comm_value_size: int = 32,
        num_comm_heads: int = 4,
        comm_dropout: float = 0.1,
        comm_top_k: int | None = None,
        use_communication: bool = True,
        query_bias: bool = True,
    ):
        super().__init__()
        _check_positive(input_size=input_size, hidden_size=hidden_size, num_units=num_units)
        if input_value_size is None:
            input_value_size = default_input_value_size(hidden_size)
        check_k_active(k_active, num_units)
        check_cell(cell)
        self.input_size, self.hidden_size, self.num_units, self.k_active = input_size, hidden_size, num_units, k_active
        self.cell_type = cell
        self.input_attention = InputAttention(
            input_size,
            hidden_size,
            num_units,
            input_key_size,
            input_value_size,
            num_input_heads,
            input_dropout,
            query_bias,
        )
        self.cell = CELLS[cell](input_value_size, hidden_size, num_units)
        self.communication = (
            CommunicationAttention(
                hidden_size, num_units, comm_key_size, comm_value_size, num_comm_heads, comm_dropout, comm_top_k
            )
            if use_communication
            else None
        )
        self._compiled_loop: Callable | None = None
        self._compiled_block, self._compile_inference = MAX_COMPILED_BLOCK, True

    @property
    def output_size(self) -> int:
        """Size of the concatenated hidden states, U * H."""
        return self.num_units * self.hidden_size

    @property
    def num_states(self) -> int:
        """2 for LSTM cells (h, c), 1 for GRU cells (h,)."""
        return self.cell.num_states

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state: a tuple of ``num_states`` tensors [B, U, H]."""
        p = self.cell.w_hh
        shape = (batch_size, self.num_units, self.hidden_size)
        return tuple(torch.zeros(shape, device=device or p.device, dtype=p.dtype) for _ in range(self.num_states))

    def compile_sequence(self, block: int = MAX_COMPILED_BLOCK, inference: bool = True, **compile_kwargs) -> RIMCell:
        """Run :meth:`sequence` under ``torch.compile``: the precomputation and the time loop, unrolled,
        become one graph for the forward and one for the backward, with no Python overhead per step (on a
        CPU, about 2-6x faster at small batches). A sequence longer than ``block`` steps runs as blocks
        (:func:`block_length`), one compiled call each, the state handed from block to block: compiling an
        unrolled loop takes time and memory that grow with its length (a 128-step graph takes many minutes
        on a CPU), a block's call costs little. One graph per block length, input and state shape (and
        dropout on or off); the first call of each compiles (about a minute on a CPU, seconds once
        inductor's on-disk cache holds it). Episode starts multiply the state at every step instead of
        branching.

        :param block: the longest unrolled loop compiled (steps)
        :param inference: also compile the calls that record no gradient (acting, evaluation); ``False``
            runs them eagerly (an evaluation at several sequence lengths would compile graphs of its own)
        :param compile_kwargs: go to ``torch.compile`` (default ``fullgraph=False``: past dynamo's
            recompile limit, e.g. many configurations in one process, the loop runs eagerly instead of failing;
            for a layer on a CPU and no ``mode``, ``options`` start from :data:`CPU_COMPILE_OPTIONS`:
            ``options={"cpp_wrapper": False}`` turns the C++ wrapper off)
        :return: ``self``
        """
        _check_positive(block=block)
        kwargs = {"fullgraph": False, **compile_kwargs}
        if "mode" not in kwargs and next(self.parameters()).device.type == "cpu":  # on the device it compiles for
            kwargs["options"] = {**CPU_COMPILE_OPTIONS, **(kwargs.get("options") or {})}
        self._compiled_loop = torch.compile(self._loop, **kwargs)
        self._compiled_block, self._compile_inference = block, inference
        return self

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: torch.Tensor, seq_dims: int) -> torch.Tensor:
        """Bring the input to ``[*lead, N, D]`` where ``lead`` has ``seq_dims`` axes."""
        if x.dim() not in (seq_dims + 1, seq_dims + 2):
            want = ("[B, D] or [B, N, D]", "[T, B, D] or [T, B, N, D]")[seq_dims - 1]
            raise ValueError(f"input must be {want}, got shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input's last axis must be input_size={self.input_size}, got shape {tuple(x.shape)}")
        return x.unsqueeze(-2) if x.dim() == seq_dims + 1 else x

    def _check_state(self, state: State, batch_size: int) -> State:
        shape = (batch_size, self.num_units, self.hidden_size)
        if len(state) != self.num_states or any(tuple(s.shape) != shape for s in state):
            got = [tuple(s.shape) for s in state]
            raise ValueError(
                f"state must be {self.num_states} tensor(s) of shape {shape} ({self.cell_type}), got {got}"
            )
        return state

    # ------------------------------------------------------------------ the computation
    def _precompute(self, xs: torch.Tensor) -> dict:
        """Everything that does not depend on the state, for all steps at once.

        :param xs: [T, B, N, D]
        :return: a dict of weights for the loop and ``steps``, the per-step input terms (from ``unbind``
            over T: never index a sequence tensor per step, docs/design.md §2)
        """
        att, cell, comm = self.input_attention, self.cell, self.communication
        heads, u, q_size = att.num_heads, self.num_units, att.num_heads * att.key_size
        pre, hb = {}, cell.b_hh
        if comm is not None:
            pre["qkv"] = comm.scaled_qkv_weight()  # [U, H, heads*(2K+V)]
        if xs.shape[2] == 1:  # one element: the 2-way softmax fast path
            x = xs[:, :, 0]  # [T, B, D]
            kx = (att.key(x) * att.scale).unflatten(-1, (heads, att.key_size))  # [T, B, heads, K]
            if heads == 1:  # the gate products W_u Wv x of all steps in one matmul: [T, U, B, G*H]
                w = cell.w_ih.permute(1, 0, 2).flatten(1)  # [V, U*G*H]
                if x.shape[-1] < att.value_size:  # a narrow input: (Wv^T W) first, D/V of the FLOPs
                    d = x @ (att.value.weight.t() @ w)
                else:
                    d = nn.functional.linear(x, att.value.weight) @ w  # V(x) without its bias
                d = d.unflatten(-1, (u, -1)).permute(0, 2, 1, 3).contiguous()
            else:  # heads x more FLOPs that way: mix the heads' values per step, then one grouped matmul
                d = nn.functional.linear(x, att.value.weight).unflatten(-1, (heads, att.value_size))  # [T, B, heads, V]
            bias = att.value.bias.view(heads, -1)  # V_h(0) [heads, V]
            if self.training and att.dropout.p > 0:  # W_u V_h(0) / heads, the null values' gate terms [U, heads, G*H]
                pre["null_gates"] = torch.einsum("hv,uvg->uhg", bias, cell.w_ih) / heads
            c = torch.einsum("v,uvg->ug", bias.mean(0), cell.w_ih).unsqueeze(1) + cell.b_ih  # [U, 1, G*H]
            if cell.num_states == 2:  # LSTM: input and hidden gates are summed, so c joins the hidden bias
                hb, pre["c_in"] = hb + c, None
            else:  # GRU: the input gates stay separate
                pre["c_in"] = c
            if torch.compiler.is_compiling():  # the keys folded into the query weights (docs/design.md §2.2)
                # the score q_uh . k_h = h_u . (Wq_uh k_h) + bq_uh . k_h: Wq_uh k_h for all steps in one
                # matmul, so a step contracts h [U, B, H] with it instead of computing heads x K queries
                # (fewer FLOPs per step, more elementwise work: it pays where the elementwise ops fuse)
                wq = att.query.weight.unflatten(-1, (heads, att.key_size))  # [U, H, heads, K]
                r = torch.einsum("uihk,tbhk->tubhi", wq, kx)  # [T, U, B, heads, H]
                if att.query.bias is not None:
                    r0 = torch.einsum("uhk,tbhk->tubh", att.query.bias.view(u, heads, att.key_size), kx)
                else:
                    r0 = r.new_zeros(r.shape[:-1])  # [T, U, B, heads]
                pre["steps"] = list(zip(r.unbind(0), r0.unbind(0), d.unbind(0)))
                pre["hw"], pre["hb"] = cell.w_hh, hb  # hidden gates only
                return pre
            pre["steps"] = list(zip(kx.unbind(0), d.unbind(0)))
        else:
            keys, values = att.keys_values(xs)  # [T, B, N+1, heads, K], [T, B, N+1, heads, V]
            pre["steps"] = list(zip(keys.unbind(0), values.unbind(0)))
        qb = att.query.bias if att.query.bias is not None else hb.new_zeros(u, 1, q_size)
        pre["hw"] = torch.cat([att.query.weight, cell.w_hh], -1)  # queries and hidden gates: one bmm per step
        pre["hb"] = torch.cat([qb, hb], dim=-1)  # query bias and hidden-gate bias [U, 1, heads*K + G*H]
        return pre

    def _step(self, pre: dict, step_in: tuple, state: State) -> tuple[State, torch.Tensor]:
        """One step from precomputed input terms.

        :param state: tensors [U, B, H]
        :return: the new state and the active mask [U, B]
        """
        att, cell, comm = self.input_attention, self.cell, self.communication
        heads, q_size = att.num_heads, att.num_heads * att.key_size
        if len(step_in) == 3:  # one element, its key folded into the query weights: hidden gates only
            r, r0, d = step_in
            gh = torch.baddbmm(pre["hb"], state[0], pre["hw"])  # [U, B, G*H]
            score = (state[0].unsqueeze(-2) * r).sum(-1) + r0  # the element's, [U, B, heads]
        else:
            proj = torch.baddbmm(pre["hb"], state[0], pre["hw"])  # queries and hidden gates, [U, B, heads*K + G*H]
            q, gh = proj.split([q_size, proj.shape[-1] - q_size], dim=-1)
            if "c_in" in pre:  # one element: its key [B, heads, K]
                kx, d = step_in
                score = (q.unflatten(-1, (heads, att.key_size)) * kx).sum(-1)
        if "c_in" in pre:  # one input element: the fast path
            # gate input = W_u sum_h [p_h V_h(x) + (1 - p_h) V_h(0)] / heads + b = W_u sum_h p_h Wv_h x / heads + c
            p = score.sigmoid()  # attention on the element, [U, B, heads]
            active = select_active(p.sum(-1) if heads > 1 else p[..., 0], self.k_active, largest=True)
            c_in = pre["c_in"]  # c where it is not already in the hidden bias (GRU), else None
            if "null_gates" in pre:  # dropout: px and p0 no longer sum to 1, so the null values' terms
                # sum_h (px_h + p0_h - 1) W_u V_h(0) / heads join c
                px, p0 = att.dropout(p), att.dropout(1.0 - p)
                if heads == 1:
                    gx = px * d
                else:
                    gx = torch.bmm(torch.einsum("ubh,bhv->ubv", px / heads, d), cell.w_ih)
                gi = torch.baddbmm(gx, px + p0 - 1.0, pre["null_gates"])
            elif heads == 1 and c_in is None:  # LSTM: add p * d straight to the hidden gates
                gi, gh = None, torch.addcmul(gh, p, d)
            elif heads == 1:
                gi = p * d
            elif c_in is None:
                gi, gh = None, torch.baddbmm(gh, torch.einsum("ubh,bhv->ubv", p / heads, d), cell.w_ih)
            else:
                gi = torch.bmm(torch.einsum("ubh,bhv->ubv", p / heads, d), cell.w_ih)
            gi = gi if c_in is None or gi is None else gi + c_in
        else:
            attended, null_prob = att.attend(q, *step_in)
            active = select_active(null_prob, self.k_active)
            gi = cell.input_gates(attended)
        m = active.unsqueeze(-1)
        new = cell.update(gi, gh, state)
        h = torch.where(m, new[0], state[0])
        if comm is not None:  # inactive rows get comm * 0 added: bit-for-bit unchanged
            h = torch.addcmul(h, comm.attend(h, pre["qkv"]), m.to(h.dtype))
        return (h, *(torch.where(m, n, s) for n, s in zip(new[1:], state[1:]))), active

    def sequence(
        self, xs: torch.Tensor, state: State | None = None, episode_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Run the layer over a sequence.

        :param xs: inputs [T, B, D] or a set of elements per step [T, B, N, D]
        :param state: tuple of [B, U, H]; ``None`` = zeros
        :param episode_starts: [T, B], nonzero where an episode starts: that row's state is zeroed
            before the step
        :return: hidden states [T, B, U, H], the final state (tuple of [B, U, H]), active mask bool [T, B, U]
        """
        xs = self._check_input(xs, 2)
        t, b = xs.shape[:2]
        state = self.initial_state(b, xs.device) if state is None else self._check_state(state, b)
        state = tuple(s.transpose(0, 1) for s in state)  # [U, B, H]
        keep = reset_at = None
        if episode_starts is not None:
            if tuple(episode_starts.shape) != (t, b):
                raise ValueError(f"episode_starts must be [T, B] = {(t, b)}, got {tuple(episode_starts.shape)}")
            keep = (1.0 - episode_starts.to(xs.dtype)).view(t, 1, b, 1)
            reset_at = episode_starts.bool().any(1).tolist()
        if self._compiled_loop is not None and (self._compile_inference or torch.is_grad_enabled()):
            # keep multiplies every step: no data-dependent branch
            keep = torch.ones(t, 1, b, 1, dtype=xs.dtype, device=xs.device) if keep is None else keep
            try:
                h, state, active = self._compiled_blocks(xs, state, keep)
            except Exception as error:  # e.g. no C++ compiler for inductor: eager from now on (a real bug raises again)
                warnings.warn(
                    f"compile_sequence failed ({type(error).__name__}: {str(error).strip().splitlines()[0]}); "
                    "the RIM runs eagerly",
                    stacklevel=2,
                )
                self._compiled_loop = None
                h, state, active = self._loop(xs, state, keep, reset_at)
        else:
            h, state, active = self._loop(xs, state, keep, reset_at)
        h = h.transpose(1, 2)  # [T, U, B, H] -> [T, B, U, H]
        return h, tuple(s.transpose(0, 1) for s in state), active.transpose(1, 2)

    def _compiled_blocks(
        self, xs: torch.Tensor, state: State, keep: torch.Tensor
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """The compiled loop, one call per block of :func:`block_length` steps (:meth:`compile_sequence`).

        :param xs: [T, B, N, D]
        :param state: tensors [U, B, H]
        :param keep: [T, 1, B, 1]
        :return: as :meth:`_loop`
        """
        t = xs.shape[0]
        length = block_length(t, self._compiled_block)
        if length == t:
            return self._compiled_loop(xs, state, keep)
        hs, actives = [], []
        for i in range(0, t, length):
            h, state, active = self._compiled_loop(xs[i : i + length], state, keep[i : i + length])
            hs.append(h)
            actives.append(active)
        return torch.cat(hs), state, torch.cat(actives)

    def _loop(
        self, xs: torch.Tensor, state: State, keep: torch.Tensor | None, reset_at: list[bool] | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """The time loop: precomputation, then one step per time step.

        :param xs: [T, B, N, D]
        :param state: tensors [U, B, H]
        :param keep: [T, 1, B, 1], 0 where an episode starts (the state is multiplied by it before the
            step), or ``None``
        :param reset_at: per step, whether any row starts an episode there (the eager path skips the
            multiplication elsewhere); ``None``: multiply at every step
        :return: hidden states [T, U, B, H], the final state, active mask [T, U, B]
        """
        pre = self._precompute(xs)
        hs, actives = [], []
        for i, step_in in enumerate(pre["steps"]):
            if keep is not None and (reset_at is None or reset_at[i]):
                state = tuple(s * keep[i] for s in state)
            state, active = self._step(pre, step_in, state)
            hs.append(state[0])
            actives.append(active)
        return torch.stack(hs), state, torch.stack(actives)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One step.

        :param x: input [B, D] or a set of elements [B, N, D]
        :param state: tuple of [B, U, H] (``initial_state``); ``None`` = zeros
        :return: h [B, U, H], the new state, active mask bool [B, U]
        """
        x = self._check_input(x, 1)
        h, state, active = self.sequence(x.unsqueeze(0), state)
        return h[0], state, active[0]


class RIM(nn.Module):
    """A sequence module of stacked RIM layers, a drop-in for ``nn.LSTM`` (time-major).

    Layer l > 0 reads the concatenated hidden states of layer l - 1. Extra keyword arguments go to
    every :class:`RIMCell` (attention sizes, dropout, ``comm_top_k``...).

    :param input_size: size D of one input element
    :param hidden_size: hidden size H of each mechanism
    :param num_units: number of mechanisms U per layer (paper: 6)
    :param k_active: mechanisms active per step (paper: 4 sequence tasks, 5 RL)
    :param cell: ``"lstm"`` or ``"gru"``
    :param num_layers: number of stacked layers L
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_units: int = 6,
        k_active: int = 4,
        cell: str = "lstm",
        num_layers: int = 1,
        **cell_kwargs,
    ):
        super().__init__()
        _check_positive(num_layers=num_layers)
        self.layers = nn.ModuleList(
            RIMCell(
                input_size if i == 0 else num_units * hidden_size, hidden_size, num_units, k_active, cell, **cell_kwargs
            )
            for i in range(num_layers)
        )
        self.input_size, self.hidden_size, self.num_units, self.k_active = input_size, hidden_size, num_units, k_active
        self.num_layers = num_layers

    @property
    def output_size(self) -> int:
        """Size of one output step, U * H."""
        return self.num_units * self.hidden_size

    @property
    def num_states(self) -> int:
        return self.layers[0].num_states

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state: a tuple of ``num_states`` tensors [L, B, U, H]."""
        return tuple(torch.stack(s) for s in zip(*(layer.initial_state(batch_size, device) for layer in self.layers)))

    def compile_sequence(self, block: int = MAX_COMPILED_BLOCK, inference: bool = True, **compile_kwargs) -> RIM:
        """Compile every layer's time loop with ``torch.compile``, in blocks of at most ``block`` steps
        (see :meth:`RIMCell.compile_sequence`)."""
        for layer in self.layers:
            layer.compile_sequence(block, inference, **compile_kwargs)
        return self

    def forward(
        self, xs: torch.Tensor, state: State | None = None, episode_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """:param xs: inputs [T, B, D], or a set of elements per step [T, B, N, D] (first layer)
        :param state: tuple of [L, B, U, H] (``initial_state``); ``None`` = zeros
        :param episode_starts: [T, B], nonzero where an episode starts: the state of that row is
            zeroed before the step, in every layer
        :return: out [T, B, U*H] (last layer), final state (tuple of [L, B, U, H]),
            active mask bool [T, B, U] of the last layer
        """
        if state is not None:
            want = (self.num_layers, xs.shape[1], self.num_units, self.hidden_size)
            if len(state) != self.num_states or any(tuple(s.shape) != want for s in state):
                got = [tuple(s.shape) for s in state]
                raise ValueError(f"state must be {self.num_states} tensor(s) of shape {want}, got {got}")
        finals = []
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else tuple(s[i] for s in state)
            h, layer_state, active = layer.sequence(xs, layer_state, episode_starts)
            xs = h.flatten(2)
            finals.append(layer_state)
        return xs, tuple(torch.stack(s) for s in zip(*finals)), active
