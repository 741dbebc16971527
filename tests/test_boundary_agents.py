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


# ---------------------------------------------------------------- MPCAgent: one warm start per env of a batch
@pytest.fixture(scope="module")
def tiny_cartpole_model():
    from conftest import small_model

    from dream_envs import TransitionBuffer

    env = gym.make("CartPole-v1")
    model = small_model("CartPole-v1", ensemble_size=2, num_elites=2, hidden_sizes=(16,))
    model.fit(TransitionBuffer.from_env(env).collect(env, n_steps=300, seed=0), max_epochs=2, seed=0)
    return model


def mpc_agent(model, **kwargs):
    """An MPCAgent planning with an already fitted model (no learn(): its fit would take seconds)."""
    from dream_envs.agents import MPCAgent

    # ensemble_kwargs: the model's own, which the planner's particles must divide
    options = dict(horizon=6, population=32, iterations=2, particles=2, terminal_value=False, seed=0,
                   ensemble_kwargs={"ensemble_size": 2, "num_elites": 2, "hidden_sizes": (16,)})  # fmt: skip
    agent = MPCAgent("CartPole-v1", **{**options, **kwargs})
    agent.model = model
    agent._make_planner()
    return agent


def cartpole_states(*seeds):
    return np.stack([gym.make("CartPole-v1").reset(seed=s)[0] for s in seeds])


def probs(agent, index):
    return agent.planner._warm_starts[index].optimizer.probs


def test_mpc_agent_plans_each_env_of_a_batch_from_its_own_warm_start(tiny_cartpole_model):
    # Before: one warm start for the whole batch, so env 1 started from env 0's plan (13 of 20 CartPole states
    # planned right in a batch, 20 of 20 alone). Now an index plans as it would with nothing else in the batch.
    pair, alone, other = (mpc_agent(tiny_cartpole_model) for _ in range(3))
    a, b, c = cartpole_states(1, 2, 3)
    for _ in range(3):
        actions, state = pair.predict(np.stack([a, b]))
        assert state is None and actions.shape == (2,) and actions.dtype == np.int64
        assert actions[0] == alone.predict(a[None])[0][0] and actions[1] == other.predict(np.stack([c, b]))[0][1]
        assert torch_equal(probs(pair, 0), probs(alone, 0)) and torch_equal(probs(pair, 1), probs(other, 1))
        assert not torch_equal(probs(pair, 0), probs(pair, 1))  # two plans, not one shared
        a, b, c = a + 0.01, b - 0.01, c * 0.5  # the envs move on
    uniform = np.full((6, 2), 0.5)
    assert torch_equal(pair.planner.optimizer.probs, uniform)  # the training loop's warm start is left alone


def test_mpc_agent_episode_start_restarts_only_its_own_env(tiny_cartpole_model):
    restarted, by_hand, continued = (mpc_agent(tiny_cartpole_model, action_repeat=2) for _ in range(3))
    batch = cartpole_states(1, 2)
    for agent in (restarted, by_hand, continued):
        agent.predict(batch, episode_start=np.array([True, True]))
    restarted.predict(batch, episode_start=np.array([True, False]))
    warm = by_hand.planner._warm_starts[0]
    warm.optimizer.reset()
    warm.phase = 0
    by_hand.predict(batch, episode_start=np.array([False, False]))
    continued.predict(batch, episode_start=np.array([False, False]))
    for index in (0, 1):
        assert torch_equal(probs(restarted, index), probs(by_hand, index)), index
    assert torch_equal(probs(restarted, 1), probs(continued, 1))  # env 1 went on from its own plan
    assert not torch_equal(probs(restarted, 0), probs(continued, 0))  # env 0 started afresh
    # action_repeat=2: env 0 is 1 real step into its new episode's block, env 1 2 steps (a whole block) on
    assert [w.phase for w in restarted.planner._warm_starts] == [1, 0]


def test_a_single_observation_is_a_batch_of_one_env(tiny_cartpole_model):
    single, batch = mpc_agent(tiny_cartpole_model), mpc_agent(tiny_cartpole_model)
    a = cartpole_states(1)[0]
    for start in (True, False, False, True):
        action, _ = single.predict(a, episode_start=start)
        assert np.ndim(action) == 0 and action == batch.predict(a[None], episode_start=[start])[0][0]
        assert torch_equal(probs(single, 0), probs(batch, 0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(observation=np.zeros(3)), r"observation of shape \(3,\) does not fit the observation space Box"),
        (dict(observation=np.zeros((2, 5))), r"observation of shape \(2, 5\) does not fit the observation space"),
        (dict(observation=np.zeros((2, 1, 4))), r"observation of shape \(2, 1, 4\) does not fit"),
        (dict(observation=np.array([0.0, np.inf, 0.0, 0.0])), "observation must be finite numbers"),
        (dict(observation=np.zeros((2, 4)), episode_start=[True]), r"one True/False per observation \(2\)"),
        (dict(observation=np.zeros((2, 4)), episode_start=[2, 0]), r"one True/False per observation \(2\)"),
        (dict(observation=np.zeros(4), episode_start="yes"), r"one True/False per observation \(1\), got 'yes'"),
    ],
)
@pytest.mark.parametrize("fitted", [False, True])
def test_mpc_agent_predict_refuses_inputs_outside_its_space(tiny_cartpole_model, fitted, kwargs, message):
    from dream_envs.agents import MPCAgent

    agent = mpc_agent(tiny_cartpole_model) if fitted else MPCAgent("CartPole-v1", particles=5, seed=0)
    with pytest.raises(ValueError, match=message):
        agent.predict(**kwargs)
    actions, _ = agent.predict(np.zeros((3, 4), np.float32), episode_start=np.array([1.0, 0.0, 1.0]))  # SB3's floats
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}


def torch_equal(tensor, expected):
    import torch

    return torch.equal(tensor.cpu(), torch.as_tensor(expected, dtype=tensor.dtype))


@pytest.mark.parametrize("make", ["mpc", "muzero", "dyna_q"])
def test_an_agent_refuses_an_env_under_vec_normalize(make):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from dream_envs.agents import MPCAgent, MuZero

    # MPCAgent kept the normalised observations and rewards it was handed: a known Pendulum reward read angles whose
    # cos^2 + sin^2 was 0.72-1.19, and the model learned units that moved with the running statistics
    cls, env_id = {"mpc": (MPCAgent, "Pendulum-v1"), "muzero": (MuZero, "CartPole-v1"),
                   "dyna_q": (DynaQ, "FrozenLake-v1")}[make]  # fmt: skip
    venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=0), norm_obs=make != "dyna_q")
    with pytest.raises(ValueError, match=f"{cls.__name__} fits its model on the real transitions it keeps, and "
                                         "VecNormalize would hand it"):  # fmt: skip
        cls(venv)
