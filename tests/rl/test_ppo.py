"""RimPPO: per-mechanism buffer, exact chunked training, gradients reach the RIM, bootstrapping, logging,
save/load; and the RIM policy under plain sb3-contrib RecurrentPPO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from rims_rl import CnnRimPolicy, MlpRimPolicy, MultiInputRimPolicy, RimPPO
from rims_rl.rl.ppo import mechanism_statistics

from .conftest import IMAGE, TINY_POLICY, TINY_RIM, SpacesEnv, box

N_STEPS, N_ENVS = 8, 2

CASES = {
    "discrete-vector": (MlpRimPolicy, box(3), spaces.Discrete(3), {}),
    "box-vector": (MlpRimPolicy, box(3), spaces.Box(-1, 1, (2,), dtype=np.float32), {}),
    "multidiscrete-vector": (MlpRimPolicy, box(3), spaces.MultiDiscrete([3, 2]), {}),
    "discrete-image": (CnnRimPolicy, IMAGE, spaces.Discrete(3), dict(features_extractor_kwargs=dict(features_dim=16))),
    "discrete-image-spatial": (CnnRimPolicy, IMAGE, spaces.Discrete(3), dict(input_elements="spatial")),
    "box-dict-gru": (
        MultiInputRimPolicy,
        spaces.Dict({"a": box(2), "b": spaces.Discrete(3)}),
        spaces.Box(-1, 1, (2,), dtype=np.float32),
        dict(rim_kwargs=dict(TINY_RIM, cell="gru")),
    ),
    "discrete-vector-lstm-core": (
        MlpRimPolicy,
        box(3),
        spaces.Discrete(3),
        dict(core="lstm", lstm_hidden_size=8, rim_kwargs=None),
    ),
}


def make_model(case: str, algo=RimPPO, truncate: bool = False, seed: int = 0, **kwargs):
    policy, obs_space, action_space, policy_kwargs = CASES[case]
    env = make_vec_env(lambda: SpacesEnv(obs_space, action_space, truncate), n_envs=N_ENVS, seed=seed)
    extra = dict(sequence_length=4) if algo is RimPPO else {}
    params = dict(n_steps=N_STEPS, batch_size=8, n_epochs=1, seed=seed, **extra)
    policy_kwargs = kwargs.pop("policy_kwargs", {**TINY_POLICY, **policy_kwargs})
    params.update(kwargs)
    return algo(policy, env, policy_kwargs=policy_kwargs, **params)


def collect(model, callback: BaseCallback | None = None):
    """One rollout, no update."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs, callback)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


def discrete_long(model, actions: torch.Tensor) -> torch.Tensor:
    return actions.long().flatten() if isinstance(model.action_space, spaces.Discrete) else actions


@pytest.mark.parametrize("case", list(CASES))
def test_chunked_evaluation_is_exact(case):
    """Each chunk starts from its stored state, episode starts inside it reset the state: the chunked
    log-probs and values equal the rollout's (taken one step at a time) before any update, and after an
    update equal stepping the updated policy one step at a time from the chunk's stored state."""
    model = make_model(case)
    collect(model)
    buf, policy = model.rollout_buffer, model.policy
    samples = list(buf.get(8))
    assert len(samples) == N_STEPS * N_ENVS // 8
    starts = torch.cat([s.episode_starts.view(-1, 4) for s in samples])
    assert starts[:, 1:].any(), "the test needs episode starts inside chunks"
    with torch.no_grad():
        for s in samples:
            values, log_prob, _ = policy.evaluate_actions(
                s.observations, discrete_long(model, s.actions), s.lstm_states, s.episode_starts
            )
            torch.testing.assert_close(values.flatten(), s.old_values, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(log_prob, s.old_log_prob, rtol=1e-4, atol=1e-5)

    model.train()  # one update: the policy now differs from the one that filled the buffer
    s = next(buf.get(8))
    actions = discrete_long(model, s.actions)
    with torch.no_grad():
        values, log_prob, _ = policy.evaluate_actions(s.observations, actions, s.lstm_states, s.episode_starts)
        assert not torch.allclose(log_prob, s.old_log_prob, atol=1e-6) or not torch.allclose(
            values.flatten(), s.old_values, atol=1e-6
        )
        n_chunks = s.lstm_states.pi[0].shape[1]
        states = s.lstm_states
        obs = s.observations

        def at(x, t):  # step t of every chunk: [C * T, ...] -> [C, ...]
            return (
                {k: v.view(n_chunks, 4, *v.shape[1:])[:, t] for k, v in x.items()}
                if isinstance(x, dict)
                else x.view(n_chunks, 4, *x.shape[1:])[:, t]
            )

        for t in range(4):
            v_t, lp_t, _ = policy.evaluate_actions(at(obs, t), at(actions, t), states, at(s.episode_starts, t))
            torch.testing.assert_close(v_t.flatten(), at(values.flatten(), t), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(lp_t, at(log_prob, t), rtol=1e-4, atol=1e-5)
            _, _, _, states = policy(at(obs, t), states, at(s.episode_starts, t))


def record_forward(policy) -> list:
    """Record every acting step of ``policy``: its returned state (``RNNStates``, each tensor [L, n_envs, U*H])
    and the actor's active mask [1, n_envs, U], as clones, in call order."""
    steps = []

    def hook(module, args, output):
        states = output[3]
        steps.append((tuple(t.clone() for t in (*states.pi, *states.vf)), module.last_active.clone()))

    policy.register_forward_hook(hook)
    return steps


def test_buffer_keeps_mechanism_axis_and_active_masks():
    """With 2 of 6 mechanisms active, the buffer stores per mechanism, at step t, exactly the state the
    policy returned at step t - 1 (zeros at t = 0) and the active mask of step t; the active sets vary."""
    model = make_model("discrete-vector", policy_kwargs={**TINY_POLICY, "rim_kwargs": dict(TINY_RIM, k_active=2)})
    steps = record_forward(model.policy)
    collect(model)
    buf = model.rollout_buffer
    assert len(steps) == N_STEPS
    for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"):
        assert getattr(buf, name).shape == (N_STEPS, N_ENVS, 6, 4)  # [n_steps, n_envs, U, H]
    assert buf.active.shape == (N_STEPS, N_ENVS, 6) and buf.active.dtype == bool
    assert (buf.active.sum(-1) == 2).all()  # k_active of the actor core at every step
    codes = {tuple(a) for a in buf.active.reshape(-1, 6)}
    assert len(codes) > 1, "always the same active set"
    for t in range(N_STEPS):
        assert np.array_equal(buf.active[t], steps[t][1][-1].numpy())
        for i, name in enumerate(("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")):
            stored = torch.as_tensor(getattr(buf, name)[t])
            before = torch.zeros(N_ENVS, 6, 4) if t == 0 else steps[t - 1][0][i][0].view(N_ENVS, 6, 4)
            assert torch.equal(stored, before), f"{name} at step {t} is not the state after step {t - 1}"
    assert all(
        torch.equal(a, b) for a, b in zip((*model._last_lstm_states.pi, *model._last_lstm_states.vf), steps[-1][0])
    )
    assert not torch.equal(steps[0][0][0], steps[1][0][0])  # the state moves from step to step
    lstm = make_model("discrete-vector-lstm-core")
    collect(lstm)
    assert lstm.rollout_buffer.hidden_states_vf.shape == (N_STEPS, N_ENVS, 1, 8)
    assert lstm.rollout_buffer.active.all()


def test_two_layer_rim_learns_with_layered_states_and_exact_chunks():
    """``rim_kwargs=dict(num_layers=2)`` through ``RimPPO.learn``: the buffer stores both layers' states,
    ``[n_steps, n_envs, L=2, U, H]``, each step's being what the policy returned the step before (layer
    order kept), and at the start of every update the chunked log-probs and values equal the rollout's."""
    model = make_model("discrete-vector", policy_kwargs={**TINY_POLICY, "rim_kwargs": dict(TINY_RIM, num_layers=2)})
    assert model.policy.lstm_actor.rim.num_layers == 2
    steps = record_forward(model.policy)
    updates = []
    update = model.train

    def check_then_update():  # runs at the start of each update, on the rollout just collected
        buf = model.rollout_buffer
        for i, name in enumerate(("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")):
            stored = torch.as_tensor(getattr(buf, name))
            assert stored.shape == (N_STEPS, N_ENVS, 2, 6, 4)
            for t in range(1, N_STEPS):  # the policy's [L, n_envs, U*H] -> [n_envs, L, U, H]
                after = steps[len(steps) - N_STEPS + t - 1][0][i].view(2, N_ENVS, 6, 4).transpose(0, 1)
                assert torch.equal(stored[t], after), f"{name} at step {t}"
            assert not torch.equal(stored[1:, :, 0], stored[1:, :, 1])
        with torch.no_grad():
            for s in buf.get(8):
                assert s.lstm_states.pi[0].shape == (2, 2, 24)  # [L, chunks, U*H]
                values, log_prob, _ = model.policy.evaluate_actions(
                    s.observations, discrete_long(model, s.actions), s.lstm_states, s.episode_starts
                )
                torch.testing.assert_close(log_prob, s.old_log_prob, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(values.flatten(), s.old_values, rtol=1e-4, atol=1e-5)
        updates.append(model.num_timesteps)
        update()

    model.train = check_then_update
    model.learn(2 * N_STEPS * N_ENVS)
    assert updates == [N_STEPS * N_ENVS, 2 * N_STEPS * N_ENVS]
    action, state = model.predict(np.zeros((N_ENVS, 3), dtype=np.float32), None, np.ones(N_ENVS))
    assert action.shape == (N_ENVS,) and state[0].shape == (2, N_ENVS, 24)


def test_sequence_length_none_means_whole_rollouts():
    model = make_model("discrete-vector", sequence_length=None, batch_size=N_STEPS)
    collect(model)
    samples = list(model.rollout_buffer.get(model.batch_size))
    assert len(samples) == N_ENVS and all(s.lstm_states.pi[0].shape[1] == 1 for s in samples)
    firsts = sorted(s.episode_starts[0].item() for s in samples)
    assert firsts == [1.0, 1.0]  # each chunk is an env's rollout from its very first step


SHARED = dict(shared_lstm=True)  # one core for both heads, trained by both losses; the default is a critic core


@pytest.mark.parametrize(
    "algo, cell, sharing",
    [
        (RimPPO, "lstm", {}),
        (RimPPO, "gru", {}),
        (RecurrentPPO, "lstm", {}),
        (RecurrentPPO, "gru", SHARED),
        (RimPPO, "lstm", SHARED),
    ],
)
def test_one_update_reaches_every_rim_parameter(algo, cell, sharing):
    """After one PPO update every parameter of the RIM cores (actor and critic by default, or the shared
    one) has a non-zero gradient and has changed (the authors' Atari code fails this: its heads read the
    CNN features, not the RIM)."""
    model = make_model(
        "discrete-vector",
        algo=algo,
        batch_size=N_STEPS * N_ENVS,
        policy_kwargs={**TINY_POLICY, "rim_kwargs": dict(TINY_RIM, cell=cell), **sharing},
    )
    collect(model)
    cores = {"actor": model.policy.lstm_actor, "critic": model.policy.lstm_critic}
    cores = {c: core for c, core in cores.items() if core is not None}
    assert len(cores) == (1 if sharing else 2)
    before = {(c, n): p.detach().clone() for c, core in cores.items() for n, p in core.named_parameters()}
    assert len(before) == len(cores) * len(list(model.policy.lstm_actor.parameters())) >= 10
    model.train()
    for (c, n), old in before.items():
        p = dict(cores[c].named_parameters())[n]
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{c} {n} has no gradient"
        assert not torch.equal(p.detach(), old), f"{c} {n} did not change"


class RecordSteps(BaseCallback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def _on_step(self) -> bool:  # before RecurrentPPO adds the bootstrap to the rewards
        loc = self.locals
        self.steps.append((loc["rewards"].copy(), [dict(i) for i in loc["infos"]]))
        return True


def test_time_limit_truncation_bootstraps_from_the_rim_state():
    """A truncated episode's last reward gets gamma * V(terminal obs) computed with the critic RIM state
    after that step, as sb3-contrib does for its LSTM."""
    model = make_model("discrete-vector", truncate=True)
    record = RecordSteps()
    collect(model, record)
    buf, policy = model.rollout_buffer, model.policy
    truncations = 0
    for t, (raw, infos) in enumerate(record.steps):
        for i, info in enumerate(infos):
            expected = raw[i]
            if info.get("TimeLimit.truncated"):
                truncations += 1
                if t + 1 < N_STEPS:  # the critic state after step t is stored before step t + 1
                    state = tuple(
                        torch.as_tensor(getattr(buf, n)[t + 1, i]).reshape(1, 1, -1)
                        for n in ("hidden_states_vf", "cell_states_vf")
                    )
                else:
                    state = tuple(s[:, i : i + 1] for s in model._last_lstm_states.vf)
                obs = torch.as_tensor(info["terminal_observation"])[None]
                with torch.no_grad():
                    value = policy.predict_values(obs, state, torch.zeros(1)).item()
                assert abs(value) > 1e-4
                expected = raw[i] + model.gamma * value
            assert buf.rewards[t, i] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert truncations >= 2


def test_mechanism_statistics():
    active = np.zeros((4, 2, 3), dtype=bool)
    active[..., :2] = True  # always mechanisms {0, 1}
    stats = mechanism_statistics(active, 2)
    assert [stats[f"active_frequency_u{k}"] for k in range(3)] == [1.0, 1.0, 0.0]
    assert stats["selection_entropy"] == 0.0 and stats["selection_entropy_max"] == pytest.approx(math.log(3))
    active[:2, :, :] = [False, True, True]  # half the steps {1, 2}: entropy log 2
    stats = mechanism_statistics(active, 2)
    assert stats["active_frequency_u2"] == 0.5 and stats["selection_entropy"] == pytest.approx(math.log(2))


def test_learn_logs_mechanism_statistics():
    model = make_model("discrete-vector")
    model.learn(N_STEPS * N_ENVS)
    logged = model.logger.name_to_value
    freqs = [logged[f"rim/active_frequency_u{k}"] for k in range(6)]
    np.testing.assert_allclose(freqs, model.rollout_buffer.active.mean((0, 1)))
    assert sum(freqs) == pytest.approx(5.0)
    assert 0.0 < logged["rim/selection_entropy"] <= math.log(6) + 1e-9


@pytest.mark.parametrize("algo", [RimPPO, RecurrentPPO])
def test_save_load_round_trip(tmp_path, algo):
    model = make_model("discrete-vector", algo=algo)
    model.learn(N_STEPS * N_ENVS)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip")
    if algo is RimPPO:
        assert loaded.sequence_length == 4 and loaded.rollout_buffer.hidden_states_pi.shape[2:] == (6, 4)
    obs = np.random.default_rng(0).uniform(-1, 1, (3, 3)).astype(np.float32)
    state = None
    for t in range(3):
        a1, s1 = model.predict(obs, state, np.array([t == 0] * 3), deterministic=True)
        a2, s2 = loaded.predict(obs, state, np.array([t == 0] * 3), deterministic=True)
        assert np.array_equal(a1, a2) and all(np.array_equal(x, y) for x, y in zip(s1, s2))
        state = s1


def test_loading_parameters_into_another_rim_configuration_raises_a_clear_error(tmp_path):
    model = make_model("discrete-vector")
    model.save(tmp_path / "model.zip")
    other = make_model(
        "discrete-vector", policy_kwargs={**TINY_POLICY, "rim_kwargs": dict(TINY_RIM, num_units=4, k_active=3)}
    )
    with pytest.raises(ValueError, match=r"do not fit this policy \(core='rim', rim_kwargs=.*'num_units': 4"):
        other.set_parameters(str(tmp_path / "model.zip"))
    with pytest.raises(ValueError, match="Stored kwargs"):
        RimPPO.load(tmp_path / "model.zip", policy_kwargs=dict(rim_kwargs=dict(num_units=4)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sequence_length=0), r"sequence_length must be None or a positive integer, got 0"),
        (dict(sequence_length=4, batch_size=6), r"batch_size=6 must be a multiple of sequence_length=4"),
    ],
)
def test_bad_rimppo_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model("discrete-vector", **kwargs)


def test_rimppo_rejects_other_policies():
    env = make_vec_env(lambda: SpacesEnv(box(3), spaces.Discrete(2)), n_envs=1)
    with pytest.raises(ValueError, match="RimPPO needs a RimActorCriticPolicy .* got RecurrentActorCriticPolicy"):
        RimPPO(MlpLstmPolicy, env, n_steps=8, batch_size=8)
