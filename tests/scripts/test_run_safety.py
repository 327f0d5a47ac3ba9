"""Run directories that never lose work (issue 17): a finished run is not retrained, bad values fail
before the directory exists, a corrupt checkpoint is stepped over, one trainer per run, unwritable
outputs fail before the work, a resumed run logs each step once, the final evaluation reaches
TensorBoard, and the project's own checkpoints load weights-only."""

from __future__ import annotations

import contextlib
import csv
import shutil
import subprocess

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rims_rl.rl.training import train
from rims_rl.utils.run_dir import LOCK_FILE, try_lock

from .test_train_ppo import TINY, cli

GAME = "MinAtar/Breakout"


def tiny_train(run, total, *hp, notes=None, **kwargs):
    """A tiny in-process run (2 envs, 64 env steps per rollout) with its notes collected."""
    return train(
        GAME,
        "rim",
        total_timesteps=total,
        n_envs=2 if not kwargs.get("resume") else None,
        device="cpu",
        run_dir=run,
        hp=None if kwargs.get("resume") else [*TINY, *hp],
        progress=False,
        log=(notes if notes is not None else []).append,
        **kwargs,
    )


def eval_steps(run):
    with open(run / "evaluations.csv", newline="") as f:
        return [int(row["timesteps"]) for row in csv.DictReader(f)]


def tb_steps(run, tag):
    acc = EventAccumulator(str(run / "tb" / "RimPPO_1"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def stop_as_if_killed(run, keep_checkpoints):
    """What a kill -9 leaves: no final model, no done.json, only the given checkpoints."""
    for name in ("final_model.zip", "final_weights.pt", "done.json"):
        (run / name).unlink()
    for path in (run / "checkpoints").iterdir():
        if path.name not in keep_checkpoints:
            path.unlink()


def test_a_finished_run_is_not_retrained_and_a_larger_budget_continues_it(tmp_path):
    """Point 1: a run shorter than checkpoint_freq has no checkpoint; --resume used to retrain it from 0."""
    run = tmp_path / "r"
    tiny_train(run, 128, "checkpoint_freq=10000", "eval_freq=0")
    assert not list((run / "checkpoints").iterdir()) and eval_steps(run) == [128]
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    notes = []
    tiny_train(run, 64, resume=True, notes=notes)
    assert notes == [f"{run} is finished (128 steps); nothing to do (a larger --total-timesteps continues it)"]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing written, not even a lock
    tiny_train(run, 192, resume=True)  # continues from the final model
    assert eval_steps(run) == [128, 192]
    assert torch.load(run / "final_weights.pt", weights_only=True)["run"]["hyperparameters"]["n_timesteps"] == 192
    # stopped before its first checkpoint: trained again from step 0, saying so, its old rows dropped
    stop_as_if_killed(run, keep_checkpoints=())
    notes = []
    tiny_train(run, 128, resume=True, notes=notes)
    assert f"{run} has no checkpoint to resume from: training it again from step 0" in notes
    assert eval_steps(run) == [128] and tb_steps(run, "eval/mean_reward") == [128]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("policy_kwargs.rim_kwargs.k_active=9", "k_active must be an integer in 1..num_units=6, got 9"),
        ("learning_rate=-1", "Invalid learning rate: -1.0"),
        ("policy_kwargs.rim_kwargs.foo=1", "unknown rim_kwargs ['foo']"),
    ],
)
def test_bad_nested_values_fail_before_the_run_directory_exists(tmp_path, bad, message):
    """Point 2: refused when the model was built, after config.yaml was written."""
    run = tmp_path / "r"
    with pytest.raises(ValueError) as error:
        tiny_train(run, 64, bad)
    assert str(error.value).startswith(message)
    assert not run.exists()
    tiny_train(run, 64)  # the corrected command is not refused


def test_resume_steps_over_a_corrupt_checkpoint_and_ignores_other_files(tmp_path):
    """Point 3: a truncated newest checkpoint stopped the resume; model_best_steps.zip broke the listing."""
    run = tmp_path / "r"
    tiny_train(run, 128, "checkpoint_freq=64", "eval_freq=64")
    stop_as_if_killed(run, keep_checkpoints=("model_64_steps.zip", "model_128_steps.zip"))
    newest = run / "checkpoints" / "model_128_steps.zip"
    shutil.copy(newest, run / "checkpoints" / "model_best_steps.zip")
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as a full disk leaves it
    notes = []
    tiny_train(run, 128, resume=True, notes=notes)
    assert notes[0].startswith(f"{run}: checkpoints/model_128_steps.zip cannot be loaded (")
    assert f"{run}: resuming from checkpoints/model_64_steps.zip (64 steps) instead" in notes
    assert f"{run}: dropped 1 evaluation row(s) after step 64, from the run that was stopped" in notes
    assert eval_steps(run) == [64, 128]


def test_a_second_trainer_of_a_run_is_refused_in_one_line(tmp_path):
    """Point 4: train_ppo.py took no lock; two --resume of one directory both trained."""
    run = tmp_path / "r"
    tiny_train(run, 64, "checkpoint_freq=64")
    stop_as_if_killed(run, keep_checkpoints=("model_64_steps.zip",))
    with try_lock(run / LOCK_FILE) as held:  # held by this (another) process, as a running trainer holds it
        assert held
        res = cli(
            "train_ppo.py", "--env", GAME, "--run-dir", run, "--resume", "--total-timesteps", 128, "--no-progress"
        )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {run} is in use by another process (it holds the lock {LOCK_FILE})"
    assert not (run / "final_model.zip").exists()


@contextlib.contextmanager
def read_only(folder):
    """``folder`` made read-only: chmod for a user, the immutable attribute for root (which chmod does not stop)."""
    import os

    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_unwritable_outputs_fail_before_the_work(tmp_path):
    """Point 5: a read-only run directory failed at the first checkpoint; a bad --video after every game."""
    from rims_rl.rl.evaluation import evaluate, load_trained

    run = tmp_path / "r"
    tiny_train(run, 64, "checkpoint_freq=64")
    stop_as_if_killed(run, keep_checkpoints=("model_64_steps.zip",))
    with read_only(run), pytest.raises(ValueError, match=f"cannot write {run}: no file can be created in {run}"):
        tiny_train(run, 128, resume=True)
    model, config = load_trained(run / "checkpoints" / "model_64_steps.zip")
    for video, message in (
        ("/proc/v.mp4", "cannot write /proc/v.mp4: no file can be created in /proc"),
        ("/dev/null/v.mp4", "cannot write /dev/null/v.mp4: /dev/null is not a folder"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate(model, config, episodes=1, video=video, max_steps=1)  # one step would end in RuntimeError
    res = cli("evaluate.py", run, "--episodes", 1, "--output", "/dev/null/e.json")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: cannot write /dev/null/e.json: /dev/null is not a folder"
    )


def test_a_resumed_run_logs_each_step_once_and_the_final_evaluation_reaches_tensorboard(tmp_path):
    """Points 6 and 7: after a resume from an older checkpoint, evaluations.csv and TensorBoard held the
    steps after it twice; the evaluation at the end never reached TensorBoard."""
    run = tmp_path / "r"
    tiny_train(run, 192, "checkpoint_freq=64", "eval_freq=128")
    assert eval_steps(run) == [128, 192] and tb_steps(run, "eval/mean_reward") == [128, 192]  # the last one too
    stop_as_if_killed(run, keep_checkpoints=("model_64_steps.zip",))
    tiny_train(run, 192, resume=True)
    assert eval_steps(run) == [128, 192] and tb_steps(run, "eval/mean_reward") == [128, 192]
    assert len(list((run / "tb" / "RimPPO_1").iterdir())) == 2  # the resumed run's own event file
    for tag in ("time/fps", "train/loss", "rim/selection_entropy"):
        steps = tb_steps(run, tag)
        assert steps and len(steps) == len(set(steps)) and steps == sorted(steps), (tag, steps)


def test_evaluating_a_run_directory_prefers_the_weights_only_export(tmp_path):
    """Point 8: evaluate.py RUN_DIR unpickled final_model.zip although final_weights.pt was beside it
    (the supervised checkpoint: tests/tasks/test_training.py)."""
    from rims_rl.rl.evaluation import load_trained

    run = tmp_path / "r"
    tiny_train(run, 64)
    (run / "final_model.zip").write_bytes(b"a pickle we do not trust")
    model, config = load_trained(run)  # the weights, not the zip
    assert config["seed"] == 0 and sum(p.numel() for p in model.policy.parameters()) > 0
