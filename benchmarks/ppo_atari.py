"""Training throughput on Atari Pong and MinAtar Breakout, 8 envs, CPU, measured in one run.

Run: ``python benchmarks/ppo_atari.py [--steps 4096] [--repeats 3] [--games Pong MinAtar/Breakout]``

Agents, all with the Atari PPO hyperparameters of ``agents/`` (8 envs, 128 steps, 4 epochs, batch 256):

- ``rim``: RIM-PPO as ``scripts/train_ppo.py`` runs it (``RimPPO``, ``CnnRimPolicy``, the project's
  env path: ale_py's C++ vector env);
- ``lstm``: the same trainer with the LSTM core (the comparison's baseline, docs/design.md §5);
- ``contrib``: plain sb3-contrib ``RecurrentPPO("CnnLstmPolicy")`` (its defaults: a 256-unit LSTM for
  the actor and another for the critic) on SB3's ``make_atari_env`` (``DummyVecEnv``), frame stack 1.

Each timing is ``learn(--steps)`` after a warm-up rollout; the median over ``--repeats`` rounds
(agents interleaved) and the ratio to ``contrib`` are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rims_rl.rl.config import load_agent
from rims_rl.rl.envs import make_atari_env, resolve_env
from rims_rl.rl.extractors import MinAtarCNN
from rims_rl.rl.training import build_env, build_model


def make(agent: str, game: str, seed: int = 0):
    kind, _ = resolve_env(game)
    if agent == "contrib":
        from sb3_contrib import RecurrentPPO

        config = load_agent("lstm", kind)
        env = (
            make_atari_env(game, config.n_envs, seed, backend="sb3")
            if kind == "atari"
            else build_env(game, config, config.n_envs, seed)
        )
        policy_kwargs = {} if kind == "atari" else {"features_extractor_class": MinAtarCNN}
        return RecurrentPPO(
            "CnnLstmPolicy",
            env,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            n_epochs=config.n_epochs,
            learning_rate=2.5e-4,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            vf_coef=config.vf_coef,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            max_grad_norm=config.max_grad_norm,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device="cpu",
        )
    config = load_agent(agent, kind)
    return build_model(config, build_env(game, config, config.n_envs, seed), seed, "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4096, help="env steps per timing (multiple of 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--games", nargs="+", default=["Pong", "MinAtar/Breakout"])
    parser.add_argument("--agents", nargs="+", default=["rim", "lstm", "contrib"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps per timing, "
        f"median of {args.repeats}"
    )
    for game in args.games:
        models = {agent: make(agent, game) for agent in args.agents}
        for model in models.values():
            model.learn(1024)  # warm-up: one rollout and update
        times: dict[str, list[float]] = {agent: [] for agent in args.agents}
        for _ in range(args.repeats):
            for agent, model in models.items():
                t0 = time.perf_counter()
                model.learn(args.steps, reset_num_timesteps=False)
                times[agent].append(time.perf_counter() - t0)
        rates = {agent: args.steps / statistics.median(t) for agent, t in times.items()}
        for agent, rate in rates.items():
            ratio = f", {rate / rates['contrib']:.2f}x contrib" if "contrib" in rates and agent != "contrib" else ""
            print(f"{game:18s} {agent:8s} {rate:7.0f} steps/s{ratio}")
        for model in models.values():
            model.env.close()


if __name__ == "__main__":
    main()
