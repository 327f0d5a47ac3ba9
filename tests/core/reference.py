"""A slow, literal reference of one RIM step (docs/design.md §1), with Python loops over mechanisms.

It shares only the parameters with ``RIMCell``; everything else (the null element, the per-mechanism
queries, the competition, the cells via ``torch.lstm_cell``/``torch.gru_cell``, communication) is
written out again here, so the tests compare the fast implementation against the definition.
"""

import torch


def reference_step(cell, x, state):
    """:param cell: an eval-mode ``RIMCell``
    :param x: [B, N, D]
    :param state: tuple of [B, U, H]
    :return: new state (tuple of [B, U, H]), active [B, U], null attention [B, U]
    """
    att, grp = cell.input_attention, cell.cell
    b, n, d = x.shape
    U, heads = cell.num_units, att.num_heads
    h = state[0]
    xs = torch.cat([x.new_zeros(b, 1, d), x], dim=1)  # the null element first
    keys = (xs @ att.key.weight.t()).view(b, n + 1, heads, -1)
    values = (xs @ att.value.weight.t() + att.value.bias).view(b, n + 1, heads, -1)
    null, attended = [], []
    for u in range(U):
        q = h[:, u] @ att.query.weight[u]
        if att.query.bias is not None:
            q = q + att.query.bias[u, 0]
        q = q.view(b, heads, -1)
        scores = torch.einsum("bhk,bnhk->bhn", q, keys) / att.key_size**0.5
        probs = scores.softmax(dim=-1)  # over the N+1 elements
        null.append(probs[:, :, 0].mean(1))
        attended.append(torch.einsum("bhn,bnhv->bv", probs, values) / heads)
    null = torch.stack(null, 1)  # [B, U]
    order = null.argsort(dim=1)  # least null attention first
    active = torch.zeros(b, U, dtype=torch.bool)
    for row in range(b):
        active[row, order[row, : cell.k_active]] = True

    new = [list(s.unbind(1)) for s in state]
    for u in range(U):
        args = (attended[u], grp.w_ih[u].t(), grp.w_hh[u].t(), grp.b_ih[u, 0], grp.b_hh[u, 0])
        if cell.cell_type == "lstm":
            hu, cu = torch.lstm_cell(args[0], (h[:, u], state[1][:, u]), *args[1:])
            outs = (hu, cu)
        else:
            outs = (torch.gru_cell(args[0], h[:, u], *args[1:]),)
        for s, o in zip(new, outs):
            s[u] = torch.where(active[:, u : u + 1], o, s[u])
    new = [torch.stack(s, 1) for s in new]

    comm = cell.communication
    if comm is not None:
        h1 = new[0]
        kc, vc, ch = comm.key_size, comm.value_size, comm.num_heads
        qkv = [(h1[:, u] @ comm.qkv.weight[u]).view(b, ch, 2 * kc + vc) for u in range(U)]
        q = torch.stack([t[..., :kc] for t in qkv], 2)  # [B, heads, U, K]
        k = torch.stack([t[..., kc : 2 * kc] for t in qkv], 2)
        v = torch.stack([t[..., 2 * kc :] for t in qkv], 2)
        probs = (q @ k.transpose(-1, -2) / kc**0.5).softmax(-1)  # [B, heads, U, U] over mechanisms
        if comm.top_k is not None:
            kth = probs.sort(-1, descending=True).values[..., comm.top_k - 1 : comm.top_k]
            probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
            probs = probs / (probs.sum(-1, keepdim=True) + 1e-8)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, U, ch * vc)
        out = torch.stack([ctx[:, u] @ comm.out.weight[u] for u in range(U)], 1)
        new[0] = torch.where(active.unsqueeze(-1), h1 + out, h1)
    return tuple(new), active, null
