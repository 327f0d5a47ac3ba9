"""The properties the comparison's science depends on: the value reads the recurrent state (defaults and
every preset), one initialisation scheme for both cores, no stale weights after an optimizer step, no
permanently losing mechanism at episode starts, and drop-in behaviour for code written for sb3-contrib."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env

from rims_rl import MlpRimPolicy, RimPPO
from rims_rl.rl.config import load_agent
from rims_rl.rl.cores import LstmCore, RimCore
from rims_rl.rl.envs import make_atari_env
from rims_rl.rl.policies import parameter_counts
from rims_rl.rl.training import build_model

from .conftest import TINY_POLICY, SpacesEnv, box


def lr(_):
    return 1e-3


def random_states(policy, n: int, seed: int) -> RNNStates:
    g = torch.Generator().manual_seed(seed)
    shape = (policy.lstm_hidden_state_shape[0], n, policy.lstm_hidden_state_shape[2])
    pi = (torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    vf = pi if policy.shared_lstm else (torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return RNNStates(pi, vf)


def assert_value_reads_the_recurrent_state(policy, obs: torch.Tensor):
    """Two different recurrent states give two different values, and the value loss has a gradient on
    the core that computes the value (the shared one, or the critic's own)."""
    n = obs.shape[0]
    no_start = torch.zeros(n)
    a, b = random_states(policy, n, 0), random_states(policy, n, 1)
    with torch.no_grad():
        va, vb = policy.predict_values(obs, a.vf, no_start), policy.predict_values(obs, b.vf, no_start)
    assert (va - vb).abs().max() > 1e-4, "the value does not depend on the recurrent state"
    policy.zero_grad()
    actions = torch.zeros((n, *policy.action_space.shape)) if policy.action_space.shape else torch.zeros(n)
    values, _, _ = policy.evaluate_actions(obs, actions, a, no_start)
    values.pow(2).mean().backward()  # a value loss
    core = policy.lstm_critic if policy.lstm_critic is not None else policy.lstm_actor
    grads = [p.grad for p in core.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, "no value gradient on the core"


PRESETS = [(agent, kind) for agent in ("rim", "lstm") for kind in ("minatar", "atari")]
ENV_OF_KIND = {"minatar": "MinAtar/Breakout", "atari": "Pong"}


@pytest.mark.parametrize("agent, kind", PRESETS)
def test_every_preset_gives_a_value_that_reads_the_recurrent_state(agent, kind):
    config = load_agent(agent, kind)
    env = make_atari_env(ENV_OF_KIND[kind], 1, 0, frame_stack=config.frame_stack)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no memoryless-critic warning from a preset
            model = build_model(config, env, seed=0, device="cpu")
        obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(3)])).float()
    finally:
        env.close()
    assert not model.policy.shared_lstm and model.policy.lstm_critic is not None
    assert type(model.policy.lstm_critic) is type(model.policy.lstm_actor)
    assert_value_reads_the_recurrent_state(model.policy, obs)


@pytest.mark.parametrize("algo", [RimPPO, RecurrentPPO])
@pytest.mark.parametrize("core", ["rim", "lstm"])
def test_default_policy_gives_a_value_that_reads_the_recurrent_state(algo, core):
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=2, seed=0)
    kwargs = {} if core == "rim" else dict(core="lstm", lstm_hidden_size=16)
    model = algo(MlpRimPolicy, env, n_steps=16, batch_size=16, policy_kwargs=kwargs)
    assert not model.policy.shared_lstm and model.policy.enable_critic_lstm  # a critic core of its own
    assert_value_reads_the_recurrent_state(model.policy, torch.randn(4, 3))


def test_lstm_critic_beside_a_rim_actor_reads_its_state_and_trains():
    """``critic_core="lstm"``: the critic is an LSTM of the RIM's state size U*H, the value reads its state, the
    actor stays a RIM, and RimPPO's buffer stores both cores' states in one layout."""
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=2, seed=0)
    model = RimPPO(
        MlpRimPolicy,
        env,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(rim_kwargs=dict(num_units=4, k_active=2, hidden_size=6), critic_core="lstm"),
    )
    policy = model.policy
    assert isinstance(policy.lstm_actor, RimCore) and isinstance(policy.lstm_critic, LstmCore)
    assert policy.lstm_critic.hidden_size == 4 * 6 and "critic_core='lstm'" in policy.core_description()
    assert_value_reads_the_recurrent_state(policy, torch.randn(4, 3))
    before = [p.detach().clone() for p in policy.lstm_critic.parameters()]
    model.learn(32)
    assert all(not torch.equal(a, b) for a, b in zip(before, policy.lstm_critic.parameters()))
    assert model.rollout_buffer.cell_states_vf.shape[-2:] == (4, 6)  # the LSTM state in the RIM layout [U, H]


def test_shared_core_reads_its_state_and_memoryless_critic_warns():
    shared = MlpRimPolicy(box(3), spaces.Discrete(2), lr, shared_lstm=True, **TINY_POLICY)
    assert shared.lstm_critic is None and shared.shared_critic_grad  # both losses train the shared core
    assert_value_reads_the_recurrent_state(shared, torch.randn(4, 3))
    with pytest.warns(UserWarning, match="the critic is memoryless"):
        memoryless = MlpRimPolicy(box(3), spaces.Discrete(2), lr, enable_critic_lstm=False, **TINY_POLICY)
    with torch.no_grad():
        obs, starts = torch.randn(4, 3), torch.zeros(4)
        va = memoryless.predict_values(obs, random_states(memoryless, 4, 0).vf, starts)
        vb = memoryless.predict_values(obs, random_states(memoryless, 4, 1).vf, starts)
    assert torch.equal(va, vb)  # what the warning is about


def test_both_cores_are_initialised_by_the_same_scheme():
    """Orthogonal weight matrices (per mechanism for the RIM's grouped weights), zero biases, in both
    cores; the RIM's query bias is the one exception (it breaks the zero-state tie)."""
    rim = MlpRimPolicy(box(5), spaces.Discrete(2), lr).lstm_actor
    lstm = MlpRimPolicy(box(5), spaces.Discrete(2), lr, core="lstm").lstm_actor
    assert isinstance(rim, RimCore) and isinstance(lstm, LstmCore)
    for core in (rim, lstm):
        for name, p in core.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("query.bias"):
                assert p.abs().sum() > 0
            elif "bias" in leaf or leaf.startswith("b_"):
                assert torch.equal(p, torch.zeros_like(p)), name
            else:
                for w in p.detach().reshape(-1, *p.shape[-2:]):  # each [rows, cols] matrix
                    w = w if w.shape[0] <= w.shape[1] else w.t()
                    torch.testing.assert_close(w @ w.t(), torch.eye(w.shape[0]), atol=1e-4, rtol=0, msg=name)


def test_presets_substance_and_parameter_counts():
    """The paper's RL setting (6 mechanisms, 5 active, 4 input heads, no dropout, values 4 x H), the same
    critic configuration in both agents (a critic core of its own), state sizes within 5 %; parameter
    counts by part."""
    for kind in ("minatar", "atari"):
        rim, lstm = load_agent("rim", kind), load_agent("lstm", kind)
        rk = rim.policy_kwargs["rim_kwargs"]
        assert rim.policy_kwargs["enable_critic_lstm"] is True and rim.policy_kwargs["shared_lstm"] is False
        assert (rk["num_units"], rk["k_active"], rk["cell"]) == (6, 5, "lstm") and "input_value_size" not in rk
        core_keys = {"core", "rim_kwargs", "lstm_hidden_size"}
        assert {k: v for k, v in rim.policy_kwargs.items() if k not in core_keys} == {
            k: v for k, v in lstm.policy_kwargs.items() if k not in core_keys
        }
        assert {k: v for k, v in rim.to_dict().items() if k != "policy_kwargs"} == {
            k: v for k, v in lstm.to_dict().items() if k != "policy_kwargs"
        }
        assert abs(rk["num_units"] * rk["hidden_size"] / lstm.policy_kwargs["lstm_hidden_size"] - 1) <= 0.05
    env = make_atari_env("MinAtar/Breakout", 1, 0)
    try:
        model = build_model(load_agent("rim", "minatar"), env, seed=0, device="cpu")
    finally:
        env.close()
    cell = model.policy.lstm_actor.rim.layers[0]
    assert cell.input_attention.num_heads == 4 and cell.input_attention.value_size == 4 * 22
    assert cell.input_attention.dropout.p == 0 and cell.communication.dropout.p == 0
    counts = parameter_counts(model.policy)
    assert counts["core"] == 2 * sum(p.numel() for p in model.policy.lstm_actor.parameters())  # actor and critic
    assert (
        counts["core"] + counts["features_extractor"] + counts["heads"]
        == counts["total"]
        == sum(p.numel() for p in model.policy.parameters())
    )


def test_parameter_matched_lstm():
    rim = MlpRimPolicy(box(5), spaces.Discrete(2), lr, rim_kwargs=dict(hidden_size=20))
    matched = MlpRimPolicy(
        box(5), spaces.Discrete(2), lr, core="lstm", lstm_hidden_size="match_rim", rim_kwargs=dict(hidden_size=20)
    )
    n_rim, n_lstm = parameter_counts(rim)["core"], parameter_counts(matched)["core"]
    assert n_lstm <= n_rim and n_lstm / n_rim > 0.97
    assert matched._get_constructor_parameters()["lstm_hidden_size"] == matched.lstm_actor.hidden_size


def test_fused_adam_step_leaves_no_stale_weights():
    """After an in-place update that does not bump tensor versions (fused Adam), acting uses the new
    weights: the policy acts exactly as a fresh policy loaded with the same weights."""
    torch.manual_seed(0)
    policy = MlpRimPolicy(box(3), spaces.Discrete(4), lr, **TINY_POLICY)
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    policy.predict(obs, None, np.ones(5))  # acting once (a cache, if any, would be filled here)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.05, fused=True)
    values, _, _ = policy.evaluate_actions(
        torch.as_tensor(obs), torch.zeros(5), random_states(policy, 5, 0), torch.zeros(5)
    )
    values.sum().backward()
    optimizer.step()
    fresh = MlpRimPolicy(box(3), spaces.Discrete(4), lr, **TINY_POLICY)
    fresh.load_state_dict(policy.state_dict())
    with torch.no_grad():
        for p in policy.parameters():  # a .data edit, too
            p.data.mul_(1.01)
            break
        fresh.load_state_dict(policy.state_dict())
    state_a = state_b = None
    for t in range(3):
        a1, state_a = policy.predict(obs, state_a, np.full(5, t == 0), deterministic=True)
        a2, state_b = fresh.predict(obs, state_b, np.full(5, t == 0), deterministic=True)
        assert np.array_equal(a1, a2) and all(np.array_equal(x, y) for x, y in zip(state_a, state_b))


def test_no_mechanism_is_left_out_forever_at_episode_starts():
    """At a zero state (every episode start) the competition depends on the input (the query bias), so
    over many episode starts every mechanism is left out at least once."""
    policy = MlpRimPolicy(box(3), spaces.Discrete(2), lr, **TINY_POLICY)
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (256, 3)).astype(np.float32))
    assert not policy.shared_lstm
    with torch.no_grad():
        policy.forward(obs, random_states(policy, 256, 0), torch.ones(256))
    active = policy.last_active[0]  # [B, U], the step right after the reset
    assert (active.sum(1) == 5).all()
    assert (~active).any(0).all(), f"left out at episode starts: {(~active).sum(0).tolist()}"


def test_multidiscrete_observations_train_and_predict():
    env = make_vec_env(lambda: SpacesEnv(spaces.MultiDiscrete([3, 4]), spaces.Discrete(2)), n_envs=2, seed=0)
    model = RimPPO("MlpRimPolicy", env, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=TINY_POLICY, seed=0)
    model.learn(32)
    action, state = model.predict(np.array([[1, 2], [0, 3]]), None, np.ones(2))
    assert action.shape == (2,) and state[0].shape == (1, 2, 24)


def test_rimppo_takes_any_n_steps_with_default_arguments():
    """n_steps=50 (16 does not divide it): each env's last chunk is 2 steps, padded and masked."""
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=2, seed=0)
    model = RimPPO("MlpRimPolicy", env, n_steps=50, policy_kwargs=TINY_POLICY, seed=0)
    model.learn(100)
    assert model.num_timesteps == 100
    samples = list(model.rollout_buffer.get(64))
    masks = torch.cat([s.mask for s in samples])
    assert len(masks) == 2 * 4 * 16 and masks.sum() == 100  # 4 chunks per env; 14 padded steps each
    for s in samples:  # padding only at the end of a chunk
        m = s.mask.view(-1, 16)
        assert torch.equal(m, m.cummin(1).values)


def test_state_dict_holds_only_tensors_and_survives_save_load(tmp_path):
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=2, seed=0)
    model = RimPPO("MlpRimPolicy", env, n_steps=16, batch_size=16, policy_kwargs=TINY_POLICY, seed=0)
    state = model.policy.state_dict()
    assert all(torch.is_tensor(v) for v in state.values())
    model.save(tmp_path / "m.zip")
    loaded = RimPPO.load(tmp_path / "m.zip").policy.state_dict()
    assert state.keys() == loaded.keys() and all(torch.equal(state[k], loaded[k]) for k in state)
    averaged = {k: (v + loaded[k]) / 2 for k, v in state.items()}  # weight averaging works on every entry
    model.policy.load_state_dict(averaged)


@pytest.mark.parametrize(
    "compile_core, env_var, n_steps, expected",
    [
        (None, "0", 16, False),
        (None, "1", 16, True),
        (None, "1", 64, True),  # chunks of 64 steps: compiled blocks of 16
        (True, "0", 64, True),
        (False, "1", 16, False),
    ],
)
def test_rimppo_compiles_the_rim_loop_unless_switched_off(monkeypatch, compile_core, env_var, n_steps, expected):
    """On by default for any chunk length (``sequence_length=None`` is the whole rollout here),
    unless ``RIMS_RL_COMPILE=0`` (the tests' conftest sets it); ``compile_core`` decides when given."""
    monkeypatch.setenv("RIMS_RL_COMPILE", env_var)
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=2, seed=0)
    model = RimPPO(
        "MlpRimPolicy",
        env,
        n_steps=n_steps,
        batch_size=n_steps,
        sequence_length=None,
        policy_kwargs=TINY_POLICY,
        compile_core=compile_core,
    )
    assert model.compile_core == expected
    assert (model.policy.lstm_actor.rim.layers[0]._compiled_loop is not None) == expected
