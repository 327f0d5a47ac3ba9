"""The run-directory module on its own: checkpoint listing, identity, evaluation-log truncation, the
lock shared by nested blocks of one owner but refused to any other holder, writability probes."""

from __future__ import annotations

import os
import stat

import pytest

from rims_rl.utils.run_dir import (
    RunDir,
    RunInUseError,
    atomic_write_text,
    check_writable,
    config_id,
    identity_differences,
    try_lock,
)


def test_checkpoints_are_listed_by_step_and_other_files_ignored(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoint_dir.mkdir()
    for name in (
        "model_64_steps.zip",
        "model_1024_steps.zip",
        "model_128_steps.zip",
        "model_best_steps.zip",
        ".model_2048_steps.zip.123.ab.tmp",
        "model_5_steps.zip.bak",
    ):
        (run.checkpoint_dir / name).write_bytes(b"x")
    assert [steps for steps, _ in run.checkpoints()] == [64, 128, 1024]


def test_identity_names_every_difference_but_ignores_what_it_is_told(tmp_path):
    saved = {
        "env": "MinAtar/Breakout",
        "agent": "rim",
        "seed": 0,
        "command": "a",
        "hyperparameters": {"n_timesteps": 100, "policy_kwargs": {"rim_kwargs": {"k_active": 5}}},
    }
    wanted = {
        **saved,
        "seed": 1,
        "command": "b",
        "parameters": {"total": 3},
        "hyperparameters": {"n_timesteps": 200, "policy_kwargs": {"rim_kwargs": {"k_active": 4}}, "new": 1},
    }
    assert identity_differences(saved, wanted, ignore=("hyperparameters.n_timesteps",)) == [
        "seed=0, not 1",
        "new=(absent), not 1",
        "policy_kwargs.rim_kwargs.k_active=5, not 4",
    ]
    assert identity_differences(saved, {**saved, "command": "other"}) == []
    assert config_id(saved) == config_id({**saved, "seed": 7}) != config_id(wanted)


def test_truncating_the_evaluation_log_keeps_the_rows_up_to_the_step(tmp_path):
    run = RunDir(tmp_path)
    for step in (64, 128, 192, 256):
        run.append_evaluation({"timesteps": step, "mean_score": 1.0})
    assert run.truncate_evaluations(128) == 2
    assert [int(r["timesteps"]) for r in run.read_evaluations()] == [64, 128]
    assert run.truncate_evaluations(128) == 0


def test_the_lock_is_shared_by_its_owner_and_refused_to_others(tmp_path):
    run = RunDir(tmp_path / "r")
    with run.lock():
        with run.lock():  # the grid locks a cell, then train() locks it again
            pass
        with pytest.raises(RunInUseError, match="is in use by another process"):
            with RunDir(tmp_path / "r").lock():
                pass
        with try_lock(tmp_path / "r" / ".lock") as held:
            assert not held
    with try_lock(tmp_path / "r" / ".lock") as held:
        assert held


def test_atomic_writes_leave_no_temporary_file_and_follow_the_umask(tmp_path):
    atomic_write_text("a", tmp_path / "f.txt")
    assert os.listdir(tmp_path) == ["f.txt"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask


def test_writability_is_probed_without_leaving_anything(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "out.json") and not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="it is a folder"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=f"{tmp_path / 'file'} is not a folder"):
        check_writable(tmp_path / "file" / "out.json")
