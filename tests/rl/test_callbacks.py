"""rims_rl.rl.callbacks: checkpoints and evaluations at the first step at or past each multiple of their
period (also after a resume, and when the env count does not divide it), atomic checkpoint writes."""

import os

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env

from rims_rl.rl.callbacks import (
    AtomicCheckpointCallback,
    EveryNTimestepsAligned,
    ProgressCallback,
    RawScoreEvalCallback,
)
from rims_rl.utils.run_dir import RunDir, zip_steps

N_ENVS, N_STEPS = 3, 8  # 24 env steps a rollout, 3 a call: a period of 10 is not a multiple of the step


def tiny_ppo(env=None):
    env = env or make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=0)
    return PPO(
        "MlpPolicy",
        env,
        n_steps=N_STEPS,
        batch_size=24,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
        device="cpu",
    )


def expected(start, end, period):
    """The first step (a multiple of N_ENVS) at or past each multiple of ``period`` in (start, end]."""
    steps = range(start + N_ENVS, end + 1, N_ENVS)
    return [s for s in steps if s // period > (s - N_ENVS) // period]


def test_checkpoints_at_multiples_of_the_period_and_after_a_resume(tmp_path):
    run = RunDir(tmp_path)
    model = tiny_ppo()
    model.learn(48, callback=EveryNTimestepsAligned(10, AtomicCheckpointCallback(run, keep=100)))
    assert model.num_timesteps == 48 and [s for s, _ in run.checkpoints()] == [12, 21, 30, 42] == expected(0, 48, 10)

    # resumed from the checkpoint at 42: the next one is at 51 (past 50), not 45 (10 steps after the trigger)
    resumed = PPO.load(run.checkpoint_path(42), env=make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=1), device="cpu")
    resumed.learn(
        30, callback=EveryNTimestepsAligned(10, AtomicCheckpointCallback(run, keep=100)), reset_num_timesteps=False
    )
    assert resumed.num_timesteps == 90
    assert [s for s, _ in run.checkpoints()] == [12, 21, 30, 42, 51, 60, 72, 81, 90]
    assert expected(42, 90, 10) == [51, 60, 72, 81, 90]


def test_checkpoints_keep_the_newest_and_period_zero_saves_none(tmp_path):
    run = RunDir(tmp_path)
    tiny_ppo().learn(48, callback=EveryNTimestepsAligned(10, AtomicCheckpointCallback(run, keep=2)))
    assert [s for s, _ in run.checkpoints()] == [30, 42]
    other = RunDir(tmp_path / "none")
    tiny_ppo().learn(48, callback=EveryNTimestepsAligned(0, AtomicCheckpointCallback(other)))
    assert other.checkpoints() == []


@pytest.mark.parametrize("period, steps", [(20, [21, 42, 48]), (0, [48])])
def test_evaluations_at_multiples_of_the_period_and_at_the_end(tmp_path, period, steps):
    run = RunDir(tmp_path)
    evaluator = RawScoreEvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=5), 1, run)
    tiny_ppo().learn(48, callback=EveryNTimestepsAligned(period, evaluator))
    rows = run.read_evaluations()
    assert [int(r["timesteps"]) for r in rows] == steps
    assert all(
        int(r["episodes"]) == 1 and float(r["mean_score"]) == float(r["mean_length"])  # +1 a step
        for r in rows
    )
    assert evaluator.last_eval_step == 48 and evaluator.last_score == float(rows[-1]["mean_score"])


def test_progress_bar_counts_the_whole_run_after_a_resume():
    model = tiny_ppo()
    model.learn(24)
    bar = ProgressCallback()
    model.learn(24, callback=CallbackList([bar]), reset_num_timesteps=False)
    assert (bar.pbar.total, bar.pbar.n) == (48, 48)


def test_a_failed_checkpoint_write_leaves_no_file(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    model = tiny_ppo()
    checkpointer = AtomicCheckpointCallback(run)
    checkpointer.init_callback(model)
    first = checkpointer.save()

    def broken_save(file, *args, **kwargs):  # a plain save is given the path, an atomic one its temporary file
        if isinstance(file, (str, os.PathLike)):
            file = open(file, "wb")  # noqa: SIM115
        file.write(b"PK\x03\x04 half a zip")
        file.flush()
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    model.num_timesteps = 24
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save()
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == [first.name] == ["model_0_steps.zip"]
    assert zip_steps(first) == 0
