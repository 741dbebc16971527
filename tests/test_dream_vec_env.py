import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from dream_envs import EnsembleDynamics
from sb3_plugins import DreamVecEnv


def test_one_forward_pass_per_step_whatever_the_number_of_envs(cartpole_model, monkeypatch):
    venv = DreamVecEnv(cartpole_model, n_envs=64, seed=0)
    venv.reset()
    shapes = []
    baddbmm = torch.baddbmm

    def counting_baddbmm(bias, x, weight, **kwargs):
        shapes.append(tuple(x.shape))
        return baddbmm(bias, x, weight, **kwargs)

    monkeypatch.setattr(torch, "baddbmm", counting_baddbmm)
    for _ in range(3):
        venv.step(np.zeros(64, np.int64))
    # Per step, one batched matmul per layer for all members and all envs: (E, N, in) for 2 hidden + head.
    assert shapes == [(4, 64, 6), (4, 64, 64), (4, 64, 64)] * 3
    assert venv.last_uncertainty.shape == (64,) and torch.all(venv.last_uncertainty >= 0)


def test_auto_reset_terminal_observation_and_time_limit(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=8, max_episode_steps=5, termination_fn="known", seed=0)
    obs = venv.reset()
    starts = cartpole_model.start_states.numpy()
    assert obs.shape == (8, 4) and obs.dtype == np.float32
    for _ in range(5):
        obs, rewards, dones, infos = venv.step(np.ones(8, np.int64))
        assert rewards.shape == (8,) and dones.dtype == bool
    # Every env hit the 5-step limit at the latest: finished ones were reset to real start states.
    assert all(("terminal_observation" in infos[i]) == bool(dones[i]) for i in range(8))
    for i in np.flatnonzero(dones):
        assert np.any(np.all(np.isclose(starts, obs[i]), axis=1))
        assert infos[i]["terminal_observation"].shape == (4,)
        assert not np.array_equal(infos[i]["terminal_observation"], obs[i])
    time_limited = [i for i in np.flatnonzero(dones) if infos[i]["TimeLimit.truncated"]]
    assert time_limited, "with a 5-step limit some episode must end by the time limit"
    assert venv.episodes >= 8  # each of the 8 envs finished at least once within its 5-step limit


def test_termination_is_not_marked_as_truncation(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=2, termination_fn="known", seed=0)
    venv.reset_from(np.array([[2.39, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32))
    _, _, dones, infos = venv.step(np.array([1, 0]))
    assert dones.tolist() == [True, False]
    assert infos[0]["TimeLimit.truncated"] is False and infos[0]["uncertainty_cutoff"] is False
    assert infos[1] == {}


def test_uncertainty_cutoff_truncates(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=6, uncertainty_threshold=0.0, seed=0)
    venv.reset()
    _, _, dones, infos = venv.step(np.zeros(6, np.int64))
    assert dones.all()
    assert all(info["TimeLimit.truncated"] and info["uncertainty_cutoff"] for info in infos)
    assert venv.cutoff_episodes == 6


def test_nonfinite_model_never_leaks_nan(cartpole_model_file):
    broken = EnsembleDynamics.load(cartpole_model_file, device="cpu")
    with torch.no_grad():
        broken.head.weight[:, :, 1].fill_(float("nan"))
    venv = DreamVecEnv(broken, n_envs=4, seed=0)
    venv.reset()
    next_obs, rewards, dones, infos = venv.step(np.zeros(4, np.int64))
    assert dones.all() and np.isfinite(next_obs).all() and np.isfinite(rewards).all()
    assert all(np.isfinite(info["terminal_observation"]).all() for info in infos)


def trajectory(venv, steps=20):
    venv.seed(7)
    out = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, rewards, dones, _ = venv.step(rng.integers(0, 2, venv.num_envs))
        out += [obs, rewards, dones]
    return out


def test_seeded_runs_repeat_and_differ_by_seed(cartpole_model):
    a = trajectory(DreamVecEnv(cartpole_model, n_envs=5))
    b = trajectory(DreamVecEnv(cartpole_model, n_envs=5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    venv = DreamVecEnv(cartpole_model, n_envs=5)
    assert venv.seed(3) == [3, 4, 5, 6, 7]
    first = venv.reset()
    venv.seed(4)
    assert not np.array_equal(first, venv.reset())


def test_attribute_and_method_plumbing(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=3, uncertainty_threshold=0.5)
    assert venv.get_attr("uncertainty_threshold") == [0.5, 0.5, 0.5]
    assert venv.get_attr("uncertainty_threshold", indices=[1]) == [0.5]
    venv.set_attr("max_episode_steps", 9)
    assert venv.max_episode_steps == 9
    with pytest.raises(ValueError, match="share their attributes"):
        venv.set_attr("max_episode_steps", 3, indices=[0])
    assert venv.env_is_wrapped(Monitor) == [False, False, False]
    assert len(venv.env_method("reset")) == 3
    assert venv.has_attr("model") and not venv.has_attr("no_such_attribute")
    assert venv.get_attr("spec") == [None, None, None]  # not made by gym.make (agents' save() asks for it)
    # the envs share one batch: a method runs once for all of them, and a strict subset is refused, as set_attr's
    venv.seed(7)
    assert venv.env_method("seed", 1) == [[1, 2, 3]] * 3 and venv._seeds == [1, 2, 3]
    with pytest.raises(ValueError, match=r"share their methods; env_method\('reset'\) applies to all 3 envs"):
        venv.env_method("reset", indices=0)
    for bad in ([10], 3, [-4]):  # DummyVecEnv's lists fail there too
        with pytest.raises(IndexError, match=f"env index {bad[0] if isinstance(bad, list) else bad} is out of range "
                                             "for a DreamVecEnv of 3 envs"):  # fmt: skip
            venv.get_attr("num_envs", indices=bad)
    assert venv.get_attr("num_envs", indices=-1) == [3]


def test_reset_options_set_start_states_per_env_as_dream_env_takes_them(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=3, seed=0)
    venv.set_options([{"start_state": [0.1, 0.0, -0.1, 0.0]}, {}, {"start_state": np.zeros(4, np.float32)}])
    obs = venv.reset()
    np.testing.assert_allclose(obs[0], [0.1, 0.0, -0.1, 0.0])
    np.testing.assert_array_equal(obs[2], np.zeros(4))
    assert not np.array_equal(obs[1], np.zeros(4))  # a random real start state
    assert not np.array_equal(venv.reset()[0], obs[0])  # SB3's options serve one reset
    venv.set_options({"start_sate": np.zeros(4)})
    with pytest.raises(ValueError, match=r"reset options \['start_sate'\] are not known: DreamVecEnv takes "
                                         r"'start_state' only; did you mean 'start_state'\?"):  # fmt: skip
        venv.reset()
    venv.set_options({"start_state": [0.0, 0.0, 3.0, 0.0]})  # the pole's angle lies within +-0.419 rad
    with pytest.raises(ValueError, match=r"start_state'\] lies outside the observation space: its entry 2 is 3.0"):
        venv.reset()


def test_works_under_vecnormalize_and_vecmonitor(cartpole_model):
    venv = VecNormalize(VecMonitor(DreamVecEnv(cartpole_model, n_envs=4, max_episode_steps=10, seed=0)))
    venv.reset()
    episodes = []
    for _ in range(12):
        obs, rewards, dones, infos = venv.step(np.ones(4, np.int64))
        episodes += [info["episode"] for info in infos if "episode" in info]
        assert np.isfinite(obs).all()
    assert episodes and all(1 <= e["l"] <= 10 for e in episodes)


def test_stock_ppo_and_sac_train_on_it(cartpole_model, pendulum_model):
    ppo = PPO("MlpPolicy", DreamVecEnv(cartpole_model, n_envs=8, max_episode_steps=100, seed=0), n_steps=32,
              batch_size=64, seed=0, device="cpu")
    ppo.learn(512)
    assert ppo.num_timesteps == 512 and ppo.env.get_attr("imagined_steps")[0] == 512
    sac = SAC("MlpPolicy", DreamVecEnv(pendulum_model, n_envs=2, max_episode_steps=50, seed=0),
              learning_starts=50, batch_size=32, seed=0, device="cpu")
    sac.learn(150)
    assert sac.num_timesteps == 150


def test_propagation_mean_is_deterministic_given_means(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=2, propagation="mean", deterministic=True)
    venv.reset_from(np.zeros((2, 4), np.float32))
    obs, _, _, _ = venv.step(np.array([0, 0]))
    assert np.allclose(obs[0], obs[1], rtol=0, atol=1e-6)  # identical up to SIMD rounding of the batched matmul


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_envs": 0}, "n_envs"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"uncertainty_threshold": -1}, "uncertainty_threshold"),
        ({"propagation": "ts9"}, "propagation"),
    ],
)
def test_bad_arguments_are_named(cartpole_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DreamVecEnv(cartpole_model, **kwargs)


def test_reset_from_checks_its_input(cartpole_model):
    venv = DreamVecEnv(cartpole_model, n_envs=2)
    with pytest.raises(ValueError, match="reset_from needs 2"):
        venv.reset_from(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        venv.reset_from(np.full((2, 4), np.nan))
