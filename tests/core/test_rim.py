"""Behaviour of RIMCell and RIM: the semantics of docs/design.md §1 and the pitfalls of public versions (§6)."""

import pytest
import torch
from torch import nn

from rims_rl import RIM, RIMCell
from rims_rl.core import CommunicationAttention, InputAttention
from rims_rl.core.reference import reference_step
from rims_rl.core.rim import block_length

SMALL = dict(input_key_size=8, input_value_size=12, comm_key_size=4, comm_value_size=5)


def make_cell(cell="lstm", d=7, h=5, u=6, k=4, seed=0, **kw):
    torch.manual_seed(seed)
    return RIMCell(d, h, u, k, cell, **{**SMALL, "input_dropout": 0.0, "comm_dropout": 0.0, **kw}).eval()


def random_state(cell, b, seed=1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, cell.num_units, cell.hidden_size, generator=g) for _ in range(cell.num_states))


CASES = [
    dict(cell="lstm"),
    dict(cell="gru"),
    dict(cell="lstm", num_input_heads=4),
    dict(cell="gru", num_input_heads=3, comm_top_k=2),
    dict(cell="lstm", use_communication=False),
    dict(cell="gru", d=16),  # an input wider than the values (12): the fast path's other matmul order
    dict(cell="lstm", num_input_heads=2, query_bias=False),  # queries without a bias
]


@pytest.mark.parametrize("n", [None, 1, 4])
@pytest.mark.parametrize("kw", CASES)
def test_step_matches_reference(kw, n):
    """The batched step (fast single-element path and general path) equals the literal definition."""
    cell = make_cell(**kw)
    x = torch.randn(9, cell.input_size) if n is None else torch.randn(9, n, cell.input_size)
    state = random_state(cell, 9)
    h, new, active = cell(x, state)
    ref_state, ref_active, _ = reference_step(cell, x if n else x.unsqueeze(1), state)
    assert torch.equal(active, ref_active)
    for a, b in zip(new, ref_state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(h, new[0])


def record_dropout_masks(cell):
    """Record the keep masks the fused step's two ``nn.Dropout`` modules draw (forward hooks; the cell's
    own dropout still runs), to replay them in the reference.

    :param cell: a ``RIMCell`` in training mode
    :return: a dict ``{"input": [...], "comm": [...]}`` of bool masks (``output != 0``) in call order:
        input attention ``[U, B, heads]`` twice per step on the one-element fast path (first the element's
        weight ``p``, then the null element's ``1 - p``) or ``[U, B, heads, N+1]`` once on the general path;
        communication ``[U (query), U (key), B, heads]``. A weight that was 0 already gets ``False``, which
        changes nothing: it contributes 0 either way.
    """
    masks = {"input": [], "comm": []}
    cell.input_attention.dropout.register_forward_hook(lambda m, i, o: masks["input"].append(o != 0))
    if cell.communication is not None:
        cell.communication.dropout.register_forward_hook(lambda m, i, o: masks["comm"].append(o != 0))
    return masks


def reference_masks(masks, b, u, heads, n):
    """The recorded masks in the reference's layout: input ``[B, U, heads, N+1]`` (null element first),
    communication ``[B, heads, U (query), U (key)]``; all True where the fused step drew none."""
    if not masks["input"]:
        inp = torch.ones(b, u, heads, n + 1, dtype=torch.bool)
    elif n == 1:  # the fast path's two draws: element p, then null 1 - p
        element, null = masks["input"]
        inp = torch.stack([null, element], -1).permute(1, 0, 2, 3)
    else:
        (inp,) = masks["input"]
        inp = inp.permute(1, 0, 2, 3)
    comm = masks["comm"][0].permute(2, 3, 0, 1) if masks["comm"] else torch.ones(b, 1, u, u, dtype=torch.bool)
    return inp, comm


DROPOUT_CASES = [
    dict(cell="lstm"),
    dict(cell="gru"),
    dict(cell="lstm", num_input_heads=3, comm_top_k=2),
    dict(cell="gru", num_input_heads=2),
]


@pytest.mark.parametrize("rates", [(0.2, 0.0), (0.0, 0.3), (0.1, 0.4)])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("kw", DROPOUT_CASES)
def test_step_with_dropout_matches_reference_under_replayed_masks(kw, n, rates):
    """In training, with input and communication dropout, the fused step (n=1: the fast path of
    docs/design.md §2.3; n=3: the general path) equals the literal reference given the very masks the
    fused step drew. The two rates differ and the reference takes them as arguments (not from the cell),
    so a cell that applies one attention's rate to the other fails (docs/design.md §6, pitfall 17)."""
    input_rate, comm_rate = rates
    cell = make_cell(**kw, input_dropout=input_rate, comm_dropout=comm_rate).train()
    masks = record_dropout_masks(cell)
    b, heads = 16, cell.input_attention.num_heads
    x, state = torch.randn(b, n, cell.input_size), random_state(cell, b)
    torch.manual_seed(5)
    _, new, active = cell(x, state)
    input_keep, comm_keep = reference_masks(masks, b, cell.num_units, heads, n)
    if input_rate:
        assert not input_keep.all() and input_keep.any()  # dropout did drop some weights and kept others
    if comm_rate:
        assert not comm_keep.all()
    ref_state, ref_active, _ = reference_step(
        cell, x, state, input_dropout=input_rate, comm_dropout=comm_rate, input_keep=input_keep, comm_keep=comm_keep
    )
    assert torch.equal(active, ref_active)
    for a, r in zip(new, ref_state):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    # and the masks matter: without dropout the reference gives another state
    plain, _, _ = reference_step(cell, x, state)
    assert not torch.allclose(plain[0], new[0], atol=1e-4)


def test_reference_draws_reproducible_masks_and_checks_their_shape():
    """Without masks the reference draws them from its generator (same seed, same step); a mask of the
    wrong shape is refused."""
    cell = make_cell()
    x, state = torch.randn(4, 2, cell.input_size), random_state(cell, 4)
    steps = [
        reference_step(
            cell, x, state, input_dropout=0.3, comm_dropout=0.3, generator=torch.Generator().manual_seed(seed)
        )[0][0]
        for seed in (0, 0, 1)
    ]
    assert torch.equal(steps[0], steps[1]) and not torch.allclose(steps[0], steps[2])
    with pytest.raises(ValueError, match=r"keep mask must have shape \(4, 6, 1, 3\), got \(4, 6, 3\)"):
        reference_step(cell, x, state, input_dropout=0.3, input_keep=torch.ones(4, 6, 3, dtype=torch.bool))


def test_dropout_rates_reach_their_own_attention():
    """``input_dropout`` acts on the input attention and ``comm_dropout`` on communication, not the other
    way round: with only one of them on, only that attention's weights are dropped, at about its rate."""
    for input_rate, comm_rate in [(0.5, 0.0), (0.0, 0.5)]:
        cell = make_cell(input_dropout=input_rate, comm_dropout=comm_rate, u=6, k=3).train()
        masks = record_dropout_masks(cell)
        torch.manual_seed(0)
        cell(torch.randn(64, 3, cell.input_size), random_state(cell, 64))
        input_dropped = 1 - torch.cat([m.flatten() for m in masks["input"]]).float().mean().item()
        comm_dropped = 1 - masks["comm"][0].float().mean().item()
        assert input_dropped == pytest.approx(input_rate, abs=0.05)
        assert comm_dropped == pytest.approx(comm_rate, abs=0.05)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_exactly_k_active_and_inactive_unchanged(cell_type, k):
    cell = make_cell(cell_type, k=k)
    state = random_state(cell, 32)
    for n in (1, 3):
        h, new, active = cell(torch.randn(32, n, cell.input_size), state)
        assert active.shape == (32, cell.num_units)
        assert (active.sum(1) == k).all()
        for s_old, s_new in zip(state, new):
            assert torch.equal(s_new[~active], s_old[~active])  # bit for bit
            assert not torch.equal(s_new[active], s_old[active])  # active ones do move


def test_k_equal_num_units_makes_all_active():
    cell = make_cell(k=6)
    _, _, active = cell(torch.randn(10, cell.input_size), random_state(cell, 10))
    assert active.all()


def test_mechanism_most_on_null_is_left_out():
    cell = make_cell(k=5)
    state = random_state(cell, 64)
    x = torch.randn(64, 1, cell.input_size)
    # the null-element attention from the attention module alone (state: [U, B, H] inside)
    _, null = cell.input_attention(state[0].transpose(0, 1), x)
    _, _, active = cell(x, state)
    assert torch.equal(active.float().argmin(1), null.argmax(0))
    assert (~active).sum() == 64


def test_group_cells_equal_separate_torch_cells():
    from rims_rl.core import GroupGRUCell, GroupLSTMCell

    torch.manual_seed(0)
    u, b, d, h = 4, 3, 6, 5
    for group_cls, torch_cls in [(GroupLSTMCell, nn.LSTMCell), (GroupGRUCell, nn.GRUCell)]:
        cells = [torch_cls(d, h) for _ in range(u)]
        grouped = group_cls(d, h, u)
        grouped.load_from_torch_cells(cells)
        x = torch.randn(u, b, d)
        state = tuple(torch.randn(u, b, h) for _ in range(grouped.num_states))
        out = grouped(x, state)
        for i, c in enumerate(cells):
            ref = c(x[i], tuple(s[i] for s in state) if len(state) == 2 else state[0][i])
            ref = ref if isinstance(ref, tuple) else (ref,)
            for a, r in zip(out, ref):
                torch.testing.assert_close(a[i], r)


def test_no_two_mechanisms_share_weights_and_init_is_like_torch():
    cell = make_cell(h=16)
    bound = 1 / 16**0.5
    for p in (cell.cell.w_ih, cell.cell.w_hh):
        assert p.abs().max() <= bound and p.std() > bound / 3  # uniform(+-1/sqrt(H)), not a constant
    for name, p in cell.named_parameters():
        if p.dim() == 3:  # grouped: [U, ...], one weight set per mechanism
            flat = p.flatten(1)
            for i in range(len(flat)):
                for j in range(i + 1, len(flat)):
                    assert not torch.equal(flat[i], flat[j]), f"{name}: mechanisms {i} and {j} share weights"


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("heads", [1, 4])
def test_gradient_reaches_every_parameter(cell_type, n, heads):
    torch.manual_seed(0)
    rim = RIM(7, 5, 6, 4, cell_type, num_input_heads=heads, **SMALL)  # train mode, dropout on
    out, state, active = rim(torch.randn(12, 8, n, 7))
    (out.pow(2).sum() + state[0].sum()).backward()
    assert active.any(dim=(0, 1)).all(), "every mechanism should be active at some step"
    for name, p in rim.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_rim_sequence_equals_stepping_cell():
    torch.manual_seed(0)
    rim = RIM(7, 5, 6, 3, num_layers=2, **SMALL, input_dropout=0.0, comm_dropout=0.0)
    xs = torch.randn(6, 4, 7)
    out, state, active = rim(xs)
    s = [layer.initial_state(4) for layer in rim.layers]
    for t in range(6):
        x = xs[t]
        for i, layer in enumerate(rim.layers):
            h, s[i], act = layer(x, s[i])
            x = h.flatten(1)
        torch.testing.assert_close(out[t], x)
        assert torch.equal(active[t], act)
    torch.testing.assert_close(state[0], torch.stack([si[0] for si in s]))
    torch.testing.assert_close(state[1], torch.stack([si[1] for si in s]))


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_episode_starts_equal_fresh_state(cell_type):
    torch.manual_seed(0)
    rim = RIM(7, 5, 6, 4, cell_type, num_layers=2, **SMALL).eval()
    xs = torch.randn(10, 3, 7)
    starts = torch.zeros(10, 3)
    starts[4, 1] = 1  # env 1 starts a new episode at step 4
    state = tuple(torch.randn_like(s) for s in rim.initial_state(3))
    out, _, _ = rim(xs, state, starts)
    fresh, _, _ = rim(xs[4:, 1:2])  # the same env from a zero state
    torch.testing.assert_close(out[4:, 1:2], fresh)
    same, _, _ = rim(xs, state)  # rows without a start are untouched
    torch.testing.assert_close(out[:, [0, 2]], same[:, [0, 2]])
    assert not torch.allclose(out[4:, 1], same[4:, 1])


def test_same_seed_same_output():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        rim = RIM(7, 5, **SMALL)  # dropout on, train mode
        outs.append(rim(torch.randn(5, 2, 7))[0])
    assert torch.equal(*outs)


class AffineNoise(nn.Module):
    """A deterministic stand-in for dropout (elementwise, not linear), to compare the two input paths."""

    p = 0.5

    def forward(self, t):
        return t * 1.7 + 0.05


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("heads", [1, 2])
def test_fast_path_handles_attention_dropout(cell_type, heads):
    """With dropout the element and null probabilities no longer sum to one; the single-element fast
    path must still equal the general attention path (here forced with a duplicate, zero-attended element)."""
    cell = make_cell(cell_type, num_input_heads=heads)
    cell.train()
    cell.input_attention.dropout = AffineNoise()
    x, state = torch.randn(5, cell.input_size), random_state(cell, 5)
    fast = cell(x, state)
    # the general path on the same single element: keys/values built by the attention module
    att = cell.input_attention
    keys, values = att.keys_values(x.unsqueeze(1))
    attended, null = att.attend(att.query(state[0].transpose(0, 1)), keys, values)
    gi = cell.cell.input_gates(attended)
    gh = cell.cell.hidden_gates(state[0].transpose(0, 1))
    new = cell.cell.update(gi, gh, tuple(s.transpose(0, 1) for s in state))
    active = fast[2].t().unsqueeze(-1)
    h1 = torch.where(active, new[0], state[0].transpose(0, 1))
    torch.testing.assert_close(fast[2], ~null.t().argsort(1).argsort(1).ge(cell.k_active))
    if cell.communication is not None:
        cell.communication.eval()
        h1 = h1 + cell.communication(h1) * active
    torch.testing.assert_close(fast[1][0], h1.transpose(0, 1), rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
    cell = make_cell(input_dropout=0.5, comm_dropout=0.5)
    x, state = torch.randn(16, cell.input_size), random_state(cell, 16)
    ref = cell(x, state)[0]
    cell.train()
    torch.manual_seed(0)
    h, new, active = cell(x, state)
    assert not torch.allclose(h, ref)
    assert (active.sum(1) == cell.k_active).all()
    assert torch.equal(new[1][~active], state[1][~active])
    cell.eval()
    assert torch.equal(cell(x, state)[0], ref)


def test_sparse_communication_keeps_top_k():
    torch.manual_seed(0)
    comm = CommunicationAttention(5, 6, 4, 4, 2, dropout=0.0, top_k=2)
    captured = {}
    comm.dropout.register_forward_hook(lambda m, i, o: captured.setdefault("p", o))
    comm(torch.randn(6, 3, 5))
    p = captured["p"]  # [U (query), W (key), B, heads]
    assert p.shape == (6, 6, 3, 2)
    assert ((p > 0).sum(1) == 2).all()
    torch.testing.assert_close(p.sum(1), torch.ones(6, 3, 2))


def test_null_element_has_value_bias_and_zero_score():
    att = InputAttention(4, 3, 2, key_size=5, value_size=6, num_heads=2, dropout=0.0)
    keys, values = att.keys_values(torch.randn(7, 3, 4))
    assert keys.shape == (7, 4, 2, 5) and values.shape == (7, 4, 2, 6)
    assert torch.equal(keys[:, 0], torch.zeros(7, 2, 5))
    assert torch.equal(values[:, 0], att.value.bias.view(2, 6).expand(7, 2, 6))


def test_output_sizes_and_state_shapes():
    rim = RIM(7, 5, 6, 4, "gru", num_layers=3, **SMALL)
    out, state, active = rim(torch.randn(4, 2, 7))
    assert rim.output_size == 30 and out.shape == (4, 2, 30)
    assert len(state) == 1 and state[0].shape == (3, 2, 6, 5)
    assert active.shape == (4, 2, 6) and active.dtype == torch.bool
    assert [s.shape for s in rim.initial_state(2)] == [(3, 2, 6, 5)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k_active=0), r"k_active must be an integer in 1..num_units=6, got 0"),
        (dict(k_active=7), r"k_active .* got 7"),
        (dict(hidden_size=0), r"hidden_size must be a positive integer, got 0"),
        (dict(input_size=-3), r"input_size .* got -3"),
        (dict(cell="rnn"), r"cell must be one of \['gru', 'lstm'\], got 'rnn'"),
        (dict(input_dropout=1.0), r"input_dropout must be in \[0, 1\), got 1.0"),
        (dict(comm_top_k=9), r"comm_top_k .* got 9"),
        (dict(num_layers=0), r"num_layers .* got 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    args = {**dict(input_size=7, hidden_size=5, num_units=6, k_active=4), **kwargs}
    with pytest.raises(ValueError, match=match):
        RIM(**args)


def test_bad_inputs_raise_clear_errors():
    rim = RIM(7, 5, **SMALL)
    with pytest.raises(ValueError, match=r"last axis must be input_size=7, got shape \(3, 2, 8\)"):
        rim(torch.randn(3, 2, 8))
    with pytest.raises(ValueError, match=r"episode_starts must be \[T, B\]"):
        rim(torch.randn(3, 2, 7), episode_starts=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"state must be 2 tensor\(s\) of shape \(1, 2, 6, 5\)"):
        rim(torch.randn(3, 2, 7), state=(torch.zeros(2, 6, 5),) * 2)
    with pytest.raises(ValueError, match=r"input must be \[B, D\] or \[B, N, D\]"):
        rim.layers[0](torch.randn(7))


@pytest.mark.slow
@pytest.mark.parametrize("cell_type, n, heads, block", [("lstm", 1, 4, 2), ("gru", 3, 1, 16)])  # ~30 s each
def test_compiled_sequence_equals_eager(cell_type, n, heads, block):
    """``compile_sequence`` (the loop under torch.compile, resets by multiplication) gives the eager
    outputs, active sets, states and gradients, episode starts included: T=4 steps, the RL path (LSTM
    cells, one element, 4 heads: the fast path, whose compiled form folds the key into the query weights)
    in two compiled blocks of 2 steps (the state handed from block to block) and GRU cells with 3 input
    elements (the general path) in one."""
    torch.manual_seed(0)
    kw = dict(
        input_dropout=0.0,
        comm_dropout=0.0,
        num_input_heads=heads,
        input_key_size=4,
        comm_key_size=4,
        comm_value_size=4,
        num_comm_heads=2,
    )
    eager = RIM(5, 3, num_units=4, k_active=2, cell=cell_type, **kw)
    compiled = RIM(5, 3, num_units=4, k_active=2, cell=cell_type, **kw)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_sequence(block, fullgraph=True)  # no graph break anywhere in the loop
    xs = torch.randn(4, 2, n, 5) if n > 1 else torch.randn(4, 2, 5)
    starts = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=torch.float32)
    state = tuple(torch.randn(1, 2, 4, 3) for _ in range(eager.num_states))
    results = []
    for rim in (eager, compiled):
        out, final, active = rim(xs, state, starts)
        (out.sum() + sum(s.sum() for s in final)).backward()
        results.append((out, final, active, [p.grad.clone() for p in rim.parameters()]))
    (o1, s1, a1, g1), (o2, s2, a2, g2) = results
    assert torch.equal(a1, a2)
    torch.testing.assert_close(o1, o2)
    for x, y in zip(s1 + tuple(g1), s2 + tuple(g2)):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize(
    "t, block, expected",
    [(5, 16, 5), (16, 16, 16), (196, 16, 14), (40, 16, 10), (361, 16, 16), (37, 16, 13), (5, 2, 1)],
)
def test_block_length(t, block, expected):
    """A compiled sequence longer than ``block`` runs in blocks: the largest divisor of T in [block/2, block]
    (one graph), else equal blocks and a shorter last one (361 = 22 x 16 + 9; 37 = 2 x 13 + 11)."""
    assert block_length(t, block) == expected


@pytest.mark.parametrize("inference", [True, False])
def test_compiled_loop_runs_in_blocks_and_skips_inference_when_asked(inference):
    """The compiled loop is called once per block, the state handed on; with ``inference=False`` calls
    without gradients (evaluation) run eagerly. A stand-in for the compiled function (the eager loop,
    counted) keeps this test free of compilation."""
    rim = RIM(5, 3, num_units=4, k_active=2, input_dropout=0.0, comm_dropout=0.0)
    xs = torch.randn(6, 2, 5)
    expected = rim(xs)
    layer = rim.layers[0].compile_sequence(block=2, inference=inference)
    calls = []

    def counted(xs, state, keep):
        calls.append(xs.shape[0])
        return layer._loop(xs, state, keep)

    layer._compiled_loop = counted
    out, state, active = rim(xs)
    assert calls == [2, 2, 2]
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(state, expected[1])
    assert torch.equal(active, expected[2])
    with torch.no_grad():
        rim(xs)
    assert calls == [2, 2, 2] + ([2, 2, 2] if inference else [])


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, {"fullgraph": False, "options": {"cpp_wrapper": True}}),
        ({"options": {"cpp_wrapper": False}}, {"fullgraph": False, "options": {"cpp_wrapper": False}}),
        (
            {"fullgraph": True, "options": {"max_autotune": True}},
            {"fullgraph": True, "options": {"cpp_wrapper": True, "max_autotune": True}},
        ),
        ({"mode": "max-autotune"}, {"fullgraph": False, "mode": "max-autotune"}),  # mode and options exclude each other
    ],
)
def test_compile_sequence_uses_the_cpp_wrapper_on_a_cpu(monkeypatch, kwargs, expected):
    """On a CPU the loop compiles with inductor's C++ wrapper unless the caller's options or mode say otherwise
    (torch.compile stubbed out: the arguments it gets)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or fn)
    RIM(5, 3, num_units=4, k_active=2).compile_sequence(**kwargs)
    assert seen == [expected]


def test_a_failing_compilation_falls_back_to_eager():
    """Where torch.compile cannot run (no C++ compiler, say), the RIM warns once and runs eagerly."""
    rim = RIM(5, 3, num_units=4, k_active=2)
    xs = torch.randn(3, 2, 5)
    expected = rim.eval()(xs)[0]

    def broken(*args):
        raise RuntimeError("no compiler\nmore detail")

    rim.layers[0]._compiled_loop = broken
    with pytest.warns(
        UserWarning, match=r"compile_sequence failed \(RuntimeError: no compiler\); the RIM runs eagerly"
    ):
        out = rim(xs)[0]
    assert torch.equal(out, expected) and rim.layers[0]._compiled_loop is None
