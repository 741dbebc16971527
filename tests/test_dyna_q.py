"""Tabular Dyna-Q: the count model, planning (uniform, prioritized, Dyna-Q+), SB3's shape, persistence, errors."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy

from dream_envs import ModelFileError
from dream_envs.agents import DynaQ, TabularModel
from sb3_plugins import EpisodesToThreshold


def lake(slippery: bool = False, **kwargs) -> gym.Env:
    return gym.make("FrozenLake-v1", is_slippery=slippery, **kwargs)


# ---------------------------------------------------------------- the model
def test_stochastic_outcomes_are_kept_as_counts_and_sampled_in_proportion():
    model = TabularModel(n_states=4, n_actions=2, slots=1)
    for next_state, times in ((1, 3), (2, 1), (3, 4)):  # three outcomes: the tables grow past one slot
        for _ in range(times):
            model.observe(0, 1, reward=float(next_state == 3), next_state=next_state, terminated=next_state == 3)
    assert model.counts[0, 1].sum() == 8 and sorted(model.counts[0, 1][model.counts[0, 1] > 0]) == [1, 3, 4]
    rng = np.random.default_rng(0)
    rewards, next_states, terminated = model.sample(np.zeros(40_000, int), np.ones(40_000, int), rng)
    frequencies = np.bincount(next_states, minlength=4) / 40_000
    np.testing.assert_allclose(frequencies, [0, 3 / 8, 1 / 8, 4 / 8], atol=0.01)
    assert np.all(terminated == (next_states == 3)) and np.all(rewards == (next_states == 3))
    assert model.predecessors[2] == {(0, 1)} and model.tried_pairs == [(0, 1)]
    assert model.expected_target(0, 1, np.ones((4, 2)), gamma=0.5) == pytest.approx(3 / 8 * 0.5 + 1 / 8 * 0.5 + 4 / 8)
    copy = TabularModel(4, 2)
    copy.load_state_dict(model.state_dict())
    assert np.array_equal(copy.counts, model.counts) and copy.predecessors == model.predecessors


# ---------------------------------------------------------------- learning
def test_solves_the_deterministic_lake():
    agent = DynaQ(lake(), planning_steps=20, seed=0).learn(5_000)
    assert evaluate_policy(agent, lake(), n_eval_episodes=1)[0] == 1.0
    assert agent.planning_updates == 20 * 5_000


def episodes_to_solve(planning_steps: int, seed: int, **kwargs) -> int:
    check = EpisodesToThreshold("FrozenLake-v1", 1.0, every=1, n_episodes=1, env_kwargs={"is_slippery": False})
    DynaQ(lake(), planning_steps=planning_steps, seed=seed, **kwargs).learn(50_000, callback=check)
    assert check.hit is not None
    return check.hit


def test_more_planning_needs_fewer_real_episodes_on_the_deterministic_lake():
    # Paired by seed: acting draws its own random numbers, so the agents differ only through planning.
    seeds = range(6)
    without = np.array([episodes_to_solve(0, s) for s in seeds])
    planned = np.array([episodes_to_solve(50, s) for s in seeds])
    swept = np.array([episodes_to_solve(50, s, prioritized_sweeping=True) for s in seeds])
    assert np.all(planned <= without) and planned.sum() < without.sum() * 0.8, (without, planned)
    assert np.all(swept <= without) and swept.sum() < without.sum() * 0.8, (without, swept)


def test_prioritized_sweeping_updates_only_pairs_worth_it():
    agent = DynaQ(lake(), planning_steps=50, prioritized_sweeping=True, seed=0).learn(2_000)
    assert 0 < agent.planning_updates < 50 * 2_000  # the queue empties: rewards are rare
    assert evaluate_policy(agent, lake(), n_eval_episodes=1)[0] == 1.0


def test_dyna_q_plus_bonus_draws_untried_actions_back_into_consideration():
    plain = DynaQ(lake(), planning_steps=10, exploration_rate=0.0, seed=0)
    plus = DynaQ(lake(), planning_steps=10, exploration_rate=0.0, kappa=0.01, seed=0)
    for agent in (plain, plus):
        agent.learn(300)
    untried = plain.model.counts.sum(-1) == 0
    assert untried[plain.visited].any()  # a greedy agent leaves actions of visited states untried
    assert np.all(plain.q[untried] == 0.0)  # plain Dyna-Q never plans them
    untried_plus = (plus.model.counts.sum(-1) == 0) & plus.visited[:, None]
    assert np.all(plus.q[untried_plus] > 0.0)  # Dyna-Q+: sqrt(time since tried) bonus, back to the same state


def test_learns_on_slippery_lake_with_all_outcomes_in_the_model():
    agent = DynaQ(lake(slippery=True), planning_steps=10, gamma=0.99, seed=0).learn(30_000)
    assert (agent.model.counts > 0).sum(-1).max() == 3  # each move slips to one of three cells
    assert evaluate_policy(agent, lake(slippery=True), n_eval_episodes=200)[0] > 0.5


# ---------------------------------------------------------------- SB3's shape
def test_predict_single_and_batched_like_sb3():
    agent = DynaQ(lake(), seed=0).learn(1_000)
    action, state = agent.predict(0, deterministic=True)
    assert state is None and np.ndim(action) == 0 and action == agent.q[0].argmax()
    actions, _ = agent.predict(np.arange(16), deterministic=True)
    assert actions.shape == (16,) and np.array_equal(actions, agent.q.argmax(-1))
    with pytest.raises(ValueError, match="does not fit the observation space"):
        agent.predict(np.zeros((2, 3), dtype=int))


def test_composes_with_stock_callbacks_progress_bar_and_logger(tmp_path, csv_logger):
    agent = DynaQ(lake(), planning_steps=5, seed=0)
    agent.set_logger(csv_logger)
    evaluation = EvalCallback(lake(), eval_freq=500, n_eval_episodes=1, log_path=str(tmp_path / "eval"), verbose=0)
    checkpoints = CheckpointCallback(save_freq=1_000, save_path=str(tmp_path / "ckpt"), name_prefix="dq")
    agent.learn(2_000, callback=[evaluation, checkpoints], progress_bar=True, log_interval=5)
    assert agent.num_timesteps == 2_000 and evaluation.n_calls == 2_000 and len(evaluation.evaluations_results) == 4
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["dq_1000_steps.zip", "dq_2000_steps.zip"]
    DynaQ.load(tmp_path / "ckpt" / "dq_2000_steps.zip", lake())
    header = (tmp_path / "log" / "progress.csv").read_text().splitlines()[0]
    assert "rollout/ep_rew_mean" in header and "time/fps" in header
    agent.learn(500, reset_num_timesteps=False)
    assert agent.num_timesteps == 2_500


def test_save_load_round_trip_and_bad_files(tmp_path):
    agent = DynaQ(lake(), planning_steps=5, prioritized_sweeping=True, gamma=0.9, seed=0).learn(3_000)
    path = agent.save(tmp_path / "agent.pt")
    loaded = DynaQ.load(path, lake())
    assert np.array_equal(loaded.q, agent.q) and loaded.gamma == 0.9 and loaded.prioritized_sweeping
    assert np.array_equal(loaded.model.counts, agent.model.counts) and loaded.num_timesteps == 3_000
    states = np.arange(16)
    assert np.array_equal(loaded.predict(states, deterministic=True)[0], agent.predict(states, deterministic=True)[0])
    with pytest.raises(
        ModelFileError, match="saved for observation space Discrete\\(16\\); the env has Discrete\\(64\\)"
    ):
        DynaQ.load(path, lake(map_name="8x8"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        DynaQ.load(tmp_path / "junk.pt", lake())
    with pytest.raises(FileNotFoundError, match="no dream-envs agent file"):
        DynaQ.load(tmp_path / "none.pt", lake())


# ---------------------------------------------------------------- errors at the boundary
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env="CartPole-v1"), "needs Discrete observation and action spaces.*Box"),
        (dict(learning_rate=0.0), "learning_rate must be a number in \\(0, 1\\], got 0.0"),
        (dict(gamma=1.5), "gamma must be a number in \\[0, 1\\], got 1.5"),
        (dict(exploration_rate=-0.1), "exploration_rate must be a number in \\[0, 1\\], got -0.1"),
        (dict(planning_steps=-1), "planning_steps must be an integer >= 0"),
        (dict(kappa=float("nan")), "kappa must be a number in \\[0, inf\\), got nan"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    kwargs = {"env": lake(), **kwargs}
    with pytest.raises(ValueError, match=message):
        DynaQ(**kwargs)
    with pytest.raises(ValueError, match="total_timesteps must be a positive integer"):
        DynaQ(lake()).learn(0)


def test_import_dream_envs_does_not_import_sb3():
    code = "import sys, dream_envs; assert 'stable_baselines3' not in sys.modules, 'SB3 was imported'"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
