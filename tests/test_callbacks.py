import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.logger import KVWriter, Logger

from sb3_plugins import DynaCallback
from sb3_plugins.replay import MixedReplayBuffer

FAST = {
    "fit_kwargs": {"max_epochs": 3},
    "ensemble_kwargs": {"hidden_sizes": (32,)},
    "n_dream_envs": 4,
    "dream_rollouts": 2,
    "model_train_freq": 100,
    "rollout_batch_size": 32,
    "utd_ratio": 2,
    "trust_errors": None,  # the mechanics under test need the dream used, whatever 3 epochs make of the model
    "seed": 0,
}


class Capture(KVWriter):
    def __init__(self):
        self.keys = set()

    def write(self, key_values, key_excluded, step=0):
        self.keys |= set(key_values)


def agent_for(algo):
    if algo in (PPO, A2C):
        kwargs = {"n_steps": 64, "batch_size": 64} if algo is PPO else {"n_steps": 16}
        return algo("MlpPolicy", gym.make("CartPole-v1"), seed=0, device="cpu", **kwargs)
    env_id = "CartPole-v1" if algo is DQN else "Pendulum-v1"
    return algo("MlpPolicy", gym.make(env_id), learning_starts=50, seed=0, device="cpu")


@pytest.mark.parametrize("algo", [PPO, A2C, DQN, SAC, TD3], ids=lambda a: a.__name__)
def test_each_stock_algorithm_learns_with_the_callback(algo):
    agent = agent_for(algo)
    capture = Capture()
    agent.set_logger(Logger(None, [capture]))
    dyna = DynaCallback(**FAST)
    agent.learn(300, callback=dyna)
    # Real-step accounting: num_timesteps counts the real env only; every real step was recorded once.
    assert agent.num_timesteps in (300, 304, 320)  # rounded up to a whole rollout for on-policy agents
    assert len(dyna.real) == agent.num_timesteps
    assert dyna.model_fits >= 1 and dyna.imagined_steps > 0
    if algo in (DQN, SAC, TD3):
        assert isinstance(agent.replay_buffer, MixedReplayBuffer)
        assert agent.replay_buffer.size() == agent.num_timesteps  # only real transitions in the real buffer
        assert len(agent.replay_buffer.imagined) == dyna.imagined_steps
    agent.logger.dump(agent.num_timesteps)
    expected = {
        "dyna/model_train_loss",
        "dyna/model_holdout_loss",
        "dyna/model_fit_seconds",
        "dyna/imagined_steps",
        "dyna/mean_imagined_rollout_length",
        "dyna/uncertainty_cutoff_fraction",
        "dyna/real_steps",
        "dyna/uncertainty_threshold",
    }
    assert expected <= capture.keys


def test_recorded_real_transitions_match_the_env(tmp_path):
    agent = agent_for(PPO)
    dyna = DynaCallback(**FAST)
    agent.learn(64, callback=dyna)
    data = dyna.real.transitions()
    inside = ~(data.terminated | data.truncated)[:-1]
    assert np.allclose(data.next_obs[:-1][inside], data.obs[1:][inside])
    assert data.episode_start[0] and np.all(data.reward == 1.0)
    # Terminal rows hold the real last observation (past the failure angle or cart limit), not the reset one.
    ends = np.flatnonzero(data.terminated)
    assert len(ends) and np.all((np.abs(data.next_obs[ends, 2]) > 0.2094) | (np.abs(data.next_obs[ends, 0]) > 2.4))


def test_composes_with_eval_checkpoint_progress_bar_and_save_load(tmp_path):
    agent = agent_for(DQN)
    eval_cb = EvalCallback(gym.make("CartPole-v1"), eval_freq=100, n_eval_episodes=2, log_path=str(tmp_path), verbose=0)
    checkpoint = CheckpointCallback(save_freq=150, save_path=str(tmp_path))
    agent.learn(300, callback=[DynaCallback(**FAST), eval_cb, checkpoint], progress_bar=True)
    assert agent.num_timesteps == 300 and len(eval_cb.evaluations_results) == 3
    assert list(tmp_path.glob("rl_model_*_steps.zip"))
    agent.save(tmp_path / "agent.zip")
    loaded = DQN.load(tmp_path / "agent.zip", env=gym.make("CartPole-v1"))
    loaded.learn(100, callback=DynaCallback(**FAST), reset_num_timesteps=False)
    assert loaded.num_timesteps == 400


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"real_ratio": 1.5}, "real_ratio"),
        ({"real_ratio": -0.1}, "real_ratio"),
        ({"rollout_horizon": 0}, "rollout_horizon"),
        ({"rollout_horizon": (0, 100, 1, 0)}, "rollout_horizon"),
        ({"rollout_horizon": (0, 100, 5, 1)}, r"needs 1 <= min_h <= max_h .*got \(0, 100, 5, 1\)"),
        ({"model_train_freq": 0}, "model_train_freq"),
        ({"min_real_steps": 1}, r"min_real_steps must be >= 2 \(a model fit needs 2 real transitions\), got 1"),
        ({"utd_ratio": 0}, "utd_ratio"),
        ({"value_bound": "yes"}, "value_bound must be True or False, got 'yes'"),
        ({"n_dream_envs": 0}, "n_dream_envs"),
        ({"dynamics": "model.pt"}, "EnsembleDynamics"),
        ({"uncertainty_threshold": "bogus"}, "uncertainty_threshold must be None, 'auto' or a number"),
        ({"uncertainty_threshold": -1.0}, "uncertainty_threshold must be >= 0"),
        ({"uncertainty_mode": "halt"}, "uncertainty_mode must be one of"),
        ({"uncertainty_penalty": -2}, "uncertainty_penalty must be 'auto' or a finite number >= 0"),
        ({"uncertainty_mode": "penalty", "uncertainty_threshold": None}, "scales its penalty by the uncertainty"),
    ],
)
def test_bad_knobs_fail_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DynaCallback(**kwargs)


def test_rollout_horizon_schedule():
    dyna = DynaCallback(rollout_horizon=(100, 1100, 1, 11))
    agent = agent_for(PPO)
    dyna.init_callback(agent)
    for steps, horizon in ((0, 1), (100, 1), (600, 6), (1100, 11), (5000, 11)):
        agent.num_timesteps = steps
        assert dyna.rollout_horizon() == horizon


@pytest.mark.parametrize("algo", [PPO, SAC], ids=lambda a: a.__name__)
def test_repeated_learn_calls_keep_the_real_data(algo):
    agent = agent_for(algo)
    dyna = DynaCallback(**FAST)
    agent.learn(150, callback=dyna)
    first = len(dyna.real)
    agent.learn(150, callback=dyna, reset_num_timesteps=False)
    assert len(dyna.real) == agent.num_timesteps > first
    if algo is SAC:
        assert agent.replay_buffer.real.size() == agent.num_timesteps


@pytest.mark.parametrize("mode", ["truncate", "terminate", "penalty"])
def test_mbpo_branches_follow_the_uncertainty_mode(mode):
    # A threshold of 0 cuts every branch at its first step: what is stored says what the mode does there.
    agent = agent_for(SAC)
    threshold = 1e-6 if mode == "penalty" else 0.0  # the penalty's unit must be > 0
    # one fit (refit_growth=None): the rewards stored are checked against the reward range of the fit made them
    dyna = DynaCallback(**{**FAST, "uncertainty_threshold": threshold, "uncertainty_mode": mode, "refit_growth": None})
    agent.learn(150, callback=dyna)
    imagined = agent.replay_buffer.imagined
    assert len(imagined) == dyna.imagined_steps > 0
    dones, rewards = imagined.dones[: len(imagined)], imagined.rewards[: len(imagined)]
    low = dyna.dynamics.reward_range[0]
    if mode == "terminate":
        # MOReL's HALT: terminal, with the "auto" penalty (Pendulum's rewards are <= 0) in the reward.
        penalty = agent.gamma * -low / (1 - agent.gamma)
        assert bool((dones == 1).all()) and float(rewards.max()) <= dyna.dynamics.reward_range[1] - penalty + 1e-3
    elif mode == "truncate":
        assert bool((dones == 0).all()) and float(rewards.min()) >= low - 1e-5
    else:  # MOPO: every reward lowered by penalty * disagreement / threshold, far below any real one here
        assert bool((dones == 0).all()) and float(rewards.max()) < low
    assert dyna.uncertainty_mode == mode


def test_on_policy_dream_episodes_follow_the_uncertainty_mode(monkeypatch):
    from sb3_plugins import DreamVecEnv

    made = []
    original = DreamVecEnv.__init__

    def spy(self, *args, **kwargs):
        made.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(DreamVecEnv, "__init__", spy)
    agent = agent_for(PPO)
    agent.learn(128, callback=DynaCallback(**{**FAST, "uncertainty_mode": "terminate", "uncertainty_penalty": 3.0}))
    assert made and all(k["uncertainty_mode"] == "terminate" and k["uncertainty_penalty"] == 3.0 for k in made)
    assert all(k["gamma"] == agent.gamma for k in made)


def test_an_undiscounted_agent_is_served_and_a_halt_penalty_it_makes_infinite_is_refused_before_training():
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), gamma=1.0, n_steps=64, batch_size=64, seed=0, device="cpu")
    dyna = DynaCallback(**FAST)  # truncate: gamma plays no part
    agent.learn(128, callback=dyna)
    assert dyna.model_fits >= 1
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), gamma=1.0, n_steps=64, batch_size=64, seed=0, device="cpu")
    with pytest.raises(ValueError, match="infinite as soon as a real reward is negative"):
        agent.learn(64, callback=DynaCallback(**{**FAST, "uncertainty_mode": "terminate"}))
    assert agent.num_timesteps == 0


def test_an_on_policy_agent_with_long_rollouts_is_refitted_and_dreams_by_real_steps_mid_rollout():
    # SB3's default PPO collects 2,048 real steps per rollout; rl-zoo's Acrobot 16 x 256. Dyna must not wait for it.
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=512, batch_size=64, seed=0, device="cpu")
    rounds = []
    original = agent.train

    def train():
        rounds.append(len(dyna.real))  # real steps recorded when the update ran
        original()

    agent.train = train
    dyna = DynaCallback(**FAST, refit_growth=None)  # the early refits have a test of their own
    agent.learn(512, callback=dyna)
    assert agent.num_timesteps == 512 and len(dyna.real) == 512
    assert dyna.model_fits == 5  # at 100, 200, 300, 400, 500 real steps, all within the one real rollout
    # dream rounds ran between real steps of the rollout, then the real rollout's own update
    assert rounds == [100, 100, 200, 200, 300, 300, 400, 400, 500, 500, 512]  # 2 dream rounds per fit, then the real
    # a dream round is 4 dream envs x 32 steps, not x the agent's 512
    assert dyna.imagined_steps == 5 * 2 * 4 * 32
    assert agent.rollout_buffer.full and agent.rollout_buffer.buffer_size == 512


def test_an_off_policy_agent_trains_on_the_dream_before_its_learning_starts():
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=1000, train_freq=4, gradient_steps=1, seed=0,
                device="cpu")  # fmt: skip
    capture = Capture()
    agent.set_logger(Logger(None, [capture]))
    agent.learn(300, callback=DynaCallback(**{**FAST, "utd_ratio": None}))
    # One gradient step per 4 real steps, as the agent's own settings say, at each fit (64, 96, 144 and 216 real
    # steps; the next is at 316): 216 / 4 = 54 in all.
    assert agent._n_updates == 54


def test_dream_branches_act_with_the_final_exploration_rate(monkeypatch):
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=50, exploration_fraction=1.0, seed=0,
                device="cpu")  # fmt: skip
    seen = []
    original = agent.predict

    def predict(obs, *args, **kwargs):
        if len(obs) == FAST["rollout_batch_size"]:  # an imagined branch step; the real env steps one obs at a time
            seen.append(agent.exploration_rate)
        return original(obs, *args, **kwargs)

    monkeypatch.setattr(agent, "predict", predict)
    # refit_growth=None: every refit is model_train_freq apart, so each starts rollout_batch_size branches
    agent.learn(200, callback=DynaCallback(**FAST, refit_growth=None))
    assert seen and all(rate == agent.exploration_final_eps for rate in seen)
    assert agent.exploration_rate > agent.exploration_final_eps


class _GridPoint(gym.Env):
    """A point on a line seen as a 2 x 3 grid of copies of its position: a Box observation that is not 1-D."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2, 3), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.full((2, 3), self.x, np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.1 * action[0], -5.0, 5.0))
        return np.full((2, 3), self.x, np.float32), -abs(self.x - 1.0), False, False, {}


@pytest.mark.parametrize("real_ratio", [0.5, 0.0])
def test_an_off_policy_agent_trains_on_imagined_rows_of_its_own_observation_shape(real_ratio):
    # SB3 keeps a (2, 3) Box observation as (B, 2, 3) rows: imagined ones come out the same, mixed or alone.
    agent = SAC("MlpPolicy", _GridPoint(), learning_starts=50, batch_size=16, seed=0, device="cpu")
    dyna = DynaCallback(**{**FAST, "real_ratio": real_ratio, "min_real_steps": 50})
    agent.learn(200, callback=dyna)
    assert dyna.imagined_steps > 0
    # after learn() the agent samples real rows only: sample the mix it trained on
    mixed = agent.replay_buffer
    batch = MixedReplayBuffer(mixed.real, mixed.imagined, real_ratio, agent.gamma).sample(16)
    assert batch.observations.shape == batch.next_observations.shape == (16, 2, 3)


def test_imagined_replay_keeps_rows_of_its_shape_and_takes_none_quietly():
    import torch

    from sb3_plugins.replay import ImaginedReplay

    replay = ImaginedReplay(4, obs_shape=(2, 3), action_shape=(1,), action_dtype=torch.float32, device="cpu", seed=0)
    replay.add(torch.zeros(0, 6), torch.zeros(0, 1), torch.zeros(0), torch.zeros(0, 6), torch.zeros(0))
    assert len(replay) == 0 and replay.pos == 0  # every branch cut at its first step adds nothing
    replay.add(torch.arange(30.0).reshape(5, 6), torch.zeros(5, 1), torch.ones(5), torch.zeros(5, 2, 3), torch.zeros(5))
    assert len(replay) == 4 and replay.pos == 1  # the oldest row overwritten
    assert replay.obs[0].tolist() == [[24.0, 25.0, 26.0], [27.0, 28.0, 29.0]]  # flat rows take the real shape
    assert replay.sample(3).observations.shape == (3, 2, 3)
    assert ImaginedReplay(2, 5, (1,), torch.float32, "cpu").obs.shape == (2, 5)  # an int: a flat observation
    assert ImaginedReplay(2, np.int64(5), (1,), torch.float32, "cpu").obs.shape == (2, 5)
