import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from dream_envs import KNOWN_REWARDS, KNOWN_TERMINATIONS, TransitionBuffer
from dream_envs.models.task_functions import never_terminates, resolve_task_fn


def _is_mujoco(env_id):
    # The spec is read from gymnasium's registry without importing the env, so this works without mujoco.
    return gym.spec(env_id).entry_point.startswith("gymnasium.envs.mujoco")


CLASSIC_IDS = sorted(env_id for env_id in KNOWN_REWARDS if not _is_mujoco(env_id))
MUJOCO_IDS = sorted(env_id for env_id in KNOWN_TERMINATIONS if _is_mujoco(env_id))


@pytest.mark.parametrize("env_id", CLASSIC_IDS)
def test_known_functions_match_the_real_env(env_id):
    env = gym.make(env_id)
    buffer = TransitionBuffer.from_env(env).collect(env, 3000, seed=0)
    data = buffer.transitions()
    obs, action, next_obs = (torch.as_tensor(x) for x in (data.obs, data.action, data.next_obs))
    reward = KNOWN_REWARDS[env_id](obs, action, next_obs).numpy()
    terminated = KNOWN_TERMINATIONS[env_id](obs, action, next_obs).numpy()
    assert np.allclose(reward, data.reward, atol=1e-4)
    assert np.array_equal(terminated, data.terminated)


def _rollouts(env, n_seeds=3, n_steps=300):
    """Random-action transitions of ``env`` (float64, as the env returns them) over several seeds."""
    rows = []
    for seed in range(n_seeds):
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(n_steps):
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows.append((obs, action, next_obs, reward, terminated))
            obs = env.reset()[0] if terminated or truncated else next_obs
    obs, action, next_obs, reward, terminated = (np.array(column) for column in zip(*rows))
    return torch.as_tensor(obs), torch.as_tensor(action), torch.as_tensor(next_obs), reward, terminated


def test_every_known_reward_has_a_known_termination():
    assert set(KNOWN_REWARDS) <= set(KNOWN_TERMINATIONS)


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_known_mujoco_functions_match_the_real_env(env_id):
    pytest.importorskip("mujoco", reason="the MuJoCo envs need the mujoco extra: pip install dream-envs[mujoco]")
    env = gym.make(env_id)  # default constructor arguments: the ones the functions are written for
    obs, action, next_obs, reward, terminated = _rollouts(env)
    termination_fn = KNOWN_TERMINATIONS[env_id]
    if termination_fn is not never_terminates and env_id != "Ant-v5":  # Ant's falls: the hand-made states below
        assert terminated.any(), "the sample should hold terminal transitions"
    assert np.array_equal(termination_fn(obs, action, next_obs).numpy(), terminated)
    # float32, the dtype the buffer and the dream use, keeps the flags.
    obs32, action32, next_obs32 = obs.float(), action.float(), next_obs.float()
    assert np.array_equal(termination_fn(obs32, action32, next_obs32).numpy(), terminated)
    if env_id in KNOWN_REWARDS:
        assert np.allclose(KNOWN_REWARDS[env_id](obs, action, next_obs).numpy(), reward, rtol=0.0, atol=1e-5)


# Both bounds of [0.2, 1.0] are inclusive; outside them, or with a NaN velocity, the Ant is unhealthy.
@pytest.mark.parametrize(
    ("torso_z", "qvel_0", "ends"),
    [
        (0.1, 0.0, True),
        (0.2, 0.0, False),
        (0.55, 0.0, False),
        (1.0, 0.0, False),
        (1.5, 0.0, True),
        (0.55, np.nan, True),
    ],
)
def test_ant_termination_in_hand_made_states(torso_z, qvel_0, ends):
    pytest.importorskip("mujoco", reason="the MuJoCo envs need the mujoco extra: pip install dream-envs[mujoco]")
    # Random actions rarely make the Ant fall or jump, so the state is set by hand and checked against the env's
    # own rule (Ant-v5's step returns terminated = not is_healthy, for the default terminate_when_unhealthy=True).
    env = gym.make("Ant-v5").unwrapped
    obs, _ = env.reset(seed=0)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qpos[2], qvel[0] = torso_z, qvel_0
    env.set_state(qpos, qvel)
    next_obs = env._get_obs()
    assert bool(not env.is_healthy) is ends
    obs, action, next_obs = (
        torch.as_tensor(obs)[None],
        torch.zeros(1, 8, dtype=torch.float64),
        torch.as_tensor(next_obs)[None],
    )
    assert KNOWN_TERMINATIONS["Ant-v5"](obs, action, next_obs).item() is ends


def test_acrobot_goal_is_reached_in_a_hand_made_state():
    # theta1 = pi (link 1 straight up), theta2 = 0: the tip is 2 links above the pivot, past the goal line.
    up = torch.tensor([[-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    assert KNOWN_TERMINATIONS["Acrobot-v1"](up, torch.tensor([0]), up).item()
    assert KNOWN_REWARDS["Acrobot-v1"](up, torch.tensor([0]), up).item() == 0.0


def test_resolve_task_fn():
    assert resolve_task_fn(None, KNOWN_REWARDS, "reward_fn") is None
    assert resolve_task_fn("learned", KNOWN_REWARDS, "reward_fn") is None
    assert resolve_task_fn("Pendulum-v1", KNOWN_REWARDS, "reward_fn") is KNOWN_REWARDS["Pendulum-v1"]
    with pytest.raises(ValueError, match="known ids"):
        resolve_task_fn("Nope-v0", KNOWN_REWARDS, "reward_fn")
    # A locomotion env's reward needs the x position, which its observation leaves out: termination only.
    assert resolve_task_fn("known", KNOWN_TERMINATIONS, "termination_fn", "Hopper-v5") is not None
    with pytest.raises(ValueError, match="known ids"):
        resolve_task_fn("known", KNOWN_REWARDS, "reward_fn", "Hopper-v5")
    with pytest.raises(TypeError, match="reward_fn"):
        resolve_task_fn(3, KNOWN_REWARDS, "reward_fn")


@pytest.mark.parametrize(
    "env_id, settings, refused",
    [
        ("Hopper-v5", {}, None),
        ("Hopper-v5", {"render_mode": "rgb_array", "reset_noise_scale": 0.1}, None),  # rendering, start noise
        ("Hopper-v5", {"terminate_when_unhealthy": True, "healthy_z_range": (0.7, float("inf"))}, None),  # defaults
        ("Hopper-v5", {"terminate_when_unhealthy": False}, r"terminate_when_unhealthy=False \(default True\)"),
        ("Hopper-v5", {"healthy_z_range": (0.5, float("inf"))}, r"healthy_z_range=\(0.5, inf\) \(default \(0.7, "),
        ("CartPole-v1", {"sutton_barto_reward": True}, r"sutton_barto_reward=True \(default False\)"),
        ("Pendulum-v1", {"g": 9.81}, None),  # gravity moves the dynamics, which the model learns, not the rule
    ],
)
def test_a_known_function_is_refused_for_an_env_made_with_other_settings(env_id, settings, refused):
    from dream_envs.models.task_functions import check_known_settings

    spec = gym.make(env_id, **settings).spec
    what, table = ("termination_fn", KNOWN_TERMINATIONS) if env_id == "Hopper-v5" else ("reward_fn", KNOWN_REWARDS)
    for value in ("known", env_id):
        if refused is None:
            check_known_settings(value, what, spec)
        else:
            match = rf"{what}='{value}' mirrors {env_id}'s default constructor.*{refused}"
            with pytest.raises(ValueError, match=match):
                check_known_settings(value, what, spec)
    check_known_settings(table[env_id], what, spec)  # the function itself, passed on purpose: the user's call
    check_known_settings("learned", what, spec)


@pytest.mark.parametrize(
    "wrap, what, refused",
    [
        (lambda e: gym.wrappers.RecordEpisodeStatistics(e), "termination_fn", None),
        (lambda e: gym.wrappers.TimeLimit(e, 50), "termination_fn", None),  # truncation only
        (lambda e: gym.wrappers.ClipReward(e, -1.0, 1.0), "termination_fn", None),  # rewards only
        (lambda e: gym.wrappers.ClipReward(e, -1.0, 1.0), "reward_fn", "ClipReward"),
        (lambda e: gym.wrappers.NormalizeObservation(e), "termination_fn", "NormalizeObservation"),
        (lambda e: gym.wrappers.TransformObservation(e, lambda o: o * 10, e.observation_space), "termination_fn",
         "TransformObservation"),
        (lambda e: gym.wrappers.ClipAction(e), "reward_fn", "ClipAction"),
        (lambda e: gym.wrappers.ClipAction(e), "termination_fn", None),  # no known termination reads the action
        (lambda e: gym.wrappers.RescaleAction(e, -1.0, 1.0), "termination_fn", None),
    ],
    ids=["statistics", "time-limit", "clip-reward-termination", "clip-reward-reward", "normalize-obs",
         "transform-obs", "clip-action", "clip-action-termination", "rescale-action-termination"],
)  # fmt: skip
def test_a_known_function_is_refused_under_a_wrapper_that_may_change_what_it_reads(wrap, what, refused):
    from stable_baselines3.common.monitor import Monitor

    from dream_envs.models.task_functions import check_known_settings

    env_id = "InvertedPendulum-v5"  # a known reward and termination
    spec = Monitor(wrap(gym.make(env_id))).spec  # SB3 wraps every env it is given in Monitor: neutral
    for value in ("known", env_id):
        if refused is None:
            check_known_settings(value, what, spec)
        else:
            with pytest.raises(ValueError, match=rf"{what}='{value}' mirrors {env_id} as gym.make makes it.*{refused}"):
                check_known_settings(value, what, spec)
    check_known_settings(None, what, spec)  # learned, or the user's own callable: theirs


def test_dyna_callback_and_mpc_agent_refuse_a_known_termination_under_normalize_observation():
    from stable_baselines3 import SAC

    from dream_envs.agents import MPCAgent
    from sb3_plugins import DynaCallback

    env = gym.wrappers.NormalizeObservation(gym.make("Hopper-v5"))  # Hopper's rule would read normalised heights
    with pytest.raises(ValueError, match="wrapped in NormalizeObservation"):
        DynaCallback(termination_fn="known").check_agent(SAC("MlpPolicy", env, device="cpu"))
    with pytest.raises(ValueError, match="wrapped in NormalizeObservation"):
        MPCAgent(env, termination_fn="known")


def test_dyna_callback_and_mpc_agent_refuse_a_known_termination_for_a_changed_env_before_any_step():
    from stable_baselines3 import SAC

    from dream_envs.agents import MPCAgent
    from sb3_plugins import DynaCallback

    env = gym.make("Hopper-v5", terminate_when_unhealthy=False)  # never terminates: gymnasium's rule would
    with pytest.raises(ValueError, match="terminate_when_unhealthy=False"):
        DynaCallback(termination_fn="known").check_agent(SAC("MlpPolicy", env, device="cpu"))
    with pytest.raises(ValueError, match="terminate_when_unhealthy=False"):
        MPCAgent(env, termination_fn="known")


@pytest.fixture
def user_functions(tmp_path, monkeypatch):
    """An importable module of the user's own functions, as a zoo or bench YAML names them."""
    (tmp_path / "my_task_functions.py").write_text(
        "import torch\n"
        "NOT_A_FUNCTION = 3\n"
        "def pole_reward(obs, action, next_obs):\n"
        "    return 1.0 - next_obs[:, 2].abs()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_task_functions:pole_reward"


def test_a_function_named_module_colon_function_is_imported_where_it_is_given(user_functions, cartpole_model):
    import yaml
    from rl_zoo3.utils import get_callback_list

    from dream_envs import DreamEnv

    named, direct = (DreamEnv(model=cartpole_model, seed=0, reward_fn=fn) for fn in
                     (user_functions, lambda o, a, n: 1.0 - n[:, 2].abs()))  # fmt: skip
    for dream in (named, direct):
        dream.reset(seed=0)
    assert named.step(1)[1] == direct.step(1)[1]
    # what a YAML can hold: rl-zoo's hyperparameters (safe_load) build the callback with it
    entry = yaml.safe_load(f"callback:\n  - sb3_plugins.DynaCallback:\n      reward_fn: '{user_functions}'\n")
    assert get_callback_list(entry)[0].reward_fn == user_functions


@pytest.mark.parametrize(
    "value, message",
    [
        ("no_such_module_here:pole_reward", "cannot import 'no_such_module_here'"),
        ("my_task_functions:missing", "'my_task_functions' has no 'missing'"),
        ("my_task_functions:NOT_A_FUNCTION", "is int 3, not a function"),
    ],
)
def test_a_module_colon_function_that_is_not_one_is_named_at_construction(user_functions, value, message):
    from sb3_plugins import DynaCallback

    with pytest.raises(ValueError, match=re.escape(f"reward_fn={value!r}") + ".*" + re.escape(message)):
        DynaCallback(reward_fn=value)


def test_a_functions_own_error_is_named_in_the_try_and_noted_at_a_real_step(cartpole_model):
    import sys

    from dream_envs import DreamEnv

    def own_check(obs, action, next_obs):
        if (next_obs[:, 2].abs() > 0.21).any():
            raise ValueError("pole angle out of my domain")
        return torch.zeros(len(obs))

    match = (r"reward_fn 'own_check' failed on a batch of 2 rows made from the spaces .*drawn uniformly within the "
             r"spaces' bounds.*ValueError: pole angle")  # fmt: skip
    with pytest.raises(ValueError, match=match):
        DreamEnv(model=cartpole_model, reward_fn=own_check)
    calls = []

    def fails_later(obs, action, next_obs):
        calls.append(len(obs))
        if len(calls) > 1:
            raise KeyError("later")
        return torch.zeros(len(obs))

    dream = DreamEnv(model=cartpole_model, seed=0, reward_fn=fails_later)
    dream.reset(seed=0)
    with pytest.raises(KeyError, match="later") as raised:  # the user's own error, its type kept
        dream.step(0)
    if sys.version_info >= (3, 11):
        assert "(raised by reward_fn 'fails_later', called on a batch of 1 rows)" in raised.value.__notes__


def test_a_module_that_fails_to_import_is_named_as_such(user_functions, tmp_path):
    from sb3_plugins import DynaCallback

    (tmp_path / "needs_missing.py").write_text("import a_package_nobody_installed\ndef fn(o, a, n): ...\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('bad config')\n")
    with pytest.raises(ValueError, match="importing 'needs_missing' failed: it imports 'a_package_nobody_installed'"):
        DynaCallback(reward_fn="needs_missing:fn")
    with pytest.raises(ValueError, match="importing 'raises_on_import' raised RuntimeError: bad config"):
        DynaCallback(reward_fn="raises_on_import:fn")
    with pytest.raises(ValueError, match="has Python names on both sides of one colon"):
        DynaCallback(reward_fn="my_task_functions: pole_reward")


def test_a_saved_callback_whose_function_cannot_be_imported_is_not_called_a_damaged_file(user_functions, tmp_path):
    import sys

    from dream_envs import ModelFileError
    from sb3_plugins import DynaCallback

    path = DynaCallback(reward_fn=user_functions).save(tmp_path / "dyna.pt")
    assert DynaCallback.load(path).reward_fn == user_functions
    sys.modules.pop("my_task_functions")
    sys.path.remove(str(tmp_path))  # loaded elsewhere, where the module is not importable
    with pytest.raises(ValueError, match="cannot import 'my_task_functions'") as raised:
        DynaCallback.load(path)
    assert not isinstance(raised.value, ModelFileError)


@pytest.mark.parametrize(
    "env_id, settings, wrap",
    [
        ("CartPole-v1", {"sutton_barto_reward": True}, None),  # reward-only settings
        ("Hopper-v5", {"ctrl_cost_weight": 0.1, "healthy_reward": 2.0}, None),
        ("Pendulum-v1", {}, lambda e: gym.wrappers.NormalizeObservation(e)),  # never ends: holds under anything
        ("Reacher-v5", {"reward_control_weight": 0.5}, lambda e: gym.wrappers.TransformObservation(e, lambda o: o,
                                                                                                 e.observation_space)),
    ],
    ids=["sutton-barto", "hopper-weights", "pendulum-normalized", "reacher-wrapped"],
)  # fmt: skip
def test_a_known_termination_holds_under_what_changes_only_rewards_or_for_an_env_that_never_ends(
    env_id, settings, wrap
):
    from dream_envs.models.task_functions import check_known_settings

    env = gym.make(env_id, **settings)
    env = wrap(env) if wrap is not None else env
    check_known_settings("known", "termination_fn", env.spec)
    if settings:  # the same settings still refuse the known reward, where there is one
        if env_id in KNOWN_REWARDS:
            with pytest.raises(ValueError, match="mirrors"):
                check_known_settings("known", "reward_fn", env.spec)


def test_a_known_function_under_a_wrapper_that_changed_the_spaces_names_the_wrapper_first():
    from stable_baselines3 import SAC

    from sb3_plugins import DynaCallback

    agent = SAC("MlpPolicy", gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0), device="cpu")
    with pytest.raises(ValueError, match="wrapped in RescaleAction"):  # was: 'Pendulum-v1' is for Pendulum-v1...
        DynaCallback(reward_fn="known").check_agent(agent)
    DynaCallback(termination_fn="known").check_agent(agent)  # Pendulum never ends, whatever the actions
