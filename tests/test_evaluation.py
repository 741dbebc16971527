import gymnasium as gym
import pytest
from stable_baselines3 import PPO

from sb3_plugins import RealStepsToThreshold
from sb3_plugins.evaluation import first_streak


def test_stops_at_the_first_passing_check_and_records_the_curve():
    check = RealStepsToThreshold("CartPole-v1", threshold=-1, every=64, n_episodes=2, seed=0)
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=32, batch_size=32, seed=0, device="cpu")
    agent.learn(1000, callback=check)
    assert check.hit == 64 and agent.num_timesteps == 64
    assert len(check.curve) == 1 and check.curve[0][0] == 64


def test_unreachable_threshold_runs_the_budget():
    check = RealStepsToThreshold("CartPole-v1", threshold=10_000, every=64, n_episodes=1, seed=0)
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=32, seed=0, device="cpu")
    agent.learn(256, callback=check)
    assert check.hit is None and [steps for steps, _ in check.curve] == [64, 128, 192, 256]


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"n_episodes": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RealStepsToThreshold("CartPole-v1", threshold=1, **{"every": 10, **kwargs})


@pytest.mark.parametrize(
    "returns, length, start",
    [
        ([480, 490, 500], 3, 100),  # solved and stays solved from the first pass
        ([480, 90, 476, 500, 490], 3, 300),  # the first pass collapses; a later streak counts
        ([480, 90, 476, 500, 490], 1, 100),  # length 1: the first pass
        ([480, 490, 90, 480, 490], 3, None),  # no 3 in a row
        ([100, 200], 3, None),  # never solved
        ([], 1, None),
    ],
)
def test_first_streak(returns, length, start):
    curve = [(100 * (i + 1), float(r)) for i, r in enumerate(returns)]
    assert first_streak(curve, 475, length) == start


def test_a_threshold_equal_to_the_return_passes():
    assert first_streak([(1, 475.0)], 475, 1) == 1


def test_bad_stay():
    with pytest.raises(ValueError, match="stay must be an integer >= 0.*got -1"):
        RealStepsToThreshold("CartPole-v1", threshold=1, every=10, stay=-1)
