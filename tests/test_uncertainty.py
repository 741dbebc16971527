"""The honest dream (issue 13): a calibrated cutoff, what happens at it, and no silent distortion."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_model
from gymnasium import spaces

from dream_envs import DreamEnv, EnsembleDynamics, TransitionBuffer
from dream_envs.diagnostics import calibration
from dream_envs.envs.imagination import Imagination
from dream_envs.models.calibration import MIN_BAD_SEGMENTS, choose_threshold, cutoff_scores, precision_recall
from sb3_plugins import DreamVecEnv


# ---------------------------------------------------------------- the threshold rule
def test_threshold_is_placed_by_f2_on_held_out_rollouts():
    rng = np.random.default_rng(0)
    good = rng.uniform(0.0, 0.01, 200)
    bad = rng.uniform(0.02, 0.05, 20)
    scores = np.concatenate([good, bad])
    errors = np.concatenate([np.full(200, 0.01), np.full(20, 0.5)])
    record = choose_threshold(scores, errors, tolerance=0.1, horizon=10)
    assert record.method == "held-out" and record.n_bad == 20 and record.n_segments == 220
    assert good.max() < record.threshold < bad.min()  # separable: the threshold falls in the gap
    assert record.precision == 1.0 and record.recall == 1.0 and record.spearman > 0.4  # errors tie in two groups


def test_threshold_is_extrapolated_when_few_rollouts_are_bad():
    scores = np.full(100, 0.01)
    errors = np.full(100, 0.02)  # error = 2x the accumulated disagreement on every rollout
    errors[: MIN_BAD_SEGMENTS - 1] = 0.5  # too few bad rollouts to place the threshold among them
    record = choose_threshold(scores, errors, tolerance=0.1, horizon=10)
    assert record.method == "extrapolated" and record.growth == pytest.approx(2.0)
    # The accumulated disagreement at which the error grows to the tolerance: 0.1 / 2.
    assert record.threshold == pytest.approx(0.05)


def test_threshold_without_held_out_rollouts_is_the_documented_default():
    record = choose_threshold([], [], tolerance=0.1, horizon=10)
    assert record.method == "default" and record.threshold == pytest.approx(0.1 / 0.5)


def test_the_cutoff_accumulates_the_disagreement_over_its_window(pendulum_model):
    from dream_envs.models.calibration import accumulate

    values = torch.arange(1.0, 7.0)[:, None]  # (T=6, S=1): 1..6
    assert accumulate(values, 3)[:, 0].tolist() == [1, 3, 6, 9, 12, 15]
    assert accumulate(values, 10)[:, 0].tolist() == [1, 3, 6, 10, 15, 21]
    env = DreamEnv(pendulum_model, uncertainty_threshold=None, seed=0)
    assert env.imagination.window == pendulum_model.uncertainty_window == 10
    env.reset(seed=1)
    steps = [env.step(np.array([0.3], np.float32))[4] for _ in range(14)]
    per_step = np.array([info["disagreement"] for info in steps])
    for t, info in enumerate(steps):
        assert info["uncertainty"] == pytest.approx(per_step[max(0, t - 9) : t + 1].sum(), rel=1e-4)
    env.reset(seed=1)  # a real state again: nothing accumulated
    assert env.step(np.array([0.3], np.float32))[4]["uncertainty"] == pytest.approx(per_step[0], rel=1e-4)


def test_precision_recall_are_nan_where_undefined():
    nothing_cut_nothing_bad = precision_recall(np.array([0.1, 0.2]), np.array([0.0, 0.0]), 1.0, 0.1)
    assert all(math.isnan(v) for v in nothing_cut_nothing_bad)
    assert precision_recall(np.array([0.1, 2.0]), np.array([0.5, 0.0]), 1.0, 0.1) == (0.0, 0.0)


# ---------------------------------------------------------------- held-out trajectories in a buffer
def test_successors_follow_trajectories_single_and_interleaved_envs():
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 300, seed=0)
    data = buffer.transitions()
    successor = buffer.successors()
    ends = data.terminated | data.truncated
    assert np.all(successor[ends] == -1) and np.all(successor[:-1][~ends[:-1]] == np.flatnonzero(~ends[:-1]) + 1)
    # Two envs' rows interleaved, as a VecEnv adds them: every successor is two rows on.
    other = TransitionBuffer.from_env(env).collect(env, 300, seed=1).transitions()
    mixed = TransitionBuffer.from_env(env)
    for t in range(300):
        mixed.add(*(np.stack([a[t], b[t]]) for a, b in zip(data, other)))
    linked = mixed.successors()
    assert np.all((linked == -1) | (linked == np.arange(600) + 2))
    segments = mixed.segments(10, seed=0)
    assert len(segments) >= 40 and np.all(np.diff(segments, axis=1) == 2)
    assert len(np.unique(segments)) == segments.size  # disjoint


def test_segments_never_cross_an_episode_end_and_respect_exclude():
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 400, seed=2)
    data = buffer.transitions()
    segments = buffer.segments(8, seed=0)
    assert not (data.terminated | data.truncated)[segments[:, :-1]].any()
    assert np.array_equal(data.next_obs[segments[:, :-1]], data.obs[segments[:, 1:]])
    exclude = np.zeros(len(buffer), bool)
    exclude[::2] = True
    assert not exclude[buffer.segments(2, seed=0, exclude=exclude)].any()


def test_fit_holds_out_whole_trajectories_and_records_the_calibration(cartpole_model, cartpole_buffer):
    record = cartpole_model.cutoff_calibration
    assert record is not None and record.horizon == 10 and record.tolerance == 0.1
    assert record.n_segments > 30  # every window of the held-out runs, not only disjoint segments
    assert record.threshold == pytest.approx(float(cartpole_model.auto_threshold))
    assert record.method in ("held-out", "extrapolated")


# ---------------------------------------------------------------- the calibration on fresh real data
def pd_controller(obs):
    return int(obs[2] + 0.5 * obs[3] > 0)  # balances the pole: states random actions never reach


def test_cutoff_catches_the_rollouts_that_go_wrong(cartpole_model, cartpole_buffer):
    # Over 5 model seeds, not one: on this shift the recall of one model ranges 0.63-1.0 over seeds 0-7 (median
    # 0.92 with the trunk's termination column, seeds 0-4: 0.63, 0.84, 1.0, 0.84, 0.70; 0.98 with the
    # next-observation head, whose seeds 0-2 give 0.72, 0.96, 0.72), and a claim about the mechanism should not rest
    # on one initialisation or three.
    env = gym.make("CartPole-v1")
    recalls = []
    for model_seed in range(5):
        model = cartpole_model if model_seed == 0 else small_model("CartPole-v1", seed=model_seed)
        if model_seed:
            model.fit(cartpole_buffer, max_epochs=40, batch_size=64, seed=0)
        in_data = calibration(model, env, horizon=10, n_segments=200, seed=5)
        assert in_data.cut_fraction <= 0.05  # rollouts like the fit data's are not cut for nothing
        shifted = calibration(model, env, horizon=10, n_segments=200, policy=pd_controller, seed=5)
        assert shifted.bad_fraction > 0.05  # the balanced states are new to the model: some rollouts go wrong
        assert shifted.cutoff_precision >= 0.5 and shifted.cutoff_recall >= 0.6, shifted
        assert shifted.k_step_spearman >= 0.5
        recalls.append(shifted.cutoff_recall)
    assert np.median(recalls) >= 0.8, recalls


def test_disagreement_is_in_standard_deviations_of_each_one_step_change(cartpole_model, cartpole_buffer):
    data = cartpole_buffer.transitions()
    obs, action = data.obs[:50], data.action[:50]
    prediction = cartpole_model.predict(obs, action)
    change = torch.as_tensor((data.next_obs - data.obs).std(0))
    expected = (prediction.delta_mean.std(0, unbiased=False) / change).amax(-1)
    assert torch.allclose(cartpole_model.disagreement(obs, action), expected, rtol=0.05, atol=1e-7)
    expected = (prediction.delta_mean.std(0, unbiased=False) / cartpole_model.out_std[:4]).amax(-1)
    assert torch.allclose(cartpole_model.disagreement(obs, action), expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(cartpole_model.step(obs, action).disagreement, expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(cartpole_model.obs_scale, torch.as_tensor(data.obs.std(0)), rtol=0.05)


def test_calibration_rollouts_keep_the_bounds_the_dream_keeps(pendulum_model):
    # Pendulum clips its angular velocity to the declared +-8, and so does the dream: a rollout that spins fast
    # is scored as the dream would play it, not as the raw network would.
    from dream_envs.models.calibration import open_loop

    fast = torch.tensor([[1.0, 0.0, 7.9]] * 3)
    imagined, _ = open_loop(pendulum_model, fast, torch.full((3, 5, 1), 2.0))
    assert imagined[..., 2].abs().max() <= 8.0
    dream = Imagination(pendulum_model)
    step = dream.step(fast, torch.full((3, 1), 2.0), torch.Generator().manual_seed(0))
    assert step.next_obs[:, 2].abs().max() <= 8.0


def test_cutoff_scores_match_a_hand_rollout(pendulum_model):
    env = gym.make("Pendulum-v1")
    from dream_envs.diagnostics import real_segments

    real_obs, actions = real_segments(env, 3, 4, seed=0)
    scores, errors = cutoff_scores(pendulum_model, real_obs, actions)
    state, disagreement = torch.as_tensor(real_obs[:, 0]), []
    for t in range(3):
        step = pendulum_model.step(state, torch.as_tensor(actions[:, t]), propagation="mean", deterministic=True)
        state = step.next_obs
        disagreement.append(step.disagreement)
    disagreement = torch.stack(disagreement)
    assert np.allclose(scores, disagreement.sum(0).numpy())  # 3 steps, within the 10-step window
    expected = ((state - torch.as_tensor(real_obs[:, -1])).abs() / pendulum_model.obs_scale).amax(-1)
    assert np.allclose(errors, expected.numpy(), atol=1e-6)


# ---------------------------------------------------------------- what happens at the cutoff
def cut_everything(model, mode, **kwargs):
    return DreamEnv(model, uncertainty_threshold=0.0, uncertainty_mode=mode, seed=0, **kwargs)


def test_truncate_mode_truncates(cartpole_model):
    env = cut_everything(cartpole_model, "truncate")
    env.reset()
    _, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and info["uncertainty_cutoff"]
    assert cartpole_model.reward_range[0] <= reward <= cartpole_model.reward_range[1]


def test_terminate_mode_halts_with_the_penalty(pendulum_model):
    truncating, halting = cut_everything(pendulum_model, "truncate"), cut_everything(pendulum_model, "terminate")
    truncating.reset(seed=3), halting.reset(seed=3)
    _, plain, _, _, _ = truncating.step(np.array([0.5], np.float32))
    _, reward, terminated, truncated, info = halting.step(np.array([0.5], np.float32))
    assert terminated and not truncated and info["uncertainty_cutoff"]
    # "auto": the lowest real reward received forever, discounted (Pendulum's rewards are all <= 0).
    low = pendulum_model.reward_range[0]
    assert halting.imagination.uncertainty_penalty == pytest.approx(0.99 * -low / 0.01)
    assert reward == pytest.approx(plain - 0.99 * -low / 0.01, rel=1e-4)
    fixed = DreamEnv(pendulum_model, uncertainty_threshold=0.0, uncertainty_mode="terminate", uncertainty_penalty=5.0,
                     gamma=0.9, seed=0)  # fmt: skip
    assert fixed.imagination.uncertainty_penalty == 5.0


def test_terminate_mode_auto_penalty_is_zero_for_positive_rewards(cartpole_model):
    # CartPole pays +1 a step: halting forgoes those, as the pole falling does; no extra penalty is due.
    assert cut_everything(cartpole_model, "terminate").imagination.uncertainty_penalty == 0.0


def test_penalty_mode_lowers_rewards_in_proportion_to_disagreement(pendulum_model):
    threshold = 0.05
    plain = DreamEnv(pendulum_model, uncertainty_threshold=threshold, seed=0)
    penalised = DreamEnv(pendulum_model, uncertainty_threshold=threshold, uncertainty_mode="penalty",
                         uncertainty_penalty=2.0, seed=0)  # fmt: skip
    for env in (plain, penalised):
        env.reset(seed=7)
    for _ in range(5):
        a = plain.step(np.array([1.0], np.float32))
        b = penalised.step(np.array([1.0], np.float32))
        # 2.0 at the disagreement that, sustained over the 10-step window, reaches the threshold
        assert b[1] == pytest.approx(a[1] - 2.0 * a[4]["disagreement"] * 10 / threshold, rel=1e-4, abs=1e-5)
        assert b[3] == a[3]  # the cutoff still truncates
    low, high = pendulum_model.reward_range
    auto = DreamEnv(pendulum_model, uncertainty_threshold=threshold, uncertainty_mode="penalty")
    assert auto.imagination.uncertainty_penalty == pytest.approx(max(high - low, abs(high), abs(low)))


@pytest.mark.parametrize("mode, terminal", [("truncate", False), ("terminate", True), ("penalty", False)])
def test_vec_env_modes_follow_the_sb3_contract(cartpole_model, mode, terminal):
    threshold = 1e-9 if mode == "penalty" else 0.0  # cut everything (the penalty's unit must be > 0)
    venv = DreamVecEnv(cartpole_model, n_envs=4, uncertainty_threshold=threshold, uncertainty_mode=mode, seed=0)
    venv.reset()
    _, _, dones, infos = venv.step(np.zeros(4, np.int64))
    assert dones.all() and venv.uncertainty_mode == mode
    for info in infos:
        assert info["uncertainty_cutoff"] and info["TimeLimit.truncated"] is (not terminal)
        assert info["terminal_observation"].shape == (4,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"uncertainty_mode": "halt"}, "uncertainty_mode must be one of"),
        ({"uncertainty_penalty": -1.0}, "uncertainty_penalty must be 'auto' or a finite number >= 0"),
        ({"uncertainty_penalty": "big"}, "uncertainty_penalty must be 'auto'"),
        ({"uncertainty_mode": "penalty", "uncertainty_threshold": None}, "scales its penalty"),
        ({"uncertainty_mode": "penalty", "uncertainty_threshold": 0.0}, "a finite number > 0, not 0.0"),
        ({"gamma": 1.5}, "gamma must be a number in \\[0, 1\\]"),
        ({"uncertainty_mode": "terminate", "uncertainty_threshold": None}, "uncertainty_threshold=None turns the"),
        ({"uncertainty_mode": "terminate", "uncertainty_penalty": 1e39}, "at most 3.4e\\+38, float32's largest"),
        ({"uncertainty_penalty": 2.0}, "has no effect with uncertainty_mode='truncate'"),
        ({"uncertainty_mode": "penalty", "uncertainty_threshold": float("inf")}, "a finite number > 0, not inf"),
    ],
)
def test_mode_settings_are_checked_at_construction(cartpole_model, kwargs, message):
    for make in (
        lambda: DreamEnv(cartpole_model, **{"uncertainty_threshold": "auto", **kwargs}),
        lambda: DreamVecEnv(cartpole_model, n_envs=2, **{"uncertainty_threshold": "auto", **kwargs}),
        lambda: gym.make("Dream-CartPole-v0", **kwargs),
    ):
        with pytest.raises(ValueError, match=message):
            make()


def test_an_undiscounted_halt_penalty_is_refused_only_where_a_real_reward_is_negative(cartpole_model, pendulum_model):
    # CartPole's rewards are all >= 0: halting forgoes them, the auto penalty is 0 whatever gamma is.
    env = DreamEnv(cartpole_model, uncertainty_threshold="auto", uncertainty_mode="terminate", gamma=1.0)
    assert env.imagination.uncertainty_penalty == 0.0
    low = pendulum_model.reward_range[0]
    with pytest.raises(ValueError, match=f"lowest real reward \\({low:g}\\) received forever, undiscounted"):
        DreamEnv(pendulum_model, uncertainty_threshold="auto", uncertainty_mode="terminate", gamma=1.0)


def test_the_largest_penalties_never_make_a_reward_nonfinite(pendulum_model):
    huge = float(np.finfo(np.float32).max)
    for mode in ("terminate", "penalty"):
        venv = DreamVecEnv(pendulum_model, n_envs=64, uncertainty_threshold=1e-6, uncertainty_mode=mode,
                           uncertainty_penalty=huge, seed=0)  # fmt: skip
        venv.reset()
        for _ in range(3):
            _, rewards, _, _ = venv.step(np.ones((64, 1), np.float32))
            assert np.isfinite(rewards).all(), (mode, rewards)


# ---------------------------------------------------------------- no silent distortion
class Drift(gym.Env):
    """Declares Box(-1, 1, (2,)), but its first coordinate climbs 0.1 a step up to 3, where the episode ends."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x, 0.0], np.float32), {}

    def step(self, action):
        self.x = round(self.x + 0.1, 6)
        return np.array([self.x, 0.1 * (int(action) - 0.5)], np.float32), 1.0, self.x >= 3.0 - 1e-6, False, {}


def test_real_data_outside_the_declared_box_warns_and_is_never_clamped():
    env = Drift()
    with pytest.warns(UserWarning, match="dim 0: 3900 above high=1 \\(max 3\\)"):
        buffer = TransitionBuffer.from_env(env).collect(env, 3000, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=4, num_elites=3,
                             hidden_sizes=(64, 64), device="cpu", seed=0)  # fmt: skip
    with pytest.warns(UserWarning, match="fit: real observations lie outside .* dim 0: 3900 above high=1"):
        model.fit(buffer, max_epochs=60, batch_size=64, seed=0)
    low, high = model.observation_bounds()  # open only where real data crossed the declared bound
    assert low.tolist() == [-1.0, -1.0] and high.tolist() == [math.inf, 1.0]
    for threshold in (None, "auto"):
        dream = DreamEnv(model, uncertainty_threshold=threshold, seed=0)
        obs, _ = dream.reset(seed=0)
        step, terminated, truncated = 0, False, False
        while not (terminated or truncated) and step < 60:
            obs, _, terminated, truncated, _ = dream.step(1)
            step += 1
        # The real episode ends at 2.8-3.0 after 28-30 steps; the dream neither sticks at 1.0 nor runs on.
        assert terminated and 2.7 <= obs[0] <= 3.2 and 26 <= step <= 32, (threshold, step, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same dims do not warn again on every add
        buffer.add(*(np.asarray(v)[:1] for v in buffer.transitions()))


def test_dream_reward_stays_in_the_real_range(pendulum_model):
    low, high = pendulum_model.reward_range
    assert high <= 0.0  # Pendulum's rewards
    venv = DreamVecEnv(pendulum_model, n_envs=64, seed=0)
    venv.reset()
    for _ in range(30):
        _, rewards, _, _ = venv.step(np.random.default_rng(0).uniform(-2, 2, (64, 1)).astype(np.float32))
        assert rewards.min() >= low - 1e-5 and rewards.max() <= high + 1e-5


def test_a_nonfinite_row_gets_the_lowest_real_reward(pendulum_model, tmp_path):
    pendulum_model.save(tmp_path / "m.pt")
    broken = EnsembleDynamics.load(tmp_path / "m.pt", device="cpu")
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    for mode, expected_extra in (("truncate", 0.0), ("terminate", None)):
        env = DreamEnv(broken, uncertainty_mode=mode, uncertainty_threshold="auto", seed=0)
        env.reset()
        _, reward, terminated, truncated, info = env.step(np.array([0.0], np.float32))
        extra = env.imagination.uncertainty_penalty if expected_extra is None else expected_extra
        assert info["model_nonfinite"] and reward == pytest.approx(broken.reward_range[0] - extra, rel=1e-5)
        assert reward < 0.0  # never above a real Pendulum reward, as 0 was
        assert (terminated, truncated) == ((True, False) if mode == "terminate" else (False, True))


def test_no_terminal_data_means_no_imagined_termination(pendulum_buffer):
    # Pendulum never terminates; a short fit used to invent terminations (93 of 265 imagined rows after 3 epochs).
    model = small_model("Pendulum-v1", learn_termination=True)
    model.fit(pendulum_buffer, max_epochs=3, seed=0)
    assert not bool(model.termination_seen)
    data = pendulum_buffer.transitions()
    assert not model.step(data.obs, data.action).terminated.any()
    assert torch.isinf(model.predict(data.obs[:5], data.action[:5]).termination_logit).all()
    venv = DreamVecEnv(model, n_envs=32, seed=0)
    venv.reset()
    for _ in range(20):
        _, _, _, infos = venv.step(np.zeros((32, 1), np.float32))
        assert not any(info.get("TimeLimit.truncated") is False for info in infos)


def test_termination_head_decides_between_balanced_and_calibrated(cartpole_buffer):
    model = small_model("CartPole-v1")
    model.fit(cartpole_buffer, max_epochs=3, seed=0)
    p_terminal = cartpole_buffer.transitions().terminated.mean()
    balanced = math.log(min(0.5 / p_terminal, 50.0) / (0.5 / (1 - p_terminal)))
    assert bool(model.termination_seen) and float(model.termination_logit_offset) == pytest.approx(balanced / 2)
    # A 3-epoch fit flagged most states terminal under the balanced decision; now few non-terminal rows are.
    data = cartpole_buffer.transitions()
    flagged = model.step(data.obs, data.action, propagation="mean", deterministic=True).terminated.numpy()
    assert flagged[~data.terminated].mean() < 0.2


def _f1(predicted: np.ndarray, true: np.ndarray) -> float:
    hits = (predicted & true).sum()
    return 2 * hits / max(predicted.sum() + true.sum(), 1)


def test_the_next_observation_head_learns_a_state_defined_termination_from_few_terminal_rows():
    # CartPole ends when the pole or cart it reaches is past its limit. 500 random steps hold 23 terminal rows; on
    # 3,000 fresh ones the next-observation head (judging the model's own predicted next observation) had F1 0.83
    # against the trunk column's 0.69 (default model, docs/termination.md); this small model 0.91 against 0.54.
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 500, seed=0)
    test = TransitionBuffer.from_env(env).collect(env, 3000, seed=1).transitions()
    scores = {}
    for head in ("next_obs", "obs_action"):
        model = small_model("CartPole-v1", termination_input=head)
        model.fit(buffer, seed=0)
        assert (model.termination_net is not None) == (head == "next_obs")
        logit = model.predict(test.obs, test.action).termination_logit[model.elite_idx].mean(0).numpy()
        scores[head] = _f1(logit > 0, test.terminated)
    assert scores["next_obs"] >= 0.7 and scores["next_obs"] > scores["obs_action"], scores


def test_the_next_observation_head_judges_the_state_the_step_reaches(cartpole_buffer):
    # The same pole angle (0.19 rad, inside CartPole's 0.21 limit), once falling outwards fast and once coming back:
    # only the step that crosses the limit is terminal, in every way the model steps.
    model = small_model("CartPole-v1", termination_input="next_obs")
    model.fit(cartpole_buffer, max_epochs=40, batch_size=64, seed=0)
    obs = np.array([[0.0, 0.0, 0.19, 2.0], [0.0, 0.0, 0.19, -2.0]], np.float32)
    action = np.array([1, 0])
    for propagation in ("ts1", "mean", "single"):
        step = model.step(obs, action, generator=torch.Generator().manual_seed(0), propagation=propagation)
        assert step.next_obs[0, 2] > 0.2095 > step.next_obs[1, 2]
        assert step.terminated.tolist() == [True, False], propagation
    members = model.step_members(torch.as_tensor(obs).expand(4, -1, -1), torch.as_tensor(action).expand(4, -1),
                                 deterministic=True)  # fmt: skip
    assert members[2][model.elite_idx].tolist() == [[True, False]] * len(model.elite_idx)
    logit = model.predict(obs, action).termination_logit
    assert (logit[model.elite_idx, 0] > 0).all() and (logit[model.elite_idx, 1] < 0).all()


def test_termination_input_is_checked_and_files_before_it_load_with_the_trunk_column(cartpole_buffer, tmp_path):
    with pytest.raises(ValueError, match="termination_input must be one of .*'next_obs'.*got 'next'"):
        small_model("CartPole-v1", termination_input="next")
    old = small_model("CartPole-v1", termination_input="obs_action")
    old.fit(cartpole_buffer, max_epochs=3, seed=0)
    payload = old.to_payload()
    payload["format_version"] = 2  # written before termination_input existed: no such key in its header
    del payload["config"]["termination_input"]
    torch.save(payload, tmp_path / "v2.pt")
    loaded = EnsembleDynamics.load(tmp_path / "v2.pt", device="cpu")
    assert loaded.config.termination_input == "obs_action" and loaded.termination_net is None
    obs, action = cartpole_buffer.transitions().obs[:20], cartpole_buffer.transitions().action[:20]
    for mine, theirs in zip(old.predict(obs, action), loaded.predict(obs, action)):
        assert torch.equal(mine, theirs)
    assert small_model("CartPole-v1").config.termination_input == "obs_action"  # the default
    new = small_model("CartPole-v1", termination_input="next_obs")
    new.fit(cartpole_buffer, max_epochs=3, seed=0)
    new.save(tmp_path / "v3.pt")
    again = EnsembleDynamics.load(tmp_path / "v3.pt", device="cpu")
    assert again.config.termination_input == "next_obs"
    assert torch.equal(again.predict(obs, action).termination_logit, new.predict(obs, action).termination_logit)


def test_early_stopping_watches_the_termination_loss(cartpole_buffer):
    model = small_model("CartPole-v1", hidden_sizes=(32,))
    result = model.fit(cartpole_buffer, max_epochs=4, seed=0)
    assert all(loss > mse for loss, mse in zip(result.holdout_loss_per_member, result.holdout_mse_per_member))
    plain = small_model("CartPole-v1", hidden_sizes=(32,), learn_termination=False)
    result = plain.fit(cartpole_buffer, max_epochs=4, seed=0)
    assert result.holdout_loss_per_member == pytest.approx(result.holdout_mse_per_member)


def test_a_version_1_file_loads_without_its_auto_threshold(cartpole_model, tmp_path):
    payload = cartpole_model.to_payload()
    payload["format_version"] = 1
    for key in ("termination_seen", "termination_logit_offset"):
        payload["state_dict"].pop(key)
    for key in ("observed_obs_range", "cutoff_calibration"):
        payload.pop(key)
    torch.save(payload, tmp_path / "old.pt")
    payload.pop("reward_range")  # as the shipped files before this version
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="format version 1"):
        old = EnsembleDynamics.load(tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="records no range of real rewards"):
        Imagination(old)
    assert math.isnan(float(old.auto_threshold)) and bool(old.termination_seen)
    with pytest.raises(ValueError, match="needs a model fitted by this dream-envs"):
        Imagination(old, uncertainty_threshold="auto")
    assert Imagination(old, uncertainty_threshold=0.05).uncertainty_threshold == 0.05


def test_calibration_survives_a_save_and_load(cartpole_model, tmp_path):
    cartpole_model.save(tmp_path / "m.pt")
    loaded = EnsembleDynamics.load(tmp_path / "m.pt")
    assert np.allclose(
        list(vars(loaded.cutoff_calibration).values())[4:],
        list(vars(cartpole_model.cutoff_calibration).values())[4:],
        equal_nan=True,
    )
    assert vars(loaded.cutoff_calibration).keys() == vars(cartpole_model.cutoff_calibration).keys()
    assert loaded.cutoff_calibration.method == cartpole_model.cutoff_calibration.method
    assert float(loaded.auto_threshold) == float(cartpole_model.auto_threshold)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.observed_obs_range, cartpole_model.observed_obs_range))
    assert float(loaded.termination_logit_offset) == float(cartpole_model.termination_logit_offset)


class Goal(gym.Env):
    """A point moving toward a goal that is drawn at reset and never moves within an episode (as in Reacher)."""

    observation_space = spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.array([0.0, self.np_random.uniform(-1, 1)], np.float32)
        return self.state.copy(), {}

    def step(self, action):
        self.state[0] += 0.1 * float(np.clip(action[0], -1, 1))
        return self.state.copy(), -abs(self.state[0] - self.state[1]), False, self.state[0] > 5, {}


def test_an_output_that_never_changed_is_predicted_exactly(cartpole_model):
    env = Goal()
    buffer = TransitionBuffer.from_env(env).collect(env, 2000, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=4, num_elites=3,
                             hidden_sizes=(32,), device="cpu", seed=0)  # fmt: skip
    model.fit(buffer, max_epochs=5, seed=0)
    assert model.out_std[1] == 0.0 and model.out_std[0] > 0.0  # the goal's delta never changed; the point's did
    data = buffer.transitions()
    step = model.step(data.obs[:100], data.action[:100])  # sampled, TS-1
    assert torch.equal(step.next_obs[:, 1], torch.as_tensor(data.obs[:100, 1]))
    assert torch.all(model.predict(data.obs[:100], data.action[:100]).delta_var[..., 1] == 0)
    # The goal adds nothing to the disagreement: the point's own spread is all there is.
    point = model.predict(data.obs[:100], data.action[:100]).delta_mean[..., 0].std(0, unbiased=False)
    assert torch.allclose(model.disagreement(data.obs[:100], data.action[:100]), point / model.out_std[0], rtol=1e-4)
    # CartPole's reward is 1 on every step: the model says 1, exactly.
    assert torch.all(cartpole_model.step(np.zeros((5, 4), np.float32), np.zeros(5, np.int64)).reward == 1.0)


def test_numpy_settings_still_give_a_file_that_loads(cartpole_buffer, tmp_path):
    model = small_model("CartPole-v1", hidden_sizes=(16,))
    model.fit(cartpole_buffer, max_epochs=2, seed=0, uncertainty_tolerance=np.float32(0.1),
              uncertainty_horizon=np.int64(5))  # fmt: skip
    model.save(tmp_path / "m.pt")
    loaded = EnsembleDynamics.load(tmp_path / "m.pt")
    assert loaded.cutoff_calibration.horizon == 5 and type(loaded.cutoff_calibration.tolerance) is float


def test_fit_says_when_it_cannot_calibrate_the_cutoff():
    from dream_envs.models.calibration import CutoffCalibrationWarning

    env = Drift()  # 30-step episodes: no held-out run of 40 steps, and fewer than 20 transitions hold none out
    buffer = TransitionBuffer.from_env(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        buffer.collect(env, 15, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=1,
                             hidden_sizes=(8,), device="cpu", seed=0)  # fmt: skip
    with pytest.warns(CutoffCalibrationWarning, match="could not be calibrated: uncertainty_threshold='auto' is"):
        model.fit(buffer, max_epochs=1, seed=0)
    assert model.cutoff_calibration.method == "default"
    single = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=1, num_elites=1,
                              hidden_sizes=(8,), device="cpu", seed=0)  # fmt: skip
    with pytest.warns(CutoffCalibrationWarning, match="one member has no disagreement"):
        single.fit(buffer, max_epochs=1, seed=0)


def test_segments_longer_than_any_trajectory_cost_nothing_and_bad_arguments_are_named(cartpole_buffer):
    assert cartpole_buffer.segments(10**7).shape == (0, 10**7)  # no N x length allocation
    assert cartpole_buffer.segments(600).shape == (0, 600)  # CartPole's random episodes are far shorter
    n = len(cartpole_buffer)
    for kwargs, message in (
        ({"exclude": list(range(n))}, f"exclude must be {n} booleans"),
        ({"exclude": 5}, f"exclude must be {n} booleans"),
        ({"max_segments": -1}, "max_segments must be an integer >= 0"),
        ({"successors": np.zeros(3, np.int64)}, f"successors must be {n} row indices"),
    ):
        with pytest.raises(ValueError, match=message):
            cartpole_buffer.segments(5, **kwargs)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.update(reward_range=[float("nan"), 0.0]), "reward_range must be two finite numbers"),
        (lambda p: p.update(reward_range=[1.0, -1.0]), "reward_range must be two finite numbers, low <= high"),
        (lambda p: p["state_dict"]["elite_idx"].fill_(99), "elite indices must be distinct members"),
        (lambda p: p["state_dict"]["auto_threshold"].fill_(-5.0), "auto threshold must be a number >= 0"),
        (lambda p: p["cutoff_calibration"].update(threshold="abc"), "calibration record's threshold 'abc'"),
    ],
)
def test_a_damaged_header_is_refused_at_load(cartpole_model, tmp_path, damage, message):
    from dream_envs import ModelFileError

    payload = cartpole_model.to_payload()
    payload["state_dict"] = {k: v.clone() for k, v in payload["state_dict"].items()}
    damage(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=message):
        EnsembleDynamics.load(tmp_path / "bad.pt")


def test_vec_env_reports_a_nonfinite_model_like_the_env(cartpole_model, tmp_path):
    cartpole_model.save(tmp_path / "m.pt")
    broken = EnsembleDynamics.load(tmp_path / "m.pt", device="cpu")
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    venv = DreamVecEnv(broken, n_envs=3, seed=0)
    venv.reset()
    _, rewards, dones, infos = venv.step(np.zeros(3, np.int64))
    assert dones.all() and all(info["model_nonfinite"] and info["uncertainty_cutoff"] for info in infos)
    assert np.all(rewards == broken.reward_range[0])
