"""MiniGrid: names, the 7x7x3 view channel first, the starter agents' CNN, the novel-distractor task, training
with zero-shot evaluation envs and evaluating on another env."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import yaml

from rims_rl.rl.envs import make_atari_env, resolve_env
from rims_rl.rl.evaluation import evaluate, load_trained
from rims_rl.rl.extractors import MiniGridCNN
from rims_rl.rl.minigrid_envs import TARGET, TEST_COLOURS, TRAIN_COLOURS, PickupDistractorsEnv, register_envs
from rims_rl.rl.training import resolve_config, train

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "n_steps=32",
    "batch_size=32",
    "n_epochs=1",
    "sequence_length=8",
    "eval_episodes=2",
    "eval_freq=128",
    "checkpoint_freq=128",
]


@pytest.mark.parametrize(
    "name",
    [
        "MiniGrid-MultiRoom-N2-S4-v0",
        "MiniGrid-Empty-16x16-v0",
        "BabyAI-GoToRedBall-v0",
        "RIMs-PickupDistractors-Test-v0",
    ][:4],
)
def test_minigrid_names(name):
    assert resolve_env(name) == ("minigrid", name)


def test_unknown_minigrid_env_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown MiniGrid env 'MiniGrid-Empty-5x6-v0'; did you mean .*Empty-"):
        resolve_env("MiniGrid-Empty-5x6-v0")


def test_partial_view_channel_first_with_raw_returns():
    venv = make_atari_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, 3, 7, 7) and obs.dtype == np.uint8 and obs.max() <= 10  # object, colour, state indices
    assert venv.action_space == gym.spaces.Discrete(7)
    rng, returns = np.random.default_rng(0), []
    for _ in range(400):
        _, _, _, infos = venv.step(rng.integers(0, 7, 2))
        returns += [info["episode"]["r"] for info in infos if "episode" in info]
    venv.close()
    assert returns and all(0 <= r < 1 for r in returns)  # MiniGrid's 1 - 0.9 steps / max_steps, or 0
    assert resolve_config("MiniGrid-Empty-5x5-v0", "lstm").policy_kwargs["normalize_images"] is False


def test_minigrid_cnn_shapes():
    space = gym.spaces.Box(0, 255, (3, 7, 7), np.uint8)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(5)]))
    assert MiniGridCNN(space)(obs).shape == (5, 64)  # the starter agents' 64 features
    assert MiniGridCNN(space, features_dim=32)(obs).shape == (5, 32)
    with pytest.raises(ValueError, match="at least 5x5, got 4x4"):
        MiniGridCNN(gym.spaces.Box(0, 255, (3, 4, 4), np.uint8))


def objects(env):
    grid = env.unwrapped.grid
    return [(o.type, o.color) for o in grid.grid if o is not None and o.type in ("key", "ball")]


def test_distractor_colours_are_held_out_of_training():
    register_envs()
    seen = {"Train": set(), "Test": set()}
    for split in seen:
        env = gym.make(f"RIMs-PickupDistractors-{split}-v0")
        for seed in range(30):
            env.reset(seed=seed)
            found = objects(env)
            assert found.count(TARGET) == 1 and len(found) == 4
            seen[split] |= {colour for kind, colour in found if (kind, colour) != TARGET}
        env.close()
    assert seen["Train"] == set(TRAIN_COLOURS) and seen["Test"] == set(TEST_COLOURS)
    with pytest.raises(ValueError, match=r"MiniGrid colours other than 'yellow', got \('pink',\); allowed"):
        PickupDistractorsEnv(("pink",))


def test_picking_up_the_target_succeeds_and_a_distractor_fails():
    env = PickupDistractorsEnv(num_distractors=1)
    for want, reward_positive in ((TARGET, True), (None, False)):
        env.reset(seed=3)
        u = env
        found = [o for o in u.grid.grid if o is not None and o.type in ("key", "ball")]
        target = next(o for o in found if ((o.type, o.color) == TARGET) == (want is not None))
        # put the agent next to the object, facing it, and pick it up
        x, y = target.cur_pos
        for dx, dy, direction in ((-1, 0, 0), (1, 0, 2), (0, -1, 1), (0, 1, 3)):
            if u.grid.get(x + dx, y + dy) is None and 0 < x + dx < u.width - 1 and 0 < y + dy < u.height - 1:
                u.agent_pos, u.agent_dir = np.array((x + dx, y + dy)), direction
                break
        _, reward, terminated, _, _ = env.step(env.actions.pickup)
        assert terminated and (reward > 0) == reward_positive


def test_run_evaluates_its_eval_envs_and_evaluate_plays_another_env(tmp_path):
    run = tmp_path / "run"
    train(
        "MiniGrid-Empty-5x5-v0",
        "rim",
        0,
        256,
        2,
        "cpu",
        run,
        TINY + ["policy_kwargs.rim_kwargs.hidden_size=4"],
        progress=False,
        eval_envs=["MiniGrid-Empty-8x8-v0"],
    )
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["eval_envs"] == ["MiniGrid-Empty-8x8-v0"] and "eval_envs" not in config["hyperparameters"]
    rows = list(csv.DictReader(open(run / "env_evaluations.csv")))
    assert [(r["env"], int(r["timesteps"])) for r in rows] == [
        ("MiniGrid-Empty-5x5-v0", 128),
        ("MiniGrid-Empty-8x8-v0", 128),
        ("MiniGrid-Empty-5x5-v0", 256),
        ("MiniGrid-Empty-8x8-v0", 256),
    ]
    assert all(0 <= float(r["success_rate"]) <= 1 and int(r["episodes"]) == 2 for r in rows)

    out = tmp_path / "zero_shot.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts/evaluate.py"), run, "--env", "MiniGrid-Empty-6x6-v0", "--episodes", "2"]
        + ["--output", out],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["env"] == "MiniGrid-Empty-6x6-v0" and result["trained_on"] == "MiniGrid-Empty-5x5-v0"
    assert result["success_rate"] == np.mean(np.array(result["scores"]) > 0)
    assert "success rate" in res.stdout and "(trained on MiniGrid-Empty-5x5-v0)" in res.stdout

    model, run_config = load_trained(run)
    evaluate(model, run_config, 1, env="MiniGrid-Empty-6x6-v0", still=tmp_path / "view.png")
    image = imageio.imread(tmp_path / "view.png")  # MiniGrid's drawing of the 7x7 view | the mechanisms strip
    assert image.shape[0] == 252 and image[:224, :224].std() > 10
    with pytest.raises(ValueError) as error:
        evaluate(model, run_config, 1, env="MinAtar/Breakout")
    message = str(error.value)
    assert "\n" not in message and "MinAtar/Breakout has observations Box(0, 1, (4, 10, 10), uint8)" in message
    assert "the agent Box(0, 255, (3, 7, 7), uint8) and Discrete(7)" in message


def test_eval_envs_of_other_spaces_are_refused_before_the_run_starts(tmp_path):
    with pytest.raises(ValueError, match=r"cannot play MinAtar/Breakout with an agent of MiniGrid-Empty-5x5-v0"):
        train(
            "MiniGrid-Empty-5x5-v0",
            "lstm",
            0,
            64,
            2,
            "cpu",
            tmp_path / "r",
            TINY,
            progress=False,
            eval_envs=["MinAtar/Breakout"],
        )
    assert not (tmp_path / "r").exists()


def test_cli_trains_with_eval_envs_and_a_resume_keeps_them(tmp_path):
    run = tmp_path / "run"
    args = ["--env", "MiniGrid-MultiRoom-N2-S4-v0", "--eval-envs", "MiniGrid-MultiRoom-N4-S5-v1", "--agent", "lstm"]
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train_ppo.py"), *args, "--n-envs", "2", "--total-timesteps", "128"]
        + ["--run-dir", run, "--no-progress", "--hp", *TINY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    train("MiniGrid-MultiRoom-N2-S4-v0", "lstm", total_timesteps=256, run_dir=run, resume=True, progress=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["eval_envs"] == ["MiniGrid-MultiRoom-N4-S5-v1"]
    rows = list(csv.DictReader(open(run / "env_evaluations.csv")))
    assert [(r["env"][-9:], int(r["timesteps"])) for r in rows] == [
        ("-N2-S4-v0", 128),
        ("-N4-S5-v1", 128),
        ("-N2-S4-v0", 256),
        ("-N4-S5-v1", 256),
    ]
