"""Reference scores for normalisation: published random/human scores of Atari games
(``experiments/atari_reference_scores.yaml``) and random-policy scores of MinAtar games measured here
(:func:`measure_random_scores`, written to ``experiments/minatar_random_scores.yaml``).

    python scripts/compare.py --measure-random --episodes 200    # re-measure the MinAtar file
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..rl.envs import MINATAR_GAMES, MinAtarEnv, resolve_env

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
ATARI_FILE = EXPERIMENTS_DIR / "atari_reference_scores.yaml"
MINATAR_FILE = EXPERIMENTS_DIR / "minatar_random_scores.yaml"
PAPER_FILE = EXPERIMENTS_DIR / "paper_atari_scores.yaml"


@dataclass(frozen=True)
class Reference:
    """Reference scores of one game.

    :param random: a uniformly random policy's mean score (``None``: unknown)
    :param human: the published human score (Atari only; ``None``: unknown)
    :param source: where the numbers come from
    """

    random: float | None = None
    human: float | None = None
    source: str = ""


def game_key(env: str) -> tuple[str, str]:
    """``("minatar", "spaceinvaders")`` / ``("atari", "pong")``: the same key for every spelling of a game."""
    kind, game = resolve_env(env)
    return kind, game.replace("_", "").lower()


def _read(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def load_references(
    atari_file: Path = ATARI_FILE, minatar_file: Path = MINATAR_FILE
) -> dict[tuple[str, str], Reference]:
    """Every known reference, keyed by :func:`game_key`.

    :param atari_file: YAML with ``random`` and ``human`` mappings (short ALE names)
    :param minatar_file: YAML with a ``scores`` mapping (MinAtar names -> ``{mean, std, episodes}``)
    """
    refs: dict[tuple[str, str], Reference] = {}
    atari = _read(atari_file)
    for name in set(atari.get("random", {})) | set(atari.get("human", {})):
        refs[("atari", name.lower())] = Reference(
            atari.get("random", {}).get(name),
            atari.get("human", {}).get(name),
            "published (Mnih et al. 2015; Wang et al. 2016)",
        )
    minatar = _read(minatar_file)
    for name, entry in (minatar.get("scores") or {}).items():
        refs[game_key(name)] = Reference(
            float(entry["mean"]), None, f"measured: {entry['episodes']} games of a uniformly random policy"
        )
    return refs


def load_paper_scores(path: Path = PAPER_FILE) -> dict[tuple[str, str], dict[str, float]]:
    """The RIM paper's Atari scores (appendix Table 7), ``{game_key: {"rim": score, "lstm": score}}``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for agent, scores in _read(path).items():
        for name, score in scores.items():
            out.setdefault(("atari", name.lower()), {})[agent] = float(score)
    return out


def reference_for(env: str, refs: dict[tuple[str, str], Reference] | None = None) -> Reference:
    """The reference of ``env`` (an empty one if unknown)."""
    refs = load_references() if refs is None else refs
    return refs.get(game_key(env), Reference())


def random_policy_score(game: str, episodes: int = 100, seed: int = 0, max_episode_steps: int = 100_000) -> dict:
    """Play ``episodes`` whole games of a MinAtar game with uniformly random actions, on the env the
    agents train on (sticky actions 0.1, minimal action set).

    :param game: ``"MinAtar/Breakout"``, ``"Breakout"`` or ``"breakout"``
    :param episodes: games played
    :param seed: seeds the env and the action sampler
    :param max_episode_steps: the env's truncation limit
    :return: ``{"mean", "std", "sem", "episodes", "mean_length"}``
    """
    internal = game if game in MINATAR_GAMES.values() else resolve_env(game if "/" in game else f"MinAtar/{game}")[1]
    env = MinAtarEnv(internal, max_episode_steps=max_episode_steps)
    rng = np.random.default_rng(seed)
    scores, lengths = [], []
    env.reset(seed=seed)
    for _ in range(episodes):
        total, length, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total, length, done = total + reward, length + 1, terminated or truncated
        scores.append(total)
        lengths.append(length)
        env.reset()
    scores = np.asarray(scores)
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "sem": float(scores.std(ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else 0.0,
        "episodes": episodes,
        "mean_length": float(np.mean(lengths)),
    }


def measure_random_scores(
    games: list[str] | None = None, episodes: int = 100, seed: int = 0, path: Path | None = MINATAR_FILE
) -> dict[str, dict]:
    """Measure :func:`random_policy_score` for MinAtar games and (if ``path``) write the YAML file
    that :func:`load_references` reads.

    :param games: MinAtar names (default: all five)
    :param episodes: games per game
    :param seed: seed of each measurement
    :param path: the file to write, or ``None``
    :return: ``{"MinAtar/Breakout": {...}, ...}``
    """
    games = games or [f"MinAtar/{g}" for g in MINATAR_GAMES]
    scores = {}
    for game in games:
        t0 = time.time()
        scores[game] = random_policy_score(game, episodes, seed)
        scores[game]["seconds"] = round(time.time() - t0, 1)
    if path is not None:
        header = (
            f"# Random-policy scores of MinAtar games, measured by rims_rl.experiments.references."
            f"measure_random_scores\n# (python scripts/compare.py --measure-random --episodes {episodes}"
            f" --seed {seed}): uniformly random actions,\n# sticky actions 0.1, whole games, the env the "
            f"agents train and are evaluated on.\n"
        )
        from ..utils import atomic_write_text

        body = yaml.safe_dump({"episodes": episodes, "seed": seed, "scores": scores}, sort_keys=False)
        atomic_write_text(header + body, path)
    return scores
