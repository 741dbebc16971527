import gymnasium as gym
import numpy as np
import pytest

from dream_envs.diagnostics import k_step_error, real_segments


def test_k_step_error_grows_with_the_horizon(pendulum_model):
    errors = k_step_error(pendulum_model, gym.make("Pendulum-v1"), horizons=(10, 1), n_segments=50, seed=0)
    assert sorted(errors) == [1, 10] and errors[1].shape == (3,)
    assert np.all(errors[10] > errors[1])  # open-loop error compounds


def test_real_segments_are_contiguous_and_never_cross_an_episode_end():
    obs, actions = real_segments(gym.make("CartPole-v1"), length=5, n_segments=20, seed=0)
    assert obs.shape == (20, 6, 4) and actions.shape == (20, 5)
    # Replaying a segment's actions from its first state in the real env reproduces it exactly.
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = obs[3, 0].astype(np.float64)
    for t in range(5):
        next_obs, *_ = env.step(int(actions[3, t]))
        assert np.allclose(next_obs, obs[3, t + 1], atol=1e-6)


def test_bad_inputs_are_named(cartpole_model, pendulum_model):
    with pytest.raises(ValueError, match="horizons"):
        k_step_error(cartpole_model, gym.make("CartPole-v1"), horizons=(0, 5))
    with pytest.raises(ValueError, match="differ"):
        k_step_error(pendulum_model, gym.make("CartPole-v1"))
    with pytest.raises(RuntimeError, match="episodes end too early"):
        real_segments(gym.make("CartPole-v1"), length=400, n_segments=2, seed=0, max_steps=2000)


# ---------------------------------------------------------------- compounding error and calibration
def test_compounding_error_per_propagation_and_step(pendulum_model):
    from dream_envs.diagnostics import compounding_error

    curve = compounding_error(pendulum_model, gym.make("Pendulum-v1"), max_horizon=8, n_segments=30, seed=1)
    assert set(curve.errors) == {"single", "mean", "ts1"} and curve.errors["mean"].shape == (8, 3)
    assert np.all(curve.at(8)["mean"] > curve.at(1)["mean"])
    # TS-1 samples the Gaussian heads too: noisier than the deterministic elite mean.
    assert curve.errors["ts1"].sum() > curve.errors["mean"].sum()
    assert curve.obs_std.shape == (3,) and np.all(curve.obs_std > 0)
    assert np.allclose(k_step_error(pendulum_model, gym.make("Pendulum-v1"), (8,), 30, seed=1)[8], curve.at(8)["mean"])
    with pytest.raises(ValueError, match="k must be in \\[1, 8\\]"):
        curve.at(9)


def test_spearman_matches_hand_computed_ranks():
    from dream_envs.diagnostics import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)  # ties get average ranks
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_calibration_ranks_errors_and_scores_the_cutoff(cartpole_model):
    from dream_envs.diagnostics import calibration

    report = calibration(cartpole_model, gym.make("CartPole-v1"), horizon=5, n_segments=100, seed=3)
    assert report.n_samples == 500 and report.one_step.shape == (2, 500) and report.k_step.shape == (2, 100)
    assert report.one_step_spearman > 0.3 and -1 <= report.k_step_spearman <= 1
    assert report.reliability.shape[1] == 2 and np.all(np.diff(report.reliability[:, 0]) > 0)
    assert report.threshold == pytest.approx(float(cartpole_model.auto_threshold))
    # With a tolerance every rollout exceeds and a threshold every rollout crosses: precision and recall are 1.
    strict = calibration(cartpole_model, gym.make("CartPole-v1"), 5, 100, tolerance=1e-9, threshold=0.0, seed=3)
    assert strict.cutoff_precision == 1.0 and strict.cutoff_recall == 1.0 and strict.cut_fraction == 1.0


def test_diagnostics_bad_inputs_are_named(cartpole_model, pendulum_model):
    from dream_envs import EnsembleDynamics
    from dream_envs.diagnostics import calibration, compounding_error

    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="differ"):
        calibration(pendulum_model, env)
    with pytest.raises(ValueError, match="max_horizon \\(k\\) must be a positive integer, got 0"):
        compounding_error(cartpole_model, env, max_horizon=0)
    with pytest.raises(ValueError, match="horizon \\(k\\) must be a positive integer"):
        calibration(cartpole_model, env, horizon=0)
    with pytest.raises(ValueError, match="5 segments x 2 steps = 10 held-out pairs; at least 100"):
        calibration(cartpole_model, env, horizon=2, n_segments=5)
    with pytest.raises(ValueError, match="propagations must be among"):
        compounding_error(cartpole_model, env, propagations=("ts-inf",))
    unfitted = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=1, seed=0)
    with pytest.raises(ValueError, match="never fitted"):
        compounding_error(unfitted, env)


def test_shipped_cartpole_model_disagreement_ranks_its_one_step_error():
    """The calibration target: rank correlation >= 0.5 on CartPole-v1 (docs/diagnostics/diagnostics.md)."""
    import dream_envs  # noqa: F401  (registers the dream ids)
    from dream_envs.diagnostics import calibration

    model = gym.make("Dream-CartPole-v0").unwrapped.model
    report = calibration(model, gym.make("CartPole-v1"), horizon=10, n_segments=200, seed=1)
    assert report.one_step_spearman >= 0.5, report
