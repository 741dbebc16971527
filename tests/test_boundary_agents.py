"""Issue 15, own agents' inputs: DynaQ's states and settings, MuZero's deterministic search, MPCAgent's batches."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from dream_envs.agents import DynaQ, TabularModel


# ---------------------------------------------------------------- DynaQ: states are checked against the space
@pytest.fixture(scope="module")
def dyna_q() -> DynaQ:
    return DynaQ(gym.make("FrozenLake-v1", is_slippery=False), seed=0).learn(300)


@pytest.mark.parametrize(
    "observation, message",
    [
        (-1, r"observation must be an integer in \[0, 15\], got -1$"),  # used to act for state 15
        (16, r"observation must be an integer in \[0, 15\], got 16$"),  # used to raise a raw IndexError
        (3.5, r"observation must be an integer in \[0, 15\], got 3.5$"),  # used to act for state 3
        (True, r"observation must be an integer in \[0, 15\] \(or a 1-d batch of them\), got True$"),  # state 1
        (math.nan, r"observation must be an integer in \[0, 15\], got nan$"),
        ("3", r"observation must be an integer in \[0, 15\] \(or a 1-d batch of them\), got '3'$"),
        (np.array([0, 5, -2]), r"observation\[2\] must be an integer in \[0, 15\], got -2$"),
        (np.array([[0, 1]]), r"observation of shape \(1, 2\) does not fit the observation space Discrete\(16\)"),
    ],
)
def test_dyna_q_refuses_an_observation_outside_its_states(dyna_q, observation, message):
    with pytest.raises(ValueError, match=message):
        dyna_q.predict(observation, deterministic=True)


def test_dyna_q_takes_python_numpy_and_whole_float_states(dyna_q):
    greedy = dyna_q.q.argmax(-1)
    for state in (3, np.int64(3), np.uint8(3), np.array(3), 3.0):
        action, _ = dyna_q.predict(state, deterministic=True)
        assert np.ndim(action) == 0 and action == greedy[3], state
    actions, _ = dyna_q.predict(np.array([15.0, 0.0]), deterministic=True)
    assert actions.tolist() == [greedy[15], greedy[0]]
    with pytest.raises(ValueError, match="deterministic must be True or False, got 'yes'"):
        dyna_q.predict(3, deterministic="yes")


def test_dyna_q_states_are_offset_by_the_space_start():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    env.observation_space = gym.spaces.Discrete(16, start=10)
    agent = DynaQ(env)
    agent.q[0] = [0.0, 0.0, 1.0, 0.0]
    assert agent.predict(10, deterministic=True)[0] == 2
    with pytest.raises(ValueError, match=r"observation must be an integer in \[10, 25\], got 9$"):
        agent.predict(9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(initial_q=math.nan), r"initial_q must be a number in \(-inf, inf\), got nan"),
        (dict(initial_q=math.inf), r"initial_q must be a number in \(-inf, inf\), got inf"),
        (dict(learning_rate=math.nan), r"learning_rate must be a number in \(0, 1\], got nan"),
        (dict(learning_rate="0.1"), r"learning_rate must be a number in \(0, 1\], got '0.1'"),
        (dict(gamma=True), r"gamma must be a number in \[0, 1\], got True"),
        (dict(gamma=1.01), r"gamma must be a number in \[0, 1\], got 1.01"),
        (dict(exploration_rate=1.5), r"exploration_rate must be a number in \[0, 1\], got 1.5"),
        (dict(planning_steps=2.0), r"planning_steps must be an integer >= 0, got 2.0"),
        (dict(prioritized_sweeping="no"), r"prioritized_sweeping must be True or False, got 'no'"),
        (dict(priority_threshold=-1e-3), r"priority_threshold must be a number in \[0, inf\), got -0.001"),
        (dict(kappa=math.inf), r"kappa must be a number in \[0, inf\), got inf"),
        (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
        (dict(seed=1.5), r"seed must be an integer >= 0, got 1.5"),
        (dict(verbose=-1), r"verbose must be an integer >= 0, got -1"),
    ],
)
def test_dyna_q_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynaQ("FrozenLake-v1", **kwargs)


def test_dyna_q_numpy_settings_are_plain_numbers():
    agent = DynaQ("FrozenLake-v1", learning_rate=np.float32(0.5), gamma=np.float64(0.9), planning_steps=np.int64(2),
                  prioritized_sweeping=np.bool_(True), initial_q=np.int32(1))  # fmt: skip
    assert (agent.learning_rate, agent.gamma, agent.planning_steps, agent.initial_q) == (0.5, 0.9, 2, 1.0)
    assert type(agent.planning_steps) is int and agent.prioritized_sweeping is True and agent.q[0, 0] == 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 2), "n_states must be a positive integer, got 0"),
        ((4.0, 2), "n_states must be a positive integer, got 4.0"),
        ((4, True), "n_actions must be a positive integer, got True"),
        ((4, 2, 0), "slots must be a positive integer, got 0"),
    ],
)
def test_tabular_model_sizes_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        TabularModel(*args)


@pytest.mark.parametrize(
    "args, message",
    [
        ((-1, 0, 0.0, 1, False), r"state must be an integer in \[0, 3\], got -1"),  # would count for state 3
        ((0, 2, 0.0, 1, False), r"action must be an integer in \[0, 1\], got 2"),
        ((0, 0, 0.0, 4, False), r"next_state must be an integer in \[0, 3\], got 4"),
        ((0, 0, math.nan, 1, False), r"reward must be a number in \(-inf, inf\), got nan"),
        ((0, 0, 0.0, 1, 1), "terminated must be True or False, got 1"),
    ],
)
def test_tabular_model_refuses_an_outcome_outside_its_tables(args, message):
    model = TabularModel(4, 2)
    with pytest.raises(ValueError, match=message):
        model.observe(*args)
    assert not model.counts.any() and model.tried_pairs == []  # nothing half-counted


# ---------------------------------------------------------------- MuZero: deterministic=True is deterministic
class ObservedPrior:
    """A one-step model whose root prior is the observation (two actions) and whose every value and reward is 0: the
    search's statistics tie everywhere except through the prior, so only a fixed tie rule makes it reproducible."""

    def initial_inference(self, observations):
        n = len(observations)
        return np.zeros((n, 1)), np.zeros(n), np.log(np.asarray(observations, float))

    def recurrent_inference(self, hidden, actions):
        n = len(actions)
        return hidden + 1, np.zeros(n), np.zeros(n), np.zeros((n, 2))


def test_a_deterministic_search_draws_nothing_and_breaks_ties_by_the_prior():
    from dream_envs.planning import BatchedMCTS

    priors = np.array([[0.3, 0.7], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    first = BatchedMCTS(2, num_simulations=5, seed=0).search(ObservedPrior(), priors, deterministic=True)
    search = BatchedMCTS(2, num_simulations=5, seed=1)
    search.rng.random(7)  # another seed and state: a deterministic search must not care
    again = search.search(ObservedPrior(), priors, deterministic=True)
    np.testing.assert_array_equal(first.visit_counts, again.visit_counts)
    alone = np.concatenate([search.search(ObservedPrior(), p[None], deterministic=True).visit_counts for p in priors])
    np.testing.assert_array_equal(first.visit_counts, alone)  # a tree's search does not depend on its batch
    # The root's first simulation ties (no visits): the higher prior goes first, the lower action on equal priors.
    one = BatchedMCTS(2, num_simulations=1, seed=0).search(ObservedPrior(), priors, deterministic=True)
    assert one.visit_counts[:, 1].tolist() == [1, 0, 0, 0]
    random = [BatchedMCTS(2, num_simulations=5, seed=s).search(ObservedPrior(), priors).visit_counts for s in range(8)]
    assert any(not np.array_equal(random[0], r) for r in random)  # the random tie-breaking the flag turns off
    with pytest.raises(ValueError, match="add_noise=True draws random root noise"):
        search.search(ObservedPrior(), priors, add_noise=True, deterministic=True)
    with pytest.raises(ValueError, match="deterministic must be True or False, got 1"):
        search.search(ObservedPrior(), priors, deterministic=1)


def test_greedy_visit_ties_go_to_the_higher_score_then_the_lower_action():
    from dream_envs.planning import BatchedMCTS

    visits = np.array([[2.0, 3.0, 3.0], [4.0, 4.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 0.0]])
    scores = np.array([[0.9, 0.0, 0.1], [0.2, 0.8, 0.9], [0.5, np.nan, 0.5], [np.nan, np.nan, 1.0]])
    actions = BatchedMCTS.action_from_visits(visits, 0.0, np.random.default_rng(0), tie_break=scores)
    assert actions.tolist() == [2, 1, 0, 0]  # a NaN score ranks last, never first; never an action less visited
    assert BatchedMCTS.action_from_visits(visits, 0.0, np.random.default_rng(0)).tolist() == [1, 0, 0, 0]


@pytest.fixture(scope="module")
def muzero():
    import torch

    from dream_envs.agents import MuZero

    # The small networks of tests/test_muzero.py, untrained. A fresh one's heads are zero, so every statistic of its
    # search ties; random value and reward heads make the values differ with the observation, and the uniform prior
    # leaves pUCT ties (4 of these 64 actions changed between two calls with the random tie-breaking).
    agent = MuZero(gym.make("CartPole-v1"), num_simulations=8, latent_size=8, hidden_size=16, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in (agent.network.value_head, agent.network.reward_head):
            head.weight.normal_(0, 0.5, generator=generator)
    return agent


def test_muzero_deterministic_predict_gives_the_same_actions_every_call_alone_or_batched(muzero):
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    actions, state = muzero.predict(obs, deterministic=True)
    assert state is None and actions.shape == (64,) and 0 < actions.mean() < 1  # the search tells them apart
    np.testing.assert_array_equal(actions, muzero.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(actions, [muzero.predict(o, deterministic=True)[0] for o in obs])
    np.testing.assert_array_equal(actions, muzero.predict(obs[::-1], deterministic=True)[0][::-1])  # any batch
    sampled = [muzero.predict(obs, deterministic=False)[0] for _ in range(3)]
    assert any(not np.array_equal(sampled[0], s) for s in sampled[1:])  # without the flag: sampled, as before


def test_a_fresh_muzero_acts_deterministically_too():
    from dream_envs.agents import MuZero

    agent = MuZero("CartPole-v1", n_envs=2, num_simulations=4, batch_size=8, latent_size=8, hidden_size=16,
                   learning_starts=16, seed=0)  # fmt: skip
    obs = np.stack([gym.make("CartPole-v1").reset(seed=s)[0] for s in range(20)])
    # Before: 14 of these 20 actions changed from one call to the next (random tie-breaking in the search).
    first = agent.predict(obs, deterministic=True)[0]
    for _ in range(3):
        np.testing.assert_array_equal(first, agent.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize(
    "observation, message",
    [
        (np.zeros(3, np.float32), r"observation of shape \(3,\) does not fit the observation space Box"),
        (np.zeros((2, 5), np.float32), r"observation of shape \(2, 5\) does not fit the observation space Box"),
        (np.zeros((2, 1, 4), np.float32), r"observation of shape \(2, 1, 4\) does not fit"),
        (np.array([0.0, np.nan, 0.0, 0.0]), "observation holds NaN or \\+-inf values"),
        (np.array(["a", "b", "c", "d"]), "observation must be numbers of the observation space .* dtype <U1"),
    ],
)
def test_muzero_predict_refuses_observations_outside_its_space(muzero, observation, message):
    with pytest.raises(ValueError, match=message):
        muzero.predict(observation, deterministic=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(discount=True), r"discount must be a number in \(0, 1\], got True"),
        (dict(learning_rate=math.nan), r"learning_rate must be a number in \(0, inf\), got nan"),
        (dict(consistency_loss_weight=math.nan), r"consistency_loss_weight must be a number in \[0, inf\), got nan"),
        (dict(priority_beta=2.0), r"priority_beta must be a number in \[0, 1\], got 2.0"),
        (dict(exploration_fraction=-0.5), r"exploration_fraction must be a number in \[0, 1\], got -0.5"),
        (dict(reanalyse="yes"), "reanalyse must be True or False, got 'yes'"),
        (dict(num_simulations=4.0), "num_simulations must be a positive integer, got 4.0"),
        (dict(seed=-3), "seed must be an integer >= 0, got -3"),
    ],
)
def test_muzero_settings_are_checked(kwargs, message):
    from dream_envs.agents import MuZero

    with pytest.raises(ValueError, match=message):
        MuZero(gym.make("CartPole-v1"), **kwargs)
