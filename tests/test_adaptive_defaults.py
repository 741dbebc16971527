"""The rules behind DynaCallback()'s defaults: the fit's size from the data, and the trust in the model."""

import math

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.logger import KVWriter, Logger

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.models import fit_schedule
from sb3_plugins import DynaCallback
from sb3_plugins.model_trust import model_trust


@pytest.mark.parametrize(
    ("n_train", "warm", "batch", "epochs", "patience"),
    [
        (225, False, 32, 500, 38),  # Dyna's first fit: 8 batches an epoch, 4,000 gradient steps
        (225, True, 32, 125, 38),  # a refit continues from fitted weights: 1,000 steps
        (3_600, False, 225, 250, 19),  # 16 batches an epoch until the batch reaches 256
        (90_000, False, 256, 12, 5),  # large data: the step budget is a few epochs, never below 5
        (90_000, True, 256, 5, 5),
        (10, False, 32, 4_000, 300),  # fewer rows than a batch: one step an epoch
    ],
)
def test_the_fit_is_sized_in_gradient_steps_from_the_data(n_train, warm, batch, epochs, patience):
    schedule = fit_schedule(n_train, warm=warm)
    assert (schedule.batch_size, schedule.max_epochs, schedule.patience) == (batch, epochs, patience)
    per_epoch = math.ceil(n_train / batch)
    assert schedule.max_gradient_steps == epochs * per_epoch
    assert schedule.max_gradient_steps >= (1_000 if warm else 4_000) or epochs == 5


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_fit_schedule_refuses_a_bad_row_count_naming_it(bad):
    with pytest.raises(ValueError, match=f"n_train must be a positive integer, got {bad!r}"):
        fit_schedule(bad, warm=False)


def test_fit_without_sizes_follows_the_schedule_and_a_refit_is_warm():
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 200, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, hidden_sizes=(16,), seed=0, device="cpu")
    first = model.fit(buffer, seed=0)
    assert not first.warm and first.batch_size == 32 and first.n_train == 180
    assert 0 < first.gradient_steps <= fit_schedule(180, warm=False).max_gradient_steps
    assert first.gradient_steps == first.epochs * math.ceil(180 / 32)
    second = model.fit(buffer, seed=1)
    assert second.warm and second.gradient_steps <= fit_schedule(180, warm=True).max_gradient_steps
    explicit = model.fit(buffer, max_epochs=2, batch_size=64, patience=1, seed=2)
    assert explicit.epochs <= 2 and explicit.batch_size == 64 and explicit.gradient_steps == explicit.epochs * 3
    # the elite mean's holdout error per output: obs change dims, then the (constant, exactly known) reward
    assert len(second.holdout_error_per_output) == 5 and second.holdout_error_per_output[-1] == 0.0
    assert max(second.holdout_error_per_output) < 0.1  # CartPole's dynamics are learnable in a minute
    assert second.reward_error == 0.0  # the reward never changed


def test_a_sparse_terminal_reward_is_left_to_the_termination_head_and_a_dense_one_is_judged():
    # Acrobot: -1 on every step but the terminal one. Over all rows the reward's 1 - R^2 is near 1 for a model that
    # predicts -1; on the rows where the episode goes on it is exact.
    env = gym.make("Acrobot-v1")
    buffer = TransitionBuffer.from_env(env)
    n = 400
    obs = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    terminated = np.zeros(n, bool)
    terminated[::20] = True
    reward = np.where(terminated, 0.0, -1.0)
    buffer.add(obs.clip(-1, 1), np.zeros(n, np.int64), reward, obs.clip(-1, 1) * 0.9, terminated)
    model = EnsembleDynamics(env.observation_space, env.action_space, hidden_sizes=(32,), seed=0, device="cpu")
    result = model.fit(buffer, seed=0, uncertainty_horizon=1)
    assert result.reward_error < 0.1 < result.holdout_error_per_output[-1]
    # a dense reward that is pure noise: no model can fit it, and it shows
    noisy = TransitionBuffer.from_env(env)
    noise = np.random.default_rng(1).normal(size=n)
    noisy.add(obs.clip(-1, 1), np.zeros(n, np.int64), noise, obs.clip(-1, 1) * 0.9, np.zeros(n, bool))
    model = EnsembleDynamics(env.observation_space, env.action_space, hidden_sizes=(32,), seed=0, device="cpu")
    assert model.fit(noisy, seed=0, uncertainty_horizon=1).reward_error > 0.5  # the untrusted level


@pytest.mark.parametrize(
    ("errors", "reward_learned", "trust", "what"),
    [
        ([0.01, 0.02, 0.05], True, 1.0, "full trust"),
        ([0.01, 0.02, 0.3], True, 0.5, "the reward holdout error"),
        ([0.6, 0.7, 0.0], True, 0.0, "the observation holdout error"),
        ([0.01, 0.02, 0.9], False, 1.0, "full trust"),  # a known reward: its model column plays no part
        ([float("nan")], True, 1.0, "no holdout"),
        ([0.1, float("nan"), 0.1], True, 0.0, "not finite"),
        ([0.1, 0.1, float("nan")], True, 1.0, "full trust"),  # no non-terminal row held out: reward unjudged
        ([0.1, float("inf"), float("nan")], True, 0.0, "not finite"),
    ],
)
def test_the_trust_in_a_model_falls_linearly_with_its_worse_holdout_error(errors, reward_learned, trust, what):
    verdict = model_trust(errors[:-1], errors[-1], reward_learned=reward_learned)
    assert verdict.trust == pytest.approx(trust) and what in verdict.reason


class _Capture(KVWriter):
    def __init__(self):
        self.values = {}

    def write(self, key_values, key_excluded, step=0):
        self.values.update(key_values)


_SMALL = {"ensemble_kwargs": {"hidden_sizes": (32,)}, "fit_kwargs": {"max_epochs": 3}, "model_train_freq": 100,
          "rollout_batch_size": 32, "n_dream_envs": 4, "dream_rollouts": 2, "seed": 0}  # fmt: skip


def test_an_untrusted_model_leaves_the_off_policy_agent_as_it_was():
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=50, train_freq=4, gradient_steps=1, seed=0,
                device="cpu")  # fmt: skip
    capture = _Capture()
    agent.set_logger(Logger(None, [capture]))
    # any holdout error above 1e-9 removes all trust: no branches, the agent's own batches and gradient steps
    dyna = DynaCallback(**_SMALL, utd_ratio=10, trust_errors=(0.0, 1e-9))
    agent.learn(250, callback=dyna)
    assert dyna.model_fits == 4 and dyna.trust == 0.0 and dyna.imagined_steps == 0  # at 64, 96, 144 and 216
    assert agent.replay_buffer.real_ratio == 1.0 and agent.gradient_steps == 1
    assert "leaning on real data" in dyna.trust_reason
    agent.logger.dump(agent.num_timesteps)
    assert capture.values["dyna/model_trust"] == 0.0 and capture.values["dyna/real_ratio"] == 1.0
    assert capture.values["dyna/gradient_steps"] == 1
    trusting = DynaCallback(**_SMALL, utd_ratio=10, trust_errors=None)
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=50, train_freq=4, gradient_steps=1, seed=0,
                device="cpu")  # fmt: skip
    agent.set_logger(Logger(None, [capture]))
    agent.learn(250, callback=trusting)
    agent.logger.dump(agent.num_timesteps)
    assert trusting.trust == 1.0 and trusting.imagined_steps > 0
    # utd 10 x 4 real steps = 40 a rollout: DQN's own 1, and 39 more that the callback runs between target syncs
    assert capture.values["dyna/real_ratio"] == 0.5 and capture.values["dyna/gradient_steps"] == 40
    assert trusting._extra_steps == 39
    # once learn() ends the agent is the stock one again: its own gradient steps, all-real batches
    assert agent.gradient_steps == 1 and agent.replay_buffer.real_ratio == 1.0


@pytest.mark.parametrize("gradient_steps", [1, -1])
@pytest.mark.parametrize("train_freq", [(1, "episode"), 25])
def test_utd_ratio_counts_real_steps_whether_train_freq_counts_steps_or_episodes(train_freq, gradient_steps):
    # episodes of 25 real steps: one rollout is 25 real steps either way, and utd 4 makes it 100 gradient steps in
    # all (the agent's own 1 or, SB3's -1, 25; the callback's the rest)
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=25), learning_starts=50, train_freq=train_freq,
                gradient_steps=gradient_steps, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")  # fmt: skip
    capture = _Capture()
    agent.set_logger(Logger(None, [capture]))
    dyna = DynaCallback(**_SMALL, utd_ratio=4, trust_errors=None)
    agent.learn(200, callback=dyna)
    agent.logger.dump(agent.num_timesteps)
    assert dyna.model_fits == 3  # at 64, 96 and 144: the updates from 75 on all follow one
    assert agent._n_updates == 6 * 100  # the rollouts that end at 75, 100, ..., 200 (past learning_starts)
    assert capture.values["dyna/gradient_steps"] == 100


def test_before_learning_starts_episode_rollouts_train_at_the_utd_ratio():
    # SB3 trains nothing before learning_starts; the callback trains on its branches at the rate the agent trains
    # at afterwards: utd 4 per real step (the rollouts so far were whole episodes of 25 real steps)
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=25), learning_starts=1_000,
                train_freq=(1, "episode"), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")  # fmt: skip
    dyna = DynaCallback(**_SMALL, utd_ratio=4, trust_errors=None)
    agent.learn(150, callback=dyna)
    assert dyna.model_fits == 3 and agent._n_updates == 4 * 144  # after the fits at 64, 96 and 144 real steps


def test_a_new_callback_on_an_agent_that_had_one_starts_from_the_agents_own_settings():
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=50, policy_kwargs={"net_arch": [32]}, seed=0,
                device="cpu")  # fmt: skip
    first = DynaCallback(**_SMALL, trust_errors=None)
    agent.learn(210, callback=first)
    old_imagined = agent.replay_buffer.imagined
    assert len(old_imagined) > 0 and agent.gradient_steps == 1
    second = DynaCallback(**{**_SMALL, "imagined_capacity": 500}, utd_ratio=None, trust_errors=None)
    agent.learn(50, callback=second, reset_num_timesteps=False)
    assert second._own_steps_per_rollout() == 1 and agent.gradient_steps == 1
    # the other model's imagination is not this one's: a fresh replay at this callback's capacity
    assert agent.replay_buffer.imagined is not old_imagined and agent.replay_buffer.imagined.capacity == 500
    # the same callback's second learn() keeps what it imagined
    kept = agent.replay_buffer.imagined
    agent.learn(10, callback=second, reset_num_timesteps=False)
    assert agent.replay_buffer.imagined is kept


def test_dqn_extra_gradient_steps_are_cut_into_pieces_between_target_syncs(monkeypatch):
    # 6 gradient steps per 4 env steps, a sync every 4 env steps: the stock agent takes 6 steps towards each target
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=50, train_freq=4, gradient_steps=6,
                target_update_interval=4, seed=0, device="cpu")  # fmt: skip
    dyna = DynaCallback(**_SMALL, utd_ratio=4, trust_errors=None)
    agent.learn(120, callback=dyna)
    assert dyna._extra_steps == 10  # utd 4 x 4 env steps = 16 a rollout: the stock 6, and 10 more
    import sb3_plugins.callbacks as callbacks

    calls, syncs = [], []
    monkeypatch.setattr(agent, "train", lambda gradient_steps, batch_size: calls.append(gradient_steps))
    monkeypatch.setattr(callbacks, "polyak_update", lambda *args: syncs.append(sum(calls)))
    dyna._dqn_steps_since_sync = 0
    dyna._train_agent(10)
    dyna._train_agent(10)
    # a sync after each whole piece of 6 (weights, then batch-norm statistics); a part piece carries over
    assert calls == [6, 4, 2, 6, 2] and syncs == [6, 6, 12, 12, 18, 18]


def test_dqn_steps_per_target_follow_the_agents_own_settings():
    zoo = DQN("MlpPolicy", gym.make("CartPole-v1"), train_freq=256, gradient_steps=128, target_update_interval=10,
              device="cpu")  # fmt: skip
    zoo.set_logger(Logger(None, []))
    dyna = DynaCallback(**_SMALL)
    dyna.init_callback(zoo)
    assert dyna._dqn_steps_per_target() == 128  # rl-zoo's CartPole: one burst of 128 towards each target
    default = DQN("MlpPolicy", gym.make("CartPole-v1"), device="cpu")  # 1 step per 4 env steps, sync every 10,000
    default.set_logger(Logger(None, []))
    dyna = DynaCallback(**_SMALL)
    dyna.init_callback(default)
    assert dyna._dqn_steps_per_target() == 2_500


def test_an_untrusted_model_gives_an_on_policy_agent_no_dream_rounds():
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, seed=0, device="cpu")
    capture = _Capture()
    agent.set_logger(Logger(None, [capture]))
    dyna = DynaCallback(**_SMALL, trust_errors=(0.0, 1e-9))
    agent.learn(256, callback=dyna)
    agent.logger.dump(agent.num_timesteps)
    assert dyna.model_fits == 4 and dyna.imagined_steps == 0  # at 64, 96, 144 and 216 real steps
    assert capture.values["dyna/dream_rollouts"] == 0 and capture.values["dyna/model_trust"] == 0.0
    half = DynaCallback(**_SMALL, trust_errors=(0.0, 1e9))  # nearly full trust: round(2 x ~1) dream rounds
    agent.learn(256, callback=half)
    agent.logger.dump(agent.num_timesteps)
    assert half.imagined_steps > 0
    # the rounds logged are the ones run: the refit at 216 real steps came 72 after the last, 72% of a period
    assert capture.values["dyna/dream_rollouts"] == half._dream_rounds(72) == 1


@pytest.mark.parametrize("bad", [(0.5, 0.1), (0.1,), "auto", (0.1, float("inf")), (-0.1, 0.5), (True, 0.5)])
def test_bad_trust_errors_are_refused_at_construction(bad):
    with pytest.raises(ValueError, match="trust_errors must be None or"):
        DynaCallback(trust_errors=bad)


def test_the_default_callback_fits_by_the_schedule_and_trusts_a_learnable_model():
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=256, batch_size=64, seed=0, device="cpu")
    capture = _Capture()
    agent.set_logger(Logger(None, [capture]))
    dyna = DynaCallback(ensemble_kwargs={"hidden_sizes": (64, 64)}, n_dream_envs=8, dream_rollouts=1, seed=0)
    agent.learn(256, callback=dyna)
    agent.logger.dump(agent.num_timesteps)
    assert dyna.model_fits == 4 and capture.values["dyna/model_gradient_steps"] > 300  # the last on 216 steps
    assert dyna.trust == 1.0 and np.isfinite(capture.values["dyna/model_holdout_obs_error"])


def test_mpc_agent_defaults_are_the_measured_winners_and_fit_by_the_schedule(monkeypatch):
    from dream_envs.agents import MPCAgent

    agent = MPCAgent("Pendulum-v1", learning_starts=100, train_freq=100, seed=0, device="cpu")
    # docs/mpc.md: the terminal value took CartPole from 0/5 to 5/5 seeds, the pink-noise random phase Pendulum
    # from 4/5 to 5/5; population 200 x 5 particles x 3 iterations plans 20x faster than 400 x 20 x 5
    assert (agent.population, agent.particles, agent.iterations, agent.horizon) == (200, 5, 3, 15)
    assert agent.terminal_value and agent.gamma == 0.98 and agent.random_noise_beta == 1.0
    fits = []
    monkeypatch.setattr(type(agent.model), "fit", lambda self, buffer, **kwargs: fits.append(kwargs) or _stop())
    with pytest.raises(_Stopped):
        agent.learn(100)
    assert fits == [{"seed": 0}]  # no epoch count: EnsembleDynamics.fit sizes it from the data


class _Stopped(Exception):
    pass


def _stop():
    raise _Stopped


def test_edge_inputs_of_the_new_figures_get_clear_answers():
    from sb3_plugins.benchmark.metrics import random_return
    from sb3_plugins.benchmark.report import check_margin

    run = {"curve": [[100, 10.0], [200, 20.0]]}
    assert check_margin([], [run], 475.0, 22.0) is None and check_margin([run], [], 475.0, 22.0) is None
    assert check_margin([run], [run], 22.0, 22.0) is None  # no distance between threshold and random
    assert check_margin([run], [{"curve": [[100, float("nan")]]}], 475.0, 22.0) is None
    assert check_margin([run], [run], None, 22.0) is None
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="episodes must be a positive integer"):
            random_return("CartPole-v1", episodes=bad)
    with pytest.raises(ValueError, match="warm must be True or False, got 'no'"):
        fit_schedule(100, warm="no")
    with pytest.raises(ValueError, match="finite numbers 0 <= trusted < untrusted"):
        model_trust([0.2], 0.0, True, 0.1, float("inf"))
    with pytest.raises(ValueError, match="reward_error must be a number"):
        model_trust([0.2], "0.3")
    assert DynaCallback(trust_errors=np.array([0.1, 0.5])).trust_errors == (0.1, 0.5)


def test_fit_takes_numpy_sizes_as_plain_ints():
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 300, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, hidden_sizes=(16,), seed=0, device="cpu")
    result = model.fit(buffer, batch_size=np.int8(100), max_epochs=np.int64(2), seed=0)
    assert result.batch_size == 100 and type(result.batch_size) is int and result.epochs <= 2


def test_the_default_dream_runs_twenty_rounds_of_128_envs_per_250_real_steps(monkeypatch):
    # measured across the on-policy rows (docs/benchmarks.md): the same imagined steps per refit as 10 rounds of 256
    # envs, in twice the train() calls, stayed solved in fewer real steps on CartPole and Acrobot PPO; the early
    # refits at 64, 96, 144 and 216 real steps share them out: round(20 x 64 / 250) = 5, then 3, 4 and 6
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=256, batch_size=64, seed=0, device="cpu")
    rounds = []
    monkeypatch.setattr(agent, "train", lambda: rounds.append(agent.rollout_buffer.n_envs))
    dyna = DynaCallback(seed=0)
    agent.learn(256, callback=dyna)
    assert dyna.model_fits == 4 and dyna.trust == 1.0
    assert rounds == [128] * 18 + [1]  # the dream's rounds, then the stock update on the real rollout
    assert dyna.imagined_steps == 18 * 128 * 32


def _fit_points(monkeypatch, real_steps, **settings):
    """The real-step counts at which DynaCallback refits over ``real_steps`` of one CartPole env (no model is fitted:
    the schedule alone is under test)."""
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=real_steps, batch_size=50, seed=0, device="cpu")
    monkeypatch.setattr(agent, "train", lambda: None)
    dyna = DynaCallback(seed=0, **settings)
    points, rounds = [], []
    monkeypatch.setattr(dyna, "_fit_model", lambda: points.append(len(dyna.real)))
    monkeypatch.setattr(dyna, "_dream_updates", lambda since: rounds.append(dyna._dream_rounds(since)))
    agent.learn(real_steps, callback=dyna)
    return points, rounds


def test_refits_come_sooner_while_the_data_are_few_then_every_model_train_freq(monkeypatch):
    # issue 14: refitting when the data have grown by half took CartPole PPO + DynaCallback() from a median of 752
    # real steps to stay solved to 256 (docs/benchmarks.md)
    points, rounds = _fit_points(monkeypatch, 1_250)
    assert points == [64, 96, 144, 216, 324, 486, 729, 979, 1229]
    # dream rounds: 20 per 250 real steps, shared out over the early refits (the same dreaming as without them)
    assert rounds == [5, 3, 4, 6, 9, 13, 19, 20, 20]
    points, rounds = _fit_points(monkeypatch, 1_000, refit_growth=None)  # MBPO's fixed period, first at 250
    assert points == [250, 500, 750, 1000] and rounds == [20] * 4
    points, _ = _fit_points(monkeypatch, 1_000, refit_growth=1.0, min_real_steps=100, model_train_freq=300)
    assert points == [100, 200, 400, 700, 1000]


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), "0.5", True])
def test_a_bad_refit_growth_is_refused_at_construction(bad):
    with pytest.raises(ValueError, match=r"refit_growth \(None: refit every model_train_freq real steps\) must be"):
        DynaCallback(refit_growth=bad)


def test_mbpo_branches_are_shared_out_over_the_early_refits(monkeypatch):
    # rollout_batch_size (400) branches per model_train_freq (250) real steps: the early refits of refit_growth add
    # fresher models, not more imagined data from models fitted on a few dozen steps
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=10_000, seed=0, device="cpu")
    dyna = DynaCallback(seed=0)
    branches = []
    monkeypatch.setattr(dyna, "_fit_model", lambda: None)  # the schedule alone is under test
    monkeypatch.setattr(dyna, "_train_before_learning_starts", lambda: None)
    monkeypatch.setattr(dyna, "_imagine_branches", lambda algo, n_branches: branches.append(n_branches))
    agent.learn(1_000, callback=dyna)
    # refits at 64, 96, 144, 216, 324, 486, 729 and 979 real steps: 400 x 64 / 250 = 102.4 -> 102, ...
    assert branches == [102, 51, 77, 115, 173, 259, 389, 400]
