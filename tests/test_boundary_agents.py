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
