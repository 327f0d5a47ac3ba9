"""Training speed and memory-task returns of RimPPO against sb3-contrib's RecurrentPPO, in one run.

Run: ``python benchmarks/ppo_memory.py`` (options: ``--timesteps 50000 --sequence-length 16 --seeds 0 1 2
--agents rim lstm contrib ppo --critic shared --rim-kwargs '{"input_value_size": 64}' --truncate-bptt 16``)

CartPole with the velocities removed (``CartPoleNoVelEnv``, 500-step limit), sb3-contrib's own memory
benchmark (its ``tests/test_lstm.py``): 8 envs under VecNormalize, n_steps 128, batch 256, 10 epochs,
learning rate 7e-4, GAE lambda 0.98, max grad norm 1, policy ``net_arch=dict(vf=[64], pi=[])``,
``lstm_hidden_size=64``, no orthogonal init. Agents:

- ``rim``: ``RimPPO("MlpRimPolicy")``, RIM core (6 mechanisms of 64 // 6 = 10 units, 5 active, 4 input
  heads, ``--rim-kwargs``), chunks of ``--sequence-length`` steps;
- ``lstm``: the same ``RimPPO`` trainer with ``core="lstm"`` (the Atari comparison's baseline);
- ``contrib``: sb3-contrib's ``RecurrentPPO("MlpLstmPolicy")`` exactly as its test runs it (a separate
  critic LSTM), the reference for speed;
- ``contrib-rim``: plain ``RecurrentPPO(MlpRimPolicy)`` (slow: padded full sequences of up to 128
  steps), backpropagating through at most ``--truncate-bptt`` steps of them (default 16, recommended;
  through whole sequences, ``--truncate-bptt None``, the RIM learned less here: mean return 381
  against 465 over seeds 0-4);
- ``ppo``: feedforward ``PPO("MlpPolicy")``, the control that cannot remember.

``--critic shared`` (default, recommended): the ``rim``, ``lstm`` and ``contrib-rim`` agents have one core for
both heads, trained by both losses (``shared_lstm=True, shared_critic_grad=True``); ``--critic separate``:
a separate critic core, as sb3-contrib's test configures its LSTM.

The agents train round-robin, one rollout (1024 steps) each in turn, so that a change of machine load
hits all of them alike; steps/s is total steps over total training wall time (rollout + update) of an
agent, and the ratios are against ``contrib``. Each agent keeps its own torch/numpy/random streams, so
its result does not depend on which agents run beside it. After training each agent is evaluated on 20
episodes (deterministic actions, observation statistics frozen). With several ``--seeds`` the table
gives the steps/s over all seeds and the mean and each seed's evaluation return. Torch runs on one thread.

A single run's return is a noisy draw: the final PPO iterate of a RIM policy ranged from 181 to 500
across seeds and random streams here, so judge returns over several seeds.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
from gymnasium.wrappers import TimeLimit
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from rims_rl.rl import CartPoleNoVelEnv, MlpRimPolicy, RimPPO

#: sb3-contrib's tests/test_lstm.py::test_ppo_lstm_performance
HYPERPARAMS = dict(n_steps=128, learning_rate=7e-4, batch_size=256, n_epochs=10, max_grad_norm=1, gae_lambda=0.98)
POLICY_KWARGS = dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False, enable_critic_lstm=True)
N_ENVS = 8


def make_env() -> TimeLimit:
    return TimeLimit(CartPoleNoVelEnv(), max_episode_steps=500)


def build(agent: str, seed: int, sequence_length: int | None, rim_kwargs: dict, shared_core: bool = True,
          truncate_bptt: int | None = None):
    env = VecNormalize(make_vec_env(make_env, n_envs=N_ENVS, seed=seed))
    common = dict(seed=seed, **HYPERPARAMS)
    ours = dict(POLICY_KWARGS, shared_lstm=True, enable_critic_lstm=False, shared_critic_grad=True) if shared_core \
        else POLICY_KWARGS
    ours = dict(ours, truncate_bptt=truncate_bptt)
    if agent == "rim":
        return RimPPO("MlpRimPolicy", env, sequence_length=sequence_length,
                      policy_kwargs=dict(ours, rim_kwargs=rim_kwargs), **common)
    if agent == "lstm":
        return RimPPO("MlpRimPolicy", env, sequence_length=sequence_length,
                      policy_kwargs=dict(ours, core="lstm"), **common)
    if agent == "contrib":
        return RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=POLICY_KWARGS, **common)
    if agent == "contrib-rim":
        return RecurrentPPO(MlpRimPolicy, env, policy_kwargs=dict(ours, rim_kwargs=rim_kwargs), **common)
    if agent == "ppo":
        return PPO("MlpPolicy", env, policy_kwargs=dict(net_arch=dict(vf=[64], pi=[64])), **common)
    raise ValueError(f"unknown agent {agent!r}; allowed: rim, lstm, contrib, contrib-rim, ppo")


def rng_state() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0]), np.random.set_state(state[1]), random.setstate(state[2])


def run_seed(agents: list[str], seed: int, args) -> dict[str, tuple[float, float, float]]:
    """Train the agents round-robin for one seed; :return: per agent (seconds, eval mean, eval std)."""
    models, streams = {}, {}
    for agent in agents:
        models[agent] = build(agent, seed, args.sequence_length, args.rim_kwargs, args.critic == "shared",
                              args.truncate_bptt)
        streams[agent] = rng_state()  # as if the agent ran alone: built (and seeded) then trained
    per_rollout = HYPERPARAMS["n_steps"] * N_ENVS
    seconds = dict.fromkeys(models, 0.0)
    done = 0
    while done < args.timesteps:
        for name, model in models.items():
            set_rng_state(streams[name])
            t0 = time.perf_counter()
            model.learn(per_rollout, reset_num_timesteps=done == 0)
            seconds[name] += time.perf_counter() - t0
            streams[name] = rng_state()
        done += per_rollout
        print(f"seed {seed}, {done} steps: " + ", ".join(f"{n} {done / s:.0f}/s" for n, s in seconds.items()),
              flush=True)
    return {name: (seconds[name], *evaluate(model, seed, args.eval_episodes)) for name, model in models.items()}


def evaluate(model, seed: int, episodes: int) -> tuple[float, float]:
    eval_env = VecNormalize(make_vec_env(make_env, n_envs=4, seed=seed + 1000), training=False, norm_reward=False)
    eval_env.obs_rms = model.get_env().obs_rms
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--sequence-length", type=lambda s: None if s == "None" else int(s), default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--agents", nargs="+", default=["rim", "lstm", "contrib", "ppo"])
    parser.add_argument("--rim-kwargs", type=json.loads, default={"input_value_size": 64},
                        help="JSON dict for the RIM core (default: values of size 64, not the core's 400)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--critic", choices=["shared", "separate"], default="shared",
                        help="our agents: one core for both heads trained by both losses, or a separate critic core")
    parser.add_argument("--truncate-bptt", type=lambda s: None if s == "None" else int(s), default=16,
                        help="our agents' truncate_bptt: steps of backpropagation through time (None: whole "
                             "sequences); RimPPO's chunks of --sequence-length steps are bounded already")
    args = parser.parse_args()
    torch.set_num_threads(1)

    results = {seed: run_seed(args.agents, seed, args) for seed in args.seeds}
    steps = -(-args.timesteps // 1024) * 1024 * len(args.seeds)
    sps = {a: steps / sum(results[seed][a][0] for seed in args.seeds) for a in args.agents}
    print(f"\nCartPoleNoVel, {steps // len(args.seeds)} steps, seeds {args.seeds}, sequence_length "
          f"{args.sequence_length}, rim_kwargs {args.rim_kwargs}, critic {args.critic}, truncate_bptt {args.truncate_bptt}")
    print(f"{'agent':12s} {'steps/s':>8s} {'vs contrib':>10s} {'mean return':>12s}  returns per seed (mean ± std over {args.eval_episodes} episodes)")
    for a in args.agents:
        ratio = f"{sps[a] / sps['contrib']:.2f}x" if "contrib" in sps else "-"
        per_seed = ", ".join(f"{results[seed][a][1]:.1f} ± {results[seed][a][2]:.1f}" for seed in args.seeds)
        mean = np.mean([results[seed][a][1] for seed in args.seeds])
        print(f"{a:12s} {sps[a]:8.0f} {ratio:>10s} {mean:12.1f}  {per_seed}")

if __name__ == "__main__":
    main()
