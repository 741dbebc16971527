import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_model

from dream_envs import EnsembleDynamics, ModelFileError, TransitionBuffer
from dream_envs.models import ensemble as ensemble_module


def test_one_forward_pass_evaluates_every_member_on_every_row(cartpole_model, cartpole_buffer):
    data = cartpole_buffer.transitions()
    calls = []
    hooks = [layer.register_forward_hook(lambda m, i, o: calls.append(o.shape)) for layer in cartpole_model.hidden]
    try:
        prediction = cartpole_model.predict(data.obs[:32], data.action[:32])
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == len(cartpole_model.hidden)  # each layer ran once, for all members at once
    assert calls[0] == (4, 32, 64)  # (E, B, hidden)
    assert prediction.delta_mean.shape == (4, 32, 4)
    assert prediction.reward_mean.shape == (4, 32)
    assert prediction.termination_logit.shape == (4, 32)
    # Members are distinct networks, not copies.
    assert not torch.allclose(prediction.delta_mean[0], prediction.delta_mean[1])


def test_fit_learns_cartpole_one_step_dynamics(cartpole_model, cartpole_buffer):
    env = gym.make("CartPole-v1")
    fresh = TransitionBuffer.from_env(env).collect(env, 500, seed=123).transitions()
    prediction = cartpole_model.predict(fresh.obs, fresh.action)
    predicted_next = fresh.obs + prediction.delta_mean.mean(0).numpy()
    error = np.abs(predicted_next - fresh.next_obs).mean(0)
    # One CartPole step moves the velocities by ~0.2-0.3; a fitted model is an order of magnitude closer.
    scale = np.abs(fresh.next_obs - fresh.obs).mean(0)
    assert np.all(error < 0.15 * scale), (error, scale)
    assert np.allclose(prediction.reward_mean.mean(0).numpy(), 1.0, atol=0.05)


def test_fit_reports_losses_elites_and_auto_threshold(cartpole_buffer):
    model = small_model("CartPole-v1", seed=1)
    result = model.fit(cartpole_buffer, max_epochs=6, seed=1)
    assert result.epochs == len(result.train_loss) == len(result.holdout_loss)
    assert result.holdout_loss[-1] < result.holdout_loss[0]
    assert len(result.elites) == 3 and len(set(result.elites)) == 3
    # Elites are the members with the lowest holdout loss (MSE plus the termination head's loss).
    losses = result.holdout_loss_per_member
    assert sorted(losses[i] for i in result.elites) == sorted(losses)[:3]
    assert all(loss > mse for loss, mse in zip(losses, result.holdout_mse_per_member))
    assert result.auto_threshold > 0 and np.isfinite(result.auto_threshold)
    assert result.cutoff.threshold == result.auto_threshold == float(model.auto_threshold)
    assert result.n_holdout == 300 and result.n_train == 2700
    assert model.start_states is not None and len(model.start_states) == len(cartpole_buffer.start_states())


def test_early_stopping_stops_before_max_epochs(cartpole_buffer):
    model = small_model("CartPole-v1", seed=2, hidden_sizes=(16,))
    result = model.fit(cartpole_buffer, max_epochs=500, patience=1, learning_rate=0.05, seed=2)
    assert result.epochs < 500


def test_fit_is_deterministic_under_seed(cartpole_buffer):
    a, b = small_model("CartPole-v1", seed=5), small_model("CartPole-v1", seed=5)
    a.fit(cartpole_buffer, max_epochs=2, seed=9)
    b.fit(cartpole_buffer, max_epochs=2, seed=9)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_deterministic_model_has_zero_variance(cartpole_buffer):
    model = small_model("CartPole-v1", probabilistic=False, learn_termination=False)
    model.fit(cartpole_buffer, max_epochs=2, seed=0)
    data = cartpole_buffer.transitions()
    prediction = model.predict(data.obs[:5], data.action[:5])
    assert torch.all(prediction.delta_var == 0) and prediction.termination_logit is None
    step = model.step(data.obs[:5], data.action[:5])
    assert step.terminated is None


def test_box_actions_and_multidimensional_observations():
    obs_space = gym.spaces.Box(-1, 1, (2, 3), dtype=np.float32)
    act_space = gym.spaces.Box(-2, 2, (2,), dtype=np.float32)
    buffer = TransitionBuffer(obs_space, act_space)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (200, 2, 3)).astype(np.float32)
    action = rng.uniform(-2, 2, (200, 2)).astype(np.float32)
    buffer.add(obs, action, action.sum(1), obs * 0.9, np.zeros(200, bool), episode_start=np.ones(200, bool))
    model = EnsembleDynamics(obs_space, act_space, ensemble_size=2, num_elites=1, hidden_sizes=(8,), seed=0)
    model.fit(buffer, max_epochs=2, seed=0)
    step = model.step(obs[:7], action[:7])
    assert step.next_obs.shape == (7, 6) and step.reward.shape == (7,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ensemble_size": 0}, "ensemble_size"),
        ({"ensemble_size": 3, "num_elites": 5}, "num_elites"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"hidden_sizes": (32, -1)}, "hidden_sizes"),
        ({"device": "tpu9"}, "device"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, match):
    env = gym.make("CartPole-v1")
    with pytest.raises((ValueError, TypeError), match=match):
        EnsembleDynamics(env.observation_space, env.action_space, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_epochs": 0}, "max_epochs"),
        ({"holdout_ratio": 1.0}, "holdout_ratio"),
        ({"learning_rate": -1}, "learning_rate"),
    ],
)
def test_bad_fit_arguments_are_named(cartpole_buffer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model("CartPole-v1").fit(cartpole_buffer, **kwargs)


def test_fit_rejects_a_buffer_of_another_env(pendulum_buffer):
    with pytest.raises(ValueError, match="differ"):
        small_model("CartPole-v1").fit(pendulum_buffer)


def test_save_load_round_trip_gives_identical_predictions(cartpole_model, cartpole_model_file, cartpole_buffer):
    loaded = EnsembleDynamics.load(cartpole_model_file, device="cpu")
    data = cartpole_buffer.transitions()
    a = cartpole_model.predict(data.obs[:50], data.action[:50])
    b = loaded.predict(data.obs[:50], data.action[:50])
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert torch.equal(loaded.elite_idx, cartpole_model.elite_idx)
    assert torch.equal(loaded.start_states, cartpole_model.start_states)
    assert loaded.env_id == "CartPole-v1"


def test_failed_save_leaves_the_old_file_intact(cartpole_model, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    cartpole_model.save(path)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(ensemble_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cartpole_model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_load_errors_are_clear(cartpole_model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="no dream-envs model file"):
        EnsembleDynamics.load(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(cartpole_model_file.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        EnsembleDynamics.load(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        EnsembleDynamics.load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(ModelFileError, match="not a dream-envs model"):
        EnsembleDynamics.load(foreign)
    future = tmp_path / "future.pt"
    payload = torch.load(cartpole_model_file, weights_only=True)
    torch.save({**payload, "format_version": 99}, future)
    with pytest.raises(ModelFileError, match="version 99"):
        EnsembleDynamics.load(future)
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(ModelFileError, match="observation space"):
        EnsembleDynamics.load(cartpole_model_file, pendulum.observation_space, pendulum.action_space)


def test_load_refuses_pickled_code(tmp_path):
    # weights_only=True: a file that would run code on unpickling is refused, not executed.
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "dream-envs/ensemble", "x": Evil()}, path)
    with pytest.raises(ModelFileError):
        EnsembleDynamics.load(path)


def test_unseeded_model_leaves_the_global_torch_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small_model("CartPole-v1", seed=None)
    assert torch.equal(torch.rand(3), expected)


def test_imagined_rewards_stay_within_the_rewards_seen(pendulum_model, tmp_path):
    # Far outside the data the reward head extrapolates; the step clips it to the training range.
    low, high = pendulum_model.reward_range
    assert -16.3 < low < high <= 0.0
    crazy = np.array([[1.0, 0.0, 1e4]] * 8, np.float32)
    step = pendulum_model.step(crazy, np.full((8, 1), 2.0, np.float32))
    assert torch.all(step.reward >= low) and torch.all(step.reward <= high)
    pendulum_model.save(tmp_path / "m.pt")
    assert EnsembleDynamics.load(tmp_path / "m.pt").reward_range == pendulum_model.reward_range


@pytest.fixture(scope="module")
def goal_model() -> tuple[EnsembleDynamics, TransitionBuffer]:
    # MountainCarContinuous pays -0.1 a^2 a step and +100 on the step that reaches the goal: 3 of these 1,000 real
    # steps (600 random, then energy pumping).
    env = gym.make("MountainCarContinuous-v0")
    buffer = TransitionBuffer.from_env(env).collect(env, 600, seed=0)
    buffer.collect(env, 400, policy=lambda obs: np.array([1.0 if obs[1] >= 0 else -1.0], np.float32), seed=1)
    model = small_model("MountainCarContinuous-v0")
    model.fit(buffer, seed=0)
    return model, buffer


def test_imagined_rewards_stay_within_the_real_rewards_of_their_kind(goal_model, tmp_path):
    # The NLL fit explains the goal's rare +99.9 away with variance (about 1 predicted there); the step pays what
    # real steps of its kind paid: the goal's bonus where the termination head ends the episode, at most 0 where
    # it goes on.
    model, buffer = goal_model
    data = buffer.transitions()
    assert data.terminated.sum() == 3
    assert model.terminal_reward_range == pytest.approx((99.9, 99.9), abs=0.01)
    low, high = model.nonterminal_reward_range
    assert -0.1001 <= low < high <= 0.0 and model.reward_range == (low, model.terminal_reward_range[1])
    xs = np.linspace(-1.2, 0.6, 200, dtype=np.float32)
    obs = np.stack([xs, np.full_like(xs, 0.04)], 1)
    actions = np.ones((200, 1), np.float32)
    assert float(model.predict(obs, actions).reward_mean[model.elite_idx].mean(0).max()) < 10  # averaged away
    generator = torch.Generator().manual_seed(0)
    members = model.step_members(torch.as_tensor(obs).expand(4, -1, -1), torch.as_tensor(actions).expand(4, -1, -1),
                                 generator)  # fmt: skip
    for reward, terminated in [model.step(obs, actions, generator=generator)[1:3], members[1:3]]:
        assert terminated.any() and not terminated.all()  # the head ends the steps past the goal, not the others
        assert torch.allclose(reward[terminated], torch.tensor(99.9), atol=0.01)
        assert ((reward[~terminated] >= low) & (reward[~terminated] <= high)).all()
    model.save(tmp_path / "goal.pt")
    loaded = EnsembleDynamics.load(tmp_path / "goal.pt")
    assert (loaded.nonterminal_reward_range, loaded.terminal_reward_range) == (
        model.nonterminal_reward_range, model.terminal_reward_range)  # fmt: skip


def test_a_known_termination_function_decides_the_kind_of_a_learned_reward(goal_model):
    # With gymnasium's termination (x >= 0.45 moving right) and the learned reward, the goal pays its bonus where
    # the known function ends the step, whatever the learned head says.
    from dream_envs.envs.imagination import Imagination

    model, buffer = goal_model
    dream = Imagination(model, termination_fn="known", start_states=buffer)
    obs = torch.tensor([[0.44, 0.04], [-0.5, 0.0], [0.2, 0.01]])
    step = dream.step(obs, torch.ones(3, 1), torch.Generator().manual_seed(0))
    assert step.terminated.tolist() == [True, False, False]
    assert step.reward[0] == pytest.approx(99.9, abs=0.01) and (step.reward[1:] <= 0).all()


@pytest.mark.parametrize("propagation", ["ts1", "expectation"])
def test_a_planner_with_a_known_termination_pays_the_learned_reward_of_its_kind(goal_model, propagation):
    # One planned step from just before the goal, pushing on: gymnasium's termination ends it, so the learned
    # reward pays the goal's bonus (the head alone would keep it at most 0 where it sees no end).
    from dream_envs.planning.trajectories import TrajectoryEvaluator

    model, _ = goal_model
    planner = TrajectoryEvaluator(model, particles=4, propagation=propagation, termination_fn="known")
    returns = planner.returns(np.array([0.44, 0.04], np.float32), torch.ones(2, 1, 1), torch.Generator().manual_seed(0))
    assert torch.allclose(returns, torch.tensor(99.9), atol=0.01)
    coasting = planner.returns(np.array([-0.5, 0.0], np.float32), torch.ones(2, 1, 1), torch.Generator())
    assert (coasting <= 0).all()


def test_a_damaged_reward_range_of_a_kind_is_refused(goal_model, tmp_path):
    model, _ = goal_model
    payload = model.to_payload()
    for bad in ([1.0, 0.0], [float("nan"), 1.0], [0.0, float("inf")]):
        torch.save({**payload, "terminal_reward_range": bad}, tmp_path / "bad.pt")
        with pytest.raises(ModelFileError, match="terminal_reward_range must be two finite numbers"):
            EnsembleDynamics.load(tmp_path / "bad.pt")
    older = {key: value for key, value in payload.items() if not key.endswith("terminal_reward_range")}
    torch.save(older, tmp_path / "older.pt")  # a file saved before the ranges of each kind: the whole range
    loaded = EnsembleDynamics.load(tmp_path / "older.pt")
    assert loaded.terminal_reward_range is None and loaded.nonterminal_reward_range is None
    reward = loaded.step([[0.6, 0.04], [-0.5, 0.0]], [[1.0], [1.0]], deterministic=True).reward  # steps as before
    assert ((reward >= loaded.reward_range[0]) & (reward <= loaded.reward_range[1])).all()


def test_known_functions_take_the_learned_reward_and_verdict_s_place(goal_model):
    # A known reward replaces the learned one as it is; a known termination alone moves the learned reward to the
    # nearest real reward of the kind it gives the step; with neither, the model's own step passes through.
    model, _ = goal_model
    obs, action = torch.tensor([[0.44, 0.04], [-0.5, 0.0]]), torch.ones(2, 1)
    next_obs = torch.tensor([[0.48, 0.04], [-0.5, 0.0]])
    learned, head = torch.tensor([-5.0, 50.0]), torch.tensor([False, False])
    ends_first = lambda o, a, n: torch.tensor([True, False])  # noqa: E731
    pays_seven = lambda o, a, n: torch.full((2,), 7.0)  # noqa: E731
    reward, terminated = model.with_known_functions(obs, action, next_obs, learned, head, None, ends_first)
    assert terminated.tolist() == [True, False]
    assert reward[0] == pytest.approx(model.terminal_reward_range[0], abs=1e-4)
    assert reward[1] == pytest.approx(model.nonterminal_reward_range[1], abs=1e-4)
    reward, terminated = model.with_known_functions(obs, action, next_obs, learned, head, pays_seven, ends_first)
    assert reward.tolist() == [7.0, 7.0] and terminated.tolist() == [True, False]
    reward, terminated = model.with_known_functions(obs, action, next_obs, learned, None, None, None)
    assert reward is learned and terminated is None


@pytest.mark.parametrize("termination_input", ["next_obs", "obs_action"])
@pytest.mark.parametrize("propagation", ["ts1", "mean", "single"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_a_step_without_the_disagreement_runs_only_its_members_and_imagines_the_same(
    cartpole_buffer, termination_input, propagation, deterministic
):
    model = small_model("CartPole-v1", ensemble_size=5, num_elites=3, termination_input=termination_input)
    model.fit(cartpole_buffer, max_epochs=3, batch_size=64, seed=0)
    model.elite_idx = torch.tensor([3, 0, 4])  # not the first members, not in order
    data = cartpole_buffer.transitions()
    obs, action = torch.as_tensor(data.obs[:64]), torch.as_tensor(data.action[:64])
    widths = []
    original_trunk = model._trunk

    def counting_trunk(x, reuse_buffers=False, members=None):
        widths.append(x.shape[0])
        return original_trunk(x, reuse_buffers, members)

    model._trunk = counting_trunk
    full = model._step(obs, action, torch.Generator().manual_seed(7), propagation, deterministic)
    lean = model._step(
        obs, action, torch.Generator().manual_seed(7), propagation, deterministic, with_disagreement=False
    )
    assert widths == [5, 1 if propagation == "single" else 3]  # all members for the disagreement, else the used
    assert torch.equal(full.next_obs, lean.next_obs)
    assert torch.equal(full.reward, lean.reward)
    assert torch.equal(full.terminated, lean.terminated)
    assert full.disagreement.shape == (64,) and lean.disagreement is None


def test_inference_buffers_are_kept_per_shape_and_bounded(cartpole_model, cartpole_buffer):
    data = cartpole_buffer.transitions()
    cartpole_model._inference_buffers.clear()
    for batch in (8, 16, 8, 16):  # a planner's two batch sizes, alternating
        cartpole_model._step(data.obs[:batch], data.action[:batch], None, "mean", True)
    layers = len(cartpole_model.hidden) + 1
    assert len(cartpole_model._inference_buffers) == 2 * layers  # kept, not reallocated at each call
    for batch in range(1, 40):
        cartpole_model._step(data.obs[:batch], data.action[:batch], None, "mean", True)
    assert len(cartpole_model._inference_buffers) <= ensemble_module._MAX_BUFFERS
