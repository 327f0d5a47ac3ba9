"""The memory suite's envs (``rims_rl.rl.memory_envs``) and its cell runner (``benchmarks/ppo_memory.py``):
every task builds and steps with spaces SB3 takes, its random-policy reference holds, an agent trains on
a POPGym task end to end, a finished cell is never run again, and `--speed` times the agents."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env

from rims_rl.rl import DEFAULT_MEMORY_TASKS, MEMORY_TASKS, make_memory_env
from rims_rl.rl.memory_envs import random_return
from tests.helpers import load_script


@pytest.fixture(scope="module")
def suite():
    return load_script("benchmarks/ppo_memory.py")


@pytest.mark.parametrize("task", list(MEMORY_TASKS))
def test_task_env_passes_sb3_checker_with_flat_box_observations(task):
    env = make_memory_env(task)
    assert isinstance(env.observation_space, spaces.Box) and len(env.observation_space.shape) == 1
    assert isinstance(env.action_space, spaces.Discrete)
    check_env(env, warn=False)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        assert env.observation_space.contains(obs)
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert -1.0 <= reward <= 1.0
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.mark.parametrize("task", list(MEMORY_TASKS))
def test_stored_random_return_matches_a_new_measurement(task):
    """The normalisation's 0 (measured on 1000 episodes, seed 0) within 0.03 of the range, on 200 episodes of seed 1."""
    ref = MEMORY_TASKS[task]
    assert abs(ref.normalise(random_return(task, episodes=200, seed=1))) < 0.03


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="RepeatPreviousEasy"):
        make_memory_env("RepeatPrevious-Easy")


def test_every_agent_builds_on_every_default_task(suite):
    """One-hot (Discrete, MultiDiscrete, Tuple) and continuous observations, for RimPPO, sb3-contrib and PPO."""
    for task in DEFAULT_MEMORY_TASKS:
        env = suite.make_env(task, seed=0, n_envs=2)
        for agent in suite.AGENTS:
            model = suite.build(suite.AgentSpec(agent, agent), env, seed=0)
            action, _ = model.predict(env.reset(), deterministic=True)
            assert env.action_space.contains(int(action[0]))


def test_cell_trains_rimppo_on_popgym_then_a_rerun_skips_it(suite, tmp_path, monkeypatch, capsys):
    agent = suite.AgentSpec("rim", "rim")
    suite.run_suite(["CountRecallEasy"], [agent], [0], timesteps=1024, eval_episodes=4, out=tmp_path)
    path = tmp_path / "cells" / "CountRecallEasy" / "rim-s0.json"
    record = json.loads(path.read_text())
    assert record["trained_steps"] == 1024 and record["eval_episodes"] == 4 and np.isfinite(record["eval_mean"])
    config = record["config"]
    assert (config["shared_lstm"], config["enable_critic_lstm"], config["shared_critic_grad"]) == (
        False,
        True,
        False,
    )  # the default critic core
    assert config["rim_kwargs"]["num_units"] == 6 and record["parameter_counts"]["core"] > 0

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(suite, "run_cell", must_not_run)
    suite.run_suite(["CountRecallEasy"], [agent], [0], timesteps=1024, eval_episodes=4, out=tmp_path)
    assert "0 cell(s) to run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="another label"):
        changed = suite.AgentSpec("rim", "rim", {"rim_kwargs": {"k_active": 4}})
        suite.run_suite(["CountRecallEasy"], [changed], [0], timesteps=1024, eval_episodes=4, out=tmp_path)
    with pytest.raises(ValueError, match="another --out"):
        suite.run_suite(["CountRecallEasy"], [agent], [0], timesteps=2048, eval_episodes=4, out=tmp_path)


def test_speed_prints_each_agents_rate_and_its_ratio_to_contrib(suite, capsys):
    """``--speed``: every agent trained and timed, its env steps/s printed with the ratio to sb3-contrib's."""
    threads = torch.get_num_threads()
    try:
        agents = [suite.AgentSpec("lstm", "lstm"), suite.AgentSpec("contrib", "contrib")]
        suite.speed(["CountRecallEasy"], agents, steps=1024, repeats=1)
    finally:
        torch.set_num_threads(threads)  # speed() runs on one thread, as the suite's cells do
    out = capsys.readouterr().out
    rates = {agent: int(rate) for agent, rate in re.findall(r"CountRecallEasy (\w+): (\d+) env steps/s", out)}
    assert set(rates) == {"lstm", "contrib"} and min(rates.values()) > 0
    ratio = float(re.search(r"lstm: \d+ env steps/s \(([\d.]+)x contrib\)", out).group(1))
    assert ratio == pytest.approx(rates["lstm"] / rates["contrib"], rel=0.02)


def test_variant_is_the_rim_agent_with_its_arguments(suite):
    spec = suite.parse_variant('iv64={"rim_kwargs": {"input_value_size": 64}, "learning_rate": 3e-4}')
    assert (spec.label, spec.base) == ("iv64", "rim")
    assert spec.policy_kwargs == {"rim_kwargs": {"input_value_size": 64}} and spec.ppo_kwargs == {"learning_rate": 3e-4}
    model = suite.build(spec, suite.make_env("RepeatFirstEasy", seed=0, n_envs=2), seed=0)
    assert model.learning_rate == 3e-4 and model.policy.rim_kwargs["input_value_size"] == 64
    for bad, match in [
        ("rim={}", "default agent"),
        ("x", "LABEL=JSON"),
        ('x={"lr": 1}', "unknown keys"),
        ('x={"base": "ppo"}', "base must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            suite.parse_variant(bad)


def test_report_aggregates_the_suite_agents_with_every_seed_on_every_task(suite, tmp_path):
    """The aggregate holds the suite's agents that have n seeds on every task (n the most any has
    everywhere); an agent with fewer seeds is named as left out, and a variant stays out of it."""
    tasks = ["RepeatPreviousEasy", "CountRecallEasy"]
    seeds = {"rim": 3, "lstm": 3, "ppo": 3, "contrib": 1, "rim-k6": 2}
    for agent, n in seeds.items():
        for task in tasks:
            for seed in range(n):
                # lstm: the best possible return; ppo: the random policy's; rim: half way
                value = {"lstm": 1.0, "ppo": suite.MEMORY_TASKS[task].random_return}.get(agent, 0.25 + 0.01 * seed)
                path = suite.cell_path(tmp_path, task, agent, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                record = dict(task=task, agent=agent, seed=seed, eval_mean=value, steps_per_s=100.0, timesteps=1000)
                path.write_text(json.dumps(dict(record, parameter_counts={"core": 1, "total": 2})))
    markdown = suite.report(tmp_path)
    aggregate = markdown.split("## Aggregate")[1]
    assert "(2 task(s) × 3 seed(s))" in aggregate
    assert "Left out (fewer than 3 seeds on some task): contrib." in aggregate
    rows = {line.split(" | ")[0].strip("| "): line for line in aggregate.splitlines() if line.startswith("| ")}
    assert set(rows) == {"agent", "rim", "lstm", "ppo"}  # the header and the three complete suite agents
    assert rows["lstm"].startswith("| lstm | 1.000 [1.000, 1.000]") and rows["ppo"].startswith("| ppo | 0.000")
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "summary.png").exists()


def test_recall_benchmark_targets_and_cores():
    """``benchmarks/recall_learning.py``: RepeatPrevious targets are the symbol 4 steps back, RepeatFirst targets the
    first symbol, nothing is scored before; every named core builds with the setting its name says."""
    module = load_script("benchmarks/recall_learning.py")
    for task, start in (("previous", module.LAG), ("first", 1)):
        xs, ys = module.make_batch(8, torch.Generator().manual_seed(0), task)
        symbols = xs.argmax(-1)  # [T, B]
        assert module.first_target(task) == start and (ys[:start] == -100).all()
        want = symbols[: -module.LAG] if task == "previous" else symbols[:1].expand(len(symbols) - 1, -1)
        assert torch.equal(ys[start:], want)
    cores = {name: module.make_core(name)[0] for name in module.CORES}
    cell = {name: core.layers[0] for name, core in cores.items() if name != "lstm"}
    assert [cell[n].k_active for n in ("rim", "rim-k6", "rim-k4")] == [5, 6, 4]
    assert cell["rim-noqb"].input_attention.query.bias is None and cell["rim"].input_attention.query.bias is not None
    assert cell["rim-nocomm"].communication is None and cell["rim-h1"].input_attention.num_heads == 1
