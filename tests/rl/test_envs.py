"""Atari and MinAtar vector envs: names, the C++ adapter's semantics against SB3's path, raw scores."""

import numpy as np
import pytest

from rims_rl.rl.envs import AleVecEnv, make_atari_env, resolve_env


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Pong", ("atari", "pong")),
        ("pong", ("atari", "pong")),
        ("ALE/Pong-v5", ("atari", "pong")),
        ("PongNoFrameskip-v4", ("atari", "pong")),
        ("BeamRider", ("atari", "beam_rider")),
        ("MinAtar/Breakout", ("minatar", "breakout")),
        ("MinAtar/SpaceInvaders-v1", ("minatar", "space_invaders")),
    ],
)
def test_env_names(name, expected):
    assert resolve_env(name) == expected


def test_unknown_env_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown env 'Pongg'; did you mean Pong"):
        make_atari_env("Pongg")
    with pytest.raises(ValueError, match=r"unknown MinAtar game 'MinAtar/Pong'; known: .*MinAtar/Breakout"):
        make_atari_env("MinAtar/Pong")
    with pytest.raises(ValueError, match=r"n_envs must be a positive integer, got 0"):
        make_atari_env("Pong", n_envs=0)
    with pytest.raises(ValueError, match=r"backend must be 'ale' or 'sb3', got 'gym'"):
        make_atari_env("Pong", n_envs=1, backend="gym")


def run_random(venv, steps, seed=0):
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    record = dict(obs=[obs], rewards=[], dones=[], infos=[])
    for _ in range(steps):
        obs, rewards, dones, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        for key, value in zip(("obs", "rewards", "dones", "infos"), (obs, rewards, dones, infos)):
            record[key].append(value)
    venv.close()
    return record


def test_ale_adapter_matches_sb3_semantics():
    """Breakout with episodic life: same spaces (up to the channel axis), clipped rewards for the
    learner but raw whole-game scores in the episode statistics, terminal observations on every done,
    and a game over only when the lives are gone."""
    steps = 700
    ale = run_random(make_atari_env("Breakout", 2, seed=0, episodic_life=True, frame_stack=4), steps)
    sb3 = run_random(make_atari_env("Breakout", 2, seed=0, episodic_life=True, frame_stack=4, backend="sb3"), steps)
    assert ale["obs"][0].shape == (2, 4, 84, 84) and sb3["obs"][0].shape == (2, 84, 84, 4)
    for rec in (ale, sb3):
        assert all(o.dtype == np.uint8 for o in rec["obs"])
        rewards = np.concatenate(rec["rewards"])
        assert set(np.unique(rewards)) <= {0.0, 1.0} and rewards.max() == 1.0  # Breakout scores, clipped
        dones = np.stack(rec["dones"])
        assert dones.sum() > 4  # lives lost
        episodes = [i["episode"] for infos in rec["infos"] for i in infos if "episode" in i]
        done_infos = [i for infos, d in zip(rec["infos"], rec["dones"]) for i, di in zip(infos, d) if di]
        assert all("terminal_observation" in i for i in done_infos)
        assert 0 < len(episodes) < dones.sum()  # whole games, not lives
        assert all(e["r"] == int(e["r"]) >= 0 for e in episodes)
    # the raw score of a game is the sum of its rewards (Breakout's bricks are worth 1 to 7)
    ale_raw = AleVecEnv("breakout", 1, seed=3, clip_reward=False)
    rec = run_random(ale_raw, 1500)
    total, scores = 0.0, []
    for r, d, infos in zip(rec["rewards"], rec["dones"], rec["infos"]):
        total += r[0]
        if d[0]:
            scores.append((infos[0]["episode"]["r"], total))
            total = 0.0
    assert scores and all(a == b for a, b in scores)


def test_ale_adapter_is_seeded_and_resets_after_game_over():
    a = run_random(make_atari_env("Pong", 2, seed=1), 50)
    b = run_random(make_atari_env("Pong", 2, seed=1), 50)
    assert all(np.array_equal(x, y) for x, y in zip(a["obs"], b["obs"]))
    venv = AleVecEnv("pong", 1, seed=0, max_episode_frames=400)  # truncated after 100 agent steps
    rec = run_random(venv, 120)
    done_at = [t for t, d in enumerate(rec["dones"]) if d[0]]
    assert done_at and done_at[0] <= 100
    info = rec["infos"][done_at[0]][0]
    assert info["TimeLimit.truncated"] and info["episode"]["l"] == done_at[0] + 1
    assert not np.array_equal(info["terminal_observation"], rec["obs"][done_at[0] + 1][0])  # next obs: a new game


def test_minatar_env():
    rec = run_random(make_atari_env("MinAtar/Breakout", 4, seed=0), 600)
    assert rec["obs"][0].shape == (4, 4, 10, 10) and rec["obs"][0].dtype == np.uint8
    assert set(np.unique(np.stack(rec["obs"]))) <= {0, 1}
    episodes = [i["episode"]["r"] for infos in rec["infos"] for i in infos if "episode" in i]
    assert len(episodes) > 10 and max(episodes) >= 1


@pytest.mark.parametrize("backend", ["ale", "sb3"])
def test_episode_score_is_raw_while_the_learner_sees_clipped_rewards(backend):
    """Space Invaders' aliens are worth 5 to 30 points: the learner gets 1 per kill (clipped) while the
    episode statistics hold the game's score, the sum of the raw rewards of the same game (same seed and
    actions, an env without clipping beside it)."""
    kwargs = dict(n_envs=1, seed=0, frame_stack=1, episodic_life=False, backend=backend)
    if backend == "ale":
        kwargs["max_episode_frames"] = 1_600  # a game truncated after 400 agent steps
    clipped = make_atari_env("SpaceInvaders", clip_reward=True, **kwargs)
    raw = make_atari_env("SpaceInvaders", clip_reward=False, **kwargs)
    steps = 450 if backend == "ale" else 1_500
    a, b = run_random(clipped, steps), run_random(raw, steps)
    end = next(t for t, d in enumerate(a["dones"]) if d[0])  # the first game's last step
    clipped_rewards = np.concatenate(a["rewards"][: end + 1])
    raw_rewards = np.concatenate(b["rewards"][: end + 1])
    assert set(np.unique(clipped_rewards)) <= {0.0, 1.0} and clipped_rewards.sum() >= 3  # kills, clipped
    assert np.array_equal(raw_rewards > 0, clipped_rewards > 0) and raw_rewards.max() >= 5  # the same game, raw
    score = a["infos"][end][0]["episode"]["r"]
    assert score == raw_rewards.sum() > clipped_rewards.sum()
