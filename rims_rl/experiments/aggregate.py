"""Read finished and unfinished run directories into per-run records, normalise their scores and
aggregate them across games with stratified-bootstrap confidence intervals (``rliable``).

Everything here reads run directories only (``config.yaml``, ``evaluations.csv`` and, when the grid
runner trained the run, ``cell.yaml`` and ``timing.json``; see :mod:`rims_rl.utils.run_dir`), so it
works on any folder of runs made by ``scripts/train_ppo.py`` or ``scripts/compare.py``. Runs are
averaged together only when their resolved configurations are the same (:func:`collect_runs`).

A run with ``env_evaluations.csv`` (MiniGrid runs, runs with zero-shot evaluation envs) has the success rate of
each evaluation, and :func:`transfer_runs` makes one :class:`Run` per zero-shot evaluation env from it (its
``env`` the env played, ``trained_on`` the training env), so every table and aggregate applies to them too.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..utils.run_dir import (
    ACTIVITY_FILE,
    CELL_FILE,
    ENV_EVALUATIONS_FILE,
    EVALUATIONS_FILE,
    TIMING_FILE,
    RunDir,
    config_id,
    read_timing,
)
from .references import Reference, game_key, load_references

#: the last share of a run's training whose evaluations are averaged into its final score
FINAL_WINDOW = 0.1


@dataclass
class Run:
    """One run directory.

    :param path: the run directory
    :param env: the game as the run was started (``MinAtar/Breakout``)
    :param kind: ``"atari"`` or ``"minatar"``
    :param label: the agent's label in its grid (its preset name otherwise)
    :param agent: the preset (``rim``, ``lstm``, ``ppo``)
    :param seed: the seed
    :param target_steps: the run's ``n_timesteps``
    :param timesteps: evaluation steps, ``[E]``
    :param scores: mean raw score of each evaluation, ``[E]``
    :param finished: the run trained to its end (``final_model.zip`` or the grid's ``done.json`` present)
    :param wall_time_s: training seconds over all segments (``None`` without ``timing.json``)
    :param steps_per_s: env steps per training second (``None`` without ``timing.json``)
    :param trained_steps: env steps reached so far according to ``timing.json`` (0 without it)
    :param config_id: short hash of the resolved configuration without the seed
        (:func:`~rims_rl.utils.run_dir.config_id`); runs of one label are grouped only when it is equal
    :param parameters: the policy's parameter counts by part (``config.yaml``'s ``parameters``; ``None`` for
        runs made before they were recorded)
    :param activity: how often each mechanism of its RIM actor core is active, ``[U]`` (``activations.json``,
        :func:`rims_rl.rl.evaluation.mechanism_activity`; ``None`` where not measured)
    :param successes: success rate of each evaluation, ``[E]`` (``env_evaluations.csv``; ``None`` without it)
    :param trained_on: for a zero-shot evaluation (:func:`transfer_runs`), the env the agent was trained on
        (``env`` is the one played); ``None`` for a training run
    """

    path: Path
    env: str
    kind: str
    label: str
    agent: str
    seed: int
    target_steps: int
    timesteps: np.ndarray
    scores: np.ndarray
    finished: bool
    wall_time_s: float | None = None
    steps_per_s: float | None = None
    trained_steps: int = 0
    config_id: str = ""
    parameters: dict | None = None
    activity: list[float] | None = None
    successes: np.ndarray | None = None
    trained_on: str | None = None

    @property
    def steps(self) -> int:
        """The last evaluated step (the end of training for a finished run), or further where
        ``timing.json`` says the run got further."""
        return max(int(self.timesteps[-1]) if len(self.timesteps) else 0, self.trained_steps)

    @property
    def final_score(self) -> float:
        """Mean of the evaluations in the last ``FINAL_WINDOW`` (10%) of training: at steps >= 0.9 × the
        target, or × the last evaluated step if earlier (NaN before the first evaluation). One
        evaluation of a few games is a noisy draw (a MinAtar SpaceInvaders run here scored 36.9 and
        65.2 one update apart), so the score at the end of training averages the evaluations near it:
        with evaluations every 50k of 1M steps, those at 900k, 950k, 1M and the end."""
        if not len(self.scores):
            return math.nan
        return float(np.mean(self.scores[self._final_window()]))

    def _final_window(self) -> np.ndarray:
        end = min(self.target_steps, int(self.timesteps[-1]))
        return self.timesteps >= (1 - FINAL_WINDOW) * end

    @property
    def final_success(self) -> float:
        """The mean success rate of the evaluations of :attr:`final_score` (NaN without success rates)."""
        if self.successes is None or not len(self.successes):
            return math.nan
        return float(np.mean(self.successes[self._final_window()]))

    @property
    def best_score(self) -> float:
        """The best mean score of any evaluation (NaN before the first one)."""
        return float(np.max(self.scores)) if len(self.scores) else math.nan


def read_evaluations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation steps and mean scores from ``evaluations.csv``, keeping the lineage of the final
    model: after a resume from an older checkpoint the file repeats steps, and every row from the
    killed attempt at or after the step the resumed run evaluates again is dropped.

    :return: ``timesteps [E]``, ``mean_score [E]``, increasing in steps
    """
    rows: list[tuple[int, float]] = []
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step, score = int(row["timesteps"]), float(row["mean_score"])
                while rows and rows[-1][0] >= step:
                    rows.pop()
                rows.append((step, score))
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=float)


def read_env_evaluations(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per env, the steps, mean scores and success rates of ``env_evaluations.csv``, keeping the final model's
    lineage as :func:`read_evaluations` does.

    :return: ``{env: (timesteps [E], mean_score [E], success_rate [E])}`` (empty without the file)
    """
    rows: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                kept = rows[row["env"]]
                step = int(row["timesteps"])
                while kept and kept[-1][0] >= step:
                    kept.pop()
                kept.append((step, float(row["mean_score"]), float(row["success_rate"])))
    return {
        env: (np.array([k[0] for k in r], np.int64), np.array([k[1] for k in r]), np.array([k[2] for k in r]))
        for env, r in rows.items()
    }


def transfer_runs(runs: list[Run]) -> list[Run]:
    """One :class:`Run` per training run and zero-shot evaluation env in its ``env_evaluations.csv``: ``env`` the
    env played, ``trained_on`` the training env, the rest (label, seed, steps, status) the training run's.
    """
    out = []
    for r in runs:
        for env, (steps, scores, successes) in read_env_evaluations(r.path / ENV_EVALUATIONS_FILE).items():
            if env == r.env:
                continue
            out.append(
                dataclasses.replace(
                    r,
                    env=env,
                    kind=game_key(env)[0],
                    timesteps=steps,
                    scores=scores,
                    successes=successes,
                    trained_on=r.env,
                    activity=None,
                )
            )
    return sorted(out, key=lambda r: (r.trained_on, r.env, r.label, r.seed))


def read_run(run_dir: Path) -> Run:
    """One run directory as a :class:`Run`.

    :raises FileNotFoundError: no ``config.yaml``
    """
    run_dir = Path(run_dir)
    config = RunDir(run_dir).read_config()
    cell = yaml.safe_load((run_dir / CELL_FILE).read_text()) if (run_dir / CELL_FILE).is_file() else {}
    timesteps, scores = read_evaluations(run_dir / EVALUATIONS_FILE)
    by_env = read_env_evaluations(run_dir / ENV_EVALUATIONS_FILE).get(config["env"])
    successes = None
    if by_env is not None and np.array_equal(by_env[0], timesteps):
        successes = by_env[2]
    segments = read_timing(run_dir / TIMING_FILE)
    seconds = sum(float(s["seconds"]) for s in segments)
    steps = sum(int(s["end_step"]) - int(s["start_step"]) for s in segments)
    return Run(
        path=run_dir,
        env=config["env"],
        kind=game_key(config["env"])[0],
        label=cell.get("label", config["agent"]),
        agent=config["agent"],
        seed=int(config["seed"]),
        target_steps=int(config["hyperparameters"]["n_timesteps"]),
        timesteps=timesteps,
        scores=scores,
        finished=RunDir(run_dir).status() == "finished",
        wall_time_s=seconds if segments else None,
        steps_per_s=steps / seconds if seconds > 0 else None,
        trained_steps=int(segments[-1]["end_step"]) if segments else 0,
        config_id=config_id(config),
        parameters=config.get("parameters"),
        activity=json.loads((run_dir / ACTIVITY_FILE).read_text())["frequency"]
        if (run_dir / ACTIVITY_FILE).is_file()
        else None,
        successes=successes,
    )


def collect_runs(runs_dir: str | Path) -> list[Run]:
    """Every run directory (a folder with ``config.yaml``) below ``runs_dir``, sorted by game, label, seed.

    Runs of one game and label whose resolved configurations differ (a preset changed between them)
    are never averaged together: each configuration's runs get the label ``<label> [<config_id>]``.
    """
    runs = [read_run(p.parent) for p in Path(runs_dir).rglob("config.yaml") if "checkpoints" not in p.parts]
    variants = defaultdict(set)
    for r in runs:
        variants[(r.env, r.label)].add(r.config_id)
    for r in runs:
        if len(variants[(r.env, r.label)]) > 1:
            r.label = f"{r.label} [{r.config_id}]"
    return sorted(runs, key=lambda r: (r.kind, r.env, r.label, r.seed))


SCORE_FIELDS = (
    "game",
    "agent",
    "seed",
    "final_score",
    "best_score",
    "normalised_final",
    "steps",
    "target_steps",
    "finished",
    "evaluations",
    "wall_time_s",
    "steps_per_s",
    "preset",
    "run_dir",
)


@dataclass
class Normaliser:
    """``(score - low) / scale`` for one game.

    :param low: the random policy's score (0 where unknown)
    :param scale: ``human - random`` (``method="human"``) or ``best run - random`` (``"best"``)
    :param method: ``"human"``, ``"best"`` or ``"raw"`` (MiniGrid)
    :param reference: the game's reference scores
    """

    low: float
    scale: float
    method: str
    reference: Reference = field(default_factory=Reference)

    def __call__(self, score):
        return (np.asarray(score, dtype=float) - self.low) / self.scale


def normalisers(runs: list[Run], refs: dict | None = None) -> dict[str, Normaliser]:
    """One :class:`Normaliser` per game.

    Human-normalised, ``(s - random) / (human - random)``, where both references are known (Atari); MiniGrid
    returns as they are (``"raw"``: 0 is failure, 1 an instant success); otherwise
    ``(s - random) / (best - random)`` with ``best`` the highest final score of any finished
    run of the game in this comparison (every agent's), so 0 is the random policy and 1 the best run.

    :param runs: the runs
    :param refs: references keyed by :func:`game_key` (default: the project's files)
    """
    refs = load_references() if refs is None else refs
    out = {}
    for env in sorted({r.env for r in runs}):
        if game_key(env)[0] == "minigrid":
            out[env] = Normaliser(0.0, 1.0, "raw", Reference(source="MiniGrid: 0 on failure, up to 1 on success"))
            continue
        ref = refs.get(game_key(env), Reference())
        low = ref.random if ref.random is not None else 0.0
        if ref.random is not None and ref.human is not None and ref.human != ref.random:
            out[env] = Normaliser(low, ref.human - ref.random, "human", ref)
            continue
        finals = [r.final_score for r in runs if r.env == env and r.finished and not math.isnan(r.final_score)]
        best = max(finals) if finals else low + 1.0
        scale = best - low if best - low > 1e-9 else max(abs(low), 1.0)
        out[env] = Normaliser(low, scale, "best", ref)
    return out


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _relative(r: Run, root: Path | None) -> Path:
    return r.path.relative_to(root) if root and r.path.is_relative_to(root) else r.path


def write_scores_csv(runs: list[Run], path: Path, norms: dict[str, Normaliser], root: Path | None = None) -> None:
    """``scores.csv``: one row per run (see :data:`SCORE_FIELDS`)."""
    rows = [
        dict(
            game=r.env,
            agent=r.label,
            seed=r.seed,
            final_score=_num(r.final_score),
            best_score=_num(r.best_score),
            normalised_final=_num(float(norms[r.env](r.final_score))),
            steps=r.steps,
            target_steps=r.target_steps,
            finished=int(r.finished),
            evaluations=len(r.scores),
            wall_time_s=_num(r.wall_time_s, 1),
            steps_per_s=_num(r.steps_per_s, 1),
            preset=r.agent,
            run_dir=_relative(r, root),
        )
        for r in runs
    ]
    _write_csv(path, SCORE_FIELDS, rows)


ENV_SCORE_FIELDS = (
    "trained_on",
    "env",
    "agent",
    "seed",
    "final_score",
    "final_success",
    "best_score",
    "steps",
    "finished",
    "evaluations",
    "run_dir",
)


def write_env_scores_csv(runs: list[Run], path: Path, root: Path | None = None) -> None:
    """``env_scores.csv``: one row per run and env it was evaluated on, with success rates (see
    :data:`ENV_SCORE_FIELDS`): the training runs with success rates and the zero-shot ones of :func:`transfer_runs`."""
    rows = [
        dict(
            trained_on=r.trained_on or r.env,
            env=r.env,
            agent=r.label,
            seed=r.seed,
            final_score=_num(r.final_score),
            final_success=_num(r.final_success),
            best_score=_num(r.best_score),
            steps=r.steps,
            finished=int(r.finished),
            evaluations=len(r.scores),
            run_dir=_relative(r, root),
        )
        for r in runs
    ]
    _write_csv(path, ENV_SCORE_FIELDS, rows)


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def group(runs: list[Run], finished_only: bool = True) -> dict[str, dict[str, list[Run]]]:
    """``{game: {label: [runs sorted by seed]}}``."""
    out: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.finished or not finished_only:
            out[r.env][r.label].append(r)
    return {g: {a: sorted(rs, key=lambda r: r.seed) for a, rs in by.items()} for g, by in out.items()}


def t_interval(values: np.ndarray, axis: int = 0, confidence: float = 0.95) -> np.ndarray:
    """Half-width of the Student-t confidence interval of the mean along ``axis`` (0 for one value)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    if n < 2:
        return np.zeros(np.delete(values.shape, axis))
    return stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)


@dataclass
class Aggregate:
    """Aggregate metrics of one suite of games (``atari`` or ``minatar``).

    :param suite: the suite
    :param games: the games included (each with ``runs_per_game`` finished runs of every agent)
    :param excluded: games left out, with the reason
    :param runs_per_game: runs of each agent on each included game
    :param metrics: ``{label: {"IQM": (point, low, high), "median": ..., "mean": ...}}``
    :param improvement: ``(treatment, baseline, point, low, high)``: probability of improvement, or ``None``
    :param method: normalisation of each included game
    :param left_out: agents other than the compared pair left out (fewer finished runs), with the reason
    """

    suite: str
    games: list[str]
    excluded: dict[str, str]
    runs_per_game: int
    metrics: dict[str, dict[str, tuple[float, float, float]]]
    improvement: tuple[str, str, float, float, float] | None
    method: dict[str, str]
    left_out: dict[str, str] = field(default_factory=dict)


def _bootstrap(score_dict: dict, func, reps: int, seed: int) -> tuple[dict, dict]:
    """``rliable.library.get_interval_estimates`` with a bootstrap that depends on ``seed`` only.

    rliable 1.2's stratified bootstraps draw their resamples with ``np.random.choice``, so the ``random_state``
    they are given does not make their intervals reproducible: NumPy's global generator is seeded for the call
    and its state put back after it.

    :param score_dict: per key, what rliable takes (a ``[runs, tasks]`` array, or a list of them)
    :param func: the statistic(s) of one resample
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :return: rliable's ``(point_estimates, interval_estimates)``
    """
    import warnings

    from rliable import library as rly

    warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)  # arch, inside rliable
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return rly.get_interval_estimates(score_dict, func, reps=reps, random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(state)


def interval_estimates(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """IQM, median and mean with 95% stratified-bootstrap CIs (rliable, Agarwal et al. 2021).

    :param scores: per agent, normalised scores ``[runs, tasks]``
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :return: ``{agent: {"IQM": (point, low, high), "median": ..., "mean": ...}}``
    """
    from rliable import metrics

    funcs = {"IQM": metrics.aggregate_iqm, "median": metrics.aggregate_median, "mean": metrics.aggregate_mean}
    point, interval = _bootstrap(scores, lambda x: np.array([f(x) for f in funcs.values()]), reps, seed)
    return {
        a: {
            name: (float(point[a][i]), float(interval[a][0, i]), float(interval[a][1, i]))
            for i, name in enumerate(funcs)
        }
        for a in scores
    }


def aggregate(
    runs: list[Run],
    norms: dict[str, Normaliser],
    treatment: str | None = None,
    baseline: str | None = None,
    reps: int = 2000,
    seed: int = 0,
    agents: list[str] | None = None,
) -> list[Aggregate]:
    """IQM, median and mean of normalised final scores per suite, with 95% stratified-bootstrap CIs
    (rliable, Agarwal et al. 2021), and the probability that ``treatment`` beats ``baseline``.

    rliable needs a full ``[runs, games]`` matrix per agent: a suite includes the games on which
    ``treatment`` and ``baseline`` (every agent, without that pair) have at least ``n`` finished runs,
    ``n`` being the largest count that some game reaches for them (a one-seed learning-curve game beside
    three-seed games is left out and listed); another agent with fewer than ``n`` runs on an included
    game (a grid in progress) is left out of the suite and listed, rather than holding the pair back.

    :param runs: the runs (unfinished ones are ignored)
    :param norms: per-game normalisers
    :param treatment: label of the agent whose improvement is measured
    :param baseline: label of the agent it is compared with
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :param agents: the labels compared (default: every label with a finished run); a variant run on some
        games only (an ablation) is left out, or it would leave out every game it was not run on
    """
    from rliable import metrics

    grouped = group(runs)
    labels = sorted({r.label for r in runs if r.finished and (agents is None or r.label in agents)})
    pair = [a for a in (treatment, baseline) if a in labels]
    pair = pair if len(pair) == 2 and treatment != baseline else labels
    out = []
    for suite in sorted({r.kind for r in runs if r.finished}):
        games = sorted(g for g in grouped if game_key(g)[0] == suite)
        counts = {g: min(len(grouped[g].get(a, [])) for a in pair) for g in games}
        n = max(counts.values()) if counts else 0
        if n == 0:
            continue
        included = [g for g in games if counts[g] >= n]
        excluded = {g: f"{counts[g]} finished run(s) for some agent, {n} needed" for g in games if counts[g] < n}
        fewest = {a: min(len(grouped[g].get(a, [])) for g in included) for a in labels}
        left_out = {a: f"{fewest[a]} finished run(s) on some game, {n} needed" for a in labels if fewest[a] < n}
        members = [a for a in labels if a not in left_out]
        scores = {
            a: np.stack([norms[g]([r.final_score for r in grouped[g][a][:n]]) for g in included], axis=1)
            for a in members
        }  # [runs, games]
        table = interval_estimates(scores, reps, seed)
        improvement = None
        if treatment in members and baseline in members and treatment != baseline:
            key = f"{treatment},{baseline}"
            p, ci = _bootstrap(
                {key: [scores[treatment], scores[baseline]]}, metrics.probability_of_improvement, reps, seed
            )
            low, high = np.ravel(ci[key])[:2]
            improvement = (treatment, baseline, float(np.ravel(p[key])[0]), float(low), float(high))
        method = {g: norms[g].method for g in included}
        out.append(Aggregate(suite, included, excluded, n, table, improvement, method, left_out))
    return out


def relative_improvement(treatment: float, baseline: float, norm: Normaliser) -> float:
    """Improvement of ``treatment`` over ``baseline`` in percent.

    With human and random scores (Wang et al. 2016): ``(T - B) / (max(human, B) - random)``;
    otherwise ``(T - B) / max(|B|, |random|)`` (the random score where the baseline scores about 0).
    """
    ref = norm.reference
    if norm.method == "human":
        denom = max(ref.human, baseline) - ref.random
    else:
        denom = max(abs(baseline), abs(ref.random or 0.0))
    return 100.0 * (treatment - baseline) / denom if denom > 1e-9 else math.nan
