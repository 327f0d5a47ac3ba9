"""Grid configs: cells and their overrides, the shipped configs, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import yaml

from rims_rl.experiments.config import GridConfig, load_grid
from rims_rl.rl.config import load_agent
from tests.helpers import ROOT, load_script


def compare_main(argv):
    return load_script("scripts/compare.py").main(argv)


def grid(**changes):
    data = {
        "name": "g",
        "agents": ["rim", "lstm"],
        "seeds": 2,
        "timesteps": 1000,
        "games": ["MinAtar/Breakout", {"env": "Pong", "seeds": [7], "timesteps": 500, "eval_freq": 100}],
    }
    data.update(changes)
    return data


def test_cells_resolve_every_override(tmp_path):
    config = GridConfig.from_dict(
        grid(hp={"n_steps": 64, "policy_kwargs": {"enable_critic_lstm": False}}, eval_episodes=3), root=tmp_path
    )
    cells = config.cells()
    assert [(c.env, c.label, c.seed, c.timesteps) for c in cells] == [  # seed-major
        ("MinAtar/Breakout", "rim", 0, 1000),
        ("MinAtar/Breakout", "lstm", 0, 1000),
        ("Pong", "rim", 7, 500),
        ("Pong", "lstm", 7, 500),
        ("MinAtar/Breakout", "rim", 1, 1000),
        ("MinAtar/Breakout", "lstm", 1, 1000),
    ]
    assert cells[0].run_dir == tmp_path / "runs/g/MinAtar-Breakout/rim-s0"
    assert config.results_dir == tmp_path / "results/g"
    pong = load_agent("rim", "atari", cells[2].hp)
    assert (pong.n_steps, pong.eval_freq, pong.eval_episodes, pong.policy_kwargs["enable_critic_lstm"]) == (
        64,
        100,
        3,
        False,
    )
    assert cells[0].hp["policy_kwargs"] == {"enable_critic_lstm": False}  # one mapping, not key=value strings
    assert cells[2].hp == {
        "n_steps": 64,
        "policy_kwargs": {"enable_critic_lstm": False},
        "eval_freq": 100,
        "eval_episodes": 3,
    }


def test_labelled_variants_of_one_preset(tmp_path):
    config = GridConfig.from_dict(
        grid(
            agents={"rim_k4": {"agent": "rim", "hp": ["policy_kwargs.rim_kwargs.k_active=4"]}, "rim": None},
            report={"treatment": "rim_k4", "baseline": "rim"},
        ),
        root=tmp_path,
    )
    cell = config.cells()[0]
    assert (cell.label, cell.agent, cell.run_dir.name) == ("rim_k4", "rim", "rim_k4-s0")
    assert cell.hp == {"policy_kwargs": {"rim_kwargs": {"k_active": 4}}}
    assert load_agent("rim", "minatar", cell.hp).policy_kwargs["rim_kwargs"]["k_active"] == 4
    assert (config.treatment, config.baseline) == ("rim_k4", "rim")


def test_a_variant_runs_on_its_games_and_seeds_only(tmp_path):
    """An ablation: a labelled variant on one game and some seeds; the compared agents run everywhere."""
    variant = {"agent": "rim", "hp": {"policy_kwargs": {"rim_kwargs": {"k_active": 4}}}}
    config = GridConfig.from_dict(
        grid(agents={"rim": None, "lstm": None, "rim_k4": {**variant, "games": ["MinAtar/Breakout"], "seeds": [1]}}),
        root=tmp_path,
    )
    cells = [(c.env, c.label, c.seed) for c in config.cells()]
    assert [c for c in cells if c[1] == "rim_k4"] == [("MinAtar/Breakout", "rim_k4", 1)]
    assert len(cells) == 2 * 3 + 1 and config.compared_agents == ["rim", "lstm"]
    with pytest.raises(ValueError, match=r"agent 'rim_k4' names games \['Seaquest'\] that are not in the grid"):
        GridConfig.from_dict(grid(agents={"rim": None, "rim_k4": {**variant, "games": ["Seaquest"]}}), source="g")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"agents": ["rim", "gru"]}, "unknown agent 'gru'; known: rim, lstm, ppo"),
        ({"games": ["MinAtar/Breakout", "Pongg"]}, "unknown env 'Pongg'; did you mean Pong"),
        ({"games": ["MinAtar/Brekout"]}, "unknown MinAtar game 'MinAtar/Brekout'"),
        ({"seed": 3}, "unknown key(s) ['seed'] in the grid; allowed:"),
        ({"games": [{"env": "Pong", "timestep": 5}]}, "unknown key(s) ['timestep'] in game 'Pong'"),
        ({"agents": {"rim": {"hps": []}}}, "unknown key(s) ['hps'] in agent 'rim'"),
        ({"hp": ["learning_rat=1"]}, "agent 'rim' on MinAtar/Breakout: unknown hyperparameter(s) ['learning_rat']"),
        ({"seeds": 0}, "seeds in game 'MinAtar/Breakout' must be a positive count"),
        ({"timesteps": None}, "no timesteps for game 'MinAtar/Breakout'"),
        ({"report": {"treatment": "gru"}}, "report.treatment 'gru' is not one of the agents ['rim', 'lstm']"),
        ({"workers": 0}, "workers in the grid must be a positive integer"),
        ({"report": {"export_weights": "yes"}}, "report.export_weights must be true or false, got 'yes'"),
        ({"agents": {"rim": {"seeds": 0}}}, "seeds in agent 'rim' must be a positive count"),
        (
            {"games": [{"env": "MiniGrid-Empty-5x5-v0", "eval_envs": "MiniGrid-Empty-8x8-v0"}]},
            "eval_envs in game 'MiniGrid-Empty-5x5-v0' must be a list of env names, got 'MiniGrid-Empty-8x8-v0'",
        ),
        (
            {"games": [{"env": "MiniGrid-Empty-5x5-v0", "eval_envs": ["MiniGrid-Empty-5x5-v0"]}]},
            "must be distinct envs other than 'MiniGrid-Empty-5x5-v0'",
        ),
        (
            {"games": [{"env": "MiniGrid-Empty-5x5-v0", "eval_envs": ["MiniGrid-Empty-9x9-v0"]}]},
            "eval_envs in game 'MiniGrid-Empty-5x5-v0': unknown MiniGrid env 'MiniGrid-Empty-9x9-v0'",
        ),
        (
            {
                "games": [
                    {"env": "MiniGrid-Empty-5x5-v0", "eval_envs": ["MiniGrid-Empty-16x16-v0"]},
                    {"env": "MiniGrid-Empty-8x8-v0", "eval_envs": ["MiniGrid-Empty-16x16-v0"]},
                ]
            },
            "eval_envs ['MiniGrid-Empty-16x16-v0'] are listed for more than one game",
        ),
    ],
)
def test_bad_grids_are_refused_in_one_line(changes, message):
    with pytest.raises(ValueError) as info:
        GridConfig.from_dict(grid(**changes), source="bad.yaml")
    text = str(info.value)
    assert text.startswith("bad.yaml: ") and message in text and "\n" not in text


@pytest.mark.parametrize("name", ["paper.yaml", "minatar_cpu.yaml", "minatar_sound.yaml", "minigrid_ood.yaml"])
def test_shipped_configs_are_valid(name, tmp_path):
    config = load_grid(ROOT / "experiments" / name, root=tmp_path)
    compared = config.compared_agents
    assert {"rim", "lstm"} <= set(compared) and (config.treatment, config.baseline) == ("rim", "lstm")
    cells = config.cells()
    assert sum(c.label in compared for c in cells) == sum(len(g.seeds) for g in config.games) * len(compared)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(grid(agents=["rim", "transformer"])))
    assert compare_main([str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown agent 'transformer'" in err and "\n" not in err
    assert compare_main([str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad.write_text("name: [unclosed")
    assert compare_main([str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_eval_envs_go_to_the_cells_not_to_their_hyperparameters(tmp_path):
    from rims_rl.experiments.grid import check_grid

    config = load_grid(ROOT / "experiments" / "minigrid_ood.yaml", root=tmp_path)
    cells = [c for c in config.cells() if c.env == "MiniGrid-Empty-5x5-v0"]
    assert {c.label for c in cells} == {"rim", "rim_k5of6", "lstm"} and len(cells) == 15
    assert all(c.eval_envs == ("MiniGrid-Empty-8x8-v0", "MiniGrid-Empty-16x16-v0") for c in cells)
    assert all("eval_envs" not in c.hp for c in cells)
    assert load_agent("rim", "minigrid", cells[0].hp).policy_kwargs["rim_kwargs"]["k_active"] == 3

    bad = GridConfig.from_dict(
        grid(games=[{"env": "MiniGrid-Empty-5x5-v0", "eval_envs": ["MinAtar/Breakout"]}], agents=["lstm"]),
        root=tmp_path,
    )
    with pytest.raises(ValueError, match=r"cannot play MinAtar/Breakout with an agent of MiniGrid-Empty-5x5-v0: "):
        check_grid(bad.cells())
