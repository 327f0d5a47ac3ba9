"""The comparison report of a folder of run directories: ``scores.csv``, ``curves.png``,
``relative.png`` and ``summary.md`` (per-game table, relative improvement, rliable aggregates).

    python scripts/compare.py experiments/minatar_cpu.yaml --report-only
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..utils.run_dir import RunDir
from .aggregate import (
    Aggregate,
    Run,
    aggregate,
    collect_runs,
    group,
    normalisers,
    relative_improvement,
    transfer_runs,
    write_env_scores_csv,
    write_scores_csv,
)
from .plots import improvements, plot_curves, plot_relative
from .references import game_key, load_paper_scores


def _pm(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.{digits}f} ± {std:.{digits}f}"


def _ci(triple: tuple[float, float, float]) -> str:
    return f"{triple[0]:.3f} [{triple[1]:.3f}, {triple[2]:.3f}]"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def summary_markdown(
    runs: list[Run],
    norms,
    aggregates: list[Aggregate],
    treatment: str | None,
    baseline: str | None,
    name: str,
    description: str = "",
    runs_dir: str = "",
    not_started: list[str] = (),
    agents: list[str] | None = None,
    exports: list[Path] = (),
    transfers: list[Run] = (),
    transfer_aggregates: list[Aggregate] = (),
    env_aggregates: dict[tuple[str, str], Aggregate] | None = None,
) -> str:
    """The text of ``summary.md``; ``not_started`` names the grid's cells that have no run yet, ``agents``
    the compared labels (the others are variants, shown per game and against ``treatment``), ``exports``
    the weights files of :func:`export_weights_per_game`; ``transfers`` are the zero-shot evaluations
    (:func:`~rims_rl.experiments.aggregate.transfer_runs`), ``transfer_aggregates`` their aggregates and
    ``env_aggregates`` the aggregate of each ``(trained_on, env)`` evaluated with success rates."""
    env_aggregates = env_aggregates or {}
    finished = [r for r in runs if r.finished]
    grouped = group(runs)
    lines = [f"# Comparison `{name}`", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"{len(finished)} of {len(runs)} runs finished"
        + (f" (run directories under `{runs_dir}`)" if runs_dir else "")
        + ". Score: the mean raw game score (whole games, no reward clipping, actions sampled from the "
        "policy); a run's *final* score is the mean of its evaluations in the last 10% of training "
        "(e.g. at 900k, 950k, 1M steps and the end), *best* its best single evaluation. "
        "Mean ± std over seeds.",
        "",
    ]

    counted = {}  # label -> parameter counts of its first run that recorded them
    for r in runs:
        if r.parameters and r.label not in counted:
            counted[r.label] = (r.env, r.parameters)
    if counted:
        lines += [
            "## Parameters",
            "",
            "Of each agent's policy (one game's run; recurrent cores of actor and critic together).",
            "",
            "| agent | game | recurrent cores | features extractor | heads | total |",
            "|---|---|---|---|---|---|",
        ]
        for label, (env, p) in sorted(counted.items()):
            lines.append(
                f"| {label} | {env} | {p['core']:,} | {p['features_extractor']:,} | {p['heads']:,} | {p['total']:,} |"
            )
        lines.append("")

    lines += [
        "## Per game",
        "",
        "| game | agent | runs | env steps | final score | best evaluation | random | human | steps/s | hours/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for game in sorted(grouped, key=lambda g: (not g.lower().startswith("minatar/"), g)):
        ref = norms[game].reference
        for label, rs in sorted(grouped[game].items()):
            sps = [r.steps_per_s for r in rs if r.steps_per_s]
            hours = [r.wall_time_s / 3600 for r in rs if r.wall_time_s]
            lines.append(
                f"| {game} | {label} | {len(rs)} | {max(r.steps for r in rs):,} | {_pm([r.final_score for r in rs])} "
                f"| {_pm([r.best_score for r in rs])} | {_fmt(ref.random, 2)} | {_fmt(ref.human, 1)} "
                f"| {_fmt(float(np.mean(sps)) if sps else None, 0)} "
                f"| {_fmt(float(np.mean(hours)) if hours else None, 2)} |"
            )
    lines.append("")

    if treatment and baseline:
        values = improvements(runs, norms, treatment, baseline)
        if values:
            lines += [
                f"## {treatment} vs {baseline} per game",
                "",
                f"Relative improvement of the mean final score (`relative.png`): "
                f"`({treatment} − {baseline}) / max(|{baseline}|, |random|)`; where human scores are known "
                f"(Atari), `({treatment} − {baseline}) / (max(human, {baseline}) − random)` (Wang et al. 2016). "
                "*paper*: the same improvement computed from the RIM paper's Table 7 (RIM k=5 vs LSTM, "
                "10M steps), where the game is in it.",
                "",
                f"| game | {treatment} | {baseline} | improvement | better | paper |",
                "|---|---|---|---|---|---|",
            ]
            paper = load_paper_scores() if {treatment, baseline} == {"rim", "lstm"} else {}
            for game in sorted(values, key=lambda g: -values[g] if not math.isnan(values[g]) else math.inf):
                t = [r.final_score for r in grouped[game][treatment]]
                b = [r.final_score for r in grouped[game][baseline]]
                better = treatment if np.mean(t) > np.mean(b) else baseline if np.mean(t) < np.mean(b) else "tie"
                ref = paper.get(game_key(game))
                published = (
                    f"{_fmt(relative_improvement(ref[treatment], ref[baseline], norms[game]), 0)}% "
                    f"({ref[treatment]:g} vs {ref[baseline]:g})"
                    if ref
                    else "–"
                )
                lines.append(f"| {game} | {_pm(t)} | {_pm(b)} | {_fmt(values[game], 0)}% | {better} | {published} |")
            wins = [g for g, v in values.items() if v > 0]
            losses = [g for g, v in values.items() if v < 0]
            lines += [
                "",
                f"{treatment} has the higher mean final score on {len(wins)} of {len(values)} games"
                + (f"; {baseline} on {', '.join(sorted(losses))}" if losses else "")
                + ".",
                "",
            ]

    variants = sorted({r.label for r in finished} - set(agents)) if agents is not None else []
    if variants and treatment:
        lines += [
            "## Agent variants",
            "",
            f"Run on some games and seeds only (ablations), so not in the aggregate: each against {treatment} on "
            f"the same seeds. Difference of the mean final scores with its 95% Welch t-interval.",
            "",
            f"| game | variant | runs | variant | {treatment} | difference |",
            "|---|---|---|---|---|---|",
        ]
        for label in variants:
            for game in sorted(g for g in grouped if label in grouped[g]):
                v = grouped[game][label]
                seeds = {r.seed for r in v}
                t = [r for r in grouped[game].get(treatment, []) if r.seed in seeds]
                diff = _welch([r.final_score for r in v], [r.final_score for r in t])
                lines.append(
                    f"| {game} | {label} | {len(v)} | {_pm([r.final_score for r in v])} "
                    f"| {_pm([r.final_score for r in t])} ({len(t)}) | {diff} |"
                )
        lines.append("")

    measured = [r for r in finished if r.activity]
    if measured:
        lines += [
            "## Mechanism activity",
            "",
            "How often each mechanism of the actor's RIM is among the k active ones, over a few evaluation games "
            "of each run's final policy (`activations.json` in its run directory). Mechanisms are unordered "
            "across runs, so each run's frequencies are sorted from the most to the least active before the "
            "mean over runs; *least active* is the lowest frequency of any mechanism of any run. Uniform "
            "selection would give every mechanism k/U.",
            "",
            "| game | agent | runs | frequency, sorted (mean over runs) | least active | k/U |",
            "|---|---|---|---|---|---|",
        ]
        by_game = group(measured)
        for game in sorted(by_game):
            for label, rs in sorted(by_game[game].items()):
                units = len(rs[0].activity)
                freqs = np.array([sorted(r.activity, reverse=True) for r in rs if len(r.activity) == units])
                mean = " ".join(f"{f:.2f}" for f in freqs.mean(axis=0))
                k = np.mean([sum(r.activity) for r in rs])
                lines.append(f"| {game} | {label} | {len(freqs)} | {mean} | {freqs.min():.2f} | {k:.0f}/{units} |")
        lines.append("")

    for agg in aggregates:
        lines += _aggregate_lines(agg, f"## Aggregate: {agg.suite}")

    if transfers or any(r.successes is not None for r in finished):
        lines += _generalisation_lines(runs, transfers, env_aggregates, treatment, baseline)
        for agg in transfer_aggregates:
            lines += _aggregate_lines(agg, f"## Aggregate: zero-shot transfer, {agg.suite}")

    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        lines += [
            "## Unfinished runs (not in the tables above)",
            "",
            "| game | agent | seed | steps | final score so far |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.env} | {r.label} | {r.seed} | {r.steps:,} / {r.target_steps:,} | {_fmt(r.final_score, 2)} |"
            for r in unfinished
        ]
        lines.append("")
    if not_started:
        lines += ["Not started (no run directory yet): " + ", ".join(not_started) + ".", ""]
    lines += [
        "## Files",
        "",
        "- `scores.csv`: one row per run (final and best score, normalised final score, steps, wall time, steps/s)",
        "- `curves.png`: evaluation score against env steps, mean over seeds with a 95% Student-t confidence interval",
    ]
    if treatment and baseline:
        lines.append("- `relative.png`: the per-game relative improvement above")
    if transfers or any(r.successes is not None for r in runs):
        lines.append("- `env_scores.csv`: one row per run and env it was evaluated on (final return and success rate)")
    if transfers:
        lines.append("- `transfer_curves.png`: the zero-shot evaluation envs' returns against training env steps")
    for path in exports:
        lines.append(
            f"- `weights/{path.name}`: weights-only export of that run (float16), "
            f"`python scripts/evaluate.py {path.as_posix()} --video out.mp4`"
        )
    lines.append("")
    return "\n".join(lines)


#: how each normalisation method of :class:`~rims_rl.experiments.aggregate.Normaliser` is described
NORMALISATIONS = {
    "human": "human-normalised: `(score − random) / (human − random)`",
    "best": "`(score − random) / (best − random)`, `best` = the highest final score of any run of the "
    "game in this comparison: 0 is a random policy, 1 the best run",
    "raw": "MiniGrid returns as they are: 0 on failure, `1 − 0.9 × steps / max_steps` on success",
}


def _aggregate_lines(agg: Aggregate, title: str) -> list[str]:
    """One aggregate as markdown: how its scores are normalised, IQM/median/mean with CIs, P(treatment > baseline)."""
    lines = [
        title,
        "",
        f"{agg.runs_per_game} run(s) per agent on each of {len(agg.games)} game(s) "
        f"({', '.join(agg.games)}). Normalised final scores; 95% stratified-bootstrap confidence "
        f"intervals (rliable, Agarwal et al. 2021). IQM: the interquartile mean over all runs × games.",
        "",
    ]
    for method, text in NORMALISATIONS.items():
        games = [g for g, m in agg.method.items() if m == method]
        if games:
            lines.append(f"- {text} ({', '.join(games)})")
    if agg.runs_per_game == 1:
        lines.append("- one run per game: the bootstrap has nothing to resample, the intervals collapse to the point")
    lines += ["", "| agent | IQM | median | mean |", "|---|---|---|---|"]
    for label, m in agg.metrics.items():
        lines.append(f"| {label} | {_ci(m['IQM'])} | {_ci(m['median'])} | {_ci(m['mean'])} |")
    if agg.improvement:
        t, b, p, lo, hi = agg.improvement
        lines += [
            "",
            f"Probability of improvement P({t} > {b}) = {p:.3f} [{lo:.3f}, {hi:.3f}] "
            "(the chance that a run of the first beats a run of the second on a game, averaged over games).",
        ]
    if agg.excluded:
        lines += ["", "Not in the aggregate: " + "; ".join(f"{g} ({why})" for g, why in agg.excluded.items()) + "."]
    if agg.left_out:
        why = "; ".join(f"{a} ({reason})" for a, reason in agg.left_out.items())
        lines += ["", f"Agents left out of the aggregate (a grid in progress): {why}."]
    lines.append("")
    return lines


def _generalisation_lines(
    runs: list[Run],
    transfers: list[Run],
    env_aggregates: dict[tuple[str, str], Aggregate],
    treatment: str | None,
    baseline: str | None,
) -> list[str]:
    """Success rates and returns of every env a run was evaluated on, its training env and the zero-shot ones,
    with each env's IQM of final returns and P(treatment > baseline) (``env_aggregates``, keyed by
    ``(trained_on, env)``)."""
    lines = [
        "## Training and zero-shot evaluation envs",
        "",
        "Each run is evaluated on its training env and, zero-shot, on the evaluation envs its game lists, with the "
        "same episodes per evaluation (`env_scores.csv`, `transfer_curves.png`). *success*: the share of episodes "
        "with a positive return; both figures are final ones (mean of the evaluations in the last 10% of training), "
        "mean ± std over seeds. *IQM*: of the runs' final returns with its 95% stratified-bootstrap CI"
        + (f"; P({treatment} > {baseline}) with its CI" if treatment and baseline else "")
        + ".",
        "",
        "| trained on | evaluated on | agent | runs | success | return | IQM | P |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs = defaultdict(lambda: defaultdict(list))
    for r in [r for r in runs if r.successes is not None] + list(transfers):
        if r.finished:
            pairs[(r.trained_on or r.env, r.env)][r.label].append(r)
    for (trained_on, env), by_label in sorted(pairs.items(), key=lambda kv: (kv[0][0], kv[0][0] != kv[0][1], kv[0][1])):
        agg = env_aggregates.get((trained_on, env))
        for label, rs in sorted(by_label.items()):
            iqm = _ci(agg.metrics[label]["IQM"]) if agg and label in agg.metrics else "–"
            improvement = "–"
            if agg and agg.improvement and label == agg.improvement[0]:
                improvement = f"{agg.improvement[2]:.3f} [{agg.improvement[3]:.3f}, {agg.improvement[4]:.3f}]"
            shown = env if env != trained_on else f"{env} (training env)"
            lines.append(
                f"| {trained_on} | {shown} | {label} | {len(rs)} | {_pm([r.final_success for r in rs])} "
                f"| {_pm([r.final_score for r in rs])} | {iqm} | {improvement} |"
            )
    lines.append("")
    return lines


def _welch(a: list[float], b: list[float]) -> str:
    """``mean(a) - mean(b) [low, high]``: the 95% Welch t-interval of the difference of two means."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return f"{a.mean() - b.mean():.2f}" if len(a) and len(b) else "–"
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
    if se == 0:
        return f"{diff:.2f}"
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * se
    return f"{diff:.2f} [{diff - half:.2f}, {diff + half:.2f}]"


def measure_activity(runs: list[Run], episodes: int) -> None:
    """Measure the mechanism activity of each finished RIM run that has none yet and whose model files are
    here (:func:`rims_rl.rl.evaluation.mechanism_activity`, kept in its ``activations.json``)."""
    from ..rl.evaluation import mechanism_activity

    for r in runs:
        if r.finished and r.activity is None:
            found = mechanism_activity(r.path, episodes)
            r.activity = found["frequency"] if found else None


def export_weights_per_game(runs: list[Run], folder: Path, agents: list[str] | None = None) -> list[Path]:
    """A half-precision weights-only export of one finished run per game and compared agent (the lowest
    seed whose ``final_weights.pt`` is here) into ``folder``, named ``<game>-<label>-s<seed>.pt``; a game and
    agent that already has one keeps it (a fresh clone has the exports but not the runs' weights).

    :return: the exports in ``folder``, sorted
    """
    from ..rl.training import export_half_precision

    for game, by_label in group(runs).items():
        prefix = game.replace("/", "-")
        for label, rs in by_label.items():
            if agents is not None and label not in agents:
                continue
            if any(folder.glob(f"{prefix}-{label}-s*.pt")):
                continue
            source = next((r for r in rs if RunDir(r.path).final_weights.is_file()), None)
            if source is not None:
                export_half_precision(RunDir(source.path).final_weights, folder / f"{prefix}-{label}-s{source.seed}.pt")
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def write_report(
    runs_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    treatment: str | None = "rim",
    baseline: str | None = "lstm",
    reps: int = 2000,
    description: str = "",
    refs: dict | None = None,
    not_started: list[str] = (),
    agents: list[str] | None = None,
    activity_episodes: int = 0,
    export_weights: bool = False,
) -> dict[str, Path]:
    """Write ``scores.csv``, ``curves.png``, ``relative.png`` (if both agents have finished runs) and
    ``summary.md`` into ``out_dir`` from the run directories under ``runs_dir``.

    :param runs_dir: folder searched for run directories
    :param out_dir: the report folder (created)
    :param name: the comparison's name (default: ``out_dir``'s name)
    :param treatment: the agent label whose improvement is shown
    :param baseline: the agent label it is compared with
    :param reps: bootstrap replications of the aggregate CIs
    :param description: free text for the top of ``summary.md``
    :param refs: reference scores (default: the project's files, see ``references``)
    :param not_started: names of the grid's cells not started yet, listed in ``summary.md``
    :param agents: the labels compared in the aggregate (default: all); the others are variants
    :param activity_episodes: games played to measure the mechanism activity of finished RIM runs that have
        none yet (0: only what ``activations.json`` files hold)
    :param export_weights: write ``weights/``, one half-precision weights export per game and compared agent
    :return: the files written, by name
    :raises ValueError: no run directory under ``runs_dir``
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    runs = collect_runs(runs_dir)
    if not runs:
        raise ValueError(f"no run directories (config.yaml) under {runs_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if activity_episodes:
        measure_activity(runs, activity_episodes)
    exports = export_weights_per_game(runs, out_dir / "weights", agents) if export_weights else []
    norms = normalisers(runs, refs)
    labels = {r.label for r in runs if r.finished}
    treatment = treatment if treatment in labels else None
    baseline = baseline if baseline in labels else None
    files = {
        "scores.csv": out_dir / "scores.csv",
        "curves.png": out_dir / "curves.png",
        "summary.md": out_dir / "summary.md",
    }
    write_scores_csv(runs, files["scores.csv"], norms, root=runs_dir.parent)
    plot_curves(runs, files["curves.png"], norms)
    if treatment and baseline and improvements(runs, norms, treatment, baseline):
        files["relative.png"] = plot_relative(runs, out_dir / "relative.png", norms, treatment, baseline)
    aggregates = aggregate(runs, norms, treatment, baseline, reps, agents=agents) if labels else []
    transfers = transfer_runs(runs)
    evaluated = [r for r in runs if r.successes is not None] + transfers
    transfer_aggregates, env_aggregates = [], {}
    if evaluated:
        files["env_scores.csv"] = out_dir / "env_scores.csv"
        write_env_scores_csv(evaluated, files["env_scores.csv"], root=runs_dir.parent)
        all_norms = {**norms, **normalisers(transfers, refs)}
        for pair in sorted({(r.trained_on or r.env, r.env) for r in evaluated if r.finished}):
            found = aggregate(
                [r for r in evaluated if (r.trained_on or r.env, r.env) == pair],
                all_norms,
                treatment,
                baseline,
                reps,
                agents=agents,
            )
            if found:
                env_aggregates[pair] = found[0]
    if transfers:
        files["transfer_curves.png"] = plot_curves(transfers, out_dir / "transfer_curves.png", all_norms)
        if labels:
            transfer_aggregates = aggregate(transfers, all_norms, treatment, baseline, reps, agents=agents)
    shown = os.path.relpath(runs_dir) if runs_dir.resolve().is_relative_to(Path.cwd()) else str(runs_dir)
    files["summary.md"].write_text(
        summary_markdown(
            runs,
            norms,
            aggregates,
            treatment,
            baseline,
            name or out_dir.name,
            description,
            shown,
            not_started,
            agents,
            [p.relative_to(Path.cwd()) if p.resolve().is_relative_to(Path.cwd()) else p for p in exports],
            transfers,
            transfer_aggregates,
            env_aggregates,
        )
    )
    files.update({p.name: p for p in exports})
    return files
