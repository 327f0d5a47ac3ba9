"""Train a RIM, LSTM or GRU on one of the paper's supervised sequence tasks.

    python scripts/train_supervised.py --task copying --model rim --seed 0 --run-dir runs/copying-rim-s0
    python scripts/train_supervised.py --task mnist --model lstm --data-dir PATH/TO/MNIST
    python scripts/train_supervised.py --resume runs/copying-rim-s0      # continue a killed run
    python scripts/train_supervised.py --resume runs/copying-rim-s0 --status   # finished, busy or todo

Any setting of the run's config (:class:`rims_rl.tasks.TrainConfig`): ``--hp KEY=VALUE``, the same dotted
overrides as ``train_ppo.py``'s, e.g. ``--hp options.train_gap=50 core.hidden_size=64 grad_clip=null``
(values are YAML; ``options.*`` are the task's options, ``core.*`` the recurrent core's sizes).
Every task starts from its preset, ``agents/supervised/<task>.yaml``; the named flags (``--steps``, ``--lr``...)
are shorthands for settings and win over ``--hp``.
A run directory that already holds a checkpoint of the same config is resumed automatically.
The run directory receives config.json, checkpoint.pt, metrics.json, metrics.csv and TensorBoard events.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rims_rl.tasks import TASKS, TrainConfig, train
from rims_rl.tasks.models import MODELS
from rims_rl.tasks.training import LR_SCHEDULES, load_preset, resolve_device, run_status
from rims_rl.utils.config import add_hp_argument, merge, parse_overrides


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", help=f"one of {sorted(TASKS)}")
    p.add_argument("--model", default="rim", help=f"one of {list(MODELS)} (default rim)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="optimiser steps (default: the task's preset)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="constant (default) or cosine decay to 0")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; a run may resume on another device")
    p.add_argument("--data-dir", help="MNIST: folder with the IDX files (t10k-images-idx3-ubyte[.gz], ...)")
    add_hp_argument(p, "options.train_gap=50 core.hidden_size=64")
    p.add_argument("--run-dir", help="output folder (default runs/<task>-<model>-s<seed>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume the run in RUN_DIR with its saved config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--status",
        action="store_true",
        help="only print what training would do: finished, busy (another process trains it) or todo",
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    if args.resume:
        run_dir = Path(args.resume)
        path = run_dir / "config.json"
        if not path.is_file():
            raise ValueError(f"--resume {run_dir}: no config.json there, so no run to resume")
        return TrainConfig.from_saved(json.loads(path.read_text())), run_dir
    if args.task is None:
        raise ValueError(f"--task is required: one of {sorted(TASKS)} (or --resume RUN_DIR)")
    shorthands = {
        key: getattr(args, key)
        for key in ("steps", "batch_size", "lr", "lr_schedule", "eval_every")
        if getattr(args, key) is not None
    }
    if args.data_dir:
        shorthands["options"] = {"data_dir": str(Path(args.data_dir).resolve())}
    config = load_preset(
        args.task,
        merge(parse_overrides(args.hp), shorthands),
        model=args.model,
        seed=args.seed,
        num_threads=args.threads,
    )
    run_dir = Path(args.run_dir or f"runs/{args.task}-{args.model}-s{args.seed}")
    return config, run_dir


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config, run_dir = build_config(args)
        if args.status:
            print(run_status(config, run_dir))
            return 0
        rows = train(config, run_dir, progress=not args.no_progress, device=resolve_device(args.device))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: python scripts/train_supervised.py --resume {run_dir}", file=sys.stderr)
        return 130
    print(json.dumps(rows[-1], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
