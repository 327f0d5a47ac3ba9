"""Memory benchmark suite: returns and training speed of RimPPO's RIM agent, the same trainer with an LSTM
core, sb3-contrib's RecurrentPPO and feedforward PPO on tasks that need memory.

Run (one torch thread per cell; ``--workers`` cells at a time, each in its own process)::

    python benchmarks/ppo_memory.py --seeds 0 1 2                   # the suite: default tasks and agents
    python benchmarks/ppo_memory.py --tasks RepeatFirstEasy --agents rim lstm --seeds 0 --timesteps 20000
    python benchmarks/ppo_memory.py --variant iv64='{"rim_kwargs": {"input_value_size": 64}}' --agents iv64
    python benchmarks/ppo_memory.py --report                        # results/memory/summary.{md,csv,png}
    python benchmarks/ppo_memory.py --speed 8192 --tasks CartPoleNoVel --agents rim lstm contrib   # steps/s only

**Tasks** (``rims_rl.rl.memory_envs.MEMORY_TASKS``): CartPole without velocities (sb3-contrib's memory
benchmark, 500 steps) and POPGym's easy tasks (Morad et al., ICLR 2023): RepeatPrevious and RepeatFirst
(recall), CountRecall (counting), Autoencode (a sequence in reverse), NoisyPositionOnlyCartPole (control
from noisy positions); HigherLower on request. POPGym's discrete observations are one-hot vectors.

**Training** is sb3-contrib's memory benchmark (its ``tests/test_lstm.py``) for every agent and task: 8 envs
under VecNormalize (observations normalised where they are continuous, rewards everywhere), n_steps 128,
batch 256, 10 epochs, learning rate 7e-4, GAE lambda 0.98, max grad norm 1, policy ``net_arch=dict(vf=[64],
pi=[])``, ``lstm_hidden_size=64``, ``ortho_init=False``; ``--timesteps`` per cell (default 100k: the smallest
budget measured where the LSTM agent beats the feedforward floor on RepeatPreviousEasy, see
``results/memory/README.md``). Agents:

- ``rim``: ``RimPPO("MlpRimPolicy")`` with its defaults: a RIM core of 6 mechanisms of 64 // 6 = 10 units,
  5 active, 4 input heads, input values 4 x 10, a critic core of its own (as the actor's),
  chunks of 16 steps;
- ``lstm``: the same trainer and defaults with ``core="lstm"`` (an ``nn.LSTM`` of 64);
- ``contrib``: sb3-contrib's ``RecurrentPPO("MlpLstmPolicy")`` exactly as its benchmark runs it (a separate
  critic LSTM, ``enable_critic_lstm=True``; padded whole-rollout sequences);
- ``ppo``: feedforward ``PPO("MlpPolicy")`` (``net_arch=dict(vf=[64], pi=[64])``), the floor.

**Variants** (ablations): ``--variant LABEL=JSON`` adds an agent ``LABEL``: the ``rim`` agent (or ``"base":
"lstm"``) with ``"policy_kwargs"`` and ``"rim_kwargs"`` merged into its policy arguments and any other key
passed to ``RimPPO`` (``learning_rate``, ``sequence_length``, ...), e.g. ``shared='{"policy_kwargs":
{"shared_lstm": true}}'`` (one core for both heads), ``k4='{"rim_kwargs": {"k_active": 4}}'``,
``L32='{"sequence_length": 32}'``.
A variant is its own agent in the cell files and the report, never averaged with ``rim``.

**Cells**: each (task, agent, seed) trains alone, then is evaluated on ``--eval-episodes`` episodes
(deterministic actions, observation statistics frozen) and written atomically to
``results/memory/cells/<task>/<agent>-s<seed>.json``: the evaluation return's mean and std, training
seconds and steps/s, the resolved policy configuration and the parameter counts. A rerun skips finished
cells (so an interrupted suite resumes) and refuses one whose stored agent spec or budget differs. Steps/s
is measured on a shared machine: compare agents within a run, not across machines.

**Report** (``--report``): per task the mean ± std over seeds of each agent's evaluation return, steps/s,
and the aggregate of normalised returns (``(return - random) / (max - random)``: 0 is a uniformly random
policy, measured by ``memory_envs.random_return``, 1 the best possible return) as IQM, median and mean over
all (task, seed) scores with 95% stratified-bootstrap confidence intervals (rliable, Agarwal et al. 2021).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from rims_rl.experiments.aggregate import interval_estimates
from rims_rl.rl import DEFAULT_MEMORY_TASKS, MEMORY_TASKS, RimPPO, make_memory_env
from rims_rl.rl.policies import parameter_counts
from rims_rl.utils import atomic_write_text, try_lock

#: sb3-contrib's tests/test_lstm.py::test_ppo_lstm_performance
HYPERPARAMS = dict(n_steps=128, learning_rate=7e-4, batch_size=256, n_epochs=10, max_grad_norm=1, gae_lambda=0.98)
#: the policy arguments that benchmark sets for its LSTM, but ``enable_critic_lstm=True`` (contrib's default):
#: our agents get these and nothing else (their defaults are what the suite measures)
POLICY_KWARGS = dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False)
N_ENVS = 8
AGENTS = ("rim", "lstm", "contrib", "ppo")
OUT_DIR = Path(__file__).resolve().parents[1] / "results" / "memory"
#: keys of a variant's JSON besides the RimPPO arguments
VARIANT_KEYS = ("base", "policy_kwargs", "rim_kwargs")


@dataclass(frozen=True)
class AgentSpec:
    """An agent of the suite.

    :param label: its name in cell files and the report
    :param base: ``"rim"``, ``"lstm"``, ``"contrib"`` or ``"ppo"``
    :param policy_kwargs: policy arguments beyond :data:`POLICY_KWARGS` (a variant's)
    :param ppo_kwargs: ``RimPPO`` arguments beyond :data:`HYPERPARAMS` (a variant's)
    """

    label: str
    base: str
    policy_kwargs: dict = field(default_factory=dict)
    ppo_kwargs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(label=self.label, base=self.base, policy_kwargs=self.policy_kwargs, ppo_kwargs=self.ppo_kwargs)


def parse_variant(text: str) -> AgentSpec:
    """``LABEL=JSON`` (see the module docstring) as an :class:`AgentSpec`.

    :raises ValueError: no ``=``, a label of a default agent, JSON that is not an object, or unknown keys
    """
    label, sep, body = text.partition("=")
    if not sep or not label:
        raise ValueError(f"--variant must be LABEL=JSON, got {text!r}")
    if label in AGENTS:
        raise ValueError(f"--variant label {label!r} is a default agent's; allowed: any other name")
    try:
        spec = json.loads(body or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"--variant {label}: not JSON ({error.msg} at character {error.pos}): {body!r}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"--variant {label}: the JSON must be an object, got {body!r}")
    base = spec.pop("base", "rim")
    if base not in ("rim", "lstm"):
        raise ValueError(f"--variant {label}: base must be 'rim' or 'lstm', got {base!r}")
    policy_kwargs = dict(spec.pop("policy_kwargs", {}))
    if "rim_kwargs" in spec:
        policy_kwargs["rim_kwargs"] = {**policy_kwargs.get("rim_kwargs", {}), **spec.pop("rim_kwargs")}
    allowed = set(inspect.signature(RecurrentPPO.__init__).parameters) | {"sequence_length"}
    allowed -= {"self", "policy", "env", "seed", "policy_kwargs", "_init_setup_model"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(
            f"--variant {label}: unknown keys {unknown}; allowed: {list(VARIANT_KEYS)} and RimPPO "
            f"arguments {sorted(allowed)}"
        )
    return AgentSpec(label, base, policy_kwargs, spec)


def make_env(task: str, seed: int, n_envs: int = N_ENVS, training: bool = True) -> VecNormalize:
    """``n_envs`` envs of ``task`` under VecNormalize (observations only where they are continuous floats:
    one-hot observations stay as they are; rewards only in training)."""
    continuous = np.issubdtype(make_memory_env(task).observation_space.dtype, np.floating)
    env = make_vec_env(make_memory_env, n_envs=n_envs, seed=seed, env_kwargs=dict(task=task))
    return VecNormalize(env, norm_obs=continuous, norm_reward=training, training=training)


def build(agent: AgentSpec, env: VecNormalize, seed: int):
    """The model of ``agent`` on ``env`` (see the module docstring)."""
    common = dict(seed=seed, **HYPERPARAMS)
    if agent.base in ("rim", "lstm"):
        core = dict(core="lstm") if agent.base == "lstm" else {}
        policy_kwargs = {**POLICY_KWARGS, **core, **agent.policy_kwargs}
        return RimPPO("MlpRimPolicy", env, policy_kwargs=policy_kwargs, **{**common, **agent.ppo_kwargs})
    if agent.base == "contrib":
        return RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=dict(POLICY_KWARGS, enable_critic_lstm=True), **common)
    if agent.base == "ppo":
        return PPO("MlpPolicy", env, policy_kwargs=dict(net_arch=dict(vf=[64], pi=[64])), **common)
    raise ValueError(f"unknown agent {agent.base!r}; allowed: {', '.join(AGENTS)}")


def resolved_config(model) -> dict[str, Any]:
    """What the agent was built with, as the policy resolved it (critic configuration, core, RIM arguments)."""
    policy = model.policy
    config = dict(
        algorithm=type(model).__name__,
        policy=type(policy).__name__,
        hyperparameters={
            k: getattr(model, k)
            for k in (
                "n_steps",
                "batch_size",
                "n_epochs",
                "gamma",
                "gae_lambda",
                "max_grad_norm",
                "ent_coef",
                "vf_coef",
            )
        },
        learning_rate=model.learning_rate,
        n_envs=model.n_envs,
    )
    if hasattr(policy, "lstm_actor"):
        config.update(
            shared_lstm=policy.shared_lstm,
            enable_critic_lstm=policy.enable_critic_lstm,
            shared_critic_grad=getattr(policy, "shared_critic_grad", False),
            core=getattr(policy, "core_kind", "lstm"),
            state_shape=list(policy.lstm_hidden_state_shape),
            rim_kwargs=getattr(policy, "rim_kwargs", None),
            truncate_bptt=getattr(policy, "truncate_bptt", None),
            sequence_length=getattr(model, "sequence_length", None),
            core_modules=repr(policy.lstm_actor).splitlines(),
        )  # every size, input values' included
    return config


def cell_path(out: Path, task: str, label: str, seed: int) -> Path:
    return out / "cells" / task / f"{label}-s{seed}.json"


def read_cell(path: Path) -> dict | None:
    """A finished cell's record, or ``None`` if it has not finished."""
    return json.loads(path.read_text()) if path.is_file() else None


def check_cell(record: dict, agent: AgentSpec, timesteps: int, path: Path) -> None:
    """Refuse to count a finished cell for a different agent spec or budget.

    :raises ValueError: the stored spec or budget differs from this run's
    """
    if record["agent_spec"] != json.loads(json.dumps(agent.as_dict())):
        raise ValueError(f"{path} was run as {record['agent_spec']}, not {agent.as_dict()}: use another label")
    if record["timesteps"] != timesteps:
        raise ValueError(f"{path} was run for {record['timesteps']} steps, not {timesteps}: use another --out")


def run_cell(task: str, agent: AgentSpec, seed: int, timesteps: int, eval_episodes: int, out: Path) -> dict | None:
    """Train and evaluate one cell and write its record (unless another process holds it).

    :return: the record, or ``None`` if another process is running the cell
    """
    torch.set_num_threads(1)
    path = cell_path(out, task, agent.label, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with try_lock(path.parent / f".{path.stem}.lock") as mine:
        if not mine:
            return None
        if (record := read_cell(path)) is not None:  # finished while we waited
            return record
        env = make_env(task, seed)
        model = build(agent, env, seed)
        t0 = time.perf_counter()
        model.learn(timesteps)
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        eval_env = make_env(task, seed + 1000, n_envs=4, training=False)
        if env.norm_obs:
            eval_env.obs_rms = env.obs_rms
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
        record = dict(
            task=task,
            agent=agent.label,
            seed=seed,
            timesteps=timesteps,
            trained_steps=model.num_timesteps,
            eval_mean=float(mean),
            eval_std=float(std),
            eval_episodes=eval_episodes,
            train_seconds=round(train_seconds, 2),
            steps_per_s=round(model.num_timesteps / train_seconds, 1),
            eval_seconds=round(time.perf_counter() - t0, 2),
            agent_spec=agent.as_dict(),
            config=resolved_config(model),
            parameter_counts=parameter_counts(model.policy),
            torch_threads=torch.get_num_threads(),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        atomic_write_text(json.dumps(record, indent=1, default=str) + "\n", path)
        return record


def run_suite(
    tasks: list[str],
    agents: list[AgentSpec],
    seeds: list[int],
    timesteps: int,
    eval_episodes: int,
    out: Path,
    workers: int = 1,
) -> None:
    """Run every unfinished cell, seed by seed (all tasks and agents of a seed before the next seed)."""
    pending = []
    for seed in seeds:
        for task in tasks:
            for agent in agents:
                path = cell_path(out, task, agent.label, seed)
                if (record := read_cell(path)) is not None:
                    check_cell(record, agent, timesteps, path)
                    print(f"done already: {path.relative_to(out)}", flush=True)
                else:
                    pending.append((task, agent, seed, timesteps, eval_episodes, out))
    print(f"{len(pending)} cell(s) to run with {workers} worker(s)", flush=True)
    if workers == 1:
        results = (run_cell(*cell) for cell in pending)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        results = pool.map(run_cell, *zip(*pending)) if pending else iter(())
    for cell, record in zip(pending, results):
        if record is None:
            print(f"skipped (running elsewhere): {cell[0]} {cell[1].label} s{cell[2]}", flush=True)
        else:
            print(
                f"{record['task']:30s} {record['agent']:10s} s{record['seed']}: return {record['eval_mean']:8.3f} "
                f"± {record['eval_std']:.3f}, {record['steps_per_s']:.0f} steps/s, {record['train_seconds']:.0f} s",
                flush=True,
            )


# ----------------------------------------------------------------------------------------------- report


def load_cells(out: Path) -> list[dict]:
    """Every finished cell record under ``out/cells``."""
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/*.json"))]


def report(out: Path) -> str:
    """Write ``summary.md``, ``summary.csv`` and ``summary.png`` from the cell files; :return: the markdown."""
    cells = load_cells(out)
    if not cells:
        raise ValueError(f"no finished cells under {out / 'cells'}")
    by = defaultdict(list)  # (task, agent) -> records sorted by seed
    for c in sorted(cells, key=lambda c: c["seed"]):
        by[(c["task"], c["agent"])].append(c)
    tasks = [t for t in MEMORY_TASKS if any(k[0] == t for k in by)]
    agents = sorted({c["agent"] for c in cells}, key=lambda a: (AGENTS.index(a) if a in AGENTS else len(AGENTS), a))

    rows = []
    for (task, agent), records in by.items():
        returns = np.array([r["eval_mean"] for r in records])
        norm = MEMORY_TASKS[task].normalise(returns)
        rows.append(
            dict(
                task=task,
                agent=agent,
                seeds=" ".join(str(r["seed"]) for r in records),
                n=len(records),
                mean=returns.mean(),
                std=returns.std(),
                normalised_mean=norm.mean(),
                normalised_std=norm.std(),
                steps_per_s=np.mean([r["steps_per_s"] for r in records]),
                timesteps=" ".join(sorted({str(r["timesteps"]) for r in records})),
                core_parameters=records[0]["parameter_counts"]["core"],
                total_parameters=records[0]["parameter_counts"]["total"],
            )
        )
    rows.sort(key=lambda r: (tasks.index(r["task"]), agents.index(r["agent"])))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    cell = {(r["task"], r["agent"]): r for r in rows}

    lines = [
        "# Memory suite",
        "",
        "Written by `python benchmarks/ppo_memory.py --report` from `cells/` (one JSON per "
        "task, agent and seed; see the script's docstring for the settings).",
        "",
        "## Evaluation return per task (mean ± std over seeds, n seeds)",
        "",
        "| task | budget | random | max | " + " | ".join(agents) + " |",
        "|---|---|---|---|" + "---|" * len(agents),
    ]
    for t in tasks:
        budget = " ".join(sorted({cell[(t, a)]["timesteps"] for a in agents if (t, a) in cell}))
        entries = [
            f"{cell[(t, a)]['mean']:.3g} ± {cell[(t, a)]['std']:.2g} ({cell[(t, a)]['n']})" if (t, a) in cell else "—"
            for a in agents
        ]
        task = MEMORY_TASKS[t]
        lines.append(f"| {t} | {budget} | {task.random_return:g} | {task.max_return:g} | " + " | ".join(entries) + " |")
    lines += [
        "",
        "## Steps/s (training, one torch thread, mean over seeds; a shared machine)",
        "",
        "| task | " + " | ".join(agents) + " |",
        "|---|" + "---|" * len(agents),
    ]
    for t in tasks:
        lines.append(
            f"| {t} | "
            + " | ".join(f"{cell[(t, a)]['steps_per_s']:.0f}" if (t, a) in cell else "—" for a in agents)
            + " |"
        )

    # the aggregate: the suite's own agents (variants are compared per task above) with n seeds on every task,
    # n the most seeds any of them has everywhere
    seeds_everywhere = {
        a: min(cell[(t, a)]["n"] if (t, a) in cell else 0 for t in tasks) for a in AGENTS if a in agents
    }
    n = max(seeds_everywhere.values(), default=0)
    included = [a for a, m in seeds_everywhere.items() if m >= n > 0]
    lines += [
        "",
        f"## Aggregate of normalised returns ({len(tasks)} task(s) × {n} seed(s))",
        "",
        "Normalised return: (return − random) / (max − random), 0 a uniformly random policy (1000 episodes, "
        "`memory_envs.random_return`), 1 the best possible return. IQM, median and mean over all "
        "(task, seed) scores with 95% stratified-bootstrap CIs (rliable). The suite's agents only; the "
        "variants (ablations) are compared per task above.",
    ]
    left_out = [a for a in seeds_everywhere if a not in included]
    if left_out:
        lines.append(f"Left out (fewer than {n} seeds on some task): {', '.join(left_out)}.")
    lines += [
        "",
        "| agent | IQM [95% CI] | median [95% CI] | mean [95% CI] | core params | total params |",
        "|---|---|---|---|---|---|",
    ]
    estimates = {}
    if included:
        scores = {
            a: np.stack([MEMORY_TASKS[t].normalise([r["eval_mean"] for r in by[(t, a)][:n]]) for t in tasks], axis=1)
            for a in included
        }
        estimates = interval_estimates(scores)
        for a in included:
            params = cell[(tasks[0], a)]
            lines.append(
                f"| {a} | "
                + " | ".join(f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in estimates[a].values())
                + f" | {params['core_parameters']} | {params['total_parameters']} |"
            )
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(markdown, out / "summary.md")
    plot(rows, tasks, agents, estimates, out / "summary.png")
    return markdown


def plot(rows: list[dict], tasks: list[str], agents: list[str], estimates: dict, path: Path) -> None:
    """Bars of each agent's normalised return per task (± std over seeds) and its aggregate IQM (95% CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell = {(r["task"], r["agent"]): r for r in rows}
    fig, (ax, ax_iqm) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw=dict(width_ratios=[len(tasks), 1.5]))
    width = 0.8 / len(agents)
    for i, a in enumerate(agents):
        x = [j + i * width for j, t in enumerate(tasks) if (t, a) in cell]
        ax.bar(
            x,
            [cell[(t, a)]["normalised_mean"] for t in tasks if (t, a) in cell],
            width,
            yerr=[cell[(t, a)]["normalised_std"] for t in tasks if (t, a) in cell],
            label=a,
            capsize=2,
        )
        if a in estimates:
            p, lo, hi = estimates[a]["IQM"]
            ax_iqm.errorbar([i], [p], yerr=[[p - lo], [hi - p]], fmt="o", capsize=4)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("normalised return (0 random, 1 max)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    ax_iqm.set_xticks(range(len(agents)), agents, rotation=20)
    ax_iqm.set_title("IQM, 95% CI", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def speed(tasks: list[str], agents: list[AgentSpec], steps: int, repeats: int) -> None:
    """Print each agent's training env steps/s per task, ``learn(steps)`` timed after a warm-up (two
    rollouts and updates: the first compiles the RIM loop), the agents interleaved round by round, so a
    shared machine's changing load falls on all alike; medians over ``repeats`` and the ratio to ``contrib``.
    One torch thread, seed 0, the suite's settings (see the module docstring).
    """
    torch.set_num_threads(1)
    for task in tasks:
        models = {a.label: build(a, make_env(task, 0), 0) for a in agents}
        for model in models.values():
            model.learn(2 * N_ENVS * HYPERPARAMS["n_steps"])
        rates = {label: [] for label in models}
        for _ in range(repeats):
            for label, model in models.items():
                t0 = time.perf_counter()
                model.learn(steps, reset_num_timesteps=False)
                rates[label].append(steps / (time.perf_counter() - t0))
        med = {label: float(np.median(r)) for label, r in rates.items()}
        base = med.get("contrib")
        for label, rate in med.items():
            ratio = f" ({rate / base:.2f}x contrib)" if base and label != "contrib" else ""
            print(f"{task} {label}: {rate:.0f} env steps/s{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_MEMORY_TASKS), choices=list(MEMORY_TASKS))
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), help=f"{', '.join(AGENTS)} or a --variant label")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="an ablation of the rim (or lstm) agent, run when --agents names LABEL (see above)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--timesteps", type=int, default=100_000, help="training steps per cell")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="cells run at a time, each in its own process")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder of cells/ and the summary")
    parser.add_argument("--report", action="store_true", help="only write the summary of the finished cells")
    parser.add_argument(
        "--speed",
        type=int,
        metavar="STEPS",
        help="only time training: learn(STEPS) per agent and round, after a warm-up, agents interleaved",
    )
    parser.add_argument("--repeats", type=int, default=5, help="rounds of --speed")
    args = parser.parse_args()
    if args.report:
        print(report(args.out))
        return
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive number of processes, got {args.workers}")
    specs = {a: AgentSpec(a, a) for a in AGENTS}
    specs.update({(v := parse_variant(text)).label: v for text in args.variant})
    unknown = [a for a in args.agents if a not in specs]
    if unknown:
        raise ValueError(
            f"unknown agents {unknown}; allowed: {', '.join(specs)} (a variant needs --variant LABEL=JSON)"
        )
    if args.speed is not None:
        if args.speed < 1 or args.repeats < 1:
            raise ValueError(f"--speed and --repeats must be positive, got {args.speed} and {args.repeats}")
        speed(args.tasks, [specs[a] for a in args.agents], args.speed, args.repeats)
        return
    print(
        f"{sys.argv[0]}: tasks {args.tasks}, agents {args.agents}, seeds {args.seeds}, {args.timesteps} steps",
        flush=True,
    )
    run_suite(
        args.tasks,
        [specs[a] for a in args.agents],
        args.seeds,
        args.timesteps,
        args.eval_episodes,
        args.out,
        args.workers,
    )


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # bad input: one line, not a traceback
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")
