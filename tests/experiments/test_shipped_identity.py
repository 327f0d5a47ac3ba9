"""The shipped grids resolve to exactly the runs they resolved to before MiniGrid support (issue 22): a change
to a preset, a default or the resolution of a cell would change every run's identity, and a grid in progress
would refuse to resume its cells."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from rims_rl.experiments.config import load_grid
from rims_rl.rl.training import resolve_config, run_config
from rims_rl.utils.run_dir import identity

ROOT = Path(__file__).resolve().parents[2]
#: (cells, sha256 of every cell's run directory and resolved run config), computed with the code of main at
#: c60e6f0 (before issue 22)
EXPECTED = {
    "minatar_sound": (53, "13b67697c5aa68b4159811b4af9efd65d5cac19ca0589536dcca8097cea4edd6"),
    "minatar_cpu": (20, "1f77c7cb2458216cad727164c6463893d890811958c0431df5cf96dff51d74ae"),
    "paper": (246, "30d9d120be7b752bf0f2253e6ecbe420f9ed1625c6affd9dc004b2edb989e609"),
}


def resolved(grid):
    for cell in grid.cells():
        config = resolve_config(cell.env, cell.agent, cell.hp, cell.timesteps, cell.n_envs)
        yield cell, run_config(cell.env, cell.agent, cell.seed, config)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_grids_resolve_as_before(name):
    grid = load_grid(ROOT / "experiments" / f"{name}.yaml", root=ROOT)
    rows = [
        json.dumps([str(cell.run_dir.relative_to(grid.runs_dir)), config], sort_keys=True)
        for cell, config in resolved(grid)
    ]
    assert (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()) == EXPECTED[name]


def test_committed_runs_of_the_sound_grid_match_their_cells():
    """Each run of results/minatar_sound kept in the repository is its cell's resolved configuration, exactly."""
    grid = load_grid(ROOT / "experiments" / "minatar_sound.yaml", root=ROOT)
    cells = {cell.run_dir: config for cell, config in resolved(grid)}
    saved = sorted(grid.runs_dir.glob("*/*/config.yaml"))
    assert saved, "no committed run of minatar_sound"
    for path in saved:
        assert identity(yaml.safe_load(path.read_text())) == identity(cells[path.parent]), path
