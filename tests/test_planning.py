"""MPC planning: optimisers, particle evaluation against a per-member reference, the planner, the PETS agent."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_model
from gymnasium import spaces

from dream_envs import ModelFileError
from dream_envs.agents import MPCAgent
from dream_envs.planning import (
    CEM,
    ICEM,
    MPPI,
    CategoricalCEM,
    MPCPlanner,
    NonFiniteObjectiveError,
    TrajectoryEvaluator,
)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- optimisers
def test_cem_and_mppi_find_the_optimum_of_a_known_objective():
    target = torch.tensor([0.5, -1.0])
    objective = lambda a: -(a - target).pow(2).sum((1, 2))  # noqa: E731
    box = spaces.Box(-2, 2, (2,))
    cem = CEM(box, horizon=4, population=200, iterations=6).optimize(objective, generator())
    mppi = MPPI(box, horizon=4, population=400, iterations=10, temperature=0.1, noise_std=0.1)
    mppi = mppi.optimize(objective, generator())
    assert torch.allclose(cem, target.expand(4, 2), atol=0.05) and torch.allclose(mppi, target.expand(4, 2), atol=0.1)
    clipped = CEM(spaces.Box(-1, 1, (1,)), horizon=3, population=100, iterations=5)
    assert torch.all(clipped.optimize(lambda a: a.sum((1, 2)), generator()) <= 1.0)  # bounds hold


def test_icem_uses_colored_noise_and_carries_elites_over():
    from dream_envs.planning import ICEM, colored_noise

    for beta, low, high in ((0.0, -0.05, 0.05), (2.0, 0.6, 0.95)):
        noise = colored_noise(beta, (20_000,), 15, generator())
        lag1 = float((noise[:, 1:] * noise[:, :-1]).mean() / noise.var())
        assert low < lag1 < high and 0.9 < float(noise.std()) < 1.25, (beta, lag1)
    target = torch.tensor([0.5, -1.0])
    icem = ICEM(spaces.Box(-2, 2, (2,)), horizon=4, population=200, iterations=6)
    plan = icem.optimize(lambda a: -(a - target).pow(2).sum((1, 2)), generator())
    assert torch.allclose(plan, target.expand(4, 2), atol=0.1)
    kept = icem.kept.clone()
    icem.shift()
    assert torch.equal(icem.kept[:, :-1], kept[:, 1:]) and len(kept) == round(0.3 * 20)


def test_categorical_cem_and_random_shooting_find_the_best_discrete_sequence():
    best = torch.tensor([2, 0, 1, 1, 2])
    objective = lambda a: (a == best).float().sum(1)  # noqa: E731
    plan = CategoricalCEM(spaces.Discrete(3), horizon=5, population=200, iterations=5).optimize(objective, generator())
    assert torch.equal(plan, best)
    shooting = CategoricalCEM(spaces.Discrete(2, start=1), horizon=3, population=64, iterations=1)
    plan = shooting.optimize(lambda a: (a == 2).float().sum(1), generator())
    assert torch.equal(plan, torch.tensor([2, 2, 2]))  # start=1 honoured


def test_warm_start_shifts_the_plan_by_one_step():
    cem = CEM(spaces.Box(-1, 1, (1,)), horizon=3, population=50, iterations=1)
    cem.mean = torch.tensor([[0.1], [0.2], [0.3]])
    cem.shift()
    assert torch.allclose(cem.mean, torch.tensor([[0.2], [0.3], [0.0]]))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CEM(spaces.Discrete(2)), "CEM plans Box actions"),
        (lambda: CategoricalCEM(spaces.Box(-1, 1, (1,))), "CategoricalCEM plans Discrete actions"),
        (lambda: CEM(spaces.Box(-1, 1, (1,)), population=0), "population must be a positive integer, got 0"),
        (lambda: CEM(spaces.Box(-1, 1, (1,)), elite_fraction=0.0), "elite_fraction must be a number in"),
        (lambda: MPPI(spaces.Box(-1, 1, (1,)), temperature=0.0), r"temperature must be a number in \(0, inf\)"),
    ],
)
def test_optimiser_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---------------------------------------------------------------- non-finite returns rank last
BOX_OPTIMISERS = {
    "cem": lambda: CEM(spaces.Box(-2, 2, (1,)), horizon=3, population=200, iterations=5),
    "icem": lambda: ICEM(spaces.Box(-2, 2, (1,)), horizon=3, population=200, iterations=5),
    "mppi": lambda: MPPI(spaces.Box(-2, 2, (1,)), horizon=3, population=400, iterations=5, temperature=0.1),
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", sorted(BOX_OPTIMISERS))
def test_box_optimisers_never_prefer_non_finite_returns(name, bad):
    # Any positive action scores `bad`; otherwise the best plan is -1 everywhere. NaN and +inf used to come first.
    objective = lambda a: torch.where((a > 0).any(-1).any(-1), bad, -((a + 1) ** 2).sum((1, 2)))  # noqa: E731
    for seed in range(3):
        plan = BOX_OPTIMISERS[name]().optimize(objective, generator(seed))
        assert torch.isfinite(plan).all() and (plan <= 0).all(), plan
        assert torch.allclose(plan, torch.full_like(plan, -1.0), atol=0.15), plan


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("iterations", [1, 4])
def test_categorical_cem_never_plans_a_non_finite_scored_action(iterations, bad):
    # Action 1 anywhere scores `bad`; without it, action 2 at every step is best.
    objective = lambda a: torch.where((a == 1).any(1), bad, (a == 2).float().sum(1))  # noqa: E731
    for seed in range(3):
        cem = CategoricalCEM(spaces.Discrete(3), horizon=3, population=64, iterations=iterations)
        plan = cem.optimize(objective, generator(seed))
        assert plan is not None and not (plan == 1).any(), plan
        assert torch.equal(plan, torch.tensor([2, 2, 2])), plan
    # Action 1 only at the first step is unknown: the plan never starts with it though it is scored best otherwise.
    first = lambda a: torch.where(a[:, 0] == 1, bad, (a == 1).float().sum(1))  # noqa: E731
    cem = CategoricalCEM(spaces.Discrete(3), horizon=3, population=64, iterations=iterations)
    plan = cem.optimize(first, generator())
    assert plan[0] != 1 and torch.equal(plan[1:], torch.tensor([1, 1])), plan


def test_with_a_single_finite_candidate_cem_moves_its_mean_there_and_keeps_its_std():
    cem = CEM(spaces.Box(-2, 2, (1,)), horizon=2, population=50, iterations=1, alpha=0.0)
    std = cem.std.clone()
    only = lambda a: torch.where(torch.arange(len(a)) == 7, -a.abs().sum((1, 2)), torch.nan)  # noqa: E731
    samples = cem._sample(generator())  # what optimize will draw from the same generator
    plan = cem.optimize(only, generator())
    assert torch.equal(plan, samples[7]) and torch.equal(cem.std, std)  # not collapsed to 0 by one elite
    few = lambda a: torch.where(torch.arange(len(a)) < 3, -a.abs().sum((1, 2)), torch.nan)  # noqa: E731
    cem.reset()
    samples = cem._sample(generator(1))
    cem.optimize(few, generator(1))
    assert torch.allclose(cem.mean, samples[:3].mean(0)) and torch.allclose(cem.std, samples[:3].std(0, False))


ALL_OPTIMISERS = {
    **BOX_OPTIMISERS,
    "categorical-cem": lambda: CategoricalCEM(spaces.Discrete(3), horizon=3, population=200, iterations=5),
}


@pytest.mark.parametrize("name", sorted(ALL_OPTIMISERS))
def test_an_iteration_without_a_finite_return_raises_a_clear_error(name):
    optimiser = ALL_OPTIMISERS[name]()
    n = optimiser.population
    mixed = torch.tensor([np.nan, np.inf, -np.inf, np.nan]).repeat(n // 4)
    message = (rf"{type(optimiser).__name__}: all {n} candidate returns of iteration 1/5 are non-finite "
               rf"\({n // 2} NaN, {n // 4} \+inf, {n // 4} -inf\), so no plan can be ranked\. The objective is "
               r"broken: check the model's fit .* reward_fn")  # fmt: skip
    mean = getattr(optimiser, "mean", getattr(optimiser, "probs", None)).clone()
    with pytest.raises(NonFiniteObjectiveError, match=message):
        optimiser.optimize(lambda a: mixed, generator())
    assert torch.equal(getattr(optimiser, "mean", getattr(optimiser, "probs", None)), mean)  # left as it was
    assert isinstance(NonFiniteObjectiveError(), RuntimeError)
    calls = []

    def breaks_later(actions):  # finite on the first iteration, NaN from the second on
        calls.append(1)
        return torch.zeros(len(actions)) if len(calls) == 1 else torch.full((len(actions),), np.nan)

    optimiser.reset()
    with pytest.raises(NonFiniteObjectiveError, match=f"{type(optimiser).__name__}: all {n} .* iteration 2/5"):
        optimiser.optimize(breaks_later, generator())


def test_the_planner_passes_the_non_finite_error_on(deterministic_pendulum, cartpole_model):
    def nan_reward(obs, action, next_obs):
        return torch.full((len(obs),), np.nan)

    for model, obs in ((deterministic_pendulum, np.zeros(3, np.float32)), (cartpole_model, np.zeros(4, np.float32))):
        planner = MPCPlanner(model, horizon=3, population=16, iterations=2, particles=4, seed=0)
        planner.evaluator.returns = lambda obs, actions, generator: torch.full((len(actions),), np.nan)
        with pytest.raises(NonFiniteObjectiveError, match="all 16 candidate returns of iteration 1/2"):
            planner.plan(obs)  # the categorical CEM used to return None here, and plan failed with a TypeError
        planner = MPCPlanner(model, horizon=3, population=16, iterations=2, particles=4, reward_fn=nan_reward, seed=0)
        with pytest.raises(NonFiniteObjectiveError, match="all 16 candidate returns of iteration 1/2"):
            planner.plan(obs)  # a user's NaN rewards count only where no termination came before them


# ---------------------------------------------------------------- particle evaluation
@pytest.fixture(scope="module")
def deterministic_pendulum(pendulum_buffer):
    model = small_model("Pendulum-v1", probabilistic=False, ensemble_size=4, num_elites=4)
    model.fit(pendulum_buffer, max_epochs=3, seed=0)
    return model


def reference_returns(model, obs, actions, members):
    """Candidate by candidate, member by member: the slow loop the batched evaluator replaces."""
    totals = np.zeros(len(actions))
    for n, sequence in enumerate(actions):
        for e in members:
            state = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            for a in sequence:
                prediction = model.predict(state, a.reshape(1, -1))
                totals[n] += float(prediction.reward_mean[e, 0]) / len(members)
                state = state + prediction.delta_mean[e]
    return totals


def test_tsinf_particles_follow_their_member_exactly(deterministic_pendulum):
    obs = np.array([1.0, 0.0, 0.5], dtype=np.float32)
    actions = torch.linspace(-2, 2, 6 * 5).reshape(6, 5, 1)
    evaluator = TrajectoryEvaluator(deterministic_pendulum, particles=8, propagation="tsinf")
    batched = evaluator.returns(obs, actions, generator()).numpy()
    np.testing.assert_allclose(batched, reference_returns(deterministic_pendulum, obs, actions, range(4)), rtol=1e-4)
    expectation = TrajectoryEvaluator(deterministic_pendulum, propagation="expectation").returns(
        obs, actions, generator()
    )
    assert expectation.shape == (6,) and torch.isfinite(expectation).all()


def test_rewards_stop_after_termination_and_known_functions_apply(deterministic_pendulum):
    def terminates_at_once(obs, action, next_obs):
        return torch.ones(len(obs), dtype=torch.bool)

    def unit_reward(obs, action, next_obs):
        return torch.ones(len(obs))

    evaluator = TrajectoryEvaluator(deterministic_pendulum, particles=4, reward_fn=unit_reward,
                                    termination_fn=terminates_at_once)  # fmt: skip
    returns = evaluator.returns(np.zeros(3, np.float32), torch.zeros(5, 7, 1), generator())
    assert torch.equal(returns, torch.ones(5))  # one reward, then dead
    known = TrajectoryEvaluator(deterministic_pendulum, particles=4, reward_fn="known", gamma=0.5)
    assert known.returns(np.array([1.0, 0.0, 0.0], np.float32), torch.zeros(2, 3, 1), generator()).max() <= 0


def test_rewards_and_values_after_termination_do_not_count_even_when_non_finite(deterministic_pendulum):
    steps = []

    def nan_after_the_first_step(obs, action, next_obs):
        steps.append(1)
        return torch.full((len(obs),), 1.0 if len(steps) == 1 else np.nan)

    def terminates_at_once(obs, action, next_obs):
        return torch.ones(len(obs), dtype=torch.bool)

    evaluator = TrajectoryEvaluator(deterministic_pendulum, particles=4, reward_fn=nan_after_the_first_step,
                                    termination_fn=terminates_at_once,
                                    terminal_value=lambda s: torch.full((len(s),), np.inf))  # fmt: skip
    assert len(steps) == 1  # the constructor's probe of the function, on 2 rows made from the spaces
    steps.clear()
    assert torch.equal(evaluator.returns(np.zeros(3, np.float32), torch.zeros(5, 3, 1), generator()), torch.ones(5))


def test_evaluator_arguments_are_checked(deterministic_pendulum):
    with pytest.raises(ValueError, match="particles must be a positive multiple of the ensemble size 4, got 6"):
        TrajectoryEvaluator(deterministic_pendulum, particles=6)
    with pytest.raises(ValueError, match="propagation must be one of"):
        TrajectoryEvaluator(deterministic_pendulum, propagation="ts2")


# ---------------------------------------------------------------- the planner and the agent
def test_mpc_with_the_model_keeps_real_cartpole_up(cartpole_model):
    # horizon 10 x 64 x 2 iterations held it up for 150 steps on 5 of 9 (model seed, planner seed) pairs; this on 9 of 9
    planner = MPCPlanner(cartpole_model, horizon=15, population=128, iterations=3, particles=4, seed=0,
                         reward_fn="known", termination_fn="known")  # fmt: skip
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=1)
    alive = 0
    while alive < 150:
        action = planner.plan(obs)
        assert action.shape == () and action in (0, 1)
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            break
        alive += 1
    assert alive == 150  # random actions last about 20 steps


def test_action_repeat_holds_each_decision_for_what_is_left_of_its_block(cartpole_model):
    planner = MPCPlanner(cartpole_model, horizon=6, population=16, iterations=1, particles=4, action_repeat=3, seed=0)
    assert planner.optimizer.horizon == 2  # the optimiser searches 2 decisions of 3 steps
    seen = []

    def returns(obs, actions, generator):
        seen.append(actions)
        return -actions.float().sum(1)  # holding action 0 is best

    planner.evaluator.returns = returns
    decisions = torch.tensor([[5, 7]])
    for phase, expected in enumerate([[5, 5, 5, 7, 7, 7], [5, 5, 7, 7, 7, 7], [5, 7, 7, 7, 7, 7]]):
        planner._phase = phase
        assert planner.expand(decisions).tolist() == [expected]
    planner.reset()
    probs = []
    for _ in range(4):
        assert planner.plan(np.zeros(4, dtype=np.float32)) == 0
        probs.append(planner.optimizer.probs.clone())
        assert all(a.shape == (16, 6) for a in seen)
    # The warm start moves on by one decision only when a block of 3 real steps has passed.
    assert torch.equal(probs[2][1], torch.full((2,), 0.5)) and not torch.equal(probs[1][1], torch.full((2,), 0.5))
    assert planner._phase == 1
    planner.reset()
    assert planner._phase == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(horizon=10, action_repeat=3), "horizon must be a multiple of action_repeat \\(3\\), got 10"),
        (dict(action_repeat=0), "action_repeat must be a positive integer, got 0"),
        (dict(action_repeat=True), "action_repeat must be a positive integer, got True"),
    ],
)
def test_planner_action_repeat_is_checked(cartpole_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPCPlanner(cartpole_model, particles=4, **kwargs)


def test_a_given_optimizer_must_plan_the_decisions_of_the_horizon(cartpole_model):
    optimizer = CategoricalCEM(cartpole_model.action_space, horizon=15)
    with pytest.raises(ValueError, match="the optimizer plans 15 steps, but horizon=15 with action_repeat=5 needs 3"):
        MPCPlanner(cartpole_model, optimizer, horizon=15, particles=4, action_repeat=5)
    planner = MPCPlanner(cartpole_model, CategoricalCEM(cartpole_model.action_space, horizon=3, population=16),
                         horizon=15, particles=4, action_repeat=5)  # fmt: skip
    assert planner.plan(np.zeros(4, dtype=np.float32)) in (0, 1)


def test_mpc_agent_learns_logs_predicts_and_round_trips(tmp_path, csv_logger):
    # without the terminal value, whose fit tests/test_value.py covers (it takes minutes on 400 transitions)
    agent = MPCAgent("Pendulum-v1", horizon=6, action_repeat=2, population=32, iterations=2, particles=4,
                     learning_starts=100, train_freq=100, terminal_value=False,
                     ensemble_kwargs={"ensemble_size": 4, "num_elites": 4, "hidden_sizes": (32,)},
                     fit_kwargs={"max_epochs": 2}, seed=0)  # fmt: skip
    agent.set_logger(csv_logger)
    agent.learn(400, log_interval=1)
    assert agent.model_fits == 4 and len(agent.buffer) == 400 and bool(agent.model.fitted)  # at 100, 200, 300, 400
    assert "mpc/model_holdout_loss" in (tmp_path / "log" / "progress.csv").read_text().splitlines()[0]
    obs = gym.make("Pendulum-v1").reset(seed=0)[0]
    action, _ = agent.predict(obs)
    assert action.shape == (1,) and -2 <= action[0] <= 2
    loaded = MPCAgent.load(agent.save(tmp_path / "mpc.pt"), "Pendulum-v1")
    assert len(loaded.buffer) == 400 and loaded.horizon == 6 and loaded.model_fits == 4
    assert loaded.action_repeat == 2 and loaded.planner.optimizer.horizon == 3
    for name, value in agent.model.state_dict().items():
        assert torch.equal(value.cpu(), loaded.model.state_dict()[name].cpu()), name


def test_mpc_agent_makes_every_member_an_elite_and_fits_without_cutoff_warnings():
    import warnings

    from dream_envs.models.calibration import CutoffCalibrationWarning

    # ensemble_size alone: all 3 members elites (not the default 5, which 3 members cannot have)
    agent = MPCAgent("Pendulum-v1", horizon=2, population=8, iterations=1, particles=3, learning_starts=20,
                     train_freq=20, terminal_value=False, ensemble_kwargs={"ensemble_size": 3, "hidden_sizes": (8,)},
                     fit_kwargs={"max_epochs": 1}, seed=0)  # fmt: skip
    assert agent.model.config.num_elites == 3
    given = MPCAgent("Pendulum-v1", ensemble_kwargs={"ensemble_size": 4, "num_elites": 2}, particles=4)
    assert given.model.config.num_elites == 2
    with warnings.catch_warnings():
        # 20 transitions hold no run long enough to calibrate a dream's cutoff, which planning does not use anyway
        warnings.simplefilter("error", CutoffCalibrationWarning)
        agent.learn(40)
    assert agent.model_fits == 2


def test_mpc_agent_with_a_callable_reward_must_get_it_back_on_load(tmp_path):
    def reward(obs, action, next_obs):
        return -next_obs[:, 0]

    agent = MPCAgent("Pendulum-v1", population=8, horizon=2, iterations=1, particles=5, reward_fn=reward, seed=0)
    path = agent.save(tmp_path / "mpc.pt")
    with pytest.raises(ValueError, match="saved with callables for \\['reward_fn'\\].*reward_fn=\\.\\.\\."):
        MPCAgent.load(path, "Pendulum-v1")
    assert MPCAgent.load(path, "Pendulum-v1", reward_fn=reward).reward_fn is reward
    with pytest.raises(ModelFileError, match="saved for observation space"):
        MPCAgent.load(path, "MountainCarContinuous-v0", reward_fn=reward)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(learning_starts=0), "learning_starts .* must be an integer >= 2"),
        (dict(optimizer="adam"), "optimizer must be 'auto', one of"),
        (dict(optimizer="cem", env="CartPole-v1"), "CEM plans Box actions"),
        (dict(particles=7), "particles must be a positive multiple"),
        (dict(horizon=15, action_repeat=2), "horizon must be a multiple of action_repeat \\(2\\), got 15"),
    ],
)
def test_mpc_agent_arguments_are_checked(kwargs, message):
    kwargs = {"env": "Pendulum-v1", **kwargs}
    with pytest.raises(ValueError, match=message):
        MPCAgent(**kwargs)


@pytest.mark.parametrize("beta, low, high", [(0.0, -0.25, 0.25), (2.0, 0.8, 1.0)])
def test_random_phase_actions_are_uniform_over_the_bounds_and_coloured_by_beta(beta, low, high):
    agent = MPCAgent("Pendulum-v1", horizon=2, population=8, iterations=1, particles=4, learning_starts=300,
                     random_noise_beta=beta, terminal_value=False, ensemble_kwargs={"ensemble_size": 4, "num_elites": 4,
                                                             "hidden_sizes": (8,)},
                     fit_kwargs={"max_epochs": 1}, seed=0)  # fmt: skip
    agent.learn(300)
    actions = agent.buffer.transitions().action[:, 0]
    lag1 = np.corrcoef(actions[1:], actions[:-1])[0, 1]
    assert low < lag1 < high, lag1
    assert actions.min() >= -2 and actions.max() <= 2 and actions.max() - actions.min() > 3  # the whole range
    assert abs(np.mean(actions > 0) - 0.5) < 0.2  # no side favoured


@pytest.mark.parametrize("beta", [-1.0, 5.0, True, "pink"])
def test_random_noise_beta_is_checked(beta):
    with pytest.raises(ValueError, match=f"random_noise_beta must be a number in \\[0, 4\\], got {beta!r}"):
        MPCAgent("Pendulum-v1", random_noise_beta=beta)


def test_discrete_random_actions_stay_uniform_draws_whatever_the_beta():
    agent = MPCAgent("CartPole-v1", random_noise_beta=2.0, learning_starts=50, seed=0)
    actions = np.array([agent._random_action() for _ in range(400)])
    assert set(actions.tolist()) == {0, 1} and abs(np.corrcoef(actions[1:], actions[:-1])[0, 1]) < 0.2


@pytest.mark.parametrize("bad", ["column", "short", "numpy", "scalar"])
def test_an_objective_of_the_wrong_shape_is_named(bad):
    box = CEM(spaces.Box(-1, 1, (1,)), horizon=3, population=20, iterations=2)
    returns = {
        "column": lambda a: torch.zeros(len(a), 1),
        "short": lambda a: torch.zeros(len(a) - 1),
        "numpy": lambda a: np.zeros(len(a)),
        "scalar": lambda a: torch.tensor(0.0),
    }[bad]
    for optimizer in (box, MPPI(spaces.Box(-1, 1, (1,)), horizon=3, population=20),
                      CategoricalCEM(spaces.Discrete(2), horizon=3, population=20, iterations=2)):  # fmt: skip
        with pytest.raises(ValueError, match="must return a torch tensor of shape \\(20,\\)"):
            optimizer.optimize(returns, torch.Generator().manual_seed(0))
