"""The threshold checks log SB3's own evaluation keys beside the project's (issue 16): what reads SB3's
``eval/mean_reward`` (rl-zoo3, dashboards comparing stock runs) finds the checks' numbers."""

import gymnasium as gym
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor

from sb3_plugins import RealStepsToThreshold


class Capture(KVWriter):
    """Every dump's values, in order."""

    def __init__(self):
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append(dict(key_values))


def cartpole_ppo(capture: Capture) -> PPO:
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    agent.set_logger(Logger(None, [capture]))
    return agent


@pytest.mark.parametrize("n_envs", [1, 2], ids=["one-env", "vec-env"])
def test_each_check_logs_sb3s_eval_keys_beside_its_own(n_envs):
    capture = Capture()
    agent = cartpole_ppo(capture)
    # An unreachable threshold: every check runs and none stops training.
    check = RealStepsToThreshold("CartPole-v1", threshold=10_000, every=64, n_episodes=2, seed=0, n_envs=n_envs)
    agent.learn(128, callback=check)
    dumps = [d for d in capture.dumps if "eval/real_mean_return" in d]
    assert len(dumps) == len(check.curve) == 2  # one check per 64-step rollout, each dumped after its rollout
    for dump, (_, mean) in zip(dumps, check.curve):
        assert dump["eval/mean_reward"] == dump["eval/real_mean_return"] == pytest.approx(mean, abs=1e-4)
        # CartPole pays 1 per step, so the mean episode length IS the mean return: the lengths are the real ones.
        assert dump["eval/mean_ep_length"] == pytest.approx(mean)


def test_the_keys_are_the_ones_sb3s_eval_callback_logs():
    """The names come from SB3 itself, not from a guess: a stock EvalCallback's eval/ keys are all logged too."""
    stock, ours = Capture(), Capture()
    agent = cartpole_ppo(stock)
    stock_check = EvalCallback(Monitor(gym.make("CartPole-v1")), eval_freq=64, n_eval_episodes=1, verbose=0)
    agent.learn(64, callback=stock_check)
    sb3_keys = {key for dump in stock.dumps for key in dump if key.startswith("eval/")}
    assert {"eval/mean_reward", "eval/mean_ep_length"} <= sb3_keys
    agent = cartpole_ppo(ours)
    agent.learn(64, callback=RealStepsToThreshold("CartPole-v1", threshold=10_000, every=64, n_episodes=1, seed=0))
    our_keys = {key for dump in ours.dumps for key in dump if key.startswith("eval/")}
    assert our_keys == sb3_keys | {"eval/real_mean_return"}
