"""MuZero's replay in a file of its own: saved atomically, loaded safely and exactly, and what ``learning_starts``
means for an agent that goes on with a loaded replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dream_envs.agents import MuZero
from dream_envs.agents.muzero import MuZeroReplay
from dream_envs.agents.muzero.replay import REPLAY_FORMAT
from dream_envs.io import ModelFileError, save_torch_file

TINY = {"n_envs": 2, "num_simulations": 4, "batch_size": 8, "latent_size": 8, "hidden_size": 16,
        "learning_starts": 30, "device": "cpu"}  # fmt: skip
FIELDS = ("obs", "action", "reward", "root_value", "policy", "last", "terminal", "priority")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An agent after 80 real steps (40 per env: finished episodes and open ones), its file and its replay's."""
    folder = tmp_path_factory.mktemp("muzero")
    agent = MuZero("CartPole-v1", seed=0, **TINY).learn(80)
    return agent, agent.save(folder / "agent.pt"), agent.save_replay_buffer(folder / "replay.pt")


def same_replay(a: MuZeroReplay, b: MuZeroReplay) -> None:
    width = int(a.ptr.max())
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name)[:, :width], getattr(b, name)[:, :width], err_msg=name)
    np.testing.assert_array_equal(a.ptr, b.ptr)
    np.testing.assert_array_equal(a.episode_start, b.episode_start)
    assert (a.max_priority, len(a), a.n_envs, a.obs_shape, a.n_actions) == (b.max_priority, len(b), b.n_envs,
                                                                            b.obs_shape, b.n_actions)  # fmt: skip


def test_the_replay_round_trips_exactly_and_a_loaded_agent_trains_at_once(trained):
    agent, agent_file, replay_file = trained
    assert len(agent.replay) == 80 and (agent.replay.ptr > agent.replay.episode_start).any()  # open episodes too
    loaded = MuZero.load(agent_file, "CartPole-v1", n_envs=2)
    loaded.load_replay_buffer(replay_file)
    same_replay(loaded.replay, agent.replay)
    sampled = loaded.replay.sample(16, np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip(sampled, agent.replay.sample(16, np.random.default_rng(0))))

    ptr, steps = loaded.replay.ptr.copy(), loaded.gradient_steps
    loaded.learn(4)  # 4 real steps (2 per env), far below learning_starts=30: the loaded replay holds 80 states
    assert loaded.gradient_steps == steps + 2  # train_ratio 0.5 per real step, from the first one on
    # The episodes open at save time end at their newest state; the new episodes start right after it.
    rows = np.arange(2)
    assert (loaded.replay.action[rows, ptr - 1] == -1).all() and (loaded.replay.episode_start >= ptr).all()
    assert (loaded.replay.last[rows, ptr - 1] == ptr - 1).all() and len(loaded.replay) == 80 - 2 + 4


def test_without_its_replay_a_loaded_agent_waits_as_a_fresh_one(trained):
    _, agent_file, _ = trained
    loaded = MuZero.load(agent_file, "CartPole-v1", n_envs=2)
    steps = loaded.gradient_steps
    loaded.learn(28)  # 28 states: below learning_starts=30
    assert loaded.gradient_steps == steps and len(loaded.replay) == 28
    loaded.learn(2, reset_num_timesteps=False)  # 30: the first gradient step
    assert loaded.gradient_steps == steps + 1


def test_a_second_learn_call_neither_waits_again_nor_joins_episodes_across_the_reset():
    agent = MuZero("CartPole-v1", seed=1, **TINY).learn(40)
    ptr, steps = agent.replay.ptr.copy(), agent.gradient_steps
    agent.learn(2)  # reset_num_timesteps=True: fresh episodes in every env, 38 + 2 states >= 30
    assert agent.gradient_steps == steps + 1
    assert (agent.replay.action[np.arange(2), ptr - 1] == -1).all() and (agent.replay.episode_start >= ptr).all()


def test_damaged_or_foreign_replay_files_are_refused(trained, tmp_path):
    agent, agent_file, replay_file = trained
    fresh = MuZero("CartPole-v1", seed=0, **TINY)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(replay_file.read_bytes()[:-200])
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        fresh.load_replay_buffer(truncated)
    with pytest.raises(ModelFileError, match="not a MuZero replay buffer"):
        fresh.load_replay_buffer(agent_file)
    payload = torch.load(replay_file, weights_only=True)
    for name, value, message in [
        ("reward", torch.full_like(payload["reward"], float("nan")), "reward holds NaN"),
        ("action", torch.full_like(payload["action"], 7), "actions must lie in -1..1"),
        ("policy", payload["policy"][:, :, :1], "policy is float32"),
        ("ptr", payload["ptr"] + 5, "obs is float32 \\(2, 42, 4\\), expected float32 \\(2, 47, 4\\)"),
        ("episode_start", payload["ptr"] + 1, "episode starts .* do not lie within the rows' lengths"),
        ("episode_start", None, "no entry 'episode_start'"),
    ]:
        damaged = {k: v for k, v in payload.items() if k != name}
        if value is not None:
            damaged[name] = value
        save_torch_file(tmp_path / "damaged.pt", damaged)
        with pytest.raises(ModelFileError, match=message):
            fresh.load_replay_buffer(tmp_path / "damaged.pt")
    assert payload["format"] == REPLAY_FORMAT
    with pytest.raises(ValueError, match="2 self-play envs; this agent plays 3: make it with n_envs=2"):
        MuZero("CartPole-v1", seed=0, **{**TINY, "n_envs": 3}).load_replay_buffer(replay_file)
    with pytest.raises(ModelFileError, match="replay of observations \\(4,\\) and 2 actions"):
        MuZero("Acrobot-v1", seed=0, **TINY).load_replay_buffer(replay_file)
    with pytest.raises(FileNotFoundError):
        fresh.load_replay_buffer(tmp_path / "nowhere.pt")
