"""Run a comparison grid (agents × games × seeds) and write its report.

    python scripts/compare.py experiments/minatar_cpu.yaml              # train what is missing, then report
    python scripts/compare.py experiments/minatar_cpu.yaml --workers 2  # cells at a time (local processes)
    python scripts/compare.py experiments/minatar_cpu.yaml --workers 1 --threads 2  # one cell, 2 torch threads
    python scripts/compare.py experiments/paper.yaml --backend ray --ray-address auto   # cells as Ray tasks
    python scripts/compare.py experiments/minatar_cpu.yaml --report-only              # report from the runs so far
    python scripts/compare.py experiments/minatar_cpu.yaml --dry-run                  # check the grid, list its cells
    python scripts/compare.py experiments/minatar_cpu.yaml --games MinAtar/Breakout   # only some of its games
    python scripts/compare.py experiments/minigrid_ood.yaml --agents rim lstm         # only some of its agents
    python scripts/compare.py --measure-random --episodes 500   # MinAtar random-policy reference scores

Run it again after a crash, a reboot or Ctrl-C: finished cells are skipped, interrupted ones resume
from their checkpoints. Runs go to runs/<name>/<game>/<agent>-s<seed>, the report to results/<name>/
(scores.csv, curves.png, relative.png, summary.md; with the config's report.export_weights, weights/ with
one half-precision export per game and agent); the report also measures each finished RIM run's mechanism
activity (activations.json in the run directory). See rims_rl.experiments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def _only(items: list, wanted: list[str], name: Callable[[Any], str], option: str, config: str) -> list:
    """The ``items`` whose ``name`` is in ``wanted`` (``--games``, ``--agents``).

    :raises ValueError: a wanted name the config does not have, naming those it has
    """
    names = [name(item) for item in items]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"--{option}: {', '.join(unknown)} not in {config}; its {option}: {', '.join(names)}")
    return [item for item in items if name(item) in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="grid YAML (experiments/*.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="cells trained at a time (default: the config's)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of each cell (default: the config's threads_per_cell)"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a process per cell (default); ray: a Ray task per cell (pip install 'rims_rl[ray]')",
    )
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a local instance)")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from the existing runs, train nothing"
    )
    parser.add_argument("--no-report", action="store_true", help="train only")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check every cell as a run would (models built, existing runs' configurations) and "
        "list the cells and their state; train nothing",
    )
    parser.add_argument(
        "--games",
        nargs="+",
        default=None,
        metavar="GAME",
        help="train only these games of the grid (as the config names them); the report covers all runs",
    )
    parser.add_argument(
        "--agents",
        nargs="+",
        default=None,
        metavar="AGENT",
        help="train only these agents of the grid (their labels in the config); the report covers all runs",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--measure-random",
        action="store_true",
        help="measure the MinAtar random-policy scores into experiments/minatar_random_scores.yaml",
    )
    parser.add_argument("--episodes", type=int, default=500, help="with --measure-random: games per game")
    parser.add_argument("--seed", type=int, default=0, help="with --measure-random: the seed")
    args = parser.parse_args(argv)

    try:
        if args.measure_random:
            from rims_rl.experiments.references import MINATAR_FILE, measure_random_scores

            if args.episodes < 2:
                raise ValueError(f"--episodes must be at least 2, got {args.episodes}")
            for game, s in measure_random_scores(episodes=args.episodes, seed=args.seed).items():
                print(f"{game}: {s['mean']:.3f} ± {s['sem']:.3f} (s.e.m.) over {s['episodes']} games, {s['seconds']} s")
            print(f"written: {MINATAR_FILE}")
            return 0
        if not args.config:
            parser.error("a grid config is required (or --measure-random)")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be a positive integer, got {args.workers}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")

        from rims_rl.experiments.config import load_grid
        from rims_rl.experiments.grid import cell_status, cell_steps, check_grid, run_grid
        from rims_rl.experiments.report import write_report

        config = load_grid(args.config)
        if args.threads is not None:
            config.threads_per_cell = args.threads
        all_cells, compared = config.cells(), config.compared_agents
        if args.games:
            config.games = _only(config.games, args.games, lambda g: g.env, "games", args.config)
        if args.agents:
            config.agents = _only(config.agents, args.agents, lambda a: a.label, "agents", args.config)
        if args.dry_run:
            check_grid(config.cells())  # what run_grid checks before it trains: models built, configurations
            for cell in config.cells():
                print(
                    f"{cell_status(cell):8s} {cell_steps(cell):>10,}/{cell.timesteps:,}  {cell.name:40s} {cell.run_dir}"
                )
            return 0
        code = 0
        if not args.report_only:
            result = run_grid(
                config, args.workers, args.backend, progress=not args.no_progress, ray_address=args.ray_address
            )
            if result.interrupted:
                print("interrupted: running cells saved checkpoints; run the same command to continue", file=sys.stderr)
                return 130
            if result.failed:
                print(f"{len(result.failed)} cell(s) failed: {', '.join(result.failed)}", file=sys.stderr)
                code = 1
        if not args.no_report:
            not_started = [cell.name for cell in all_cells if cell_status(cell) == "new"]
            files = write_report(
                config.runs_dir,
                config.results_dir,
                config.name,
                config.treatment,
                config.baseline,
                config.bootstrap_reps,
                config.description,
                not_started=not_started,
                agents=compared,
                activity_episodes=config.activity_episodes,
                export_weights=config.export_weights,
            )
            print(f"report: {', '.join(str(p) for p in files.values())}")
        return code
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
