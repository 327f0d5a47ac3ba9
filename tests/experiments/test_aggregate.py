"""Aggregation and report on synthetic run directories: lineage of resumed runs, normalisation,
rliable aggregates and their CIs, relative improvement, the files of the report."""

from __future__ import annotations

import csv
import math

import matplotlib.image
import numpy as np
import pytest

from rims_rl.experiments.aggregate import (
    aggregate,
    collect_runs,
    group,
    interval_estimates,
    normalisers,
    read_evaluations,
    relative_improvement,
    t_interval,
    transfer_runs,
)
from rims_rl.experiments.plots import curve, improvements
from rims_rl.experiments.references import Reference, load_references
from rims_rl.experiments.report import write_report

from .conftest import make_run

T975_2 = 4.302652729911275  # Student t quantile 0.975, 2 degrees of freedom

REFS = {
    ("minatar", "breakout"): Reference(random=1.0),
    ("minatar", "asterix"): Reference(random=0.5),
    ("atari", "pong"): Reference(random=-20.7, human=14.6),
}
FINALS = {  # game -> agent -> final score of seeds 0, 1, 2
    "MinAtar/Breakout": {"rim": [10, 12, 14], "lstm": [5, 6, 7]},
    "MinAtar/Asterix": {"rim": [2, 3, 4], "lstm": [4, 5, 6]},  # where RIM does not win
}


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for game, by_agent in FINALS.items():
        for agent, finals in by_agent.items():
            for seed, final in enumerate(finals):
                make_run(
                    root, game, agent, seed, [(50, final / 2), (100, final)], label=agent, segments=[(0, 100, 10.0)]
                )
    make_run(root, "MinAtar/Freeway", "rim", 0, [(100, 1.0)])  # one seed each: not in the 3-seed aggregate
    make_run(root, "MinAtar/Freeway", "lstm", 0, [(100, 2.0)])
    make_run(root, "Pong", "rim", 0, [(100, -10.0)])
    make_run(root, "Pong", "lstm", 0, [(100, -15.0)])
    make_run(root, "MinAtar/Breakout", "rim", 3, [(50, 99.0)], finished=False, label="rim", target=100)  # unfinished
    return root


def test_resumed_run_keeps_the_final_lineage_and_its_timing(tmp_path):
    # killed after evaluating 300, resumed from the checkpoint at 100: rows 200 and 300 are evaluated again
    run = make_run(
        tmp_path,
        "MinAtar/Breakout",
        "rim",
        0,
        [(100, 1), (200, 2), (300, 3), (200, 5), (300, 6), (400, 7)],
        segments=[(0, 300, 10.0), (100, 400, 5.0)],
    )
    steps, scores = read_evaluations(run / "evaluations.csv")
    assert steps.tolist() == [100, 200, 300, 400] and scores.tolist() == [1, 5, 6, 7]
    (r,) = collect_runs(tmp_path)
    assert r.final_score == 7 and r.best_score == 7 and r.steps == 400 and r.label == "rim"
    assert r.wall_time_s == 15.0 and r.steps_per_s == pytest.approx(600 / 15)  # redone steps count: they cost time


def test_final_score_averages_the_evaluations_of_the_last_tenth_of_training(tmp_path):
    make_run(
        tmp_path,
        "MinAtar/Breakout",
        "rim",
        0,
        [(50_000, 9.0), (850_000, 9.0), (900_000, 2.0), (950_000, 3.0), (1_000_000, 4.0), (1_000_448, 9.0)],
        target=1_000_000,
    )  # SB3 ends training on a whole rollout, a little past the target
    (r,) = collect_runs(tmp_path)
    assert r.final_score == pytest.approx((2 + 3 + 4 + 9) / 4) and r.best_score == 9


def test_normalisation_human_where_known_else_random_to_best(runs_dir):
    runs = collect_runs(runs_dir)
    norms = normalisers(runs, REFS)
    assert norms["Pong"].method == "human"
    assert norms["Pong"](-10.0) == pytest.approx((-10 + 20.7) / (14.6 + 20.7))
    assert norms["MinAtar/Breakout"].method == "best"  # random 1, best finished run 14 (the unfinished 99 ignored)
    assert norms["MinAtar/Breakout"]([1.0, 14.0]).tolist() == [0.0, 1.0]
    assert norms["MinAtar/Freeway"].low == 0.0 and norms["MinAtar/Freeway"](2.0) == 1.0  # no reference: random = 0


def test_aggregate_iqm_cis_and_probability_of_improvement(runs_dir):
    runs = collect_runs(runs_dir)
    norms = normalisers(runs, REFS)
    aggs = {a.suite: a for a in aggregate(runs, norms, "rim", "lstm", reps=200)}
    minatar = aggs["minatar"]
    assert minatar.games == ["MinAtar/Asterix", "MinAtar/Breakout"] and minatar.runs_per_game == 3
    assert "MinAtar/Freeway" in minatar.excluded
    rim = np.array(
        [(s - 0.5) / 5.5 for s in FINALS["MinAtar/Asterix"]["rim"]]
        + [(s - 1.0) / 13.0 for s in FINALS["MinAtar/Breakout"]["rim"]]
    )
    point, low, high = minatar.metrics["rim"]["IQM"]
    assert point == pytest.approx(np.mean(np.sort(rim)[1:-1]))  # 6 scores: the middle 4
    assert minatar.metrics["rim"]["mean"][0] == pytest.approx(rim.mean())
    for name in ("IQM", "median", "mean"):
        p, lo, hi = minatar.metrics["lstm"][name]
        assert rim.min() - 1 < lo < hi and lo <= p <= hi  # a real interval around the estimate
    assert rim.min() <= low < point < high <= rim.max()
    # Breakout: every RIM run beats every LSTM run (1); Asterix: none does, one tie (0.5 / 9)
    t, b, p, lo, hi = minatar.improvement
    assert (t, b) == ("rim", "lstm") and p == pytest.approx((1 + 0.5 / 9) / 2) and lo <= p <= hi
    assert aggs["atari"].games == ["Pong"] and aggs["atari"].method == {"Pong": "human"}


def test_bootstrap_cis_depend_on_the_seed_only_and_leave_numpys_generator_alone():
    # rliable 1.2 draws its resamples from NumPy's global generator, not from the random_state it is given
    rng = np.random.default_rng(3)
    scores = {"a": rng.normal(size=(5, 4)), "b": rng.normal(size=(5, 4))}
    np.random.seed(1)
    first = interval_estimates(scores, reps=300, seed=0)
    after = np.random.random()
    np.random.seed(2)  # another global state: the same intervals for the same seed
    assert interval_estimates(scores, reps=300, seed=0) == first
    assert interval_estimates(scores, reps=300, seed=1) != first
    np.random.seed(1)
    assert np.random.random() == after  # the caller's generator is where it would be without the bootstrap


def test_a_third_agent_with_fewer_seeds_is_left_out_not_the_compared_pair(runs_dir, tmp_path):
    # a grid in progress: rim_k6 has one seed per game so far; rim vs lstm keep their three
    for game in FINALS:
        make_run(runs_dir, game, "rim", 0, [(100, 8.0)], label="rim_k6")
    runs = collect_runs(runs_dir)
    norms = normalisers(runs, REFS)
    minatar = {a.suite: a for a in aggregate(runs, norms, "rim", "lstm", reps=200)}["minatar"]
    assert minatar.runs_per_game == 3 and minatar.games == ["MinAtar/Asterix", "MinAtar/Breakout"]
    assert set(minatar.metrics) == {"rim", "lstm"} and minatar.improvement[:2] == ("rim", "lstm")
    assert minatar.left_out == {"rim_k6": "1 finished run(s) on some game, 3 needed"}
    # without a compared pair, every agent holds the games back as before
    minatar = {a.suite: a for a in aggregate(runs, norms, reps=200)}["minatar"]
    assert minatar.runs_per_game == 1 and set(minatar.metrics) == {"rim", "lstm", "rim_k6"} and not minatar.left_out
    files = write_report(runs_dir, tmp_path / "results", "grid", "rim", "lstm", reps=200, refs=REFS)
    summary = files["summary.md"].read_text()
    assert "Agents left out of the aggregate (a grid in progress): rim_k6 (1 finished run(s) on some game" in summary


def test_relative_improvement_formulas(runs_dir):
    runs = collect_runs(runs_dir)
    norms = normalisers(runs, REFS)
    values = improvements(runs, norms, "rim", "lstm")
    assert values["MinAtar/Breakout"] == pytest.approx(100 * (12 - 6) / 6)
    assert values["MinAtar/Asterix"] == pytest.approx(100 * (3 - 5) / 5)
    assert values["Pong"] == pytest.approx(100 * 5 / (14.6 + 20.7))  # (T - B) / (max(human, B) - random)
    # a baseline at about 0: the random score keeps the ratio finite
    assert relative_improvement(2.0, 0.0, norms["MinAtar/Breakout"]) == pytest.approx(200.0)


def test_curve_mean_and_t_interval(runs_dir):
    runs = [r for r in collect_runs(runs_dir) if r.env == "MinAtar/Breakout" and r.label == "rim" and r.finished]
    steps, mean, ci = curve(runs)
    assert steps.tolist() == [50, 100] and mean.tolist() == [6.0, 12.0]
    assert ci == pytest.approx([T975_2 * 1 / math.sqrt(3), T975_2 * 2 / math.sqrt(3)])
    assert t_interval(np.array([[5.0]])).tolist() == [0.0]  # one seed: no band


def test_report_files(runs_dir, tmp_path):
    out = tmp_path / "results"
    files = write_report(
        runs_dir,
        out,
        "synthetic",
        "rim",
        "lstm",
        reps=100,
        refs=REFS,
        not_started=["Seaquest rim s0", "Seaquest lstm s0"],
    )
    assert set(files) == {"scores.csv", "curves.png", "relative.png", "summary.md"}
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 17 and sum(r["finished"] == "0" for r in rows) == 1
    row = next(r for r in rows if r["game"] == "MinAtar/Breakout" and r["agent"] == "rim" and r["seed"] == "0")
    assert float(row["final_score"]) == 10 and float(row["best_score"]) == 10 and row["steps"] == "100"
    assert float(row["normalised_final"]) == pytest.approx(9 / 13, abs=1e-4)
    assert float(row["wall_time_s"]) == 10 and float(row["steps_per_s"]) == 10
    for name in ("curves.png", "relative.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.01  # drawn, not blank
    summary = (out / "summary.md").read_text()
    assert "| MinAtar/Breakout | rim | 3 | 100 | 12.00 ± 2.00 |" in summary
    assert "rim has the higher mean final score on 2 of 4 games; lstm on MinAtar/Asterix, MinAtar/Freeway." in summary
    assert "IQM" in summary and "P(rim > lstm) = 0.528" in summary
    assert "Not in the aggregate: MinAtar/Freeway" in summary
    assert "| MinAtar/Breakout | rim | 3 | 50 / 100 | 99.00 |" in summary  # the unfinished run, listed apart
    assert "Not started (no run directory yet): Seaquest rim s0, Seaquest lstm s0." in summary
    assert "| Pong | -10.00 ± 0.00 | -15.00 ± 0.00 | 14% | rim | 0% (20 vs 20) |" in summary  # paper's Table 7


def test_reference_files():
    refs = load_references()
    assert refs[("atari", "pong")].random == -20.7 and refs[("atari", "pong")].human == 14.6
    assert refs[("atari", "upndown")].human == 11693.2
    minatar = {g: refs[("minatar", g)] for g in ("breakout", "spaceinvaders", "asterix", "freeway", "seaquest")}
    assert all(r.random is not None and r.random >= 0 and r.human is None for r in minatar.values())


def test_runs_whose_configurations_differ_are_never_averaged(tmp_path):
    """A preset changed between seeds (k_active 5 -> 4): the runs stay apart, each under its configuration."""
    make_run(tmp_path, "MinAtar/Breakout", "rim", 0, [(100, 10.0)], label="rim")
    make_run(tmp_path, "MinAtar/Breakout", "lstm", 0, [(100, 5.0)], label="lstm")
    changed = {"policy_kwargs": {"rim_kwargs": {"k_active": 4}}}
    make_run(tmp_path, "MinAtar/Breakout", "rim", 1, [(100, 20.0)], label="rim", hyperparameters=changed)
    runs = collect_runs(tmp_path)
    by_label = group(runs)["MinAtar/Breakout"]
    assert sorted(len(rs) for rs in by_label.values()) == [1, 1, 1] and "lstm" in by_label
    rims = [label for label in by_label if label.startswith("rim [")]
    assert len(rims) == 2 and {by_label[label][0].seed for label in rims} == {0, 1}


def test_report_prints_each_agents_parameter_counts(runs_dir, tmp_path):
    import yaml

    counts = {
        "rim": dict(core=564_416, features_extractor=100, heads=10, total=564_526),
        "lstm": dict(core=132_096, features_extractor=100, heads=10, total=132_206),
    }
    for agent, p in counts.items():
        path = runs_dir / "MinAtar-Breakout" / f"{agent}-s0" / "config.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "parameters": p}))
    write_report(runs_dir, tmp_path / "out", "synthetic", "rim", "lstm", reps=50, refs=REFS)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| rim | MinAtar/Breakout | 564,416 | 100 | 10 | 564,526 |" in summary
    assert "| lstm | MinAtar/Breakout | 132,096 | 100 | 10 | 132,206 |" in summary


def test_a_variant_is_compared_on_its_game_and_kept_out_of_the_aggregate(runs_dir, tmp_path):
    from scipy import stats

    for seed, final in enumerate([8, 9, 10]):  # rim with k=4, on Breakout only
        make_run(runs_dir, "MinAtar/Breakout", "rim", seed, [(100, final)], label="rim_k4")
    write_report(runs_dir, tmp_path / "out", "synthetic", "rim", "lstm", reps=100, refs=REFS, agents=["rim", "lstm"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "P(rim > lstm) = 0.528" in summary  # the aggregate of the compared agents, as without the variant
    assert "| rim_k4 | 0." not in summary and "Not in the aggregate: MinAtar/Freeway" in summary
    se = math.sqrt(1 / 3 + 4 / 3)  # Welch: variances 1 and 4 over 3 runs each
    dof = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)
    half = stats.t.ppf(0.975, dof) * se
    row = (
        f"| MinAtar/Breakout | rim_k4 | 3 | 9.00 ± 1.00 | 12.00 ± 2.00 (3) | -3.00 [{-3 - half:.2f}, {-3 + half:.2f}] |"
    )
    assert row in summary

    # without the compared agents named, the variant (one game) would leave the other games out
    (agg,) = [
        a for a in aggregate(collect_runs(runs_dir), normalisers(collect_runs(runs_dir), REFS)) if a.suite == "minatar"
    ]
    assert agg.games == ["MinAtar/Breakout"]


def write_env_evaluations(run, rows):
    """``env_evaluations.csv`` rows ``(env, step, mean_score, success_rate)``."""
    with open(run / "env_evaluations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["env", "timesteps", "mean_score", "std_score", "success_rate", "mean_length", "episodes", "wall_time"]
        )
        for env, step, score, success in rows:
            writer.writerow([env, step, score, 0, success, 10, 4, 1000.0])


def test_zero_shot_envs_get_the_tables_and_aggregates_of_the_training_envs(tmp_path):
    root, train_env, test_env = tmp_path / "runs", "MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-16x16-v0"
    finals = {"rim": ([0.9, 0.92, 0.94], [0.8, 0.9, 0.7]), "lstm": ([0.91, 0.93, 0.95], [0.2, 0.4, 0.3])}
    for agent, (trained, transfer) in finals.items():
        for seed, (a, b) in enumerate(zip(trained, transfer)):
            run = make_run(root, train_env, agent, seed, [(50, a / 2), (100, a)], label=agent)
            write_env_evaluations(
                run,
                [
                    (train_env, 50, a / 2, 0.5),
                    (test_env, 50, 0.0, 0.0),
                    (train_env, 100, a, 1.0),
                    (test_env, 100, b, 0.75),
                ],
            )
    runs = collect_runs(root)
    assert runs[0].successes.tolist() == [0.5, 1.0] and runs[0].final_success == 1.0
    transfers = transfer_runs(runs)
    assert {(r.trained_on, r.env) for r in transfers} == {(train_env, test_env)} and len(transfers) == 6
    assert sorted(r.final_score for r in transfers if r.label == "lstm") == [0.2, 0.3, 0.4]
    assert normalisers(transfers)[test_env].method == "raw"

    out = tmp_path / "results"
    files = write_report(root, out, "ood", "rim", "lstm", reps=100)
    assert {"env_scores.csv", "transfer_curves.png"} <= set(files)
    rows = list(csv.DictReader(open(out / "env_scores.csv")))
    assert len(rows) == 12 and {r["env"] for r in rows} == {train_env, test_env}
    row = next(r for r in rows if r["env"] == test_env and r["agent"] == "rim" and r["seed"] == "1")
    assert (row["trained_on"], float(row["final_score"]), float(row["final_success"])) == (train_env, 0.9, 0.75)
    summary = (out / "summary.md").read_text()
    assert f"| {train_env} | {test_env} | rim | 3 | 0.75 ± 0.00 | 0.80 ± 0.10 | 0.800 [" in summary
    assert f"| {train_env} | {train_env} (training env) | lstm | 3 | 1.00 ± 0.00 | 0.93 ± 0.02 |" in summary
    assert "## Aggregate: zero-shot transfer, minigrid" in summary
    assert "P(rim > lstm) = 1.000" in summary  # every rim run beats every lstm run zero-shot
    assert "MiniGrid returns as they are" in summary
