"""Is the LSTM baseline healthy? Train the MinAtar LSTM agent (the preset, unchanged) on one game without
sticky actions, the setting of the published PPO figure it is compared with, and print its final score
beside that figure and beside the same agent's runs with MinAtar's default sticky actions (0.1).

    python benchmarks/minatar_health.py                       # Breakout, seed 0, 1M env steps
    python benchmarks/minatar_health.py --game Asterix --steps 500000

Published figure: gymnax-blines (R. T. Lange, github.com/RobertTLange/gymnax-blines, commit 3f029d6,
agents/<Game>-MinAtar/ppo.pkl, its logged learning curve): PPO with a feedforward MLP, 64 envs, one seed,
gymnax's MinAtar without sticky actions and with episodes cut at 1000 steps (2500 for Freeway), the mean over
164 games with sampled actions. The run goes to results/minatar_sound/health/<game>-lstm-sticky0-s<seed>; its
``sticky.json`` records the sticky-action probability (``config.yaml`` cannot: it is an env setting, not a
hyperparameter). A rerun resumes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: gymnax-blines PPO (see the docstring): mean return at about 0.96M and 5.12M env steps
PUBLISHED = {
    "Breakout": (16.6, 22.0),
    "Asterix": (1.8, 7.6),
    "Freeway": (29.0, 51.2),
    "SpaceInvaders": (50.4, 92.7),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Breakout", choices=sorted(PUBLISHED))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--agent", default="lstm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the grid's cells use 1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from rims_rl.experiments.aggregate import collect_runs, read_run
    from rims_rl.rl import envs
    from rims_rl.rl.training import train
    from rims_rl.utils.run_dir import RunDir, atomic_write_text

    # no sticky actions, for training and evaluation (MinAtarEnv's default is MinAtar's 0.1)
    defaults = list(envs.MinAtarEnv.__init__.__defaults__)
    defaults[0] = 0.0
    envs.MinAtarEnv.__init__.__defaults__ = tuple(defaults)

    root = Path(__file__).resolve().parents[1] / "results" / "minatar_sound"
    run_dir = root / "health" / f"MinAtar-{args.game}-{args.agent}-sticky0-s{args.seed}"
    atomic_write_text(json.dumps({"sticky_action_prob": 0.0}), run_dir / "sticky.json")
    status = RunDir(run_dir).status()
    if status != "finished":
        train(f"MinAtar/{args.game}", args.agent, args.seed, args.steps, run_dir=run_dir, resume=status == "partial")
    run = read_run(run_dir)
    sticky = [
        r.final_score
        for r in collect_runs(root / "runs")
        if r.env == f"MinAtar/{args.game}" and r.label == args.agent and r.finished
    ]
    at_1m, at_5m = PUBLISHED[args.game]
    print(f"MinAtar/{args.game}, {args.agent} agent, {run.steps:,} env steps")
    print(f"  no sticky actions (this run, seed {args.seed}): final score {run.final_score:.2f}")
    if sticky:
        print(f"  sticky actions 0.1 (the grid, {len(sticky)} seeds): final score {sum(sticky) / len(sticky):.2f}")
    print(f"  published PPO (gymnax-blines, no sticky actions, 1 seed): {at_1m} at ~1M steps, {at_5m} at ~5M")


if __name__ == "__main__":
    main()
