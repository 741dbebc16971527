"""Known reward and termination functions of gymnasium's classic-control and MuJoCo v5 envs, as batched torch functions.

Each takes ``(obs, action, next_obs)`` (``B x obs_dim``, raw actions: ``B`` int64 of a Discrete space, ``B x
act_dim`` floats of a Box, ``B x obs_dim``) and returns ``B`` rewards (float) or ``B`` termination flags (bool).
They mirror gymnasium's own definitions (``gymnasium/envs/classic_control``, ``gymnasium/envs/mujoco/*_v5.py``), so
a dream env given them has the real env's reward/termination; the tests check each one against real transitions. A
user's callable with the same signature is accepted wherever these are.

The MuJoCo ones hold for the envs' DEFAULT constructor arguments only (``gym.make("Hopper-v5")``): another
``healthy_z_range``, ``terminate_when_unhealthy=False``, ``exclude_current_positions_from_observation=False`` or
reward weight changes the rule or the observation layout, and the function is then wrong; pass your own callable.
Where the env itself is at hand (``DynaCallback``, ``MPCAgent``), :func:`check_known_settings` refuses ``"known"``
for an env made with such settings.
Locomotion rewards (Hopper, Walker2d, Ant, HalfCheetah, Swimmer, Humanoid) need the x position, which the
default observation leaves out, so only their terminations are here. Where a rule reads something the observation
does not hold (InvertedDoublePendulum's tip, Hopper's unclipped joint speeds, Ant's x and y), the function's
docstring says how far it can differ. Written from gymnasium 1.4's source.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = [
    "TaskFn",
    "KNOWN_REWARDS",
    "KNOWN_TERMINATIONS",
    "resolve_task_fn",
    "check_known_settings",
    "check_finite_rewards",
]

TaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cartpole_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    x, theta = next_obs[:, 0], next_obs[:, 2]
    return (x.abs() > 2.4) | (theta.abs() > 12 * 2 * math.pi / 360)


def cartpole_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # gymnasium gives +1 on every step, the terminating one included.
    return torch.ones(obs.shape[0], dtype=obs.dtype, device=obs.device)


def acrobot_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    cos1, sin1, cos2, sin2 = next_obs[:, 0], next_obs[:, 1], next_obs[:, 2], next_obs[:, 3]
    cos12 = cos1 * cos2 - sin1 * sin2  # cos(theta1 + theta2)
    return -cos1 - cos12 > 1.0


def acrobot_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return acrobot_termination(obs, action, next_obs).to(obs.dtype) - 1.0


def pendulum_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    theta = torch.atan2(obs[:, 1], obs[:, 0])  # already in [-pi, pi]
    torque = action.reshape(obs.shape[0], -1)[:, 0].clamp(-2.0, 2.0)
    return -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * torque**2)


def never_terminates(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)


def mountain_car_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return (next_obs[:, 0] >= 0.5) & (next_obs[:, 1] >= 0.0)


def mountain_car_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return -torch.ones(obs.shape[0], dtype=obs.dtype, device=obs.device)


def mountain_car_continuous_termination(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    return (next_obs[:, 0] >= 0.45) & (next_obs[:, 1] >= 0.0)


def mountain_car_continuous_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    force = action.reshape(obs.shape[0], -1)[:, 0].clamp(-1.0, 1.0)
    bonus = 100.0 * mountain_car_continuous_termination(obs, action, next_obs).to(obs.dtype)
    return bonus - 0.1 * force**2


# MuJoCo v5, default constructor arguments (gymnasium/envs/mujoco/*_v5.py). Observation indices below assume the
# default layout, which leaves out the x (and for Ant/Humanoid y) position of the root.


def inverted_pendulum_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # next_obs = (cart x, pole angle, cart velocity, pole angular velocity): qpos and qvel, unclipped.
    return ~torch.isfinite(next_obs).all(dim=1) | (next_obs[:, 1].abs() > 0.2)


def inverted_pendulum_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # v5 gives int(not terminated): +1 while the pole is up, 0 on the terminating step (v4 gave 1 there too).
    return (~inverted_pendulum_termination(obs, action, next_obs)).to(obs.dtype)


def inverted_double_pendulum_termination(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    """The tip of the second pole at or below 1 m (both poles are 0.6 m long; the hinge is at height 0).

    Not exact: gymnasium reads the tip from MuJoCo's ``site_xpos``, which the RK4 integrator leaves at the last
    stage of the last physics step rather than at the returned ``qpos``. The height computed here from the observed
    angles differs from it by a few 1e-6 m (at most 6e-5 m in 5,000 random steps), so a flag can differ only when
    the tip ends that close to the 1 m line. For the same reason, and because the observation clips the joint
    speeds to [-10, 10], the reward is not given here: its distance penalty was off by up to 7e-5, and its
    velocity penalty by 2e-2 on a step whose speed had been clipped.
    """
    # next_obs = (cart x, sin th1, sin th2, cos th1, cos th2, clipped qvel (3), clipped constraint force)
    sin1, sin2, cos1, cos2 = next_obs[:, 1], next_obs[:, 2], next_obs[:, 3], next_obs[:, 4]
    cos12 = cos1 * cos2 - sin1 * sin2  # cos(th1 + th2): the second pole's angle from the vertical
    tip_z = 0.6 * cos1 + 0.6 * cos12
    return tip_z <= 1.0


def hopper_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Hopper-v5's ``not is_healthy``: z in (0.7, inf), torso angle in (-0.2, 0.2), every state value in (-100, 100).

    The state check covers ``qpos[2:]`` and the UNclipped ``qvel``; the observation clips ``qvel`` to [-10, 10], so a
    joint speed beyond 100 (which ends the real episode) is not visible here. NaN fails every check, as in gymnasium.
    """
    # next_obs = (z, torso angle, thigh, leg, foot, clipped qvel (6)): qpos[1:], so state_vector()[2:] = next_obs[1:]
    z, angle, state = next_obs[:, 0], next_obs[:, 1], next_obs[:, 1:]
    healthy_state = ((state > -100.0) & (state < 100.0)).all(dim=1)
    healthy = healthy_state & (z > 0.7) & (z < math.inf) & (angle > -0.2) & (angle < 0.2)
    return ~healthy


def walker2d_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # next_obs[:, 0] = z (qpos[1]), next_obs[:, 1] = torso angle (qpos[2])
    z, angle = next_obs[:, 0], next_obs[:, 1]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def ant_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Ant-v5's ``not is_healthy``: ``qpos``/``qvel`` finite and the torso z in [0.2, 1.0] (inclusive).

    The finiteness check reads ``qpos[2:]`` and ``qvel`` (the first 27 observed values); the unobserved x, y are
    taken as finite with them.
    """
    # next_obs = (torso z, qpos[3:15], qvel (14), clipped contact forces (78, by default)): qpos[2:] first
    z = next_obs[:, 0]
    finite = torch.isfinite(next_obs[:, :27]).all(dim=1)
    return ~(finite & (z >= 0.2) & (z <= 1.0))


def humanoid_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    z = next_obs[:, 0]  # torso z (qpos[2]), the first observed value
    return ~((z > 1.0) & (z < 2.0))


def reacher_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # next_obs[:, 8:10] is (fingertip - target)[:2]; both sit at the same height, so it is the whole distance.
    # The action is not clipped: gymnasium charges the raw one (MuJoCo clamps only what it applies).
    action = action.reshape(obs.shape[0], -1)
    return -torch.linalg.vector_norm(next_obs[:, 8:10], dim=1) - (action**2).sum(dim=1)


def pusher_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # next_obs = (qpos[:7], qvel[:7], centres of mass of tips_arm, object, goal (3 each)), as the reward reads them
    tips_arm, object_com, goal = next_obs[:, 14:17], next_obs[:, 17:20], next_obs[:, 20:23]
    action = action.reshape(obs.shape[0], -1)
    near = torch.linalg.vector_norm(object_com - tips_arm, dim=1)
    dist = torch.linalg.vector_norm(object_com - goal, dim=1)
    return -0.5 * near - dist - 0.1 * (action**2).sum(dim=1)


def humanoid_standup_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # next_obs = (qpos[2:] (22), qvel (23), cinert (130), cvel (78), qfrc_actuator (17), cfrc_ext[1:] (78)); the
    # world body's cfrc_ext[0], also in gymnasium's sum, is always zero. 0.003 is the physics timestep.
    torso_z, contact_forces = next_obs[:, 0], next_obs[:, 270:348]
    action = action.reshape(obs.shape[0], -1)  # raw, as gymnasium charges data.ctrl, which MuJoCo does not clip
    impact_cost = (0.5e-6 * (contact_forces**2).sum(dim=1)).clamp(max=10.0)
    return torso_z / 0.003 - 0.1 * (action**2).sum(dim=1) - impact_cost + 1.0


KNOWN_TERMINATIONS: dict[str, TaskFn] = {
    "CartPole-v1": cartpole_termination,
    "Acrobot-v1": acrobot_termination,
    "Pendulum-v1": never_terminates,
    "MountainCar-v0": mountain_car_termination,
    "MountainCarContinuous-v0": mountain_car_continuous_termination,
    "InvertedPendulum-v5": inverted_pendulum_termination,
    "InvertedDoublePendulum-v5": inverted_double_pendulum_termination,
    "Hopper-v5": hopper_termination,
    "Walker2d-v5": walker2d_termination,
    "Ant-v5": ant_termination,
    "Humanoid-v5": humanoid_termination,
    "HalfCheetah-v5": never_terminates,
    "Swimmer-v5": never_terminates,
    "Reacher-v5": never_terminates,
    "Pusher-v5": never_terminates,
    "HumanoidStandup-v5": never_terminates,
}
KNOWN_REWARDS: dict[str, TaskFn] = {
    "CartPole-v1": cartpole_reward,
    "Acrobot-v1": acrobot_reward,
    "Pendulum-v1": pendulum_reward,
    "MountainCar-v0": mountain_car_reward,
    "MountainCarContinuous-v0": mountain_car_continuous_reward,
    "InvertedPendulum-v5": inverted_pendulum_reward,
    "Reacher-v5": reacher_reward,
    "Pusher-v5": pusher_reward,
    "HumanoidStandup-v5": humanoid_standup_reward,
}


def resolve_task_fn(
    value: str | TaskFn | None,
    known: dict[str, TaskFn],
    what: str,
    env_id: str | None = None,
    spaces: tuple[Any, Any] | None = None,
    device: str | torch.device = "cpu",
) -> TaskFn | None:
    """Turn ``None`` (learned), an env id, ``"known"``, a callable or an importable ``"module:function"`` into a
    function (``None``: the learned head).

    :param value: ``None``/``"learned"``, a key of ``known``, ``"known"`` (``env_id``'s), a callable
        ``(obs, action, next_obs) -> B``, or ``"module:function"`` naming one (what a YAML file can hold: rl-zoo's
        hyperparameters, ``dream-envs bench --hyperparams``; and a saved callback keeps it, where a callable must be
        passed again)
    :param known: the table to look env ids up in
    :param what: ``"reward_fn"`` or ``"termination_fn"``, for error messages
    :param env_id: the env whose function ``"known"`` means
    :param spaces: the model's ``(observation_space, action_space)``: a known function is for its env's spaces, and
        another env's is refused (CartPole's termination reads a pole angle a Pendulum observation does not hold); a
        user's function is tried on 2 rows made from them
    :param device: where the model's tensors live, and so the tried rows
    """
    given = value
    if value == "known":
        if env_id is None:
            raise ValueError(f"{what}='known' needs env_id= (or a model saved with an env_id)")
        if env_id not in known:
            raise ValueError(f"{what}='known': {env_id} has no known function; known ids: {sorted(known)}; pass a "
                             "callable (obs, action, next_obs) -> tensor, or None to use the learned head")  # fmt: skip
        value = env_id
    if value is None or value == "learned":
        return None
    if isinstance(value, str) and value not in known and _is_import_path(value):
        value = _imported_function(value, what)
    if callable(value):
        checked = _checked_task_fn(value, what)
        if spaces is not None:
            _probe(checked, what, *spaces, device)
        return checked
    if isinstance(value, str):
        if value in known:
            if spaces is not None:
                # a termination reads observations only (none of the known ones reads the action)
                check_env_spaces(value, *spaces, what=f"{what}={given!r}", actions=what.startswith("reward"))
            return known[value]
        hint = " (a 'module:function' has Python names on both sides of one colon)" if ":" in value else ""
        raise ValueError(
            f"{what}={value!r} is not an env id with a known function{hint}; known ids: {sorted(known)}; "
            f"or pass a callable (obs, action, next_obs) -> tensor, 'your_module:your_function', or None to use the "
            "learned head"
        )
    raise TypeError(f"{what} must be None, 'learned', an env id, 'module:function' or a callable, got {value!r}")


def _is_import_path(value: str) -> bool:
    """``"package.module:function"`` (or ``:Class.method``): Python names on both sides of one colon."""
    module, colon, attribute = value.partition(":")
    return bool(colon) and all(part.isidentifier() for part in (*module.split("."), *attribute.split(".")))


def _imported_function(value: str, what: str) -> Callable[..., Any]:
    module_name, _, attribute = value.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name != error.name and not module_name.startswith(error.name + "."):
            raise ValueError(f"{what}={value!r}: importing {module_name!r} failed: it imports {error.name!r}, "
                             f"which is not installed ({error})") from error  # fmt: skip
        raise ValueError(f"{what}={value!r}: cannot import {module_name!r} ({error}); the module must be importable "
                         "where the callback or dream is made (on sys.path)") from None  # fmt: skip
    except Exception as error:  # the user's module raised while it was imported: say where, keep its traceback
        raise ValueError(f"{what}={value!r}: importing {module_name!r} raised {type(error).__name__}: "
                         f"{error}") from error  # fmt: skip
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"{what}={value!r}: {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"{what}={value!r} is {type(found).__name__} {found!r}, not a function "
                         "(obs, action, next_obs) -> tensor")  # fmt: skip
    return found


# Constructor arguments that change only rendering, the start-state noise or (Pendulum's ``g``) the dynamics a model
# learns anyway: a known reward or termination holds whatever they are. Any other argument away from its default
# may change the rule or the observation's layout.
# Constructor arguments that weigh or shape the reward only: a known termination holds whatever they are.
_REWARD_ONLY_SETTINGS = frozenset(
    {"sutton_barto_reward", "forward_reward_weight", "ctrl_cost_weight", "healthy_reward", "contact_cost_weight",
     "contact_cost_range", "reward_dist_weight", "reward_near_weight", "reward_control_weight", "uph_cost_weight",
     "impact_cost_weight", "impact_cost_range"}
)  # fmt: skip
_RULE_NEUTRAL_SETTINGS = frozenset(
    {"render_mode", "width", "height", "camera_id", "camera_name", "default_camera_config", "max_geom",
     "visual_options", "reset_noise_scale", "g"}
)  # fmt: skip


# Wrappers (by entry point, as ``EnvSpec.additional_wrappers`` names them) that leave every observation, action,
# reward and termination as the env made them: a known function holds under them. Any other wrapper may change
# what the function reads (NormalizeObservation, ClipAction...) or what it mirrors (TransformReward...).
_NEUTRAL_WRAPPERS = frozenset(
    {"gymnasium.wrappers.common:RecordEpisodeStatistics", "gymnasium.wrappers.common:TimeLimit",
     "gymnasium.wrappers.common:OrderEnforcing", "gymnasium.wrappers.common:PassiveEnvChecker",
     "gymnasium.wrappers.rendering:RecordVideo", "gymnasium.wrappers.rendering:HumanRendering",
     "gymnasium.wrappers.rendering:RenderCollection", "stable_baselines3.common.monitor:Monitor"}
)  # fmt: skip
# Wrappers that change the rewards or the actions only: a known termination (none reads the action) holds under
# them, a known reward does not.
_REWARD_ONLY_WRAPPERS = frozenset(
    {"gymnasium.wrappers.transform_reward:ClipReward", "gymnasium.wrappers.transform_reward:TransformReward",
     "gymnasium.wrappers.stateful_reward:NormalizeReward"}
)  # fmt: skip
_ACTION_ONLY_WRAPPERS = frozenset(
    {"gymnasium.wrappers.transform_action:ClipAction", "gymnasium.wrappers.transform_action:RescaleAction",
     "gymnasium.wrappers.transform_action:TransformAction"}
)  # fmt: skip


def check_known_settings(value: str | TaskFn | None, what: str, spec: Any) -> None:
    """Refuse a known function (``"known"`` or the env's own id) for an env made with constructor arguments other
    than the defaults it mirrors: ``gym.make("Hopper-v5", terminate_when_unhealthy=False)`` never terminates, and
    gymnasium's rule in :data:`KNOWN_TERMINATIONS` would end the dream's episodes where the real env goes on.
    Arguments that change only rendering or the start-state noise (``render_mode``, ``reset_noise_scale``...) pass.
    Likewise for an env wrapped after ``gym.make`` (``spec.additional_wrappers``) in anything but the wrappers that
    change none of what the function reads or mirrors (RecordEpisodeStatistics, SB3's Monitor, RecordVideo,
    TimeLimit...; for a termination also the reward-only ones, ClipReward, NormalizeReward, TransformReward):
    under ``NormalizeObservation`` Hopper's rule reads normalised heights and ends nearly every imagined step.

    :param value: the ``reward_fn`` / ``termination_fn`` argument as the user gave it (callables and ``None`` pass:
        a user's own function is theirs to match to their settings)
    :param what: ``"reward_fn"`` or ``"termination_fn"``, for the message
    :param spec: the env's ``gymnasium.envs.registration.EnvSpec`` (``env.spec``; its ``kwargs`` are the
        arguments the env was made with); ``None`` (an env made without ``gym.make``) passes
    :raises ValueError: naming the first changed argument, its value and its default, or the first wrapper that
        may change what the function reads

    Example::

        import gymnasium as gym
        from dream_envs.models.task_functions import check_known_settings

        check_known_settings("known", "termination_fn", gym.make("Hopper-v5", render_mode="rgb_array").spec)  # ok
    """
    if spec is None or not isinstance(value, str) or value not in ("known", spec.id):
        return
    termination = what.startswith("termination")
    if termination and KNOWN_TERMINATIONS.get(spec.id) is never_terminates:
        return  # holds under any setting or wrapper
    defaults = _default_settings(spec.id)
    for name, given in (spec.kwargs or {}).items():
        if name in _RULE_NEUTRAL_SETTINGS or (name in defaults and _same(given, defaults[name])):
            continue
        if termination and name in _REWARD_ONLY_SETTINGS:
            continue
        default = f"default {defaults[name]!r}" if name in defaults else "not an argument of the default env"
        table = "KNOWN_REWARDS" if what.startswith("reward") else "KNOWN_TERMINATIONS"
        raise ValueError(
            f"{what}={value!r} mirrors {spec.id}'s default constructor, and this env was made with {name}={given!r} "
            f"({default}): the known function may be wrong for it. Pass your own callable (obs, action, next_obs) "
            f"-> tensor, or dream_envs.models.task_functions.{table}[{spec.id!r}] itself if it still holds for "
            "these settings"
        )
    neutral = _NEUTRAL_WRAPPERS | (_REWARD_ONLY_WRAPPERS | _ACTION_ONLY_WRAPPERS if termination else frozenset())
    for wrapper in getattr(spec, "additional_wrappers", None) or ():
        if wrapper.entry_point not in neutral:
            table = "KNOWN_REWARDS" if what.startswith("reward") else "KNOWN_TERMINATIONS"
            raise ValueError(
                f"{what}={value!r} mirrors {spec.id} as gym.make makes it, and this env is wrapped in {wrapper.name} "
                f"({wrapper.entry_point}), which may change the observations, actions or rewards the function "
                f"reads or mirrors: the known function may be wrong for it. Pass your own callable (obs, action, "
                f"next_obs) -> tensor, or dream_envs.models.task_functions.{table}[{spec.id!r}] itself if it "
                "still holds under this wrapper"
            )


@functools.lru_cache(maxsize=64)
def _default_settings(env_id: str) -> dict[str, Any]:
    """The constructor arguments ``gym.make(env_id)`` uses: the entry point's defaults under the registered ones."""
    spec = gym.spec(env_id)
    defaults: dict[str, Any] = {}
    try:
        creator = spec.entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        for name, parameter in inspect.signature(creator).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    except (ValueError, TypeError, ImportError, AttributeError):  # no signature to read: the registered ones only
        pass
    return {**defaults, **(spec.kwargs or {})}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
    except (TypeError, ValueError):
        return a == b


class _OutputError(ValueError):
    """A user function's output refused by :func:`_checked_task_fn` (its message names the function already)."""


def _checked_task_fn(fn: TaskFn, what: str) -> TaskFn:
    """``fn`` with its output checked on every call: ``B`` values, a tensor (a numpy array is converted) of floats
    for a reward, of booleans for a termination. A wrong shape such as ``(B, 1)`` would otherwise broadcast against
    the dream's ``(B,)`` flags and make every step look terminal."""
    is_reward = what.startswith("reward")
    named = f"{what} {getattr(fn, '__name__', fn)!r}"  # what every error below calls it
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function: nothing to read, its first call tells
        signature = None
    if signature is not None:
        try:
            signature.bind(None, None, None)
        except TypeError as error:
            raise TypeError(f"{named} must take (obs, action, next_obs), three positional arguments; its signature "
                            f"is {signature} ({error})") from None  # fmt: skip

    def checked(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        try:
            # copies: the tensors are the dream's own, and an in-place edit (d = next_obs[:, :2]; d -= goal) would
            # move the imagined state itself
            out = fn(obs.clone(), action.clone(), next_obs.clone())
        except Exception as error:  # the user's own error, as it is, with where it came from
            if hasattr(error, "add_note"):  # Python >= 3.11
                error.add_note(f"(raised by {named}, called on a batch of {obs.shape[0]} rows)")
            raise
        if not isinstance(out, torch.Tensor):
            if type(out).__module__ != "numpy":
                raise _OutputError(f"{named} returned {type(out).__name__} {out!r}: it must return a tensor of "
                                   f"{obs.shape[0]} values, one per row")  # fmt: skip
            out = torch.as_tensor(out)
        out = out.to(obs.device)  # a CPU result of a function that ignored the model's device
        if tuple(out.shape) != (obs.shape[0],):
            raise _OutputError(
                f"{named} returned shape {tuple(out.shape)} for a batch of {obs.shape[0]}: expected "
                f"({obs.shape[0]},), one value per row (e.g. .squeeze(-1))"
            )
        if is_reward:
            if out.dtype == torch.bool or out.is_complex():
                raise _OutputError(f"{named} returned {out.dtype} values: rewards must be real numbers")
            return out.to(obs.dtype)
        if out.dtype != torch.bool:
            raise _OutputError(f"{named} returned {out.dtype} values: terminations must be booleans (e.g. x > "
                               "limit, or .bool() of 0/1 values)")  # fmt: skip
        return out

    checked.__name__ = getattr(fn, "__name__", "checked")
    checked.__wrapped__ = fn  # type: ignore[attr-defined]
    return checked


def task_fn_action(action_space: Any, action: torch.Tensor) -> torch.Tensor:
    """The layout every reward and termination function gets its actions in, whichever caller (dream, planner,
    value fit) made them: ``B`` of a Discrete space, ``B x *shape`` of a Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return action.reshape(-1)
    return action.reshape(action.shape[0], *action_space.shape)


def _probe(checked: TaskFn, what: str, observation_space: Any, action_space: Any, device: Any) -> None:
    """Call a user's function once on 2 rows made from the spaces, so a wrong output (shape, type) or a function
    that cannot read the inputs fails where it is given, before a real step is spent, instead of at the first
    imagined step."""
    rng = np.random.default_rng(0)
    obs_dim = int(np.prod(observation_space.shape))

    def rows(space: Any) -> np.ndarray:
        if isinstance(space, gym.spaces.Discrete):
            return space.start + rng.integers(space.n, size=2)
        low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), space.shape).reshape(-1)
                     for b in (space.low, space.high))  # fmt: skip
        low = np.where(np.isfinite(low), low, np.where(np.isfinite(high), high - 1.0, -1.0))
        high = np.where(np.isfinite(high), high, low + 2.0)
        return rng.uniform(low, high, size=(2, low.size))

    obs = torch.as_tensor(rows(observation_space), dtype=torch.float32, device=device).reshape(2, obs_dim)
    next_obs = torch.as_tensor(rows(observation_space), dtype=torch.float32, device=device).reshape(2, obs_dim)
    dtype = torch.int64 if isinstance(action_space, gym.spaces.Discrete) else torch.float32
    action = torch.as_tensor(rows(action_space), dtype=dtype, device=device)
    action = task_fn_action(action_space, action)
    try:
        checked(obs, action, next_obs)
    except _OutputError:  # names the function and what it returned
        raise
    except Exception as error:
        name = getattr(checked, "__name__", checked)
        raise ValueError(
            f"{what} {name!r} failed on a batch of 2 rows made from the spaces (obs {tuple(obs.shape)} float32, "
            f"action {tuple(action.shape)} {str(action.dtype).removeprefix('torch.')}, next_obs "
            f"{tuple(next_obs.shape)}, drawn uniformly within the spaces' bounds, [-1, 1] where unbounded), as the "
            f"dream will call it: {type(error).__name__}: {error}"
        ) from error


def check_finite_rewards(
    out: torch.Tensor, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, what: str, fn: TaskFn
) -> None:
    """Refuse a reward function's NaN or infinite reward on a row whose inputs are all finite (``B`` rewards,
    ``B x ...`` inputs). The dream calls it on its live rows: it would otherwise take the reward for the model's
    failure (it truncates rows whose step is not finite) and blame the model for the function's bug. Planners do
    not: their rows go on stepping after an episode's end, where a function may return anything.

    :raises ValueError: naming the function, how many rows and the first one
    """
    inputs_finite = (
        torch.isfinite(obs.reshape(len(obs), -1)).all(1)
        & torch.isfinite(next_obs.reshape(len(obs), -1)).all(1)
        & torch.isfinite(action.reshape(len(obs), -1).float()).all(1)
    )
    bad = ~torch.isfinite(out) & inputs_finite
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{what} {getattr(fn, '__name__', fn)!r} returned {out[row].item()} (not finite) for {int(bad.sum())} "
            f"of {len(obs)} rows whose inputs are finite, first at row {row}: obs {obs[row].tolist()}, action "
            f"{action[row].tolist()}, next_obs {next_obs[row].tolist()}; rewards must be finite numbers"
        )


@functools.lru_cache(maxsize=64)
def _env_spaces(env_id: str) -> tuple[Any, Any]:
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def check_env_spaces(
    env_id: str, observation_space: Any, action_space: Any, what: str = "env_id", actions: bool = True
) -> None:
    """Refuse an env id whose env has other spaces than a model's (its known functions read another layout).

    :param actions: compare the action spaces too (a reward reads the action; a termination does not)
    :raises ValueError: naming ``what``, the env's spaces and the model's
    """
    from dream_envs.spaces import spaces_equal

    try:
        env_obs, env_act = _env_spaces(env_id)
    except Exception as error:  # not registered, a missing extra (MuJoCo): the id cannot be judged
        raise ValueError(
            f"{what}: cannot make {env_id!r} to check its spaces ({type(error).__name__}: {error})"
        ) from None
    if env_obs.shape != observation_space.shape or (actions and not spaces_equal(env_act, action_space)):
        raise ValueError(f"{what} is for {env_id}, whose spaces ({env_obs}, {env_act}) differ from the model's "
                         f"({observation_space}, {action_space}): another env's, or a wrapper changed "
                         "them")  # fmt: skip
