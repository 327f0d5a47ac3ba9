"""Synthetic run directories: the files ``train`` and the grid runner write, with scores we choose."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

FIELDS = ("timesteps", "mean_score", "std_score", "min_score", "max_score", "mean_length", "episodes", "wall_time")


def make_run(
    root: Path,
    env: str,
    agent: str,
    seed: int,
    evals: list[tuple[int, float]],
    finished: bool = True,
    label: str | None = None,
    segments: list[tuple[int, int, float]] | None = None,
    target: int | None = None,
    hyperparameters: dict | None = None,
) -> Path:
    """A run directory as ``train`` leaves it: ``config.yaml``, ``evaluations.csv`` (rows in the given
    order, so resumed runs can repeat steps), ``final_model.zip`` if finished, and the grid runner's
    ``cell.yaml``/``timing.json`` when ``label``/``segments`` are given.

    :param evals: ``(timesteps, mean_score)`` rows in file order
    :param segments: ``(start_step, end_step, seconds)`` training segments
    :param target: the run's ``n_timesteps`` (default: the last evaluated step)
    :param hyperparameters: more of the resolved configuration (all runs share the rest)
    """
    run = root / env.replace("/", "-") / f"{label or agent}-s{seed}"
    run.mkdir(parents=True)
    target = target or max(step for step, _ in evals)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "env": env,
                "agent": agent,
                "seed": seed,
                "hyperparameters": {"n_timesteps": target, **(hyperparameters or {})},
                "command": "test",
            }
        )
    )
    with open(run / "evaluations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for i, (step, score) in enumerate(evals):
            writer.writerow(
                dict(
                    timesteps=step,
                    mean_score=score,
                    std_score=0,
                    min_score=score,
                    max_score=score,
                    mean_length=100,
                    episodes=5,
                    wall_time=1000.0 + i,
                )
            )
    if finished:
        (run / "final_model.zip").write_bytes(b"not a model")
    if label:
        (run / "cell.yaml").write_text(yaml.safe_dump({"label": label, "agent": agent, "env": env, "seed": seed}))
    if segments:
        (run / "timing.json").write_text(
            json.dumps({"segments": [{"start_step": a, "end_step": b, "seconds": s} for a, b, s in segments]})
        )
    return run
