"""scripts/train_ppo.py and scripts/evaluate.py end to end: artifacts, resume after kill -9, clear errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "n_steps=32",
    "batch_size=32",
    "n_epochs=1",
    "sequence_length=8",
    "eval_episodes=1",
    "policy_kwargs.rim_kwargs.hidden_size=8",
]


def cli(script, *args, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def tb_tags(run_dir):
    folders = sorted((run_dir / "tb").iterdir())
    acc = EventAccumulator(str(folders[0]), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return folders, acc


def test_pong_run_writes_every_artifact_and_evaluates(tmp_path):
    run = tmp_path / "pong"
    res = cli(
        "train_ppo.py",
        "--env",
        "Pong",
        "--n-envs",
        "2",
        "--total-timesteps",
        "256",
        "--run-dir",
        run,
        "--no-progress",
        "--hp",
        *TINY,
        "eval_freq=128",
        "checkpoint_freq=128",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env"] == "Pong" and config["hyperparameters"]["policy_kwargs"]["rim_kwargs"]["k_active"] == 5
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["model_128_steps.zip", "model_256_steps.zip"]
    rows = list(csv.DictReader(open(run / "evaluations.csv")))
    assert [int(r["timesteps"]) for r in rows] == [128, 256]
    assert all(-21 <= float(r["mean_score"]) <= 21 and float(r["mean_length"]) > 100 for r in rows)  # whole games
    folders, acc = tb_tags(run)
    assert len(folders) == 1
    scalars = acc.Tags()["scalars"]
    assert {"train/loss", "eval/mean_reward", "rim/selection_entropy", "rim/active_frequency_u0"} <= set(scalars)
    assert "rim/active_mechanisms" in acc.Tags()["images"]
    weights = torch.load(run / "final_weights.pt", weights_only=True)
    assert weights["run"]["agent"] == "rim" and any("rim" in k for k in weights["state_dict"])

    out = tmp_path / "eval.json"  # evaluate.py RUN_DIR reads the weights-only export (final_weights.pt)
    res = cli(
        "evaluate.py",
        run,
        "--episodes",
        "1",
        "--deterministic",
        "--output",
        out,
        "--video",
        tmp_path / "game.mp4",
        "--still",
        tmp_path / "game.png",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["episodes"] == 1 and -21 <= result["mean_score"] <= 21 and result["mean_length"] > 100
    assert len(result["activation_frequency"]) == 6
    assert abs(sum(result["activation_frequency"]) - 5) < 1e-3  # 5 of 6 active at every step
    assert (tmp_path / "game.mp4").stat().st_size > 10_000
    still = imageio.imread(tmp_path / "game.png")  # the last frame: game | gap | strip of 6 mechanisms
    assert still.shape[0] == 252 and still.shape[1] > 252 + 8 and still[:, 252 + 8 :].max() == 255


def test_weights_export_gives_the_same_actions(tmp_path):
    from rims_rl.rl.evaluation import load_trained

    run = tmp_path / "m"
    res = cli(
        "train_ppo.py",
        "--env",
        "MinAtar/Breakout",
        "--n-envs",
        "2",
        "--total-timesteps",
        "64",
        "--run-dir",
        run,
        "--no-progress",
        "--hp",
        *TINY,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    zipped, _ = load_trained(run / "final_model.zip")
    weights, _ = load_trained(run / "final_weights.pt")
    obs = torch.randint(0, 2, (16, 4, 10, 10)).numpy().astype("uint8")
    starts = torch.ones(16).numpy()
    a1, s1 = zipped.predict(obs, episode_start=starts, deterministic=True)
    a2, s2 = weights.predict(obs, episode_start=starts, deterministic=True)
    assert (a1 == a2).all() and torch.equal(torch.as_tensor(s1[0]), torch.as_tensor(s2[0]))


def test_killed_run_resumes_with_continuous_steps(tmp_path):
    run = tmp_path / "killed"
    args = [
        sys.executable,
        str(ROOT / "scripts" / "train_ppo.py"),
        "--env",
        "MinAtar/Breakout",
        "--n-envs",
        "2",
        "--total-timesteps",
        "100000",
        "--run-dir",
        str(run),
        "--no-progress",
        "--hp",
        *TINY,
        "checkpoint_freq=64",
        "eval_freq=64",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((run / "checkpoints").glob("model_*_steps.zip"))) < 2:
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("model_*_steps.zip"))
    assert saved and not (run / "final_model.zip").exists()
    last = saved[-1]
    total = last + 128
    res = cli(
        "train_ppo.py",
        "--env",
        "MinAtar/Breakout",
        "--run-dir",
        run,
        "--resume",
        "--no-progress",
        "--total-timesteps",
        total,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    from rims_rl.rl.evaluation import load_trained

    model, _ = load_trained(run / "final_model.zip")
    assert model.num_timesteps == total
    folders, acc = tb_tags(run)
    assert len(folders) == 1  # the same TensorBoard run
    steps = [e.step for e in acc.Scalars("time/fps")]
    assert steps == sorted(steps) and steps[-1] == total and min(steps) < last  # one continuous counter
    assert len(steps) == len(set(steps))  # each step once: what the killed run logged after `last` is hidden
    evaluated = [int(r["timesteps"]) for r in csv.DictReader(open(run / "evaluations.csv"))]
    assert evaluated == sorted(set(evaluated)) and evaluated[-1] == total  # and dropped from the evaluations


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "Pongg"], "error: unknown env 'Pongg'; did you mean Pong"),
        (["--env", "Pong", "--agent", "gru"], "error: unknown agent 'gru'; known: rim, lstm, ppo"),
        (["--env", "Pong", "--hp", "learning_rat=1"], "error: unknown hyperparameter(s) ['learning_rat']"),
        (["--env", "Pong", "--hp", "n_steps"], "error: --hp expects key=value, got 'n_steps'"),
        (["--env", "Pong", "--hp", "n_steps=-4"], "error: n_steps must be a positive integer"),
        (
            ["--env", "Pong", "--run-dir", "/nonexistent/run", "--resume"],
            "error: cannot resume: run directory /nonexistent/run does not exist",
        ),
    ],
)
def test_bad_input_gives_one_line_error(args, message):
    res = cli("train_ppo.py", *args, "--no-progress")
    assert res.returncode == 2
    assert res.stderr.startswith(message), res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_resume_refuses_another_agent_and_evaluate_refuses_bad_paths(tmp_path):
    run = tmp_path / "r"
    assert (
        cli(
            "train_ppo.py",
            "--env",
            "MinAtar/Breakout",
            "--n-envs",
            "2",
            "--total-timesteps",
            "64",
            "--run-dir",
            run,
            "--no-progress",
            "--hp",
            *TINY,
        ).returncode
        == 0
    )
    res = cli("train_ppo.py", "--env", "MinAtar/Breakout", "--agent", "lstm", "--run-dir", run, "--resume")
    assert res.returncode == 2 and res.stderr.startswith(
        f"error: cannot resume {run}: it was trained with agent='rim', not 'lstm'"
    )
    res = cli("train_ppo.py", "--env", "MinAtar/Breakout", "--run-dir", run, "--no-progress")
    assert res.returncode == 2 and "already holds a run: pass --resume" in res.stderr
    res = cli("evaluate.py", tmp_path / "missing")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr
