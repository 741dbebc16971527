from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dream_envs import EnsembleDynamics, TransitionBuffer

# Two cores in CI: one torch thread per test process keeps timings stable and avoids oversubscription.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` need CUDA: where it is absent they are skipped, so the default run stays green on CPU
    machines while ``pytest -m gpu`` on a GPU machine runs them."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cartpole_buffer() -> TransitionBuffer:
    env = gym.make("CartPole-v1")
    return TransitionBuffer.from_env(env).collect(env, n_steps=3000, seed=0)


@pytest.fixture(scope="session")
def pendulum_buffer() -> TransitionBuffer:
    env = gym.make("Pendulum-v1")
    return TransitionBuffer.from_env(env).collect(env, n_steps=3000, seed=0)


def small_model(env_id: str, seed: int = 0, **kwargs) -> EnsembleDynamics:
    env = gym.make(env_id)
    options = dict(ensemble_size=4, num_elites=3, hidden_sizes=(64, 64), env_id=env_id, device="cpu", seed=seed)
    options.update(kwargs)
    return EnsembleDynamics(env.observation_space, env.action_space, **options)


@pytest.fixture(scope="session")
def cartpole_model(cartpole_buffer) -> EnsembleDynamics:
    model = small_model("CartPole-v1")
    model.fit(cartpole_buffer, max_epochs=40, batch_size=64, seed=0)
    return model


@pytest.fixture(scope="session")
def pendulum_model(pendulum_buffer) -> EnsembleDynamics:
    model = small_model("Pendulum-v1", learn_termination=False)
    model.fit(pendulum_buffer, max_epochs=40, batch_size=64, seed=0)
    return model


@pytest.fixture(scope="session")
def cartpole_model_file(cartpole_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "cartpole.pt"
    cartpole_model.save(path)
    return path


@pytest.fixture
def csv_logger(tmp_path):
    """An SB3 logger writing ``tmp_path/log/progress.csv``, closed after the test: left open, its file's
    ResourceWarning surfaces whenever the garbage collector finds it, in whichever test runs then (one that
    collects warnings, like :func:`checker_warnings`, fails)."""
    from stable_baselines3.common.logger import configure

    logger = configure(str(tmp_path / "log"), ["csv"])
    yield logger
    logger.close()


def checker_warnings(env: gym.Env) -> set[str]:
    """Run gymnasium's and SB3's env checkers (they raise on errors) and return what they warned about."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
    return {str(w.message) for w in caught}
