"""The report's figures: learning curves with confidence bands (``curves.png``) and the per-game
relative improvement of one agent over another (``relative.png``, in the style of the RIM paper's
Fig. 5 and Wang et al. 2016's Fig. 4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .aggregate import Normaliser, Run, group, relative_improvement, t_interval

COLOURS = {"rim": "tab:red", "lstm": "tab:blue", "ppo": "tab:green"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve(runs: list[Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean evaluation score over runs and the half-width of its 95% Student-t CI, on the evaluation
    steps the runs share (each run interpolated onto the steps of the first, up to the shortest run).

    :return: ``steps [E]``, ``mean [E]``, ``ci [E]``
    """
    runs = [r for r in runs if len(r.timesteps)]
    if not runs:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    end = min(r.timesteps[-1] for r in runs)
    steps = np.unique(np.concatenate([r.timesteps[r.timesteps <= end] for r in runs]))
    values = np.stack([np.interp(steps, r.timesteps, r.scores) for r in runs])  # [runs, E]
    return steps, values.mean(axis=0), t_interval(values, axis=0)


def plot_curves(
    runs: list[Run], path: Path, norms: dict[str, Normaliser] | None = None, finished_only: bool = True
) -> Path:
    """``curves.png``: one panel per game, evaluation score (raw game score) against env steps, the
    mean over seeds of each agent with its 95% CI (Student t over seeds); the random policy's score
    (and the human score, where known) dashed.

    :param runs: the runs
    :param path: the PNG to write
    :param norms: per-game normalisers, for the reference lines
    :param finished_only: leave unfinished runs out
    """
    plt = _plt()
    grouped = group(runs, finished_only)
    games = sorted(grouped, key=lambda g: (not g.lower().startswith("minatar/"), g))
    cols = min(3, max(len(games), 1))
    rows = max(math.ceil(len(games) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    labels = sorted({r.label for r in runs})
    palette = {a: COLOURS.get(a, f"C{i + 3}") for i, a in enumerate(labels)}
    for ax, game in zip(axes.flat, games):
        for label, game_runs in sorted(grouped[game].items()):
            steps, mean, ci = curve(game_runs)
            if not len(steps):
                continue
            ax.plot(
                steps, mean, color=palette[label], marker="o", markersize=2.5, label=f"{label} (n={len(game_runs)})"
            )
            ax.fill_between(steps, mean - ci, mean + ci, color=palette[label], alpha=0.2, linewidth=0)
        ref = norms[game].reference if norms and game in norms else None
        if ref is not None and ref.random is not None:
            ax.axhline(ref.random, color="grey", linestyle="--", linewidth=1, label="random")
        if ref is not None and ref.human is not None:
            ax.axhline(ref.human, color="black", linestyle=":", linewidth=1, label="human")
        ax.set_title(game)
        ax.set_xlabel("env steps")
        ax.set_ylabel("score")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(games) :]:
        ax.axis("off")
    fig.suptitle("evaluation score: mean over seeds, 95% CI (Student t)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def improvements(runs: list[Run], norms: dict[str, Normaliser], treatment: str, baseline: str) -> dict[str, float]:
    """Per game, the relative improvement (percent) of ``treatment``'s mean final score over
    ``baseline``'s (:func:`relative_improvement`); games where either agent has no finished run are left out."""
    grouped = group(runs)
    out = {}
    for game, by in grouped.items():
        if by.get(treatment) and by.get(baseline):
            t = float(np.mean([r.final_score for r in by[treatment]]))
            b = float(np.mean([r.final_score for r in by[baseline]]))
            out[game] = relative_improvement(t, b, norms[game])
    return out


def plot_relative(runs: list[Run], path: Path, norms: dict[str, Normaliser], treatment: str, baseline: str) -> Path:
    """``relative.png``: one bar per game, the relative improvement of ``treatment`` over
    ``baseline`` (mean final scores over seeds), sorted, positive bars in the treatment's colour.

    :param runs: the runs
    :param path: the PNG to write
    :param norms: per-game normalisers (their references choose the formula)
    :param treatment: label of the improved agent (the paper: RIM)
    :param baseline: label of the reference agent (the paper: LSTM)
    """
    plt = _plt()
    values = improvements(runs, norms, treatment, baseline)
    order = sorted(values, key=lambda g: (math.isnan(values[g]), values[g]))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(order) + 2.5), 4.0))
    heights = [0.0 if math.isnan(values[g]) else values[g] for g in order]
    colours = [COLOURS.get(treatment, "tab:red") if h >= 0 else COLOURS.get(baseline, "tab:blue") for h in heights]
    bars = ax.bar(range(len(order)), heights, color=colours, width=0.7)
    ax.set_xlim(-0.75, max(len(order) - 0.25, 0.75))
    for bar, h in zip(bars, heights):
        ax.annotate(
            f"{h:+.0f}%",
            (bar.get_x() + bar.get_width() / 2, h),
            ha="center",
            va="bottom" if h >= 0 else "top",
            fontsize=8,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"improvement of {treatment} over {baseline} (%)")
    human = any(norms[g].method == "human" for g in order)
    ax.set_title(
        f"{treatment} (T) vs {baseline} (B), mean final scores: (T - B) / max(|B|, |random|)"
        + ("\nwhere human scores are known: (T - B) / (max(human, B) - random)" if human else ""),
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
