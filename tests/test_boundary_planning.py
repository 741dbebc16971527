"""Issue 15, what a user's trial found at the planners and the model-based agents: every setting and input is
refused where it enters, with a ValueError (TypeError for an object of the wrong kind) naming it and what was
expected, never a deep torch/numpy error, a NonFiniteObjectiveError blaming the model, or a silent truncation.

Each test is one kind of value, parametrised over the bad inputs (and the good numpy ones that must pass)."""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_model
from gymnasium import spaces

from dream_envs import TransitionBuffer
from dream_envs.planning import CEM, ICEM, MPPI, CategoricalCEM, MPCPlanner

BOX, DISCRETE = spaces.Box(-1, 1, (1,)), spaces.Discrete(3)
POSITIVE = r"must be a number in \(0, inf\)"


def re_repr(value) -> str:
    """``repr(value)`` as a regular expression matching itself."""
    return re.escape(repr(value))


# ---------------------------------------------------------------- optimisers: numbers, sizes and device
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda v: CEM(BOX, init_std=v), r"init_std \(a fraction of the action range's half width\) " + POSITIVE),
        (lambda v: ICEM(BOX, init_std=v), "init_std .*" + POSITIVE),
        (lambda v: MPPI(BOX, noise_std=v), "noise_std .*" + POSITIVE),
        (lambda v: MPPI(BOX, temperature=v), "temperature " + POSITIVE),
    ],
    ids=["cem-init_std", "icem-init_std", "mppi-noise_std", "mppi-temperature"],
)
@pytest.mark.parametrize("value", [-1, -0.5, 0.0, math.nan, math.inf, True, "1", None], ids=repr)
def test_optimiser_spreads_and_temperature_are_finite_and_positive(make, message, value):
    with pytest.raises(ValueError, match=message + f", got {re_repr(value)}$"):
        make(value)


@pytest.mark.parametrize("cls, space", [(CEM, BOX), (ICEM, BOX), (MPPI, BOX), (CategoricalCEM, DISCRETE)],
                         ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
@pytest.mark.parametrize("name", ["horizon", "population", "iterations"])
@pytest.mark.parametrize("value", ["x", 2.0, 10.5, True, 0, -3, None], ids=repr)
def test_optimiser_sizes_are_positive_integers(cls, space, name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {re_repr(value)}$"):
        cls(space, **{name: value})


@pytest.mark.parametrize("cls, space", [(CEM, BOX), (MPPI, BOX), (CategoricalCEM, DISCRETE)],
                         ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
@pytest.mark.parametrize("device, error, message", [
    ("x", ValueError, "device='x' is not a device torch knows"),
    (5, TypeError, "device must be 'auto', a device string or a torch.device, got 5"),
])  # fmt: skip
def test_optimiser_device_is_one_torch_knows(cls, space, device, error, message):
    with pytest.raises(error, match=message):
        cls(space, device=device)


def test_optimiser_numpy_settings_are_plain_numbers():
    cem = CEM(BOX, horizon=np.int64(3), population=np.int32(8), iterations=np.int64(2), init_std=np.float32(0.25))
    mppi = MPPI(BOX, temperature=np.float32(0.5), noise_std=np.float64(0.1), device=torch.device("cpu"))
    assert (cem.horizon, cem.population, cem.iterations, cem.init_std) == (3, 8, 2, 0.25)
    assert all(type(v) is int for v in (cem.horizon, cem.population, cem.iterations))
    assert type(mppi.temperature) is float and mppi.temperature == 0.5
    assert cem.optimize(lambda a: -a.pow(2).sum((1, 2)), torch.Generator().manual_seed(0)).shape == (3, 1)


@pytest.mark.parametrize("cls", [CEM, ICEM, MPPI])
def test_gaussian_optimisers_refuse_an_unbounded_box(cls):
    # Its mean would be (-inf + inf) / 2 = NaN: every sequence NaN, every plan blamed on the model.
    with pytest.raises(ValueError, match=f"{cls.__name__} samples actions between the bounds .* infinite ones"):
        cls(spaces.Box(-np.inf, np.inf, (2,)))


# ---------------------------------------------------------------- MPCPlanner
def tiny_pendulum_model(fitted: bool = True):
    model = small_model("Pendulum-v1", ensemble_size=2, num_elites=2, hidden_sizes=(8,), learn_termination=False)
    if fitted:
        env = gym.make("Pendulum-v1")
        model.fit(TransitionBuffer.from_env(env).collect(env, n_steps=300, seed=0), max_epochs=1, seed=0)
    return model


@pytest.fixture(scope="module")
def pendulum_model():
    return tiny_pendulum_model()


def planner(model, **kwargs):
    return MPCPlanner(model, **{"horizon": 3, "population": 8, "iterations": 1, "particles": 2, "seed": 0, **kwargs})


@pytest.mark.parametrize("model", [None, "Pendulum-v1", object()], ids=["None", "env-id", "object"])
def test_planner_model_must_be_an_ensemble(model):
    with pytest.raises(TypeError, match=f"model must be an EnsembleDynamics .*got {type(model).__name__}"):
        MPCPlanner(model)


@pytest.mark.parametrize("call", [lambda p: p.plan(np.zeros(3)), lambda p: p.plan_batch(np.zeros((2, 3)))],
                         ids=["plan", "plan_batch"])  # fmt: skip
def test_planning_with_an_unfitted_model_is_refused(call):
    # Made unfitted is fine (MPCAgent makes its planner before the first fit); planning with it is not.
    unfitted = planner(tiny_pendulum_model(fitted=False))
    with pytest.raises(ValueError, match="model has not been fitted: its predictions are random"):
        call(unfitted)


@pytest.mark.parametrize("obs, message", [
    (np.zeros(4), r"obs of shape \(4,\) does not fit the observation space"),
    (np.zeros((2, 2)), r"obs of shape \(2, 2\) does not fit the observation space"),
    (np.array([np.nan, 0.0, 0.0]), "obs holds NaN or inf values"),
    (np.array([0.0, np.inf, 0.0]), "obs holds NaN or inf values"),
    ("abc", "obs must hold real numbers, got 'abc'"),
    ([[0.0, 1.0], [2.0]], "obs must be numbers of one shape"),
    (np.array([True, False, True]), "obs must hold real numbers"),
    (np.zeros((2, 3)), r"plan takes one observation of shape \(3,\), got a batch of 2; .* plan_batch"),
], ids=["short", "2x2", "nan", "inf", "string", "ragged", "bool", "batch"])  # fmt: skip
def test_plan_checks_its_one_observation(pendulum_model, obs, message):
    with pytest.raises(ValueError, match=message):
        planner(pendulum_model).plan(obs)


@pytest.mark.parametrize(
    "obs",
    [np.zeros(3, np.float32), [0.0, 1.0, 0.0], torch.zeros(3), np.zeros((1, 3)), np.zeros(3, np.int64)],
    ids=["float32", "list", "tensor", "batch-of-1", "ints"],
)
def test_plan_takes_one_observation_in_any_numeric_form(pendulum_model, obs):
    action = planner(pendulum_model).plan(obs)
    assert action.shape == (1,) and np.isfinite(action).all()


@pytest.mark.parametrize("obs, message", [
    (np.zeros(3), r"observations of shape \(3,\) are one observation, not a batch"),
    (np.full((2, 3), np.nan), "observations holds NaN or inf values"),
    (np.zeros((2, 4)), r"observations of shape \(2, 4\) does not fit the observation space"),
    ([["a", "b", "c"]], "observations must hold real numbers"),
], ids=["single", "nan", "wide", "strings"])  # fmt: skip
def test_plan_batch_checks_its_observations(pendulum_model, obs, message):
    with pytest.raises(ValueError, match=message):
        planner(pendulum_model).plan_batch(obs)


@pytest.mark.parametrize("optimizer", [["cem"], "cme", None, 3, "CEM"], ids=repr)
def test_planner_optimizer_names_the_allowed_values(pendulum_model, optimizer):
    allowed = r"optimizer must be 'auto', one of \['categorical-cem', 'cem', 'icem', 'mppi'\] or a TrajectoryOptimizer"
    with pytest.raises(ValueError, match=f"{allowed}, got {re_repr(optimizer)}$"):
        planner(pendulum_model, optimizer=optimizer)


@pytest.mark.parametrize("optimizer, kwargs, message", [
    ("cem", {"elite_fractoin": 0.2}, r"unknown key 'elite_fractoin' \(did you mean 'elite_fraction'.*CEM.__init__"),
    ("mppi", {"init_std": 0.2}, r"unknown key 'init_std'.*MPPI.__init__ takes \['temperature', 'noise_std'\]"),
    ("auto", {"temperature": 0.5}, r"unknown key 'temperature'; CEM.__init__ takes"),
    ("cem", {"device": "cpu"}, "optimizer_kwargs may not set 'device': the optimiser runs on the model's device"),
    ("cem", {"action_space": BOX}, "optimizer_kwargs may not set 'action_space'"),
    ("mppi", {"temperature": math.inf}, r"temperature must be a number in \(0, inf\), got inf"),
    ("icem", {"noise_beta": "2"}, r"noise_beta must be a number in \[0, inf\), got '2'"),
])  # fmt: skip
def test_planner_optimizer_keywords_are_checked_against_the_optimiser(pendulum_model, optimizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        planner(pendulum_model, optimizer=optimizer, **kwargs)


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: CEM(BOX, horizon=3), {}, r"plans actions of Box\(-1.0, 1.0, \(1,\), float32\), but the model takes"),
    (lambda: CEM(spaces.Box(-2, 2, (1,)), horizon=5), {}, "the optimizer plans 5 steps, but horizon=3"),
    (lambda: CEM(spaces.Box(-2, 2, (1,)), horizon=3), {"alpha": 0.5}, r"optimizer_kwargs \['alpha'\] are for an "
                                                                        "optimiser named by a string"),
])  # fmt: skip
def test_a_given_optimiser_must_fit_the_model(pendulum_model, make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        planner(pendulum_model, optimizer=make(), **kwargs)


def test_planner_refuses_another_envs_known_reward(pendulum_model):
    # CartPole's reward reads a pole angle a Pendulum observation does not hold: refused, not planned on.
    with pytest.raises(ValueError, match="reward_fn='CartPole-v1' is for CartPole-v1, whose spaces"):
        planner(pendulum_model, reward_fn="CartPole-v1")


# ---------------------------------------------------------------- MuZero's temperature schedule
@pytest.mark.parametrize("schedule, message", [
    ([[0, math.nan]], r"temperature_schedule\[0\]'s temperature .* must be a number in \[0, inf\), got nan"),
    ([[0, math.inf]], r"temperature_schedule\[0\]'s temperature .*, got inf"),
    ([[0, "1.0"]], r"temperature_schedule\[0\]'s temperature .*, got '1.0'"),
    ([[0, -0.5]], r"temperature_schedule\[0\]'s temperature .*, got -0.5"),
    ([[0, 1.0], [1500.7, 0.5]], r"temperature_schedule\[1\]'s step \(real steps\) must be an integer >= 0, got 1500.7"),
    ([[True, 1.0]], r"temperature_schedule\[0\]'s step .*, got True"),
    ([[0, 1.0], [True, 0.5]], r"temperature_schedule\[1\]'s step .*, got True"),
    ([[0, 1.0], [-5, 0.5]], r"temperature_schedule\[1\]'s step .*, got -5"),
    ([], "temperature_schedule must be a non-empty list of"),
    (None, "temperature_schedule must be a non-empty list of"),
    ("hot", "temperature_schedule must be a non-empty list of"),
    ([[0, 1.0, 2.0]], "entry 0 is"),
    ([0, 1.0], "entry 0 is 0"),
    ([[5, 1.0]], "must start at step 0"),
    ([[0, 1.0], [10, 0.5], [10, 0.25]], "steps must increase strictly; entry 2 at step 10 follows step 10"),
])  # fmt: skip
def test_muzero_temperature_schedule_is_checked(schedule, message):
    from dream_envs.agents import MuZero

    with pytest.raises(ValueError, match=message):
        MuZero("CartPole-v1", n_envs=1, temperature_schedule=schedule)


def test_muzero_temperature_schedule_takes_numpy_numbers_and_zero():
    from dream_envs.agents import MuZero

    schedule = [(np.int64(0), np.float32(1.0)), (np.int32(100), 0)]  # 0: the most visited action
    agent = MuZero("CartPole-v1", n_envs=1, temperature_schedule=schedule, latent_size=4, hidden_size=8)
    assert agent.temperature_schedule == ((0, 1.0), (100, 0.0))
    assert all(type(step) is int and type(t) is float for step, t in agent.temperature_schedule)


# ---------------------------------------------------------------- WorldModels' numbers
WM_TINY = dict(latent_size=4, hidden_size=8, n_mixtures=2, vae_channels=(4, 8, 8, 16), frames_per_iteration=50)


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": math.inf}, r"learning_rate must be a number in \(0, inf\), got inf"),
    ({"learning_rate": math.nan}, r"learning_rate must be a number in \(0, inf\), got nan"),
    ({"learning_rate": "1e-3"}, r"learning_rate must be a number in \(0, inf\), got '1e-3'"),
    ({"cma_sigma0": True}, r"cma_sigma0 must be a number in \(0, inf\), got True"),
    ({"kl_tolerance": math.nan}, r"kl_tolerance \(nats per latent dimension\) must be a number in \[0, inf\), got nan"),
    ({"kl_tolerance": -1}, r"kl_tolerance .* got -1"),
    ({"termination_pos_weight": math.inf}, r"termination_pos_weight \(None: auto\) must be a number in \(0, inf\)"),
    ({"termination_pos_weight": 0}, r"termination_pos_weight .*, got 0"),
    ({"vae_channels": (8.7, 16.2, 32, 64)}, r"vae_channels\[0\] must be a positive integer, got 8.7"),
    ({"vae_channels": (8, 16, 32, True)}, r"vae_channels\[3\] must be a positive integer, got True"),
    ({"vae_channels": "abc"}, "vae_channels must be 4 positive integers .*, got 'abc'"),
    ({"vae_channels": (8, 16, 32)}, "vae_channels must be 4 positive integers"),
    ({"vae_channels": 8}, "vae_channels must be 4 positive integers"),
    ({"verbose": "x"}, "verbose must be an integer >= 0, got 'x'"),
    ({"verbose": -3}, "verbose must be an integer >= 0, got -3"),
])  # fmt: skip
def test_world_models_numbers_are_checked(kwargs, message):
    from dream_envs.agents import WorldModels

    with pytest.raises(ValueError, match=message):
        WorldModels("CartPole-v1", **{**WM_TINY, **kwargs})


def test_world_models_takes_numpy_scalars():
    from dream_envs.agents import WorldModels

    agent = WorldModels("CartPole-v1", **{**WM_TINY, "vae_channels": np.array([4, 8, 8, 16])},
                        learning_rate=np.float32(1e-3), kl_tolerance=np.float32(2.0), cma_sigma0=np.float64(0.5),
                        termination_pos_weight=np.float32(3.0), exploration=np.float32(0.1))  # fmt: skip
    assert agent.vae_channels == (4, 8, 8, 16) and all(type(c) is int for c in agent.vae_channels)
    for name, value in (("learning_rate", 1e-3), ("kl_tolerance", 2.0), ("cma_sigma0", 0.5),
                        ("termination_pos_weight", 3.0), ("exploration", 0.1)):  # fmt: skip
        assert type(getattr(agent, name)) is float and getattr(agent, name) == pytest.approx(value)


@pytest.mark.parametrize("call, message", [
    (lambda f, vae, frames, seqs, mdn: f["fit_vae"](vae, frames, epochs=1.5), "epochs must be an integer >= 0"),
    (lambda f, vae, frames, seqs, mdn: f["fit_vae"](vae, frames, 1, lr=math.nan), r"lr must be a number in \(0"),
    (lambda f, vae, frames, seqs, mdn: f["fit_vae"](vae, frames, 1, kl_tolerance=-1), "kl_tolerance must be"),
    (lambda f, vae, frames, seqs, mdn: f["fit_mdn_rnn"](mdn, seqs, 1, batch_size="4"), "batch_size must be"),
    (lambda f, vae, frames, seqs, mdn: f["fit_mdn_rnn"](mdn, seqs, 1, pos_weight=math.inf), "pos_weight must be"),
    (lambda f, vae, frames, seqs, mdn: f["fit_mdn_rnn"](mdn, seqs, 1, grad_clip=0), "grad_clip must be"),
])  # fmt: skip
def test_world_models_fit_functions_check_their_numbers(call, message):
    from dream_envs.agents.world_models import MDNRNN, ConvVAE, LatentSequences, fit_mdn_rnn, fit_vae

    vae = ConvVAE(latent_size=4, channels=(4, 8, 8, 16), seed=0)
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    seqs = LatentSequences(torch.zeros(1, 3, 4), torch.zeros(1, 2, 2), torch.zeros(1, 2), torch.zeros(1, 2),
                           torch.ones(1, 2), torch.tensor([2]))  # fmt: skip
    mdn = MDNRNN(4, 2, hidden_size=4, seed=0)
    with pytest.raises(ValueError, match=message):
        call({"fit_vae": fit_vae, "fit_mdn_rnn": fit_mdn_rnn}, vae, frames, seqs, mdn)


# ---------------------------------------------------------------- MPCAgent's settings
MPC_TINY = dict(horizon=3, population=8, iterations=1, particles=2, terminal_value=False,
                ensemble_kwargs={"ensemble_size": 2, "num_elites": 2, "hidden_sizes": (8,)})  # fmt: skip


def mpc_agent(**kwargs):
    from dream_envs.agents import MPCAgent

    return MPCAgent("Pendulum-v1", **{**MPC_TINY, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"verbose": "loud"}, "verbose must be an integer >= 0, got 'loud'"),
    ({"verbose": -3}, "verbose must be an integer >= 0, got -3"),
    ({"verbose": 1.0}, "verbose must be an integer >= 0, got 1.0"),
    ({"tensorboard_log": 5}, "tensorboard_log must be None or a folder .*, got 5"),
    ({"tensorboard_log": ""}, "tensorboard_log must be None or a folder .*, got ''"),
    ({"tensorboard_log": True}, "tensorboard_log must be None or a folder .*, got True"),
    ({"tensorboard_log": b"runs"}, "tensorboard_log must be None or a folder .*, got b'runs'"),
    ({"value_kwargs": {"bogus": 1}}, r"value_kwargs has an unknown key 'bogus'; ModelValueFunction.__init__ takes"),
    ({"value_kwargs": {"roundz": 1}, "terminal_value": True, "gamma": 0.9}, r"did you mean 'rounds'"),
    ({"value_kwargs": {"seed": 1}}, r"value_kwargs may not set 'seed': the value draws from MPCAgent\(seed=...\)"),
    ({"value_kwargs": {"model": None}}, "value_kwargs may not set 'model'"),
    ({"value_kwargs": [("rounds", 1)]}, "value_kwargs must be a dict of keyword arguments"),
    ({"optimizer_kwargs": {"elite_fractoin": 0.2}}, r"optimizer_kwargs has an unknown key 'elite_fractoin'"),
    ({"optimizer_kwargs": {"population": 5}}, "optimizer_kwargs may not set 'population'"),
    ({"optimizer_kwargs": "alpha"}, "optimizer_kwargs must be a dict of keyword arguments of the optimiser"),
    ({"optimizer_kwargs": {1: 2}}, "optimizer_kwargs must be a dict of keyword arguments of the optimiser"),
    ({"optimizer": ["cem"]}, r"optimizer must be 'auto', one of \[.*got \['cem'\]"),
    ({"particles": 2.0}, "particles must be a positive integer, got 2.0"),
])  # fmt: skip
def test_mpc_agent_settings_are_checked_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mpc_agent(**kwargs)


def test_mpc_agent_refuses_a_file_as_tensorboard_folder(tmp_path):
    file = tmp_path / "runs"
    file.write_text("")
    with pytest.raises(ValueError, match="tensorboard_log=.* is a file; TensorBoard logs need a folder"):
        mpc_agent(tensorboard_log=file)


def test_mpc_agent_takes_a_path_and_numpy_sizes_and_saves_them_as_plain_values(tmp_path):
    from dream_envs.agents import MPCAgent

    agent = mpc_agent(tensorboard_log=tmp_path / "runs", horizon=np.int64(3), population=np.int32(8),
                      particles=np.int64(2))  # fmt: skip
    assert agent.tensorboard_log == str(tmp_path / "runs") and isinstance(agent.tensorboard_log, str)
    assert all(type(v) is int for v in (agent.horizon, agent.population, agent.particles))
    loaded = MPCAgent.load(agent.save(tmp_path / "agent.pt"), "Pendulum-v1")  # weights_only: plain values only
    assert (loaded.horizon, loaded.tensorboard_log) == (3, str(tmp_path / "runs"))
