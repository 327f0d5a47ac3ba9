"""RIM policies: sb3-contrib's recurrent semantics, the RIM behind them, spatial elements, save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy

from rims_rl import CnnRimPolicy, MlpRimPolicy, MultiInputRimPolicy
from rims_rl.rl import LstmCore, RimCore, SpatialNatureCNN

from .conftest import IMAGE, TINY_POLICY, TINY_RIM, box


def lr(_):
    return 1e-3


def random_states(policy, n: int, seed: int = 0) -> RNNStates:
    g = torch.Generator().manual_seed(seed)
    shape = (policy.lstm_actor.num_layers, n, policy.lstm_actor.hidden_size)
    h, c, hv, cv = (torch.randn(shape, generator=g) for _ in range(4))
    if getattr(policy, "rim_kwargs", None) and policy.rim_kwargs["cell"] == "gru":
        c, cv = torch.zeros_like(c), torch.zeros_like(cv)
    return RNNStates((h, c), (hv, cv))


def step_through(policy, obs, states, starts):
    """Step ``policy.forward`` one time step at a time. obs [T, B, ...], starts [T, B].
    :return: deterministic actions [T, B, ...], values [T, B], log-probs [T, B], states after each step"""
    actions, values, log_probs, all_states = [], [], [], []
    with torch.no_grad():
        for t in range(obs.shape[0]):
            a, v, lp, states = policy(obs[t], states, starts[t], deterministic=True)
            actions.append(a), values.append(v.flatten()), log_probs.append(lp), all_states.append(states)
    return torch.stack(actions), torch.stack(values), torch.stack(log_probs), all_states


def seq_major(x: torch.Tensor) -> torch.Tensor:
    """[T, B, ...] -> [B * T, ...], sb3-contrib's sequence-major layout."""
    return x.transpose(0, 1).flatten(0, 1)


STARTS = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.float32)  # [T, B]


def test_lstm_core_reproduces_sb3_contrib_lstm_policy():
    """With core="lstm" and the same weights, the policy is sb3-contrib's MlpLstmPolicy: same actions,
    values, log-probs and states, stepping one step at a time and over sequences with episode starts."""
    torch.manual_seed(0)
    kw = dict(lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
    stock = MlpLstmPolicy(box(3), spaces.Discrete(3), lr, **kw)
    ours = MlpRimPolicy(box(3), spaces.Discrete(3), lr, core="lstm", enable_critic_lstm=True, **kw)  # stock's critic
    assert isinstance(ours.lstm_actor, LstmCore)
    ours.load_state_dict(stock.state_dict())  # strict: the same keys, all tensors
    obs, states = torch.randn(6, 3, 3), random_states(stock, 3)
    a1, v1, lp1, s1 = step_through(stock, obs, states, STARTS)
    a2, v2, lp2, s2 = step_through(ours, obs, states, STARTS)
    assert torch.equal(a1, a2)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(lp1, lp2)
    for x, y in zip(s1[-1].pi + s1[-1].vf, s2[-1].pi + s2[-1].vf):
        torch.testing.assert_close(x, y)
    out1 = stock.evaluate_actions(seq_major(obs), seq_major(a1), states, seq_major(STARTS))
    out2 = ours.evaluate_actions(seq_major(obs), seq_major(a1), states, seq_major(STARTS))
    for x, y in zip(out1, out2):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rim_sequence_equals_stepping_and_resets(cell):
    """Evaluating sequences with episode starts inside in one call gives what stepping gives; an episode
    start forgets the state; the state does matter otherwise."""
    torch.manual_seed(0)
    policy = MlpRimPolicy(box(3), spaces.Discrete(3), lr, rim_kwargs=dict(TINY_RIM, cell=cell), net_arch=[8])
    obs, states = torch.randn(6, 3, 3), random_states(policy, 3)
    actions, values, log_probs, stepped = step_through(policy, obs, states, STARTS)
    v, lp, _ = policy.evaluate_actions(seq_major(obs), seq_major(actions), states, seq_major(STARTS))
    torch.testing.assert_close(v.flatten(), seq_major(values))
    torch.testing.assert_close(lp, seq_major(log_probs))
    for s in stepped[-1].pi + stepped[-1].vf:
        assert s.shape == (1, 3, 6 * 4)  # [L, B, U*H] travels through sb3-contrib
    if cell == "gru":
        assert torch.equal(stepped[-1].pi[1], torch.zeros_like(stepped[-1].pi[1]))  # placeholder c
    # env 0 starts an episode at t=0: same as starting from zeros; env 1 does not: the state matters
    zeros = RNNStates(*(tuple(torch.zeros_like(s) for s in pair) for pair in states))
    _, v_zero, lp_zero, _ = step_through(policy, obs[:1], zeros, torch.zeros(1, 3))
    torch.testing.assert_close(values[0, 0], v_zero[0, 0])
    torch.testing.assert_close(log_probs[0, 0], lp_zero[0, 0])
    assert not torch.allclose(values[0, 1], v_zero[0, 1])


def test_predict_returns_new_state_and_default_is_paper_rl_setting():
    """predict() takes and returns the [L, n_envs, U*H] state pair; default RIM: 6 mechanisms, 5 active,
    4 input heads, no dropout; the actor head reads the mechanisms, so the state changes the action."""
    policy = MlpRimPolicy(box(4), spaces.Box(-1, 1, (2,)), lr, lstm_hidden_size=24)
    rim = policy.lstm_actor.rim
    cell = rim.layers[0]
    assert (rim.num_units, rim.k_active, rim.hidden_size) == (6, 5, 4)
    assert cell.input_attention.num_heads == 4
    assert cell.input_attention.dropout.p == 0.0 and cell.communication.dropout.p == 0.0
    obs = np.random.default_rng(0).uniform(-1, 1, (2, 4)).astype(np.float32)
    a0, state = policy.predict(obs, deterministic=True)
    assert state[0].shape == state[1].shape == (1, 2, 24)
    assert np.abs(state[0]).sum() > 0
    a1, state1 = policy.predict(obs, state=state, episode_start=np.zeros(2), deterministic=True)
    a2, _ = policy.predict(obs, state=state, episode_start=np.ones(2), deterministic=True)
    np.testing.assert_allclose(a2, a0, rtol=1e-5, atol=1e-6)  # reset: as from the zero state
    assert not np.allclose(a1, a0)


def test_spatial_elements_are_feature_map_positions():
    """input_elements="spatial": each position of NatureCNN's last feature map (2 x 2 for 44 x 44) is one
    element of 64 channels + 2 coordinates, and the RIM attends over those 4 elements."""
    policy = CnnRimPolicy(IMAGE, spaces.Discrete(3), lr, input_elements="spatial", **TINY_POLICY)
    assert isinstance(policy.features_extractor, SpatialNatureCNN)
    core = policy.lstm_actor
    assert isinstance(core, RimCore) and core.num_elements == 4 and core.rim.input_size == 66
    obs = torch.randint(0, 256, (5, *IMAGE.shape)).float()
    features = policy.extract_features(obs)
    assert features.shape == (5, 4 * 66)
    # the coordinates of element (row 1, column 0) are (+1, -1)
    torch.testing.assert_close(features.view(5, 4, 66)[:, 2, 64:], torch.tensor([[1.0, -1.0]]).expand(5, 2))
    vector = CnnRimPolicy(IMAGE, spaces.Discrete(3), lr, **TINY_POLICY)
    assert vector.lstm_actor.num_elements == 1 and vector.lstm_actor.rim.input_size == vector.features_dim


@pytest.mark.parametrize(
    "policy_cls, space, kwargs",
    [
        (CnnRimPolicy, IMAGE, dict(input_elements="spatial", rim_kwargs=dict(TINY_RIM, cell="gru"))),
        (
            MultiInputRimPolicy,
            spaces.Dict({"a": box(2), "b": spaces.Discrete(3)}),
            dict(rim_kwargs=TINY_RIM, truncate_bptt=4),
        ),
        (MlpRimPolicy, box(3), dict(core="lstm", lstm_hidden_size=8, enable_critic_lstm=True)),
        (MlpRimPolicy, box(3), dict(rim_kwargs=TINY_RIM, critic_core="lstm")),
        (MlpRimPolicy, spaces.MultiDiscrete([3, 4]), dict(rim_kwargs=TINY_RIM)),
    ],
)
def test_policy_save_load_round_trip(tmp_path, policy_cls, space, kwargs):
    """policy.save / Policy.load keeps the constructor arguments (the stock recurrent policy loses them)
    and gives the same deterministic actions and states."""
    policy = policy_cls(space, spaces.Discrete(4), lr, net_arch=[8], **kwargs)
    policy.save(tmp_path / "policy.pth")
    loaded = policy_cls.load(tmp_path / "policy.pth")
    assert loaded.core_kind == policy.core_kind and loaded.rim_kwargs == policy.rim_kwargs
    assert loaded.critic_core_kind == policy.critic_core_kind and type(loaded.lstm_critic) is type(policy.lstm_critic)
    assert loaded.lstm_actor.truncate_bptt == policy.lstm_actor.truncate_bptt == kwargs.get("truncate_bptt")
    assert type(loaded.features_extractor) is type(policy.features_extractor)
    space.seed(0)
    obs = (
        {k: np.stack([s.sample() for _ in range(3)]) for k, s in space.items()}
        if isinstance(space, spaces.Dict)
        else np.stack([space.sample() for _ in range(3)])
    )
    state = None
    for _ in range(3):
        a1, s1 = policy.predict(obs, state, np.zeros(3), deterministic=True)
        a2, s2 = loaded.predict(obs, state, np.zeros(3), deterministic=True)
        assert np.array_equal(a1, a2) and all(np.array_equal(x, y) for x, y in zip(s1, s2))
        state = s1


def test_loading_weights_of_another_configuration_raises_a_clear_error():
    a = MlpRimPolicy(box(3), spaces.Discrete(2), lr, rim_kwargs=TINY_RIM)
    b = MlpRimPolicy(box(3), spaces.Discrete(2), lr, rim_kwargs=dict(TINY_RIM, num_units=4, k_active=3))
    with pytest.raises(
        ValueError,
        match=r"these weights do not fit this policy \(core='rim', rim_kwargs=.*'num_units': 4.*size mismatch",
    ):
        b.load_state_dict(a.state_dict())
    c = MlpRimPolicy(box(3), spaces.Discrete(2), lr, core="lstm", lstm_hidden_size=24)
    with pytest.raises(ValueError, match=r"do not fit this policy \(core='lstm', lstm_hidden_size=24"):
        c.load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "policy_cls, kwargs, match",
    [
        (MlpRimPolicy, dict(core="transformer"), r"core must be one of \('rim', 'lstm'\), got 'transformer'"),
        (MlpRimPolicy, dict(rim_kwargs=dict(num_unit=6)), r"unknown rim_kwargs \['num_unit'\]; allowed: .*'num_units'"),
        (MlpRimPolicy, dict(rim_kwargs=dict(k_active=9)), r"k_active must be an integer in 1..num_units=6, got 9"),
        (MlpRimPolicy, dict(rim_kwargs=dict(num_units=0)), r"num_units'\] must be a positive integer, got 0"),
        (MlpRimPolicy, dict(input_elements="pixels"), r"input_elements must be one of \('vector', 'spatial'\)"),
        (MlpRimPolicy, dict(input_elements="spatial"), r"input_elements='spatial' needs an image policy"),
        (MlpRimPolicy, dict(core="lstm", rim_kwargs=dict(num_units=4)), r"rim_kwargs apply to core='rim' only"),
        (
            MlpRimPolicy,
            dict(shared_lstm=True, enable_critic_lstm=True),
            r"shared_lstm=True needs enable_critic_lstm=False",
        ),
        (
            MlpRimPolicy,
            dict(enable_critic_lstm=True, shared_critic_grad=True),
            r"shared_critic_grad=True needs shared_lstm=True",
        ),
        (
            MlpRimPolicy,
            dict(lstm_hidden_size="match_rim"),
            r"lstm_hidden_size='match_rim' sizes an LSTM core: it needs core='lstm'",
        ),
        (
            MlpRimPolicy,
            dict(core="lstm", lstm_hidden_size=0),
            r"lstm_hidden_size must be a positive integer or 'match_rim', got 0",
        ),
        (MlpRimPolicy, dict(core="lstm", lstm_kwargs=dict(batch_first=True)), r"lstm_kwargs accepts only"),
        (MlpRimPolicy, dict(truncate_bptt=0), r"truncate_bptt must be a positive number of steps or None, got 0"),
        (MlpRimPolicy, dict(critic_core="gru"), r"critic_core must be None or one of \('rim', 'lstm'\), got 'gru'"),
        (MlpRimPolicy, dict(core="lstm", critic_core="rim"), r"critic_core='rim' needs core='rim'"),
        (
            MlpRimPolicy,
            dict(critic_core="lstm", shared_lstm=True),
            r"critic_core='lstm' needs a critic core of its own",
        ),
    ],
)
def test_bad_arguments_raise_value_error(policy_cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_cls(box(3), spaces.Discrete(2), lr, **kwargs)


@pytest.mark.parametrize("shared_critic_grad", [False, True])
def test_shared_core_critic_gradient(shared_critic_grad):
    """shared_lstm=True: sb3-contrib trains the shared core with the policy loss only; with
    shared_critic_grad=True the value loss reaches the core too."""
    torch.manual_seed(0)
    policy = MlpRimPolicy(
        box(3),
        spaces.Discrete(2),
        lr,
        rim_kwargs=TINY_RIM,
        shared_lstm=True,
        enable_critic_lstm=False,
        shared_critic_grad=shared_critic_grad,
    )
    assert policy.lstm_critic is None
    obs, actions = torch.randn(12, 3), torch.randint(0, 2, (12,))
    values, log_prob, _ = policy.evaluate_actions(obs, actions, random_states(policy, 3), torch.zeros(12))
    values.sum().backward()
    core_grad = sum(p.grad.abs().sum() for p in policy.lstm_actor.parameters() if p.grad is not None)
    assert (core_grad > 0) == shared_critic_grad
    with torch.no_grad():  # same numbers either way
        _, values_acting, _, _ = policy(obs.view(3, 4, 3)[:, 0], random_states(policy, 3), torch.zeros(3))
    torch.testing.assert_close(values_acting, values.detach().view(3, 4)[:, :1])


@pytest.mark.parametrize("core", ["rim", "lstm"])
def test_truncated_bptt_keeps_values_and_cuts_gradient_paths(core):
    """truncate_bptt=2 on 6-step sequences: the same values and log-probabilities, but a step's loss no
    longer reaches the state more than 2 steps back (here: the sequence's initial state)."""
    torch.manual_seed(0)
    kwargs = dict(rim_kwargs=TINY_RIM) if core == "rim" else dict(core="lstm", lstm_hidden_size=8)
    full = MlpRimPolicy(box(3), spaces.Discrete(3), lr, net_arch=[8], **kwargs)
    truncated = MlpRimPolicy(box(3), spaces.Discrete(3), lr, net_arch=[8], truncate_bptt=2, **kwargs)
    truncated.load_state_dict(full.state_dict())
    assert truncated.lstm_actor.truncate_bptt == 2 and full.lstm_actor.truncate_bptt is None
    obs, actions = torch.randn(6 * 3, 3), torch.randint(0, 3, (6 * 3,))  # 3 sequences of 6 steps
    results = {}
    for name, policy in (("full", full), ("truncated", truncated)):
        states = random_states(policy, 3)
        states.pi[0].requires_grad_(True)
        values, log_prob, _ = policy.evaluate_actions(obs, actions, states, torch.zeros(6 * 3))
        first, last = log_prob.view(3, 6)[:, 1].sum(), log_prob.view(3, 6)[:, 5].sum()
        (grad_first,) = torch.autograd.grad(first, states.pi[0], retain_graph=True)
        (grad_last,) = torch.autograd.grad(last, states.pi[0])
        results[name] = values.detach(), log_prob.detach(), grad_first.abs().sum(), grad_last.abs().sum()
    torch.testing.assert_close(results["truncated"][0], results["full"][0])
    torch.testing.assert_close(results["truncated"][1], results["full"][1])
    assert results["full"][2] > 0 and results["truncated"][2] > 0  # step 1 is within the first 2 steps
    assert results["full"][3] > 0 and results["truncated"][3] == 0  # step 5 is not
