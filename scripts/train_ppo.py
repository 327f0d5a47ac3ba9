"""Train RIM-PPO (or the LSTM-PPO / feedforward PPO baselines) on an Atari or MinAtar game or a MiniGrid env.

    python scripts/train_ppo.py --env Pong                       # RIM-PPO, the paper's setting, 10M steps
    python scripts/train_ppo.py --env MinAtar/Breakout --agent lstm --seed 1
    python scripts/train_ppo.py --env MiniGrid-MultiRoom-N2-S4-v0 --eval-envs MiniGrid-MultiRoom-N4-S5-v1
    python scripts/train_ppo.py --env Pong --run-dir runs/Pong-rim-s0 --resume   # continue a killed run

Everything goes to one run directory (see rims_rl.utils.run_dir): config.yaml, TensorBoard events
(`tensorboard --logdir runs`), checkpoints, evaluations.csv (raw game score), the final model. The
whole run is checked (config, model, output folders) before the directory is created, and a run
directory is trained by one process at a time (a second one is refused).
"""

from __future__ import annotations

import argparse
import sys

from rims_rl.rl.config import AGENTS
from rims_rl.utils.config import add_hp_argument


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--env", required=True, help="Pong, Breakout, ALE/Pong-v5, MinAtar/Breakout, MiniGrid-DoorKey-5x5-v0, ..."
    )
    parser.add_argument(
        "--eval-envs",
        nargs="+",
        default=None,
        metavar="ENV",
        help="envs also played zero-shot at each evaluation (same spaces as --env; env_evaluations.csv)",
    )
    parser.add_argument("--agent", default="rim", help=f"one of {', '.join(AGENTS)} (presets in agents/)")
    parser.add_argument("--seed", type=int, default=None, help="default 0 (on --resume: the run's)")
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: the preset's n_timesteps")
    parser.add_argument("--n-envs", type=int, default=None, help="default: the preset's n_envs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--run-dir", default=None, help="default: runs/<env>-<agent>-s<seed>")
    add_hp_argument(parser, "learning_rate=1e-4 policy_kwargs.rim_kwargs.k_active=4")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its newest checkpoint that loads (a finished run: "
        "only with a larger --total-timesteps)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from rims_rl.rl.training import train  # after parsing: --help stays fast

    try:
        run_dir = train(
            args.env,
            args.agent,
            args.seed,
            args.total_timesteps,
            args.n_envs,
            args.device,
            args.run_dir,
            args.hp,
            args.resume,
            progress=not args.no_progress,
            eval_envs=args.eval_envs,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: a checkpoint was saved; continue with --resume", file=sys.stderr)
        return 130
    print(f"done: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
