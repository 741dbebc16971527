"""Issue 15: every value is checked where it enters, with an error that names it; nothing is silently wrong or lost.

One test per kind, parametrised over every entry point of that kind (docs/boundaries.md lists them).
"""

from __future__ import annotations

import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_model
from gymnasium import spaces
from stable_baselines3 import PPO, SAC

from dream_envs import DreamEnv, EnsembleDynamics, ModelFitError, TransitionBuffer
from dream_envs.checks import check_bool, check_int, check_number, check_probability, seed_int, seeded_generator
from dream_envs.planning.mpc import MPCPlanner
from sb3_plugins import DreamVecEnv, DynaCallback
from sb3_plugins.benchmark import plan_runs

FAST = {"fit_kwargs": {"max_epochs": 2}, "ensemble_kwargs": {"hidden_sizes": (16,)}, "n_dream_envs": 4,
        "dream_rollouts": 1, "model_train_freq": 64, "min_real_steps": 32, "trust_errors": None, "seed": 0}  # fmt: skip


# ---------------------------------------------------------------- the shared checks
@pytest.mark.parametrize("value", [True, "0.5", None, math.nan, [0.5], 1.5, -0.1])
def test_probability_check_refuses_what_is_not_a_probability(value):
    with pytest.raises(ValueError, match=re.escape(f"p must be a number in [0, 1], got {value!r}")):
        check_probability("p", value)


@pytest.mark.parametrize("value", [0.25, np.float32(0.25), np.float64(0.25), np.array(0.25), 1, np.int64(0)])
def test_numpy_scalars_and_zero_d_arrays_are_numbers(value):
    assert check_probability("p", value) == float(value)
    assert isinstance(check_probability("p", value), float)


def test_number_intervals_say_which_ends_are_open():
    assert check_number("x", 3, 0, 3) == 3.0
    with pytest.raises(ValueError, match=r"x must be a number in \(0, 3\), got 3"):
        check_number("x", 3, 0, 3, low_open=True, high_open=True)
    with pytest.raises(ValueError, match=r"in \[0, inf\], got nan"):
        check_number("x", math.nan, 0)
    assert check_number("x", math.inf, 0) == math.inf  # a closed infinite end admits infinity
    with pytest.raises(ValueError, match="in \\[1, 3\\]"):
        check_int("n", 4, 1, 3)
    assert check_int("n", np.array(2)) == 2


@pytest.mark.parametrize("value", [1, 0, "no", None, np.array([True])])
def test_booleans_are_booleans(value):
    with pytest.raises(ValueError, match="must be True or False"):
        check_bool("flag", value)
    assert check_bool("flag", np.bool_(True)) is True


def test_one_seeding_rule():
    assert seed_int(3) == seed_int(np.int64(3)) != seed_int(4)
    assert seed_int(3, stream=1) != seed_int(3)
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            seed_int(bad)
    a, b = seeded_generator(5), seeded_generator(5)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


# ---------------------------------------------------------------- kind 1: actions against the action space
def _cartpole_entry_points(model):
    """Every place a CartPole action enters the model: name -> function of one action batch of 2 rows."""
    buffer = TransitionBuffer(model.observation_space, model.action_space)
    obs = np.zeros((2, 4), np.float32)
    dream = DreamEnv(model=model, seed=0)
    dream.reset(seed=0)
    venv = DreamVecEnv(model, n_envs=2, seed=0)
    venv.reset()

    def dream_step(actions):
        return dream.step(actions[0] if isinstance(actions, list) else actions)

    return {
        "TransitionBuffer.add": lambda a: buffer.add(obs, a, [0.0, 0.0], obs, [False, False]),
        "EnsembleDynamics.predict": lambda a: model.predict(obs, a),
        "EnsembleDynamics.step": lambda a: model.step(obs, a),
        "EnsembleDynamics.disagreement": lambda a: model.disagreement(obs, a),
        "DreamEnv.step": dream_step,
        "DreamVecEnv.step": lambda a: venv.step(np.asarray(a) if not isinstance(a, str) else a),
    }


@pytest.mark.parametrize("entry", ["TransitionBuffer.add", "EnsembleDynamics.predict", "EnsembleDynamics.step",
                                   "EnsembleDynamics.disagreement", "DreamEnv.step", "DreamVecEnv.step"])  # fmt: skip
@pytest.mark.parametrize(
    "actions, match",
    [
        ([2, 2], r"\[2(, 2)?\] not in Discrete\(2\): expected whole numbers in 0..1"),
        ([0.7, 0.7], r"not in Discrete\(2\)"),
        ([np.nan, np.nan], r"\[nan(, nan)?\] not in Discrete\(2\)"),
        ([-1, -1], r"\[-1(, -1)?\] not in Discrete\(2\)"),
        (["left", "left"], "must hold real numbers"),
        ([True, True], "must hold real numbers"),
    ],
)
def test_discrete_actions_outside_the_space_are_refused_everywhere_they_enter(cartpole_model, entry, actions, match):
    step = _cartpole_entry_points(cartpole_model)[entry]
    with pytest.raises(ValueError, match=match):
        step(actions if entry != "DreamEnv.step" else actions[0])


def test_whole_float_actions_are_accepted_and_a_wrong_count_is_named(cartpole_model):
    points = _cartpole_entry_points(cartpole_model)
    points["EnsembleDynamics.step"]([1.0, 0.0])  # a float array of whole numbers is a valid Discrete batch
    points["DreamEnv.step"](np.int64(1))
    with pytest.raises(ValueError, match=r"actions of shape \(3,\) does not fit Discrete\(2\): expected 2 action"):
        points["DreamVecEnv.step"]([0, 1, 1])
    with pytest.raises(ValueError, match=r"action of shape \(3,\) does not fit"):
        points["TransitionBuffer.add"]([0, 1, 1])


def test_box_actions_must_be_finite_and_of_the_space_shape(pendulum_model):
    obs = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="NaN or inf"):
        pendulum_model.step(obs, [[0.1], [np.nan]])
    with pytest.raises(ValueError, match=r"shape \(2, 2\) does not fit Box"):
        pendulum_model.predict(obs, np.zeros((2, 2)))
    dream = DreamEnv(model=pendulum_model, seed=0)
    dream.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        dream.step(np.array([np.inf], np.float32))
    assert dream.step(np.array([5.0], np.float32))[0].shape == (3,)  # out of bounds: clipped, as the env does


def test_discrete_spaces_with_a_start_work_in_the_model_and_are_refused_where_sb3_acts():
    obs_space, act_space = spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(3, start=-1)
    model = EnsembleDynamics(obs_space, act_space, ensemble_size=2, num_elites=1, hidden_sizes=(8,), seed=0)
    model.step(np.zeros((3, 2)), [-1, 0, 1])
    with pytest.raises(ValueError, match=r"\[2\] not in Discrete\(3, start=-1\): expected whole numbers in -1..1"):
        model.step(np.zeros((1, 2)), [2])
    with pytest.raises(ValueError, match="SB3's agents send actions 0..2"):
        DreamVecEnv(model, n_envs=2, start_states=np.zeros((4, 2), np.float32))


# ---------------------------------------------------------------- kind 2: shapes and dtypes, user functions
@pytest.mark.parametrize("entry", ["predict", "step", "disagreement"])
def test_observations_of_another_shape_are_named(cartpole_model, entry):
    with pytest.raises(ValueError, match=r"obs of shape \(2, 3\) does not fit the observation space .* expected "
                                         r"\(4,\) or a batch \(B, 4\)"):  # fmt: skip
        getattr(cartpole_model, entry)(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="obs holds NaN or inf"):
        getattr(cartpole_model, entry)(np.full((2, 4), np.nan), [0, 1])


def test_dream_start_states_are_checked(cartpole_model):
    # no rows at all (a filter that kept none): named, not torch's reshape error
    for make in (lambda states: DreamEnv(model=cartpole_model, start_states=states),
                 lambda states: DreamVecEnv(cartpole_model, n_envs=2, start_states=states)):  # fmt: skip
        for states in (np.zeros((0, 4)), torch.zeros(0, 4)):
            with pytest.raises(ValueError, match=r"start_states must hold at least one observation of shape \(4,\), "
                                                 r"got an array of shape \(0, 4\)"):  # fmt: skip
                make(states)
    dream = DreamEnv(model=cartpole_model, seed=0)
    with pytest.raises(ValueError, match=r"options\['start_state'\] holds NaN"):
        dream.reset(options={"start_state": [np.nan, 0, 0, 0]})
    with pytest.raises(ValueError, match="does not fit the observation space"):
        dream.reset(options={"start_state": np.zeros(3)})
    with pytest.raises(ValueError, match="must hold real numbers"):
        dream.reset(options={"start_state": ["a", "b", "c", "d"]})
    # CartPole's pole angle lies within +-0.419 rad: a first observation outside the space is refused
    with pytest.raises(ValueError, match=r"start_state'\] lies outside the observation space: its entry 2 is 3.0, "
                                         r"where the space allows -0.41\d+ to 0.41\d+"):  # fmt: skip
        dream.reset(options={"start_state": [0.0, 0.0, 3.0, 0.0]})
    with pytest.raises(ValueError, match=r"reset options \['start_sate'\] are not known: DreamEnv takes "
                                         r"'start_state' only; did you mean 'start_state'\?"):  # fmt: skip
        dream.reset(options={"start_sate": [0.0, 0.0, 0.0, 0.0]})
    obs, _ = dream.reset(options={"start_state": [0.1, 0.0, -0.2, 0.0]})
    assert np.allclose(obs, [0.1, 0.0, -0.2, 0.0])
    obs, _ = dream.reset(options={"start_state": torch.tensor([0.1, 0.0, -0.2, 0.0])})  # a tensor, as the model's
    assert np.allclose(obs, [0.1, 0.0, -0.2, 0.0])
    with pytest.raises(ValueError, match="lies outside the observation space: its entry 2 is 3.0"):
        dream.reset(options={"start_state": torch.tensor([0.0, 0.0, 3.0, 0.0])})


def _reward_shape_b1(obs, action, next_obs):
    return torch.ones(obs.shape[0], 1)


def _reward_float(obs, action, next_obs):
    return 1.0


def _termination_float(obs, action, next_obs):
    return torch.zeros(obs.shape[0])


def _reward_nan(obs, action, next_obs):
    return torch.full((obs.shape[0],), float("nan"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"reward_fn": _reward_shape_b1},
            r"reward_fn '_reward_shape_b1' returned shape \(2, 1\) for a batch of 2: expected \(2,\)",
        ),  # fmt: skip
        ({"reward_fn": _reward_float}, "reward_fn '_reward_float' returned float 1.0: it must return a tensor"),
        (
            {"termination_fn": _termination_float},
            "termination_fn '_termination_float' returned torch.float32 values: terminations must be booleans",
        ),  # fmt: skip
    ],
)
def test_user_reward_and_termination_functions_are_held_to_one_value_per_row_where_they_are_given(
    cartpole_model, kwargs, match
):
    # a probe batch of 2 rows made from the spaces: the dream's constructor, DynaCallback before any real step
    with pytest.raises(ValueError, match=match):
        DreamEnv(model=cartpole_model, seed=0, **kwargs)
    with pytest.raises(ValueError, match=match):
        DreamVecEnv(cartpole_model, n_envs=3, seed=0, **kwargs)
    agent = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu")
    with pytest.raises(ValueError, match=match):
        agent.learn(64, callback=DynaCallback(**kwargs))
    assert agent.num_timesteps == 0


def test_a_reward_function_s_nan_is_refused_at_the_step_that_returns_it(cartpole_model):
    match = r"reward_fn '_reward_nan' returned nan \(not finite\) for {} rows whose inputs are finite, first at row 0"
    dream = DreamEnv(model=cartpole_model, seed=0, reward_fn=_reward_nan)
    dream.reset(seed=0)
    with pytest.raises(ValueError, match=match.format("1 of 1")):  # the dream would truncate and blame the model
        dream.step(0)
    venv = DreamVecEnv(cartpole_model, n_envs=3, seed=0, reward_fn=_reward_nan)
    venv.reset()
    with pytest.raises(ValueError, match=match.format("3 of 3")):
        venv.step(np.zeros(3, np.int64))


def test_every_loop_hands_a_user_function_a_discrete_action_as_one_value_per_row(cartpole_model, cartpole_buffer):
    from dream_envs.planning import ModelValueFunction
    from dream_envs.planning.trajectories import TrajectoryEvaluator

    seen = set()

    def reward(obs, action, next_obs):
        seen.add((tuple(action.shape), action.dtype))
        return (action == 0).float()  # written for (B,): a (B, 1) action would return (B, 1)

    dream = DreamEnv(model=cartpole_model, seed=0, reward_fn=reward)
    dream.reset(seed=0)
    dream.step(0)
    venv = DreamVecEnv(cartpole_model, n_envs=3, seed=0, reward_fn=reward)
    venv.reset()
    venv.step(np.zeros(3, np.int64))
    TrajectoryEvaluator(cartpole_model, particles=4, reward_fn=reward).returns(
        cartpole_buffer.transitions().obs[0], torch.zeros(5, 3, dtype=torch.int64), torch.Generator().manual_seed(0)
    )
    value = ModelValueFunction(cartpole_model, termination_fn=lambda o, a, n: reward(o, a, n) > 2, rounds=1,
                               updates=2, rollouts=8, rollout_length=2)  # fmt: skip
    value.fit(cartpole_buffer.transitions().obs[:50], cartpole_buffer.transitions().reward[:50])
    assert {shape[1:] for shape, _ in seen} == {()} and {dtype for _, dtype in seen} == {torch.int64}, seen


def test_a_user_function_that_edits_its_inputs_in_place_leaves_the_dream_as_it_was(pendulum_model):
    def reward(obs, action, next_obs):
        distance = next_obs[:, :2]  # a view: the edit below would move the imagined state itself
        distance -= 100.0
        action.zero_()
        return -distance.norm(dim=1)

    plain, edited = (DreamEnv(model=pendulum_model, seed=0, **kwargs) for kwargs in ({}, {"reward_fn": reward}))
    for dream in (plain, edited):
        dream.reset(seed=0)
    for _ in range(3):
        a, b = plain.step(np.array([1.5], np.float32)), edited.step(np.array([1.5], np.float32))
        np.testing.assert_array_equal(a[0], b[0])


def test_a_user_function_that_cannot_take_three_arguments_is_named_where_it_is_given(cartpole_model):
    def two_arguments(obs, action):
        return torch.zeros(len(obs))

    match = r"reward_fn 'two_arguments' must take \(obs, action, next_obs\), three positional arguments"
    with pytest.raises(TypeError, match=match):
        DynaCallback(reward_fn=two_arguments)
    with pytest.raises(TypeError, match=match):
        DreamEnv(model=cartpole_model, reward_fn=two_arguments)
    DreamEnv(model=cartpole_model, reward_fn=lambda *inputs: torch.zeros(len(inputs[0])))  # *args takes three


def test_a_user_function_that_fails_on_the_spaces_inputs_is_named_with_the_layout_it_got(cartpole_model):
    def indexes_a_column(obs, action, next_obs):
        return (action[:, 0] == 0).float()  # a Discrete action is one value per row

    match = (r"reward_fn 'indexes_a_column' failed on a batch of 2 rows made from the spaces \(obs \(2, 4\) "
             r"float32, action \(2,\) int64, next_obs \(2, 4\), drawn uniformly .*\), as the dream will call it: "
             r"IndexError")  # fmt: skip
    with pytest.raises(ValueError, match=match):
        DreamEnv(model=cartpole_model, reward_fn=indexes_a_column)
    agent = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu")
    with pytest.raises(ValueError, match=match):
        agent.learn(64, callback=DynaCallback(reward_fn=indexes_a_column))
    assert agent.num_timesteps == 0


def test_a_numpy_reward_function_is_accepted(cartpole_model):
    dream = DreamEnv(model=cartpole_model, seed=0, reward_fn=lambda o, a, n: np.full(len(o), 2.0))
    dream.reset(seed=0)
    _, reward, terminated, truncated, _ = dream.step(1)
    assert reward == 2.0 and isinstance(terminated, bool) and isinstance(truncated, bool)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"reward": [1.0, 2.0]}, r"reward has 2 value\(s\) of shape \(2,\) for 3 row\(s\): give one per row"),
        ({"reward": 1.0}, r"reward has 1 value\(s\) of shape \(\) for 3 row\(s\)"),
        ({"reward": ["a", "b", "c"]}, "reward must be numbers"),
        ({"terminated": "no"}, r"terminated must be booleans \(True/False or 0/1\), got 'no'"),
        ({"terminated": [0.5, 0, 1]}, "terminated must be booleans"),
        ({"truncated": [True, False]}, r"truncated has 2 value\(s\)"),
        ({"next_obs": np.zeros((2, 4))}, r"next_obs has 2 row\(s\) where obs has 3"),
        ({"obs": np.zeros((3, 5))}, r"obs of shape \(3, 5\) does not fit"),
    ],
)
def test_buffer_add_takes_one_value_per_row(change, match):
    buffer = TransitionBuffer(spaces.Box(-5, 5, (4,), np.float32), spaces.Discrete(2))
    row = {"obs": np.zeros((3, 4)), "action": [0, 1, 0], "reward": [1.0, 1.0, 1.0], "next_obs": np.zeros((3, 4)),
           "terminated": [False, False, True]}  # fmt: skip
    with pytest.raises(ValueError, match=match):
        buffer.add(**{**row, **change})
    assert len(buffer) == 0
    buffer.add(**{**row, "terminated": [0, 0, 1]}, truncated=False)  # 0/1 flags; one truncated for every row
    assert buffer.transitions().terminated.tolist() == [False, False, True]
    assert not buffer.transitions().truncated.any()


# ---------------------------------------------------------------- kind 3: settings validated when given
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fit_kwargs": {"max_epoch": 3}}, "fit_kwargs has an unknown key 'max_epoch' \\(did you mean 'max_epochs'"),
        ({"fit_kwargs": {"max_epochs": "3"}}, "max_epochs must be a positive integer, got '3'"),
        ({"fit_kwargs": {"learning_rate": math.inf}}, r"learning_rate must be a number in \(0, inf\)"),
        ({"fit_kwargs": {"seed": 1}}, "fit_kwargs may not set 'seed': the fits draw from DynaCallback"),
        ({"ensemble_kwargs": {"hiden_sizes": (8,)}}, "ensemble_kwargs has an unknown key 'hiden_sizes'"),
        ({"ensemble_kwargs": {"num_elites": 9}}, r"num_elites \(ensemble_size=5\) must be an integer in \[1, 5\]"),
        ({"ensemble_kwargs": {"device": "cpu"}}, "ensemble_kwargs may not set 'device'"),
        ({"ensemble_kwargs": {"ensemble_size": "3"}}, "ensemble_size must be a positive integer, got '3'"),
        ({"reward_fn": "NoSuchEnv-v0"}, "reward_fn='NoSuchEnv-v0' is not an env id with a known function"),
        ({"reward_fn": 3}, "reward_fn must be None, 'learned', an env id, 'module:function' or a callable"),
        ({"real_ratio": True}, r"real_ratio must be a number in \[0, 1\], got True"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
        ({"utd_ratio": 2.5}, "utd_ratio"),
        ({"verbose": "x"}, "verbose must be an integer >= 0"),
        ({"env_id": 3}, "env_id must be None or a gymnasium env id"),
    ],
)
def test_dyna_callback_settings_fail_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DynaCallback(**kwargs)


@pytest.mark.parametrize("size, elites", [(3, 2), (1, 1), (7, 6)])
def test_an_ensemble_size_alone_gets_elites_that_fit_it(size, elites):
    # the default elites follow the user's ensemble_size (a fixed default of 4 refused ensemble_size=3)
    dyna = DynaCallback(**{**FAST, "ensemble_kwargs": {"ensemble_size": size, "hidden_sizes": (8,)}})
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=50, policy_kwargs={"net_arch": [16]},
                device="cpu", seed=0)  # fmt: skip
    agent.learn(120, callback=dyna)
    assert (dyna.dynamics.config.ensemble_size, dyna.dynamics.config.num_elites) == (size, elites)
    assert DynaCallback(ensemble_kwargs={"ensemble_size": 3, "num_elites": 3}).ensemble_kwargs["num_elites"] == 3


def test_numpy_settings_are_accepted_as_numbers():
    dyna = DynaCallback(real_ratio=np.float32(0.25), utd_ratio=np.int64(4), rollout_horizon=np.int64(5),
                        n_dream_envs=np.int32(8), seed=np.int64(3))  # fmt: skip
    assert (dyna.real_ratio, dyna.utd_ratio, dyna.n_dream_envs, dyna.seed) == (0.25, 4, 8, 3)
    assert all(type(v) is int for v in (dyna.utd_ratio, dyna.n_dream_envs, dyna.seed))
    assert DynaCallback(rollout_horizon=np.array([0, 100, 1, 5]))._horizon_schedule == (0, 100, 1, 5)


@pytest.mark.parametrize(
    "model_spaces, match",
    [
        ((spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2)), "dynamics model has the observation space"),
        ((gym.make("CartPole-v1").observation_space, spaces.Discrete(3)), "dynamics model has the action space"),
    ],
)
def test_a_model_for_other_spaces_or_an_unknown_function_fails_before_any_real_step(model_spaces, match):
    model = EnsembleDynamics(*model_spaces, ensemble_size=2, num_elites=1, hidden_sizes=(8,), seed=0)
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, device="cpu", seed=0)
    with pytest.raises(ValueError, match=match):
        settings = {k: v for k, v in FAST.items() if k != "ensemble_kwargs"}
        agent.learn(64, callback=DynaCallback(dynamics=model, **settings))
    assert agent.num_timesteps == 0
    unknown = DynaCallback(reward_fn="known", **FAST)  # the env id comes from the training env at learn()
    env = gym.make("InvertedDoublePendulum-v5")  # its reward reads the pole tip, which the observation lacks
    with pytest.raises(ValueError, match="reward_fn='known': InvertedDoublePendulum-v5 has no known function"):
        PPO("MlpPolicy", env, n_steps=64, batch_size=64, device="cpu").learn(64, callback=unknown)


def test_benchmark_plan_refuses_bad_dyna_settings_before_training():
    overrides = {"CartPole-v1": {"ppo+dyna": {"dyna": {"fit_kwargs": {"max_epoch": 3}}}}}
    with pytest.raises(ValueError, match="DynaCallback rejected the dyna settings.*did you mean 'max_epochs'"):
        plan_runs("CartPole-v1", ["ppo+dyna"], seeds=1, budget=500, overrides=overrides)
    overrides = {"InvertedDoublePendulum-v5": {"sac+dyna": {"dyna": {"reward_fn": "known"}}}}
    with pytest.raises(ValueError, match="reward_fn='known': InvertedDoublePendulum-v5 has no known function"):
        plan_runs("InvertedDoublePendulum-v5", ["sac+dyna"], seeds=1, budget=1000, overrides=overrides)


# ---------------------------------------------------------------- kind 4: a failed fit is not a fitted model
def test_a_diverging_fit_raises_and_leaves_the_model_as_it_was(cartpole_buffer):
    model = small_model("CartPole-v1")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelFitError, match="fit diverged: no finite holdout loss .* the model is left as it was"):
        model.fit(cartpole_buffer, learning_rate=1e12, max_epochs=2, seed=0)
    assert not model.fitted
    torch.testing.assert_close(model.state_dict(), before, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ValueError, match="DreamEnv|fitted"):
        DreamEnv(model=model)
    fitted = small_model("CartPole-v1")
    fitted.fit(cartpole_buffer, max_epochs=2, seed=0)
    weights = {k: v.clone() for k, v in fitted.state_dict().items()}
    with pytest.raises(ModelFitError):
        fitted.fit(cartpole_buffer, learning_rate=1e12, max_epochs=2, seed=0)
    assert fitted.fitted
    torch.testing.assert_close(fitted.state_dict(), weights, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": math.inf}, r"learning_rate must be a number in \(0, inf\), got inf"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"max_holdout": -5}, "max_holdout must be an integer >= 0, got -5"),
        ({"holdout_ratio": 1.0}, r"holdout_ratio must be a number in \[0, 1\)"),
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"bootstrap": "yes"}, "bootstrap must be True or False"),
        ({"uncertainty_horizon": 0}, "uncertainty_horizon .* must be a positive integer"),
        ({"uncertainty_tolerance": -1}, "uncertainty_tolerance"),
        ({"seed": -3}, "seed must be an integer >= 0"),
    ],
)
def test_fit_arguments_are_checked_before_training(cartpole_buffer, kwargs, match):
    model = small_model("CartPole-v1")
    with pytest.raises(ValueError, match=match):
        model.fit(cartpole_buffer, **kwargs)
    assert not model.fitted


def test_dyna_callback_survives_a_diverging_fit_on_real_data_alone():
    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=32, device="cpu", seed=0)
    dyna = DynaCallback(**{**FAST, "fit_kwargs": {"max_epochs": 2, "learning_rate": 1e12}})
    with pytest.warns(UserWarning, match="the model fit diverged, the agent trains on real data alone"):
        agent.learn(130, callback=dyna)
    assert agent.num_timesteps == 130 and dyna.trust == 0.0 and dyna.imagined_steps == 0


# ---------------------------------------------------------------- kind 6: collected data is kept
class _FaultyEnv(gym.Wrapper):
    """CartPole whose ``nan_at``-th step returns a NaN reward and whose ``raise_at``-th step raises."""

    def __init__(self, nan_at=None, raise_at=None):
        super().__init__(gym.make("CartPole-v1"))
        self.steps, self.nan_at, self.raise_at = 0, nan_at, raise_at

    def step(self, action):
        self.steps += 1
        if self.steps == self.raise_at:
            raise RuntimeError("the simulator crashed")
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, (math.nan if self.steps == self.nan_at else reward), terminated, truncated, info


def test_collect_keeps_the_good_rows_and_counts_the_bad_ones():
    env = _FaultyEnv(nan_at=999)
    buffer = TransitionBuffer.from_env(env)
    with pytest.warns(UserWarning, match=r"left out 1 of 1000 transitions with NaN/inf values or actions outside "
                                         r"Discrete\(2\) \(reward: 1\); the other 999 were added"):  # fmt: skip
        buffer.collect(env, 1000, seed=0)
    assert len(buffer) == 999 and np.isfinite(buffer.transitions().reward).all()


def test_collect_keeps_the_steps_taken_before_the_env_raised():
    env = _FaultyEnv(raise_at=301)
    buffer = TransitionBuffer.from_env(env)
    with pytest.raises(RuntimeError, match="crashed"):
        buffer.collect(env, 1000, seed=0)
    assert len(buffer) == 300


# ---------------------------------------------------------------- the real buffer across learn() calls
def test_a_continued_learn_does_not_mark_mid_episode_observations_as_episode_starts():
    agent = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=64, device="cpu", seed=0)
    dyna = DynaCallback(**{**FAST, "model_train_freq": 10_000})
    agent.learn(64, callback=dyna)
    agent.learn(64, callback=dyna, reset_num_timesteps=False)  # Pendulum's episodes are 200 steps: none ended
    starts = np.flatnonzero(dyna.real.transitions().episode_start)
    assert starts.tolist() == [0]


# ---------------------------------------------------------------- planning settings
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"particles": 3}, "particles must be a positive multiple of the ensemble size 4"),
        ({"particles": True}, "particles"),
        ({"gamma": "0.9"}, r"gamma must be a number in \(0, 1\], got '0.9'"),
        ({"gamma": math.nan}, "gamma"),
    ],
)
def test_planner_settings_are_named(cartpole_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPCPlanner(cartpole_model, horizon=5, population=8, iterations=1, **{"particles": 4, **kwargs})


def test_warnings_are_not_errors_for_good_input(cartpole_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cartpole_model.step(np.zeros((2, 4), np.float32), np.array([0, 1]))
        cartpole_model.step(torch.zeros(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_starts": 1}, "learning_starts .* must be an integer >= 2, got 1"),
        ({"gamma": "0.9"}, r"gamma \(terminal_value=True.* must be a number in \(0, 1\), got '0.9'"),
        ({"gamma": 1.0}, r"gamma \(terminal_value=True"),
        ({"terminal_value": "yes"}, "terminal_value must be True or False"),
        ({"random_noise_beta": 5}, r"random_noise_beta must be a number in \[0, 4\]"),
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"fit_kwargs": {"max_epoch": 1}}, "fit_kwargs has an unknown key 'max_epoch'"),
        ({"fit_kwargs": {"seed": 1}}, "fit_kwargs may not set 'seed'"),
        ({"ensemble_kwargs": {"hidden_size": (8,)}}, "ensemble_kwargs has an unknown key 'hidden_size'"),
    ],
)
def test_mpc_agent_settings_fail_at_construction(kwargs, match):
    from dream_envs.agents import MPCAgent

    with pytest.raises(ValueError, match=match):
        MPCAgent("Pendulum-v1", **kwargs)


def test_mpc_agent_takes_numpy_settings():
    from dream_envs.agents import MPCAgent

    agent = MPCAgent("Pendulum-v1", random_noise_beta=np.float32(2.0), terminal_value=np.bool_(False), gamma=1.0,
                     learning_starts=np.int64(50), ensemble_kwargs={"hidden_sizes": (8,)})  # fmt: skip
    assert (agent.random_noise_beta, agent.terminal_value, agent.learning_starts) == (2.0, False, 50)


# ---------------------------------------------------------------- what a new user's trial found (issue 15)
def test_a_fit_that_would_train_on_nothing_or_is_interrupted_leaves_the_model_as_it_was(cartpole_model, monkeypatch):
    import dream_envs.models.training as training

    weights = {k: v.clone() for k, v in cartpole_model.state_dict().items()}
    ranges = (cartpole_model.reward_range, cartpole_model.cutoff_calibration)
    buffer = TransitionBuffer.from_env(gym.make("CartPole-v1")).collect(gym.make("CartPole-v1"), 300, seed=0)
    with pytest.raises(ValueError, match="holds out 300 of the 300 transitions, leaving 0 to train on"):
        cartpole_model.fit(buffer, max_epochs=1, holdout_ratio=0.999)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "choose_threshold", interrupted)  # the last stage, after every weight changed
    with pytest.raises(KeyboardInterrupt):
        cartpole_model.fit(buffer, max_epochs=1)
    torch.testing.assert_close(cartpole_model.state_dict(), weights, rtol=0, atol=0, equal_nan=True)
    assert (cartpole_model.reward_range, cartpole_model.cutoff_calibration) == ranges


def test_few_transitions_or_a_long_uncertainty_horizon_fit_with_the_default_cutoff():
    from dream_envs.models.calibration import CutoffCalibrationWarning

    env = gym.make("CartPole-v1")
    for rows, horizon in ((5, 10), (300, 10**9)):
        buffer = TransitionBuffer.from_env(env).collect(env, rows, seed=0)
        model = small_model("CartPole-v1")
        with pytest.warns(CutoffCalibrationWarning, match="could not be calibrated"):
            model.fit(buffer, max_epochs=1, uncertainty_horizon=horizon)
        assert model.fitted
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=16, device="cpu", seed=0)
    dyna = DynaCallback(**{**FAST, "min_real_steps": 4, "model_train_freq": 8})
    agent.learn(16, callback=dyna)  # the first fit on 4 transitions: shorter than the cutoff's horizon of 10
    assert dyna.model_fits == 4  # at 4, 6, 9 and 13 real steps (refit_growth 0.5)


def test_torch_tensors_are_data_like_numpy_arrays(cartpole_model):
    buffer = TransitionBuffer(cartpole_model.observation_space, cartpole_model.action_space)
    buffer.add(torch.zeros(2, 4, requires_grad=True), torch.tensor([0, 1]), torch.ones(2), torch.zeros(2, 4),
               torch.tensor([False, True]))  # fmt: skip
    assert len(buffer) == 2 and buffer.transitions().terminated.tolist() == [False, True]
    with pytest.raises(ValueError, match="obs holds NaN or inf"):
        cartpole_model.predict(torch.full((2, 4), math.nan), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"action \[0.69999.*\] not in Discrete\(2\)"):
        cartpole_model.step(torch.zeros(2, 4), torch.tensor([0.7, 1.0]))
    with pytest.raises(ValueError, match=r"action \[5\] not in Discrete\(2\)"):
        cartpole_model.disagreement(torch.zeros(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="empty batch"):
        cartpole_model.step(np.zeros((0, 4)), np.zeros(0, np.int64))
    buffer.add(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0, bool))  # adds nothing
    assert len(buffer) == 2


def test_box_actions_must_have_the_space_layout():
    buffer = TransitionBuffer(spaces.Box(-10, 10, (2,), np.float32), spaces.Box(-10, 10, (3,), np.float32))
    with pytest.raises(ValueError, match=r"action of shape \(3, 2\) does not fit .* as an array of shape \(2, 3\)"):
        buffer.add(np.zeros((2, 2)), [[1, 2], [3, 4], [5, 6]], [0, 0], np.zeros((2, 2)), [False, False])
    buffer.add(np.zeros((2, 2)), [[1, 2, 3], [4, 5, 6]], [0, 0], np.zeros((2, 2)), [False, False])
    assert buffer.transitions().action.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_collect_keeps_steps_whose_actions_the_env_took_and_an_empty_buffer_round_trips(tmp_path):
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 10, policy=lambda obs: True, seed=0)  # CartPole takes True
    assert len(buffer) == 10 and buffer.transitions().action.tolist() == [1] * 10
    empty = TransitionBuffer.from_env(env)
    assert len(TransitionBuffer.load(empty.save(tmp_path / "empty.npz"), env.observation_space, env.action_space)) == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda model: DreamEnv(model=model, seed=True), "seed must be an integer >= 0, got True"),
        (lambda model: DreamEnv(model=model).reset(seed=-1), "seed must be an integer >= 0, got -1"),
        (lambda model: DreamEnv(model=model).reset(options="start_state"), "options must be None or a dict"),
        (lambda model: DreamVecEnv(model, n_envs=2).seed(-5), "seed must be an integer >= 0, got -5"),
        (
            lambda model: TransitionBuffer.from_env(gym.make("CartPole-v1")).collect(
                gym.make("CartPole-v1"), 5, seed=1.5
            ),
            "seed must be",
        ),
        (
            lambda model: TransitionBuffer.from_env(gym.make("CartPole-v1")).collect(
                gym.make("CartPole-v1"), 5, progress_bar="no"
            ),
            "progress_bar",
        ),
        (lambda model: DreamEnv(model=model, deterministic="no"), "deterministic must be True or False"),
        (lambda model: model.step(np.zeros((1, 4)), [0], deterministic=0), "deterministic must be True or False"),
        (lambda model: model.step(np.zeros((1, 4)), [0], generator=5), "generator must be None or a torch.Generator"),
        (lambda model: DreamEnv(model=model, reward_fn="Pendulum-v1"), "reward_fn='Pendulum-v1' is for Pendulum-v1"),
        (
            lambda model: DreamVecEnv(model, n_envs=2, env_id="Pendulum-v1", termination_fn="known"),
            "termination_fn='known' is for Pendulum-v1, whose spaces",  # the argument as given
        ),
        (lambda model: DreamEnv(model=model, start_states=[["a", "b", "c", "d"]]), "start_states must hold real"),
    ],
)
def test_seeds_flags_and_known_functions_are_checked_like_everywhere_else(cartpole_model, call, match):
    with pytest.raises(ValueError, match=match):
        call(cartpole_model)


def test_numpy_seeds_are_seeds_everywhere(cartpole_model):
    dream = DreamEnv(model=cartpole_model, seed=np.int64(3))
    first = dream.reset(seed=np.int64(4))[0]
    assert np.array_equal(first, DreamEnv(model=cartpole_model).reset(seed=4)[0])
    TransitionBuffer.from_env(gym.make("CartPole-v1")).collect(gym.make("CartPole-v1"), 5, seed=np.int64(2))


def test_an_agent_whose_observations_the_model_cannot_take_is_refused_at_plan_time():
    with pytest.raises(ValueError, match="observation space Discrete\\(16\\)"):
        plan_runs("FrozenLake-v1", ["ppo+dyna"], seeds=1, budget=1000)


def test_bench_yaml_with_a_misspelt_env_or_a_layer_torch_refuses_is_named(tmp_path, capsys):
    from sb3_plugins.cli import main

    cases = [
        (
            "CartPol-v1:\n  ppo: {agent: {learning_rate: 0.5}}\n",
            "entry 'CartPol-v1' is not a registered gymnasium env id (did you mean 'CartPole-v1'",
        ),
        ("CartPole-v1:\n  ppo: {agent: {policy_kwargs: {net_arch: [-5]}}}\n", "PPO rejected the agent settings"),
        (
            "CartPole-v1:\n  mpc: {dyna: {utd_ratio: 2}}\n",
            "'mpc' is model-based already and takes no DynaCallback; its settings go under 'agent'",
        ),
    ]
    for text, message in cases:
        (tmp_path / "h.yml").write_text(text)
        assert main(["bench", "--env", "CartPole-v1", "--algos", "ppo", "--seeds", "1", "--hyperparams",
                     str(tmp_path / "h.yml"), "--out", str(tmp_path / "out")]) == 2  # fmt: skip
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_diagnose_refuses_horizons_no_episode_holds_and_an_unwritable_out_before_any_work(tmp_path, capsys):
    from sb3_plugins.cli import main

    (tmp_path / "afile").write_text("")
    cases = [(["--horizons", "600", "--max-horizon", "600"],
              "a horizon of 600 model steps is longer than CartPole-v1's episodes"),
             (["--horizons", "600"], "--max-horizon 50 is below the largest --horizons value 600"),
             (["--out", str(tmp_path / "afile" / "sub")], "is a file, not a folder")]  # fmt: skip
    for args, message in cases:
        argv = ["diagnose", "--model", "Dream-CartPole-v0", "--out", str(tmp_path / "out"), *args]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.update(start_states=torch.zeros(2, 3, 4)), r"start states of shape \(2, 3, 4\)"),
        (lambda p: p.update(start_states=torch.zeros(0, 4)), r"start states of shape \(0, 4\)"),
        (lambda p: p.update(start_states=torch.zeros(2, 4, dtype=torch.long)), "start states of shape"),
        (lambda p: p["state_dict"].update(in_std=torch.zeros_like(p["state_dict"]["in_std"])), "spreads must be > 0"),
        (lambda p: p["observation_space"].update(dtype="int64"), "damaged header"),
    ],
)
def test_model_files_with_values_no_fit_writes_are_refused(cartpole_model, tmp_path, damage, match):
    from dream_envs import ModelFileError
    from dream_envs.io import save_torch_file

    payload = cartpole_model.to_payload()
    damage(payload)
    save_torch_file(tmp_path / "model.pt", payload)
    with pytest.raises(ModelFileError, match=match):
        EnsembleDynamics.load(tmp_path / "model.pt")


@pytest.mark.parametrize("schedule", [(0, 100, 1, math.inf), (0, 100, 1, math.nan), (0, 100, 1, 5.0)])
def test_a_rollout_horizon_schedule_takes_whole_numbers(schedule):
    with pytest.raises(ValueError, match="rollout_horizon's max_h must be an integer >= 0"):
        DynaCallback(rollout_horizon=schedule)


@pytest.mark.parametrize("name", ["DynaQ", "MuZero", "WorldModels", "MPCAgent"])
def test_every_own_agent_checks_its_tensorboard_folder_at_construction(name, tmp_path):
    import dream_envs.agents as agents

    env_id = {"DynaQ": "FrozenLake-v1", "MuZero": "CartPole-v1", "WorldModels": "CartPole-v1"}.get(name, "Pendulum-v1")
    with pytest.raises(ValueError, match="tensorboard_log must be None or a folder"):
        getattr(agents, name)(env_id, tensorboard_log=5)


def test_observations_beyond_float32_and_tensors_that_require_grad(cartpole_model):
    with pytest.raises(ValueError, match="beyond float32's range"):
        cartpole_model.predict(np.full((1, 4), 1e39), [0])
    cartpole_model.predict(torch.zeros(1, 4, requires_grad=True), torch.tensor([0]))
