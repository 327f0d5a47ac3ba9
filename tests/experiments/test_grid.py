"""A tiny grid end to end (2 agents × 1 MinAtar game × 1 seed): stopped with SIGTERM, resumed from the
cells' checkpoints, finished cells skipped, the report written; cell locks; the Ray backend."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from rims_rl.experiments.aggregate import collect_runs, read_evaluations
from rims_rl.experiments.config import GridConfig, load_grid
from rims_rl.experiments.grid import LOCK_FILE, GridResult, _record, read_timing, run_cell, run_grid
from tests.helpers import load_script

TINY = ["n_steps=32", "batch_size=32", "n_epochs=1", "sequence_length=8"]


def compare_main(argv):
    return load_script("scripts/compare.py").main(argv)


def tiny_grid(folder: Path, timesteps: int, agents=("rim", "lstm")) -> Path:
    hidden = {"rim": ["policy_kwargs.rim_kwargs.hidden_size=8"], "lstm": ["policy_kwargs.lstm_hidden_size=8"]}
    path = folder / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "agents": {a: {"hp": hidden[a]} for a in agents},
                "seeds": 1,
                "timesteps": timesteps,
                "eval_freq": 128,
                "eval_episodes": 1,
                "checkpoint_freq": 128,
                "n_envs": 2,
                "hp": TINY,
                "games": ["MinAtar/Breakout"],
                "workers": 2,
                "report": {"bootstrap_reps": 200, "activity_episodes": 2, "export_weights": True},
                "runs_dir": str(folder / "runs"),
                "results_dir": str(folder / "results"),
            }
        )
    )
    return path


def test_stopped_grid_resumes_from_checkpoints_then_skips_finished_cells(tmp_path):
    config_path = tiny_grid(tmp_path, timesteps=512)
    cells = {c.label: c for c in load_grid(config_path).cells()}

    def saved(cell):
        return sorted(int(p.stem.split("_")[1]) for p in (cell.run_dir / "checkpoints").glob("model_*_steps.zip"))

    def stop_at_the_first_checkpoint():  # what stopping a background job does: the cells checkpoint and stop
        deadline = time.time() + 150
        while time.time() < deadline and not any(saved(c) for c in cells.values()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda *args: None)  # a late signal must not end pytest
    try:
        threading.Thread(target=stop_at_the_first_checkpoint, daemon=True).start()
        result = run_grid(load_grid(config_path), progress=False, log=lambda msg: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.interrupted and not result.failed
    stopped_at = {label: saved(c)[-1] for label, c in cells.items() if saved(c) and c.name not in result.trained}
    assert stopped_at and all(step < 512 for step in stopped_at.values())  # at least one cell stopped mid-run
    for label in stopped_at:
        assert not (cells[label].run_dir / "final_model.zip").exists()
        assert not (cells[label].run_dir / "done.json").exists()
        assert "interrupted: checkpoint saved" in (cells[label].run_dir / "train.log").read_text()

    assert compare_main([str(config_path), "--no-progress"]) == 0  # the same command again
    for label, cell in cells.items():
        segments = read_timing(cell.run_dir / "timing.json")
        if label in stopped_at:  # resumed from its checkpoint, not restarted (an interrupt checkpoint's
            # name may lag its model by one vector step, n_envs=2)
            assert len(segments) == 2 and stopped_at[label] <= segments[1]["start_step"] <= stopped_at[label] + 2
        end = segments[-1]["end_step"]  # SB3 learns whole rollouts: a mid-rollout checkpoint ends a little past 512
        assert 512 <= end < 512 + 64 and (cell.run_dir / "final_model.zip").exists()
        steps, _ = read_evaluations(cell.run_dir / "evaluations.csv")
        # every 128 steps and at the end (a stop between a checkpoint and its evaluation skips that one)
        assert list(steps) == sorted(set(steps)) and {512, end} <= set(steps) <= {128, 256, 384, 512, end}
    report = tmp_path / "results"
    assert {p.name for p in report.iterdir()} >= {"scores.csv", "curves.png", "relative.png", "summary.md"}
    assert (report / "scores.csv").read_text().count("MinAtar/Breakout") == 2
    # the report measured the RIM run's mechanism activity: exactly k of the 6 mechanisms active at each step
    activity = json.loads((cells["rim"].run_dir / "activations.json").read_text())
    assert len(activity["frequency"]) == 6 and activity["episodes"] == 2
    assert sum(activity["frequency"]) == pytest.approx(5, abs=1e-3) and activity["steps"] > 0
    assert not (cells["lstm"].run_dir / "activations.json").exists()
    assert "## Mechanism activity" in (report / "summary.md").read_text()
    # ... and exported each agent's weights in half precision: they load into the float32 model and play
    # the same greedy game as the run's own final weights
    exports = sorted(p.name for p in (report / "weights").iterdir())
    assert exports == ["MinAtar-Breakout-lstm-s0.pt", "MinAtar-Breakout-rim-s0.pt"]
    from rims_rl.rl.evaluation import evaluate, load_trained

    for label in ("rim", "lstm"):
        half, run = load_trained(report / "weights" / f"MinAtar-Breakout-{label}-s0.pt")
        full, _ = load_trained(cells[label].run_dir / "final_weights.pt")
        assert next(half.policy.parameters()).dtype == torch.float32
        assert (
            evaluate(half, run, 2, deterministic=True)["scores"] == evaluate(full, run, 2, deterministic=True)["scores"]
        )
        stored = torch.load(report / "weights" / f"MinAtar-Breakout-{label}-s0.pt", weights_only=True)
        assert {v.dtype for v in stored["state_dict"].values() if v.is_floating_point()} == {torch.float16}

    finals = {label: (c.run_dir / "final_model.zip").stat().st_mtime_ns for label, c in cells.items()}
    result = run_grid(load_grid(config_path), progress=False, log=lambda msg: None)
    assert sorted(result.skipped) == sorted(c.name for c in cells.values()) and not result.trained
    assert finals == {label: (c.run_dir / "final_model.zip").stat().st_mtime_ns for label, c in cells.items()}

    # the run directories as kept in a repository, without their model files: still finished
    for cell in cells.values():
        assert (
            json.loads((cell.run_dir / "done.json").read_text())["steps"]
            == read_timing(cell.run_dir / "timing.json")[-1]["end_step"]
        )
        for model in [*cell.run_dir.rglob("*.zip"), *cell.run_dir.rglob("*.pt")]:
            model.unlink()
    result = run_grid(load_grid(config_path), progress=False, log=lambda msg: None)
    assert sorted(result.skipped) == sorted(c.name for c in cells.values()) and not result.trained
    assert all(run.finished for run in collect_runs(tmp_path / "runs"))
    for cell in cells.values():  # the cell's overrides, one mapping (the one given to train)
        assert yaml.safe_load((cell.run_dir / "cell.yaml").read_text())["hp"] == cell.hp


def test_a_cell_locked_by_another_process_is_left_alone(tmp_path):
    cell = load_grid(tiny_grid(tmp_path, timesteps=64)).cells()[0]
    cell.run_dir.mkdir(parents=True)
    with open(cell.run_dir / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run_cell(cell) == "locked"
    assert not (cell.run_dir / "config.yaml").exists()


def test_a_cell_finished_by_another_process_is_skipped_not_trained(tmp_path):
    """A queued cell that another grid process finished meanwhile is not trained again and is
    reported as skipped, not as finished by this grid."""
    (cell,) = load_grid(tiny_grid(tmp_path, timesteps=64, agents=("lstm",))).cells()
    cell.run_dir.mkdir(parents=True)
    (cell.run_dir / "done.json").write_text("{}")
    result, notes = GridResult([], [], [], {}), []
    _record(result, cell, "ok", run_cell(cell), notes.append)  # what the worker process reports
    assert result.skipped == [cell.name] and not result.trained and not result.failed
    assert notes == [f"skipped {cell.name}: another process finished it"]
    assert not (cell.run_dir / "config.yaml").exists()


def test_a_run_directory_holding_another_configuration_is_refused(tmp_path, capsys):
    """The whole resolved configuration identifies a run: a finished cell trained before its preset
    changed (one nested value) is refused, not skipped, by the grid and by --dry-run."""
    from rims_rl.rl.training import resolve_config, run_config

    config_path = tiny_grid(tmp_path, timesteps=64, agents=("rim",))
    (cell,) = load_grid(config_path).cells()
    saved = run_config(
        cell.env, cell.agent, cell.seed, resolve_config(cell.env, cell.agent, cell.hp, cell.timesteps, cell.n_envs)
    )
    saved["hyperparameters"]["policy_kwargs"]["rim_kwargs"]["k_active"] = 4
    cell.run_dir.mkdir(parents=True)
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    (cell.run_dir / "done.json").write_text(json.dumps({"steps": 64}))
    with pytest.raises(ValueError, match=r"holds a run with policy_kwargs.rim_kwargs.k_active=4, not 5"):
        run_grid(load_grid(config_path), progress=False, log=lambda msg: None)
    assert compare_main([str(config_path), "--dry-run"]) == 2
    assert "policy_kwargs.rim_kwargs.k_active=4, not 5: the grid's configuration changed" in capsys.readouterr().err
    saved["agent"] = "ppo"
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match=r"holds a run with agent='ppo', not 'rim'"):
        run_grid(load_grid(config_path), progress=False, log=lambda msg: None)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("policy_kwargs.rim_kwargs.k_active=9", "k_active must be an integer in 1..num_units=6, got 9"),
        ("learning_rate=-1", "Invalid learning rate: -1.0"),
        ("policy_kwargs.rim_kwargs.foo=1", "unknown rim_kwargs ['foo']"),
    ],
)
def test_bad_nested_values_fail_the_dry_run_and_the_grid_before_anything_is_written(tmp_path, capsys, bad, message):
    config_path = tiny_grid(tmp_path, timesteps=64, agents=("rim",))
    data = yaml.safe_load(config_path.read_text())
    data["agents"]["rim"]["hp"].append(bad)
    config_path.write_text(yaml.safe_dump(data))
    assert compare_main([str(config_path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: MinAtar/Breakout rim s0: {message}") and "Traceback" not in "".join(err)
    assert compare_main([str(config_path), "--no-progress"]) == 2
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_games_and_agents_options_train_only_the_named_ones(tmp_path, capsys):
    config_path = tiny_grid(tmp_path, timesteps=64)
    data = yaml.safe_load(config_path.read_text())
    data["games"] = ["MinAtar/Breakout", "MinAtar/Asterix"]
    config_path.write_text(yaml.safe_dump(data))
    assert compare_main([str(config_path), "--dry-run", "--games", "MinAtar/Asterix"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all("MinAtar/Asterix" in line for line in listed)
    assert compare_main([str(config_path), "--dry-run", "--games", "Asterix"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --games: Asterix not in {config_path}; its games: MinAtar/Breakout, MinAtar/Asterix"
    assert compare_main([str(config_path), "--dry-run", "--agents", "lstm"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all(" lstm s0" in line for line in listed)
    assert compare_main([str(config_path), "--dry-run", "--agents", "lstm", "gru"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --agents: gru not in {config_path}; its agents: lstm, rim"
    assert compare_main([str(config_path), "--dry-run", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --threads must be a positive integer, got 0"
    # train the named game only; the report lists the other game's cells as not started
    assert compare_main([str(config_path), "--games", "MinAtar/Asterix", "--no-progress", "--workers", "1"]) == 0
    assert {r.env for r in collect_runs(tmp_path / "runs")} == {"MinAtar/Asterix"}
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "Not started (no run directory yet): MinAtar/Breakout lstm s0, MinAtar/Breakout rim s0." in summary


def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    config = load_grid(tiny_grid(tmp_path, timesteps=128, agents=("lstm",)))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = run_grid(config, backend="ray", workers=1, progress=False, log=lambda msg: None)
    (cell,) = config.cells()
    assert result.trained == [cell.name] and not result.failed
    assert (cell.run_dir / "final_model.zip").exists()
    assert read_timing(cell.run_dir / "timing.json")[-1]["end_step"] == 128


def test_a_cell_plays_its_games_eval_envs_zero_shot(tmp_path):
    config = GridConfig.from_dict(
        {
            "name": "ood",
            "agents": ["lstm"],
            "timesteps": 128,
            "eval_freq": 128,
            "eval_episodes": 1,
            "n_envs": 2,
            "hp": {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "sequence_length": 8, "checkpoint_freq": 128},
            "games": [{"env": "RIMs-PickupDistractors-Train-v0", "eval_envs": ["RIMs-PickupDistractors-Test-v0"]}],
        },
        root=tmp_path,
    )
    (cell,) = config.cells()
    assert run_cell(cell) == "trained"
    assert yaml.safe_load((cell.run_dir / "cell.yaml").read_text())["eval_envs"] == ["RIMs-PickupDistractors-Test-v0"]
    rows = list(csv.DictReader(open(cell.run_dir / "env_evaluations.csv")))
    assert [r["env"] for r in rows] == ["RIMs-PickupDistractors-Train-v0", "RIMs-PickupDistractors-Test-v0"]
