"""Issue 16: checkpoint and resume lose nothing. A run stopped, saved to files, loaded into new objects and resumed
with learn(..., reset_num_timesteps=False) gives the same records as the same run going on in memory."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import KVWriter, Logger

from dream_envs import ModelFileError
from sb3_plugins import DynaCallback, DynaCheckpointCallback
from sb3_plugins.replay import MixedReplayBuffer

SMALL = {"ensemble_kwargs": {"hidden_sizes": (16,)}, "fit_kwargs": {"max_epochs": 2}, "model_train_freq": 100,
         "min_real_steps": 32, "rollout_batch_size": 32, "n_dream_envs": 4, "dream_rollouts": 1, "utd_ratio": 2,
         "trust_errors": None}  # fmt: skip


class Records(KVWriter):
    """Every logged value, in order."""

    def __init__(self):
        self.rows = []

    def write(self, key_values, key_excluded, step=0):
        # clock readings differ between any two runs; NaN (no trust judged) is kept as a comparable marker
        self.rows.append({k: "nan" if v != v else v for k, v in key_values.items()
                          if "time" not in k and "fps" not in k and "seconds" not in k})  # fmt: skip


def _agent(algo, env):
    if algo is SAC:
        return SAC("MlpPolicy", env, learning_starts=50, policy_kwargs={"net_arch": [32]}, seed=0, device="cpu")
    return PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")


def _run(algo, env_id, tmp_path, stop):
    env = gym.make(env_id)
    agent = _agent(algo, env)
    dyna = DynaCallback(**SMALL)  # seed: the agent's
    agent.learn(192, callback=dyna)
    if stop:
        agent.save(tmp_path / "agent.zip")
        if algo is SAC:
            agent.save_replay_buffer(tmp_path / "replay.pkl")
        dyna.save(tmp_path / "dyna.pt")
        # the same (vector) env, mid-episode: force_reset=False continues its episode (SB3's load resets by default)
        agent = algo.load(tmp_path / "agent.zip", env=agent.get_env(), device="cpu", force_reset=False)
        if algo is SAC:
            agent.load_replay_buffer(tmp_path / "replay.pkl")
        dyna = DynaCallback.load(tmp_path / "dyna.pt", device="cpu")
    records = Records()
    agent.set_logger(Logger(None, [records]))
    torch.manual_seed(1)  # SB3 keeps no random state in its files: both halves start from the same global one
    np.random.seed(1)
    agent.learn(192, callback=dyna, reset_num_timesteps=False)
    agent.logger.dump(agent.num_timesteps)
    return agent, dyna, records.rows


@pytest.mark.parametrize("algo, env_id", [(SAC, "Pendulum-v1"), (PPO, "CartPole-v1")], ids=["SAC", "PPO"])
def test_a_resumed_run_gives_the_records_of_one_that_never_stopped(algo, env_id, tmp_path):
    kept_agent, kept_dyna, kept_records = _run(algo, env_id, tmp_path, stop=False)
    resumed_agent, resumed_dyna, resumed_records = _run(algo, env_id, tmp_path, stop=True)
    assert kept_agent.num_timesteps == resumed_agent.num_timesteps == 384
    assert kept_dyna.model_fits == resumed_dyna.model_fits >= 3 and kept_dyna.imagined_steps > 0
    assert (kept_dyna.imagined_steps, kept_dyna.trust) == (resumed_dyna.imagined_steps, resumed_dyna.trust)
    for kept, resumed in zip(kept_dyna.real.transitions(), resumed_dyna.real.transitions()):
        np.testing.assert_array_equal(kept, resumed)
    torch.testing.assert_close(resumed_dyna.dynamics.state_dict(), kept_dyna.dynamics.state_dict(), rtol=0, atol=0,
                               equal_nan=True)  # fmt: skip
    torch.testing.assert_close(resumed_agent.policy.state_dict(), kept_agent.policy.state_dict(), rtol=0, atol=0)
    assert resumed_records == kept_records and any("dyna/model_trust" in row for row in kept_records)
    if algo is SAC:
        kept_imagined, resumed_imagined = kept_dyna._imagined.state_dict(), resumed_dyna._imagined.state_dict()
        torch.testing.assert_close(resumed_imagined, kept_imagined, rtol=0, atol=0)


def test_the_replay_buffer_round_trips_through_sb3s_own_save_and_load(tmp_path):
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=50, seed=0, device="cpu")
    dyna = DynaCallback(**SMALL, seed=0)
    agent.learn(150, callback=dyna)
    assert isinstance(agent.replay_buffer, MixedReplayBuffer) and len(dyna._imagined) > 0
    agent.save_replay_buffer(tmp_path / "replay.pkl")
    with open(tmp_path / "replay.pkl", "rb") as handle:
        stored = pickle.load(handle)
    assert type(stored) is ReplayBuffer and stored.size() == agent.replay_buffer.real.size()  # the real rows only
    agent.load_replay_buffer(tmp_path / "replay.pkl")  # SB3: "must inherit from ReplayBuffer" failed here before
    assert type(agent.replay_buffer) is ReplayBuffer
    np.testing.assert_array_equal(agent.replay_buffer.observations, stored.observations)
    agent.learn(60, callback=dyna, reset_num_timesteps=False)  # the callback wraps it again, with its imagination
    assert isinstance(agent.replay_buffer, MixedReplayBuffer) and agent.replay_buffer.imagined is dyna._imagined


def test_the_checkpoint_callback_saves_the_dyna_state_beside_the_agents(tmp_path):
    env = gym.make("Pendulum-v1")
    agent = SAC("MlpPolicy", env, learning_starts=50, seed=0, device="cpu")
    dyna = DynaCallback(**SMALL)
    agent.learn(200, callback=[dyna, DynaCheckpointCallback(dyna, 100, str(tmp_path), save_replay_buffer=True)])
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["rl_model_100_steps.zip", "rl_model_200_steps.zip", "rl_model_dyna_100_steps.pt",
                     "rl_model_dyna_200_steps.pt", "rl_model_replay_buffer_100_steps.pkl",
                     "rl_model_replay_buffer_200_steps.pkl"]  # fmt: skip
    restored = DynaCallback.load(tmp_path / "rl_model_dyna_200_steps.pt", device="cpu")
    assert restored.model_fits == dyna.model_fits == 5 and len(restored.real) == 200  # at 32, 48, 72, 108, 162
    assert restored.seed == dyna.seed == 0  # the agent's seed reached the callback and its file
    agent = SAC.load(tmp_path / "rl_model_200_steps.zip", env=env, device="cpu")
    agent.load_replay_buffer(tmp_path / "rl_model_replay_buffer_200_steps.pkl")
    agent.learn(100, callback=restored, reset_num_timesteps=False)
    # the schedule goes on where it was: the next fit at 243 real steps (162 + half of 162), then none before 343
    assert agent.num_timesteps == 300 and restored.model_fits == 6 and len(restored.real) == 300


def test_the_rollout_counters_are_saved_and_a_file_from_before_them_loads(tmp_path, monkeypatch):
    import sb3_plugins.checkpoint as checkpoint

    # train_freq in episodes: the last rollout's real steps set the rate of the training before learning_starts
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=25), learning_starts=50,
                train_freq=(1, "episode"), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")  # fmt: skip
    dyna = DynaCallback(**SMALL)
    agent.learn(60, callback=dyna)  # whole episodes: to 75 real steps
    assert (dyna._last_rollout_steps, dyna._rollout_steps) == (25, 0)
    dyna.save(tmp_path / "now.pt")
    assert DynaCallback.load(tmp_path / "now.pt", device="cpu")._last_rollout_steps == 25
    monkeypatch.setattr(checkpoint, "_LATER_PROGRESS", {})  # as the files written before these counters
    dyna.save(tmp_path / "before.pt")
    monkeypatch.undo()
    older = DynaCallback.load(tmp_path / "before.pt", device="cpu")
    assert (older._last_rollout_steps, older._rollout_steps, older.model_fits) == (0, 0, dyna.model_fits)


def test_a_callable_reward_is_passed_again_and_damaged_state_files_are_refused(tmp_path):
    def reward(obs, action, next_obs):
        return -(obs[:, 0] ** 2)

    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=50, seed=0, device="cpu")
    dyna = DynaCallback(**SMALL, reward_fn=reward)
    agent.learn(120, callback=dyna)
    path = dyna.save(tmp_path / "dyna.pt")
    with pytest.raises(ModelFileError, match="callable reward_fn, which is code and was not saved"):
        DynaCallback.load(path)
    assert DynaCallback.load(path, reward_fn=reward).reward_fn is reward
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        DynaCallback.load(tmp_path / "damaged.pt", reward_fn=reward)
    (tmp_path / "short.pt").write_bytes(path.read_bytes()[: len(data) // 3])
    with pytest.raises(ModelFileError):
        DynaCallback.load(tmp_path / "short.pt", reward_fn=reward)


def test_a_state_of_another_kind_of_agent_or_a_mistyped_keyword_is_refused_before_any_step(tmp_path):
    from stable_baselines3 import DQN

    dqn = DQN("MlpPolicy", "CartPole-v1", learning_starts=50, seed=0, device="cpu")
    dyna = DynaCallback(**SMALL)
    dqn.learn(150, callback=dyna)
    path = dyna.save(tmp_path / "dqn_dyna.pt")
    ppo = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu")
    with pytest.raises(ValueError, match="served an off-policy agent .* PPO is on-policy"):
        ppo.learn(64, callback=DynaCallback.load(path, device="cpu"))
    assert ppo.num_timesteps == 0
    with pytest.raises(ValueError, match="no setting 'modle_train_freq' \\(did you mean 'model_train_freq'"):
        DynaCallback.load(path, modle_train_freq=3)
    with pytest.raises(ValueError, match="restores the dynamics model of its file"):
        DynaCallback.load(path, dynamics=None)
    with pytest.raises(ValueError, match="utd_ratio") as bad_value:  # the caller's value, not the file's damage
        DynaCallback.load(path, utd_ratio=-1)
    assert not isinstance(bad_value.value, ModelFileError)
    assert DynaCallback.load(path, verbose=1).verbose == 1


@pytest.mark.parametrize("old, new", [("model", "use dynamics"), ("dream_envs", "use n_dream_envs")])
def test_the_renamed_settings_say_their_new_names(old, new):
    with pytest.raises(ValueError, match=f"DynaCallback\\({old}=...\\) was renamed: {new}"):
        DynaCallback(**{old: None})


def test_the_checkpoint_must_follow_its_callback_and_a_new_callback_says_what_it_did_not_see(tmp_path):
    agent = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=0, device="cpu")
    dyna = DynaCallback(**SMALL)
    with pytest.raises(ValueError, match="must come after its DynaCallback"):
        agent.learn(10, callback=[DynaCheckpointCallback(dyna, 5, str(tmp_path)), dyna])
    agent = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=0, device="cpu").learn(60)
    with pytest.warns(UserWarning, match="replay buffer holds 60 transitions that this new callback has not seen"):
        agent.learn(10, callback=DynaCallback(**SMALL), reset_num_timesteps=False)
