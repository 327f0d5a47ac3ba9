"""A slow, literal reference of one RIM step (docs/design.md §1), with Python loops over mechanisms.

Pure PyTorch, and it knows nothing of RL. It shares only the parameters with ``RIMCell``; everything
else (the null element, the per-mechanism queries, the competition, the cells via
``torch.lstm_cell``/``torch.gru_cell``, communication, dropout) is written out again here, so that the
tests compare the fast implementation (``rims_rl/core/rim.py``) against the definition.

Each line carries the formula of Goyal et al., *Recurrent Independent Mechanisms*, ICLR 2021
(arXiv 1909.10893), section 2, in the paper's notation: ``x_t`` the input, ``∅`` the null element,
``⊕`` concatenation along the elements, ``h_{t,k}`` the state of mechanism (RIM) k, ``W^q_k`` its
query weights, ``W^e``/``W^v`` the shared key/value weights, ``d_e`` the key size, ``S_t`` the active
set, ``k_A`` its size, ``D_k`` mechanism k's cell, and a tilde for communication weights. The paper
writes one head; with several, each head softmaxes on its own and the attended values are averaged
over the heads (input attention) or concatenated and projected back to H per mechanism
(communication), as the authors' code does.

Dropout (``RIMCell(input_dropout=..., comm_dropout=...)`` in training mode) acts on the attention
probabilities. Here its masks can be given explicitly (``input_keep``, ``comm_keep``), so a test can
replay the very masks the fused step drew; missing masks are drawn from ``generator``. The rates are
arguments too, not read from the cell, so that a cell built with its two rates exchanged differs
from the reference.
"""

from __future__ import annotations

import torch


def _keep_mask(keep, p, shape, generator):
    """The dropout keep mask: ``keep`` as given, or a draw of Bernoulli(1 - p) of ``shape``."""
    if keep is not None:
        if tuple(keep.shape) != tuple(shape):
            raise ValueError(f"keep mask must have shape {tuple(shape)}, got {tuple(keep.shape)}")
        return keep.bool()
    return torch.rand(shape, generator=generator) >= p


def _dropout(probs, keep, p):
    """Inverted dropout with a given mask, as ``nn.Dropout``: kept weights are scaled by 1 / (1 - p)."""
    return probs * (keep.to(probs.dtype) / (1.0 - p))


def reference_step(
    cell, x, state, *, input_dropout=0.0, comm_dropout=0.0, input_keep=None, comm_keep=None, generator=None
):
    """One RIM step, one mechanism at a time.

    :param cell: a ``RIMCell`` whose parameters are used (its mode and dropout modules are not read)
    :param x: input elements [B, N, D]
    :param state: tuple of [B, U, H]: (h, c) for LSTM cells, (h,) for GRU cells
    :param input_dropout: dropout rate p on the input attention probabilities (0: none)
    :param comm_dropout: dropout rate p on the communication probabilities (0: none)
    :param input_keep: bool [B, U, heads, N+1], the input-attention weights kept by dropout (index 0 of
        the last axis is the null element); ``None``: drawn when ``input_dropout > 0``
    :param comm_keep: bool [B, heads, U (query), U (key)], the communication weights kept by dropout;
        ``None``: drawn when ``comm_dropout > 0``
    :param generator: ``torch.Generator`` for the masks that are drawn (``None``: torch's global one)
    :return: new state (tuple of [B, U, H]), active [B, U], null attention [B, U] (before dropout)
    """
    att, grp = cell.input_attention, cell.cell
    b, n, d = x.shape
    U, heads = cell.num_units, att.num_heads
    h = state[0]
    if input_dropout > 0:
        input_keep = _keep_mask(input_keep, input_dropout, (b, U, heads, n + 1), generator)
    xs = torch.cat([x.new_zeros(b, 1, d), x], dim=1)  # X = ∅ ⊕ x_t: the null element (all zeros) first
    keys = (xs @ att.key.weight.t()).view(b, n + 1, heads, -1)  # K = X W^e (no bias: ∅'s key is 0)
    values = (xs @ att.value.weight.t() + att.value.bias).view(b, n + 1, heads, -1)  # V = X W^v (∅'s value: the bias)
    null, attended = [], []
    for u in range(U):
        q = h[:, u] @ att.query.weight[u]  # Q_k = h_{t,k} W^q_k: each mechanism its own query weights
        if att.query.bias is not None:
            q = q + att.query.bias[u, 0]  # + b^q_k, a learned query bias (docs/design.md §1.2; not in the paper)
        q = q.view(b, heads, -1)
        scores = torch.einsum("bhk,bnhk->bhn", q, keys) / att.key_size**0.5  # Q_k K^T / sqrt(d_e)
        probs = scores.softmax(dim=-1)  # softmax over the N+1 elements, per mechanism and head
        null.append(probs[:, :, 0].mean(1))  # attention on ∅ (mean over heads): the competition's score
        if input_dropout > 0:
            probs = _dropout(probs, input_keep[:, u], input_dropout)  # dropout on the attention weights
        attended.append(torch.einsum("bhn,bnhv->bv", probs, values) / heads)  # A^(in)_k = softmax(..) V, head mean
    null = torch.stack(null, 1)  # [B, U]
    order = null.argsort(dim=1)  # least null attention first
    active = torch.zeros(b, U, dtype=torch.bool)
    for row in range(b):
        active[row, order[row, : cell.k_active]] = True  # S_t: the k_A mechanisms least attending to ∅

    new = [list(s.unbind(1)) for s in state]
    for u in range(U):
        args = (attended[u], grp.w_ih[u].t(), grp.w_hh[u].t(), grp.b_ih[u, 0], grp.b_hh[u, 0])
        if cell.cell_type == "lstm":
            hu, cu = torch.lstm_cell(args[0], (h[:, u], state[1][:, u]), *args[1:])  # D_k = LSTM_k(h_{t,k}, A^(in)_k)
            outs = (hu, cu)
        else:
            outs = (torch.gru_cell(args[0], h[:, u], *args[1:]),)  # D_k = GRU_k(h_{t,k}, A^(in)_k)
        for s, o in zip(new, outs):
            # h~_{t,k} = D_k(h_{t,k}) for k in S_t;  h_{t+1,k} = h_{t,k} for k not in S_t (exactly)
            s[u] = torch.where(active[:, u : u + 1], o, s[u])
    new = [torch.stack(s, 1) for s in new]

    comm = cell.communication
    if comm is not None:
        h1 = new[0]  # h~_t
        kc, vc, ch = comm.key_size, comm.value_size, comm.num_heads
        qkv = [(h1[:, u] @ comm.qkv.weight[u]).view(b, ch, 2 * kc + vc) for u in range(U)]  # per mechanism k
        q = torch.stack([t[..., :kc] for t in qkv], 2)  # Q_{t,k} = W~^q_k h~_{t,k}: [B, heads, U, K]
        k = torch.stack([t[..., kc : 2 * kc] for t in qkv], 2)  # K_{t,k} = W~^e_k h~_{t,k}
        v = torch.stack([t[..., 2 * kc :] for t in qkv], 2)  # V_{t,k} = W~^v_k h~_{t,k}
        probs = (q @ k.transpose(-1, -2) / kc**0.5).softmax(
            -1
        )  # softmax(Q_{t,k} K_{t,:}^T / sqrt(d_e)) over mechanisms
        if comm.top_k is not None:  # sparse communication: each query keeps its top_k weights, renormalised
            kth = probs.sort(-1, descending=True).values[..., comm.top_k - 1 : comm.top_k]
            probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
            probs = probs / (probs.sum(-1, keepdim=True) + 1e-8)
        if comm_dropout > 0:
            keep = _keep_mask(comm_keep, comm_dropout, (b, ch, U, U), generator)
            probs = _dropout(probs, keep, comm_dropout)  # dropout on the communication weights
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, U, ch * vc)  # softmax(..) V_{t,:}, heads concatenated
        out = torch.stack([ctx[:, u] @ comm.out.weight[u] for u in range(U)], 1)  # per-mechanism output projection
        new[0] = torch.where(active.unsqueeze(-1), h1 + out, h1)  # h_{t+1,k} = softmax(..) V + h~_{t,k}, k in S_t
    return tuple(new), active, null
