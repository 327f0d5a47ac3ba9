"""Comparison grids as YAML (``experiments/*.yaml``): agents × games × seeds, loaded into dataclasses
that reject unknown keys, expanded into one :class:`Cell` (one training run) per combination.

A grid file::

    name: minatar_cpu                # runs go to runs/<name>/, the report to results/<name>/
    agents: [rim, lstm]              # presets of agents/ ...
    # agents: {rim_k4: {agent: rim, hp: [policy_kwargs.rim_kwargs.k_active=4]}, lstm: {}}   # ... or labelled variants
    # agents: {rim: {}, lstm: {}, rim_k4: {agent: rim, hp: {...}, games: [MinAtar/Breakout], seeds: 3}}
    #   ... a variant may run on some games and seeds only (an ablation); the report's aggregate leaves it out
    seeds: 3                         # 0, 1, 2 (or a list)
    timesteps: 1_000_000
    eval_freq: 50_000                # evaluation schedule: env steps between raw-score evaluations ...
    eval_episodes: 10                # ... and whole games per evaluation
    hp: [n_envs=8]                   # overrides for every agent (key=value list or a mapping: {n_envs: 8})
    games:
      - MinAtar/Breakout
      - {env: Pong, timesteps: 2_000_000, seeds: [0]}   # per-game overrides
      - {env: MiniGrid-Empty-5x5-v0, eval_envs: [MiniGrid-Empty-16x16-v0]}   # also played zero-shot at each evaluation
    workers: 2                       # cells trained at a time (local process pool)
    threads_per_cell: 1              # torch threads of each cell
    device: cpu
    report: {treatment: rim, baseline: lstm}   # also: bootstrap_reps, activity_episodes (5), export_weights (false)

Every key a game entry may override: ``timesteps``, ``seeds``, ``eval_freq``, ``eval_episodes``,
``checkpoint_freq``, ``n_envs``, ``hp``; and a game entry may list ``eval_envs``: envs with the same observation
and action spaces that its runs also play zero-shot at each evaluation (``env_evaluations.csv``; not part of a
run's identity; an env is the evaluation env of one game at most, so the report can name its training env).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..rl.config import AGENTS, load_agent
from ..rl.envs import resolve_env
from ..utils.config import as_overrides, check_keys, merge

#: keys a game entry may set, besides ``env``
GAME_KEYS = ("timesteps", "seeds", "eval_freq", "eval_episodes", "checkpoint_freq", "n_envs", "hp", "eval_envs")


def _fail(source: str, message: str) -> None:
    raise ValueError(f"{source}: {message}")


def _check_keys(data: dict, allowed: tuple[str, ...] | list[str], where: str, source: str) -> None:
    try:
        check_keys(data, sorted(allowed), where=where)
    except ValueError as e:
        _fail(source, str(e))


def _hp(value: Any, where: str, source: str) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` or a mapping ``{a: 1, b: {c: x}}``, as the nested mapping of overrides both mean
    (:func:`rims_rl.utils.config.as_overrides`)."""
    if value is not None and not isinstance(value, (list, dict)):
        _fail(source, f"hp in {where} must be a list of key=value strings or a mapping, got {value!r}")
    try:
        return as_overrides(value, f"hp in {where}")
    except ValueError as e:
        _fail(source, str(e))
    return {}


def _seeds(value: Any, where: str, source: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            _fail(source, f"seeds in {where} repeat: {value}")
        return list(value)
    _fail(source, f"seeds in {where} must be a positive count or a non-empty list of integers, got {value!r}")
    return []


def _eval_envs(value: Any, env: str, where: str, source: str) -> tuple[str, ...]:
    """The zero-shot evaluation envs of a game: distinct env names, not the game itself."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        _fail(source, f"eval_envs in {where} must be a list of env names, got {value!r}")
    if len(set(value)) != len(value) or env in value:
        _fail(source, f"eval_envs in {where} must be distinct envs other than {env!r}, got {value!r}")
    for name in value:
        try:
            resolve_env(name)
        except ValueError as e:
            _fail(source, f"eval_envs in {where}: {e}")
    return tuple(value)


def _flag(value: Any, name: str, source: str) -> bool:
    if not isinstance(value, bool):
        _fail(source, f"report.{name} must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, name: str, where: str, source: str, zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero else 1):
        _fail(source, f"{name} in {where} must be a {'non-negative' if zero else 'positive'} integer, got {value!r}")
    return value


@dataclass(frozen=True)
class AgentSpec:
    """One compared agent: a label (used in run directories and the report) and its preset.

    :param label: the name shown in the report (``rim``, ``rim_k4``)
    :param agent: the preset in ``agents/`` (``rim``, ``lstm``, ``ppo``)
    :param hp: overrides for this agent only, a nested mapping (``{"policy_kwargs": {"rim_kwargs": {"k_active": 4}}}``)
    :param games: the games it runs on (empty: every game of the grid); an agent on some games only is a
        variant (an ablation), shown per game in the report but not in its aggregate
    :param seeds: the seeds it runs with, among each game's (``None``: all of them)
    """

    label: str
    agent: str
    hp: dict[str, Any] = field(default_factory=dict)
    games: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None

    @property
    def on_every_game(self) -> bool:
        """Runs on every game (and seed) of the grid: one of the compared agents, not a variant."""
        return not self.games and self.seeds is None

    def runs(self, env: str, seed: int) -> bool:
        """Whether this agent has a cell for ``env`` and ``seed``."""
        return (not self.games or env in self.games) and (self.seeds is None or seed in self.seeds)


@dataclass(frozen=True)
class GameSpec:
    """One game of the grid with its budget and evaluation schedule.

    :param env: the env name given to ``train`` (``MinAtar/Breakout``, ``Pong``)
    :param kind: ``"atari"`` or ``"minatar"``
    :param timesteps: env steps per run
    :param seeds: the seeds run for every agent
    :param eval_freq: env steps between evaluations (``None``: the preset's)
    :param eval_episodes: whole games per evaluation (``None``: the preset's)
    :param checkpoint_freq: env steps between checkpoints (``None``: the preset's)
    :param n_envs: parallel envs (``None``: the preset's)
    :param hp: overrides for this game, a nested mapping
    :param eval_envs: envs played zero-shot at each evaluation (same spaces as ``env``)
    """

    env: str
    kind: str
    timesteps: int
    seeds: tuple[int, ...]
    eval_freq: int | None = None
    eval_episodes: int | None = None
    checkpoint_freq: int | None = None
    n_envs: int | None = None
    hp: dict[str, Any] = field(default_factory=dict)
    eval_envs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One training run of the grid.

    :param label: the agent's label
    :param agent: the preset
    :param env: the game
    :param seed: the seed
    :param timesteps: env steps
    :param n_envs: parallel envs (``None``: the preset's)
    :param hp: every override (grid, game, agent, evaluation schedule; later wins), one nested mapping, given
        as it is to :func:`rims_rl.rl.config.load_agent` (through ``rims_rl.rl.training.resolve_config`` and
        ``train``) and written to the run's ``cell.yaml``
    :param run_dir: ``<runs_dir>/<game>/<label>-s<seed>``
    :param eval_envs: envs also played zero-shot at each evaluation (``train``'s ``eval_envs``; not in ``hp``)
    """

    label: str
    agent: str
    env: str
    seed: int
    timesteps: int
    n_envs: int | None
    hp: dict[str, Any]
    run_dir: Path
    eval_envs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.env} {self.label} s{self.seed}"


@dataclass
class GridConfig:
    """A comparison grid (see the module docstring for the YAML form).

    :param name: names ``runs/<name>`` and ``results/<name>``
    :param agents: the compared agents
    :param games: the games, each with its budget and seeds
    :param workers: cells trained at a time
    :param threads_per_cell: torch threads per cell
    :param device: torch device of every cell
    :param runs_dir: where run directories go
    :param results_dir: where the report goes
    :param treatment: the agent label whose improvement ``relative.png`` shows ...
    :param baseline: ... over this one
    :param bootstrap_reps: stratified-bootstrap replications of the aggregate CIs
    :param activity_episodes: games played to measure each finished RIM run's mechanism activity (0: none)
    :param export_weights: the report writes one half-precision weights export per game and compared agent
    :param description: free text, copied into the report
    :param hp: overrides for every agent and game, a nested mapping
    """

    name: str
    agents: list[AgentSpec]
    games: list[GameSpec]
    workers: int = 1
    threads_per_cell: int = 1
    device: str = "cpu"
    runs_dir: Path = Path("runs")
    results_dir: Path = Path("results")
    treatment: str | None = None
    baseline: str | None = None
    bootstrap_reps: int = 2000
    activity_episodes: int = 5
    export_weights: bool = False
    description: str = ""
    hp: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="config", repr=False)

    TOP_KEYS = (
        "name",
        "description",
        "agents",
        "games",
        "seeds",
        "timesteps",
        "eval_freq",
        "eval_episodes",
        "checkpoint_freq",
        "n_envs",
        "hp",
        "workers",
        "threads_per_cell",
        "device",
        "runs_dir",
        "results_dir",
        "report",
    )
    REPORT_KEYS = ("treatment", "baseline", "bootstrap_reps", "activity_episodes", "export_weights")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", root: Path | None = None) -> GridConfig:
        """Validate a grid mapping.

        :param data: the parsed YAML
        :param source: named in error messages
        :param root: relative ``runs_dir``/``results_dir`` are taken from here (default: the current directory)
        :raises ValueError: unknown keys, agents or games, or values of the wrong type, in one line
        """
        if not isinstance(data, dict):
            _fail(source, f"a grid config is a mapping, got {type(data).__name__}")
        _check_keys(data, cls.TOP_KEYS, "the grid", source)
        for key in ("name", "agents", "games"):
            if key not in data:
                _fail(source, f"missing key {key!r}")
        name = data["name"]
        if not isinstance(name, str) or not name or "/" in name:
            _fail(source, f"name must be a non-empty string without '/', got {name!r}")

        agents = cls._agents(data["agents"], source)
        top_hp = _hp(data.get("hp"), "the grid", source)
        defaults = {"timesteps": data.get("timesteps"), "seeds": data.get("seeds", 1)}
        for key in ("eval_freq", "eval_episodes", "checkpoint_freq", "n_envs"):
            defaults[key] = data.get(key)
        games = cls._games(data["games"], defaults, source)
        envs = [g.env for g in games]
        for agent in agents:
            unknown = [g for g in agent.games if g not in envs]
            if unknown:
                _fail(source, f"agent {agent.label!r} names games {unknown} that are not in the grid's games {envs}")

        report = data.get("report") or {}
        if not isinstance(report, dict):
            _fail(source, f"report must be a mapping, got {report!r}")
        _check_keys(report, cls.REPORT_KEYS, "report", source)
        labels = [a.label for a in agents]
        treatment = report.get("treatment", "rim" if "rim" in labels else None)
        baseline = report.get("baseline", "lstm" if "lstm" in labels else None)
        for key, value in (("treatment", treatment), ("baseline", baseline)):
            if value is not None and value not in labels:
                _fail(source, f"report.{key} {value!r} is not one of the agents {labels}")
        root = Path(root) if root is not None else Path.cwd()
        runs_dir = root / data.get("runs_dir", f"runs/{name}")
        results_dir = root / data.get("results_dir", f"results/{name}")
        config = cls(
            name=name,
            agents=agents,
            games=games,
            workers=_positive_int(data.get("workers", 1), "workers", "the grid", source),
            threads_per_cell=_positive_int(data.get("threads_per_cell", 1), "threads_per_cell", "the grid", source),
            device=str(data.get("device", "cpu")),
            runs_dir=runs_dir,
            results_dir=results_dir,
            treatment=treatment,
            baseline=baseline,
            bootstrap_reps=_positive_int(report.get("bootstrap_reps", 2000), "bootstrap_reps", "report", source),
            activity_episodes=_positive_int(
                report.get("activity_episodes", 5), "activity_episodes", "report", source, zero=True
            ),
            export_weights=_flag(report.get("export_weights", False), "export_weights", source),
            description=str(data.get("description", "")),
            hp=top_hp,
            source=source,
        )
        config.cells()  # resolves every cell's preset now: a bad --hp key fails before anything runs
        return config

    @staticmethod
    def _agents(value: Any, source: str) -> list[AgentSpec]:
        if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
            if len(value) != len(set(value)):
                _fail(source, f"agents repeat: {value}")
            value = {a: {} for a in value}
        if not isinstance(value, dict) or not value:
            _fail(
                source, f"agents must be a non-empty list of presets or a mapping label -> {{agent, hp}}, got {value!r}"
            )
        out = []
        for label, spec in value.items():
            spec = spec or {}
            if not isinstance(label, str) or not label or "/" in label or not isinstance(spec, dict):
                _fail(source, f"bad agent entry {label!r}: {spec!r}")
            _check_keys(spec, ("agent", "hp", "games", "seeds"), f"agent {label!r}", source)
            preset = spec.get("agent", label)
            if preset not in AGENTS:
                _fail(source, f"unknown agent {preset!r}; known: {', '.join(AGENTS)}")
            games = spec.get("games") or []
            if not isinstance(games, list) or not all(isinstance(g, str) for g in games):
                _fail(source, f"games of agent {label!r} must be a list of game names, got {games!r}")
            seeds = spec.get("seeds")
            seeds = tuple(_seeds(seeds, f"agent {label!r}", source)) if seeds is not None else None
            out.append(AgentSpec(label, preset, _hp(spec.get("hp"), f"agent {label!r}", source), tuple(games), seeds))
        return out

    @staticmethod
    def _games(value: Any, defaults: dict[str, Any], source: str) -> list[GameSpec]:
        if not isinstance(value, list) or not value:
            _fail(source, f"games must be a non-empty list, got {value!r}")
        out, seen = [], set()
        for entry in value:
            entry = {"env": entry} if isinstance(entry, str) else entry
            if not isinstance(entry, dict) or "env" not in entry:
                _fail(source, f"a game is a name or a mapping with 'env', got {entry!r}")
            env = entry["env"]
            _check_keys(entry, ("env",) + GAME_KEYS, f"game {env!r}", source)
            try:
                kind, _ = resolve_env(env)
            except ValueError as e:
                _fail(source, str(e))
            if env in seen:
                _fail(source, f"game {env!r} listed twice")
            seen.add(env)
            where = f"game {env!r}"
            merged = {**defaults, **{k: v for k, v in entry.items() if k != "hp"}}
            if merged["timesteps"] is None:
                _fail(source, f"no timesteps for {where} (set timesteps at the top or for the game)")
            optional = {}
            for key in ("eval_freq", "checkpoint_freq"):
                if merged[key] is not None:
                    optional[key] = _positive_int(merged[key], key, where, source, zero=True)
            for key in ("eval_episodes", "n_envs"):
                if merged[key] is not None:
                    optional[key] = _positive_int(merged[key], key, where, source)
            out.append(
                GameSpec(
                    env=env,
                    kind=kind,
                    timesteps=_positive_int(merged["timesteps"], "timesteps", where, source),
                    seeds=tuple(_seeds(merged["seeds"], where, source)),
                    hp=_hp(entry.get("hp"), where, source),
                    eval_envs=_eval_envs(entry.get("eval_envs"), env, where, source),
                    **optional,
                )
            )
        evaluated = [e for g in out for e in g.eval_envs]
        repeated = sorted({e for e in evaluated if evaluated.count(e) > 1} | (set(evaluated) & seen))
        if repeated:
            _fail(source, f"eval_envs {repeated} are listed for more than one game (or are trained on): one game each")
        return out

    def cells(self) -> list[Cell]:
        """Every run of the grid, seed-major: the first seed of every game (in the listed order) for
        every agent, then the second seed..., so that an unfinished grid already holds complete seeds
        for the report. Each cell's overrides are resolved against its agent's preset.

        :raises ValueError: an override the preset refuses
        """
        cells, checked = [], set()
        for i in range(max(len(g.seeds) for g in self.games)):
            for game in self.games:
                if i >= len(game.seeds):
                    continue
                seed = game.seeds[i]
                schedule = {
                    k: getattr(game, k)
                    for k in ("eval_freq", "eval_episodes", "checkpoint_freq")
                    if getattr(game, k) is not None
                }
                for agent in self.agents:
                    if not agent.runs(game.env, seed):
                        continue
                    hp = merge(merge(merge(self.hp, game.hp), agent.hp), schedule)
                    key = (agent.agent, game.kind, json.dumps(hp, sort_keys=True, default=str))
                    if key not in checked:  # reading a preset takes ~10 ms
                        try:
                            load_agent(agent.agent, game.kind, hp)
                        except ValueError as e:
                            _fail(self.source, f"agent {agent.label!r} on {game.env}: {e}")
                        checked.add(key)
                    cells.append(
                        Cell(
                            agent.label,
                            agent.agent,
                            game.env,
                            seed,
                            game.timesteps,
                            game.n_envs,
                            hp,
                            self.runs_dir / game.env.replace("/", "-") / f"{agent.label}-s{seed}",
                            game.eval_envs,
                        )
                    )
        return cells

    @property
    def compared_agents(self) -> list[str]:
        """The labels of the agents that run on every game: those the report's aggregate compares."""
        return [a.label for a in self.agents if a.on_every_game]

    def to_dict(self) -> dict[str, Any]:
        """The resolved grid (for the report)."""
        return {
            "name": self.name,
            "agents": [dataclasses.asdict(a) for a in self.agents],
            "games": [dataclasses.asdict(g) for g in self.games],
            "workers": self.workers,
            "threads_per_cell": self.threads_per_cell,
            "device": self.device,
        }


def load_grid(path: str | Path, root: Path | None = None) -> GridConfig:
    """Read and validate a grid YAML file.

    :param path: the YAML file
    :param root: base of relative ``runs_dir``/``results_dir`` (default: the current directory)
    :raises FileNotFoundError: no such file
    :raises ValueError: a malformed grid, in one line
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid config {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return GridConfig.from_dict(data, source=str(path), root=root)
