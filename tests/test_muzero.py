"""MuZero: the search, the categorical support, the unrolled targets, the agent's contracts."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from dream_envs.agents import MuZero
from dream_envs.agents.muzero import MuZeroNetwork, MuZeroReplay
from dream_envs.agents.muzero.agent import _scale_gradient, visit_temperature
from dream_envs.agents.muzero.support import from_support, inverse_scale, scale, to_support
from dream_envs.io import ModelFileError
from dream_envs.planning import BatchedMCTS

TINY = {"n_envs": 2, "num_simulations": 4, "batch_size": 8, "latent_size": 8, "hidden_size": 16,
        "learning_starts": 16}  # fmt: skip


class TreeModel:
    """A known deterministic model: hidden = (node id,), a table of children and edge rewards, values all 0.

    From the root, action 0 pays 1 now and nothing after; action 1 pays 0 now and 5 one step later. A greedy
    one-step look-ahead picks 0; a search that looks two steps ahead must pick 1.
    """

    # node -> (child of action 0, reward), (child of action 1, reward)
    EDGES = {0: ((1, 1.0), (2, 0.0)), 1: ((3, 0.0), (3, 0.0)), 2: ((3, 0.0), (3, 5.0)), 3: ((3, 0.0), (3, 0.0))}

    def initial_inference(self, observations):
        n = len(observations)
        return np.zeros((n, 1)), np.zeros(n), np.zeros((n, 2))

    def recurrent_inference(self, hidden, actions):
        children = np.array([self.EDGES[int(h)][a][0] for h, a in zip(hidden[:, 0], actions)], float)
        rewards = np.array([self.EDGES[int(h)][a][1] for h, a in zip(hidden[:, 0], actions)])
        return children[:, None], rewards, np.zeros(len(actions)), np.zeros((len(actions), 2))


def test_mcts_finds_the_move_that_pays_later():
    # pUCT first exploits action 0's early reward; the prior term brings it back to action 1 after ~20 visits.
    result = BatchedMCTS(n_actions=2, num_simulations=80, discount=1.0, seed=0).search(TreeModel(), np.zeros((4, 1)))
    assert (result.visit_counts.argmax(-1) == 1).all(), result.visit_counts
    assert result.visit_counts.sum(-1).tolist() == [80] * 4
    # The root's value tends to the best return, 5, as the search concentrates on it.
    assert (result.root_values > 3.0).all(), result.root_values


def test_mcts_with_a_single_simulation_is_greedy_on_the_prior():
    class Prior:
        def initial_inference(self, obs):
            return np.zeros((len(obs), 1)), np.zeros(len(obs)), np.tile([0.0, 3.0, 0.0], (len(obs), 1))

        def recurrent_inference(self, hidden, actions):
            return hidden, np.zeros(len(actions)), np.zeros(len(actions)), np.zeros((len(actions), 3))

    result = BatchedMCTS(n_actions=3, num_simulations=2, seed=0).search(Prior(), np.zeros((2, 1)))
    # The first simulation ties (no visits yet); the second follows the prior's favourite.
    assert (result.visit_counts[:, 1] >= 1).all()
    np.testing.assert_allclose(result.root_prior.sum(-1), 1.0)


def test_mcts_trees_searched_together_keep_their_own_answers():
    class Opposite(TreeModel):  # tree 0 prefers action 1 (as TreeModel); tree 1 gets rewards mirrored
        def recurrent_inference(self, hidden, actions):
            first = hidden[:, 0] == 0
            mirrored = np.where(np.arange(len(actions)) % 2 == 1, 1 - actions, actions)
            children, rewards, values, logits = super().recurrent_inference(hidden, np.where(first, mirrored,
                                                                                              actions))  # fmt: skip
            return children, rewards, values, logits

    result = BatchedMCTS(n_actions=2, num_simulations=80, discount=1.0, seed=1).search(Opposite(), np.zeros((2, 1)))
    assert result.visit_counts.argmax(-1).tolist() == [1, 0]


def test_root_noise_changes_the_prior_and_is_seeded():
    model = TreeModel()
    a = BatchedMCTS(2, num_simulations=8, seed=3).search(model, np.zeros((3, 1)), add_noise=True)
    b = BatchedMCTS(2, num_simulations=8, seed=3).search(model, np.zeros((3, 1)), add_noise=True)
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)


def test_action_from_visits_temperature():
    visits = np.array([[1.0, 9.0], [30.0, 0.0]])
    rng = np.random.default_rng(0)
    assert BatchedMCTS.action_from_visits(visits, 0.0, rng).tolist() == [1, 0]
    draws = np.stack([BatchedMCTS.action_from_visits(visits, 1.0, rng) for _ in range(2000)])
    assert abs(draws[:, 0].mean() - 0.9) < 0.03  # visits 1:9 sampled in proportion at temperature 1
    assert (draws[:, 1] == 0).all()


@pytest.mark.parametrize("bad", [{"n_actions": 1}, {"n_actions": 2, "num_simulations": 0},
                                 {"n_actions": 2, "discount": 1.5},
                                 {"n_actions": 2, "dirichlet_alpha": 0.0}])  # fmt: skip
def test_mcts_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if len(bad) == 1 else list(bad)[1]):
        BatchedMCTS(**bad)


def test_support_round_trip():
    x = torch.tensor([-30.0, -1.0, 0.0, 0.4, 1.0, 7.5, 99.0])
    torch.testing.assert_close(inverse_scale(scale(x)), x, rtol=1e-4, atol=1e-4)
    bins = to_support(x, 20)
    torch.testing.assert_close(bins.sum(-1), torch.ones(len(x)))
    torch.testing.assert_close(from_support(torch.log(bins.clamp_min(1e-12)), 20), x, rtol=1e-3, atol=1e-3)
    # Past the support's edge the value is clipped to the top bin.
    assert from_support(torch.log(to_support(torch.tensor([1e6]), 5).clamp_min(1e-12)), 5) < 100


def _trajectory(replay, rewards, env=0, n_envs=1):
    for t, r in enumerate(rewards):
        obs = np.full((n_envs, 1), float(t))
        replay.add_step(obs, np.full(n_envs, t % 2), np.full(n_envs, r), np.full(n_envs, 10.0 + t),
                        np.tile([0.25, 0.75], (n_envs, 1)))  # fmt: skip


def test_value_targets_on_a_hand_made_terminated_trajectory():
    replay = MuZeroReplay(n_envs=1, obs_shape=(1,), n_actions=2)
    _trajectory(replay, [1.0, 2.0, 3.0, 4.0])
    replay.end_episode(0, np.array([4.0]), terminated=True, final_value=99.0)
    g = 0.5
    t = replay.targets(np.array([0]), np.array([1]), unroll_steps=4, td_steps=2, discount=g)
    # From state 1: r1 + g r2 + g^2 V(3) with V(3) = 13 (the stored search value), and so on; state 4 is the
    # absorbing end (value 0, whatever final_value said), and the unroll past it too.
    expected = [2 + g * 3 + g**2 * 13, 3 + g * 4 + g**2 * 0, 4 + g * 0, 0.0, 0.0]
    np.testing.assert_allclose(t.values[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(t.value_mask[0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(t.rewards[0], [2, 3, 4, 0])
    np.testing.assert_array_equal(t.reward_mask[0], [1, 1, 1, 1])  # reward 0 past a termination is a target
    np.testing.assert_array_equal(t.policy_mask[0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(t.actions[0, :3], [1, 0, 1])
    np.testing.assert_allclose(t.policies[0, 0], [0.25, 0.75])


def test_value_targets_bootstrap_a_time_limit_and_mask_the_unknown():
    replay = MuZeroReplay(n_envs=1, obs_shape=(1,), n_actions=2)
    _trajectory(replay, [1.0, 1.0])
    replay.end_episode(0, np.array([2.0]), terminated=False, final_value=7.0)
    t = replay.targets(np.array([0]), np.array([1]), unroll_steps=2, td_steps=5, discount=1.0)
    np.testing.assert_allclose(t.values[0, :2], [1 + 7.0, 7.0])  # cut off by the time limit: bootstrap
    np.testing.assert_array_equal(t.value_mask[0], [1, 1, 0])  # after a time limit nothing is known
    np.testing.assert_array_equal(t.reward_mask[0], [1, 0])


def test_targets_of_an_episode_in_play_stop_at_its_newest_state():
    replay = MuZeroReplay(n_envs=1, obs_shape=(1,), n_actions=2)
    _trajectory(replay, [1.0, 1.0, 1.0])
    t = replay.targets(np.array([0]), np.array([1]), unroll_steps=2, td_steps=5, discount=1.0)
    np.testing.assert_allclose(t.values[0, :2], [1 + 12.0, 12.0])  # bootstrap from state 2's search value
    np.testing.assert_array_equal(t.value_mask[0], [1, 1, 0])
    np.testing.assert_array_equal(t.reward_mask[0], [1, 1])


def test_reanalysed_bootstrap_uses_the_given_values_and_zero_after_termination():
    replay = MuZeroReplay(n_envs=1, obs_shape=(1,), n_actions=2)
    _trajectory(replay, [1.0, 1.0, 1.0])
    replay.end_episode(0, np.array([3.0]), terminated=True, final_value=0.0)
    t = replay.targets(np.array([0, 0]), np.array([0, 2]), 1, td_steps=1, discount=1.0,
                       bootstrap=lambda obs: 100.0 + obs[:, 0])  # fmt: skip
    np.testing.assert_allclose(t.values, [[1 + 101.0, 1 + 102.0], [1 + 0.0, 0.0]])


def test_replay_streams_of_several_envs_stay_apart_and_grow():
    replay = MuZeroReplay(n_envs=2, obs_shape=(1,), n_actions=2, capacity=2)
    _trajectory(replay, [1.0, 2.0, 3.0], n_envs=2)
    replay.end_episode(1, np.array([3.0]), terminated=True, final_value=0.0)
    assert replay.capacity >= 4 and len(replay) == 6
    envs, positions, weights = replay.sample(64, np.random.default_rng(0))
    assert set(positions.tolist()) <= {0, 1, 2} and set(envs.tolist()) == {0, 1}
    assert weights.max() == 1.0
    replay.update_priorities(np.array([0]), np.array([0]), np.array([50.0]))
    envs, positions, _ = replay.sample(200, np.random.default_rng(0))
    assert np.mean((envs == 0) & (positions == 0)) > 0.5  # priorities steer the sampling


def test_scaled_gradient_and_temperature_schedule():
    x = torch.ones(3, requires_grad=True)
    _scale_gradient(x * 2, 0.5).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))
    schedule = ((0, 1.0), (100, 0.5), (200, 0.25))
    assert [visit_temperature(schedule, s) for s in (0, 99, 100, 250)] == [1.0, 1.0, 0.5, 0.25]


def test_network_hidden_states_are_scaled_to_unit_range():
    net = MuZeroNetwork(obs_dim=3, n_actions=2, latent_size=6, hidden_size=8)
    hidden, value, policy = net.initial_inference(torch.randn(5, 3))
    assert hidden.min() >= 0 and hidden.max() <= 1 + 1e-6
    hidden, reward, value, policy = net.recurrent_inference(hidden, torch.tensor([0, 1, 0, 1, 1]))
    assert hidden.shape == (5, 6) and reward.shape == value.shape == (5,) and policy.shape == (5, 2)
    # Zero-initialised heads: no made-up values at the start.
    torch.testing.assert_close(value, torch.zeros(5), atol=1e-4, rtol=0)


class Counter(BaseCallback):
    def __init__(self):
        super().__init__()
        self.calls, self.steps = 0, []

    def _on_step(self):
        self.calls += 1
        self.steps.append(self.num_timesteps)
        return True


def test_learn_counts_real_steps_of_every_env_and_trains():
    agent = MuZero("CartPole-v1", seed=0, **TINY)
    counter = Counter()
    agent.learn(40, callback=counter)
    assert agent.num_timesteps == 40 and counter.calls == 20 and counter.steps[:2] == [2, 4]
    assert agent.gradient_steps > 0
    assert len(agent.replay) == 40


def test_training_lowers_the_loss_on_collected_data():
    agent = MuZero("CartPole-v1", seed=0, **{**TINY, "learning_starts": 10_000, "batch_size": 32})
    agent.learn(200)
    assert agent.gradient_steps == 0
    losses = []
    for _ in range(60):
        agent._gradient_step()
        losses.append(agent.logger.name_to_value["train/loss"])
        agent.logger.dump()
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses


def test_evaluate_policy_and_progress_bar():
    agent = MuZero("CartPole-v1", seed=0, **TINY).learn(20, progress_bar=True)
    mean, _ = evaluate_policy(agent, make_vec_env("CartPole-v1", n_envs=2, seed=1), n_eval_episodes=2)
    assert mean > 0
    action, state = agent.predict(np.zeros((3, 4), np.float32))
    assert action.shape == (3,) and state is None


def test_save_load_round_trip(tmp_path):
    agent = MuZero("CartPole-v1", seed=0, **TINY).learn(40)
    path = agent.save(tmp_path / "muzero.pt")
    loaded = MuZero.load(path, gym.make("CartPole-v1"))
    for name, value in agent.network.state_dict().items():
        torch.testing.assert_close(loaded.network.state_dict()[name], value)
    assert loaded.num_simulations == 4 and loaded.n_envs == 1 and loaded.num_timesteps == 40
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    agent.search.rng, loaded.search.rng = np.random.default_rng(1), np.random.default_rng(1)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_load_rejects_a_corrupted_file(tmp_path):
    path = MuZero("CartPole-v1", seed=0, **TINY).save(tmp_path / "muzero.pt")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError):
        MuZero.load(path, "CartPole-v1")


@pytest.mark.parametrize("env_id, match", [("Pendulum-v1", "Discrete actions"), ("FrozenLake-v1", "Box observation")])
def test_bad_spaces_are_rejected(env_id, match):
    with pytest.raises(ValueError, match=match):
        MuZero(env_id, n_envs=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_envs": 0}, "n_envs"), ({"unroll_steps": 0}, "unroll_steps"), ({"train_ratio": 0}, "train_ratio"),
    ({"temperature_schedule": [(5, 1.0)]}, "start at step 0"), ({"temperature_schedule": "hot"}, "pairs"),
    ({"num_simulations": 0}, "num_simulations"),
])  # fmt: skip
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MuZero("CartPole-v1", **kwargs)


def test_n_envs_must_match_a_given_env():
    with pytest.raises(ValueError, match="n_envs=4"):
        MuZero(gym.make("CartPole-v1"), n_envs=4)


def test_first_selection_below_the_root_follows_the_prior():
    search = BatchedMCTS(n_actions=3, seed=0)
    zeros = np.zeros((50, 3))
    prior = np.tile([0.1, 0.8, 0.1], (50, 1))
    inf = np.full(50, np.inf)
    inner = search._select(zeros, zeros, prior, inf, -inf, np.ones(50, bool))
    assert (inner == 1).all()  # its expansion counted as a visit: the prior decides
    root = search._select(zeros, zeros, prior, inf, -inf, np.zeros(50, bool))
    assert len(set(root.tolist())) > 1  # an unvisited root has no visits to weigh the prior by: ties, broken at random


class UnknownChild:
    """Root action 0 (the prior's favourite) leads to states valued ``bad`` (NaN or +-inf, a broken network), root
    action 1 to states valued 1, root action 2 to states valued 0; nothing pays a reward. hidden = (depth, branch)."""

    def __init__(self, bad: float):
        self.bad = bad

    def initial_inference(self, observations):
        n = len(observations)
        return np.zeros((n, 2)), np.zeros(n), np.tile([2.0, 0.0, 0.0], (n, 1))

    def recurrent_inference(self, hidden, actions):
        branch = np.where(hidden[:, 0] == 0, actions, hidden[:, 1]).astype(int)
        values = np.choose(branch, [self.bad, 1.0, 0.0])
        return np.stack([hidden[:, 0] + 1, branch], 1), np.zeros(len(actions)), values, np.zeros((len(actions), 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mcts_bounds_ignore_a_non_finite_value_and_never_prefer_that_child(bad, monkeypatch):
    search = BatchedMCTS(n_actions=3, num_simulations=30, discount=1.0, seed=0)
    bounds = []
    select = search._select

    def recording_select(visits, value_sum, prior, q_min, q_max, inner):
        bounds.append((q_min.copy(), q_max.copy()))
        return select(visits, value_sum, prior, q_min, q_max, inner)

    monkeypatch.setattr(search, "_select", recording_select)
    result = search.search(UnknownChild(bad), np.zeros((4, 1)))
    # Once values were seen, the min-max bounds are those of the finite ones: [0, 1], never NaN or inf.
    q_min, q_max = bounds[-1]
    np.testing.assert_array_equal(q_min, 0.0)
    np.testing.assert_array_equal(q_max, 1.0)
    # The unknown child is tried once, then never again, though the prior favours it; the value-1 child leads.
    assert (result.visit_counts[:, 0] == 1).all(), result.visit_counts
    assert (result.visit_counts.argmax(-1) == 1).all() and (result.policy[:, 0] < result.policy[:, 1]).all()
    assert np.isfinite(result.root_values).all() and (result.root_values > 0.5).all(), result.root_values
    assert (BatchedMCTS.action_from_visits(result.visit_counts, 0.0, np.random.default_rng(0)) == 1).all()


def test_pUCT_ranks_an_unknown_value_below_every_known_or_unvisited_child():
    search = BatchedMCTS(n_actions=3, seed=0)
    visits = np.tile([4.0, 1.0, 0.0], (50, 1))
    value_sum = np.tile([np.nan, 0.0, 0.0], (50, 1))  # child 0 unknown, child 1 the worst seen, child 2 unvisited
    prior = np.tile([0.98, 0.01, 0.01], (50, 1))
    action = search._select(visits, value_sum, prior, np.zeros(50), np.ones(50), np.ones(50, bool))
    assert (action != 0).all()
    value_sum[:, 1:] = np.inf  # nothing known: a random unknown child rather than a crash or always the first
    visits[:, 2] = 1.0
    assert len(set(search._select(visits, value_sum, prior, np.zeros(50), np.ones(50), np.ones(50, bool)))) > 1


def test_mcts_backs_a_deep_non_finite_value_up_no_further_than_its_edge():
    class DeepNaN(TreeModel):  # TreeModel, but the state after (action 1, action 1) is valued NaN
        def recurrent_inference(self, hidden, actions):
            children, rewards, values, logits = super().recurrent_inference(hidden, actions)
            return children, rewards, np.where((hidden[:, 0] == 2) & (actions == 1), np.nan, values), logits

    result = BatchedMCTS(n_actions=2, num_simulations=80, discount=1.0, seed=0).search(DeepNaN(), np.zeros((2, 1)))
    # Root action 1 still leads to the reward of 5 through its other finite paths: not written off by one NaN leaf.
    assert np.isfinite(result.root_values).all()
    assert (result.visit_counts.sum(-1) < 80).all()  # the simulation that hit NaN is not counted at the root


def test_a_search_without_a_finite_root_value_stores_the_network_value_as_its_target():
    agent = MuZero("CartPole-v1", seed=0, **TINY)
    obs = np.zeros((2, 4), np.float32)
    targets = agent._finite_root_values(obs, np.array([0.5, np.nan]))
    assert targets[0] == 0.5 and targets[1] == pytest.approx(agent._values(obs)[1]) and np.isfinite(targets).all()
    with torch.no_grad():
        for parameter in agent.network.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="1 of 2 observations"):
        agent._finite_root_values(obs, np.array([0.5, np.nan]))
