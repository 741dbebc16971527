"""DynaCallback's checkpoints: its whole state in one safe torch file, written beside SB3's own checkpoints.

A run stopped after ``learn(N1)`` and resumed from the files with ``learn(N2, reset_num_timesteps=False)`` gives the
same records as one that went on in memory: the dynamics model, the real transitions, the imagined replay, the
counters and the callback's random generators are all restored (SB3 restores the agent and its replay buffer).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import CheckpointCallback

from dream_envs import EnsembleDynamics, ModelFileError, TransitionBuffer
from dream_envs.buffer import _FIELDS
from dream_envs.device import resolve_device
from dream_envs.io import load_torch_file, save_torch_file
from dream_envs.spaces import space_from_dict, space_to_dict
from sb3_plugins.replay import ImaginedReplay

if TYPE_CHECKING:
    from sb3_plugins.callbacks import DynaCallback

__all__ = ["DynaCheckpointCallback", "load_dyna_state", "save_dyna_state"]

FORMAT = "dream-envs/dyna-callback"
FORMAT_VERSION = 1
# Counters and schedules that say where the callback is (the rest of its attributes are settings or rebuilt).
_PROGRESS = ("imagined_steps", "model_fits", "trust", "trust_reason", "env_id", "_steps_since_fit", "_pre_start_steps",
             "_extra_steps", "_dqn_steps_since_sync", "_horizon_schedule", "seed", "_seeded", "_kind")  # fmt: skip
# Added later: a file saved before them loads with these values.
_LATER_PROGRESS = {"_rollout_steps": 0, "_last_rollout_steps": 0}


def save_dyna_state(callback: DynaCallback, path: str | os.PathLike) -> Path:
    """Write :meth:`DynaCallback.save`'s file (see there)."""
    settings = dict(callback._settings)
    for name in ("reward_fn", "termination_fn"):
        if callable(settings[name]):
            settings[name] = None
            settings[f"{name}_was_callable"] = True
    real = callback.real
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "progress": {name: getattr(callback, name) for name in (*_PROGRESS, *_LATER_PROGRESS)},
        "rng": callback._rng.bit_generator.state,
        "dynamics": None if callback.dynamics is None else callback.dynamics.to_payload(),
        "real": None
        if real is None
        else {
            "observation_space": space_to_dict(real.observation_space),
            "action_space": space_to_dict(real.action_space),
            **{name: torch.as_tensor(np.ascontiguousarray(value)) for name, value in zip(_FIELDS, real.transitions())},
        },
        "imagined": None if callback._imagined is None else callback._imagined.state_dict(),
    }
    return save_torch_file(path, payload)


def load_dyna_state(
    cls: type[DynaCallback], path: str | os.PathLike, device: str | torch.device, overrides: dict[str, Any]
) -> DynaCallback:
    """Rebuild a callback from :func:`save_dyna_state`'s file (see :meth:`DynaCallback.load`)."""
    from sb3_plugins.callbacks import _refuse_unknown_settings

    # the caller's own keywords are checked first: a typo there is not the file's fault
    takes = inspect.signature(cls.__init__).parameters
    _refuse_unknown_settings({key: value for key, value in overrides.items() if key not in takes or key == "unknown"})
    if "dynamics" in overrides:
        raise ValueError("DynaCallback.load restores the dynamics model of its file; to train another one, build "
                         "DynaCallback(dynamics=...)")  # fmt: skip
    cls(**overrides)  # their values checked as the constructor checks them: a bad one is the caller's, not the file's
    payload = load_torch_file(path, FORMAT, FORMAT_VERSION, "DynaCallback state")
    source = repr(str(path))
    try:
        settings, progress = dict(payload["settings"]), dict(payload["progress"])
        missing = [name for name in _PROGRESS if name not in progress]
        if missing:
            raise KeyError(missing[0])
        for name in ("reward_fn", "termination_fn"):
            if settings.pop(f"{name}_was_callable", False) and name not in overrides:
                raise ModelFileError(f"{source} was saved from a callback with a callable {name}, which is code and "
                                     f"was not saved: pass it again, DynaCallback.load(path, {name}=...)")  # fmt: skip
        settings.update(overrides)
        functions = {name: settings[name] for name in ("reward_fn", "termination_fn")}
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:  # a damaged or foreign payload: say which entry
        raise ModelFileError(f"{source} is not a usable DynaCallback state: {type(error).__name__}: {error}") from error
    # the functions are the user's code (a 'module:function' to import here, or an override): checked as the
    # constructor checks them, their errors are theirs, not the file's
    cls(**functions)
    try:
        device = resolve_device(device)
        dynamics = payload["dynamics"]
        if dynamics is not None:
            dynamics = EnsembleDynamics.from_payload(dynamics, device=device, source=source)
        callback = cls(dynamics=dynamics, **settings)
        for name in _PROGRESS:
            setattr(callback, name, progress[name])
        for name, default in _LATER_PROGRESS.items():
            setattr(callback, name, progress.get(name, default))
        if callback._horizon_schedule is not None:
            callback._horizon_schedule = tuple(callback._horizon_schedule)
        callback._rng.bit_generator.state = payload["rng"]
        callback.real = _real_buffer(payload["real"], source)
        callback._imagined = _imagined_replay(payload["imagined"], device)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:  # a damaged or foreign payload: say which entry
        raise ModelFileError(f"{source} is not a usable DynaCallback state: {type(error).__name__}: {error}") from error
    return callback


def _real_buffer(state: dict[str, Any] | None, source: str) -> TransitionBuffer | None:
    if state is None:
        return None
    buffer = TransitionBuffer(space_from_dict(state["observation_space"]), space_from_dict(state["action_space"]))
    if len(state["reward"]):
        buffer.add(*(state[name].numpy() for name in _FIELDS))  # checks shapes, types and finiteness
    return buffer


def _imagined_replay(state: dict[str, Any] | None, device: torch.device) -> ImaginedReplay | None:
    if state is None:
        return None
    replay = ImaginedReplay(state["capacity"], tuple(state["obs"].shape[1:]), tuple(state["actions"].shape[1:]),
                            state["actions"].dtype, "cpu")  # fmt: skip
    replay.load_state_dict(state)
    return replay.to(device)


class DynaCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` that also saves a :class:`~sb3_plugins.DynaCallback`'s state beside each
    checkpoint of the agent: ``{name_prefix}_dyna_{steps}_steps.pt`` next to ``{name_prefix}_{steps}_steps.zip``
    (and the replay buffer and VecNormalize files when asked, as SB3 names them).

    Resume with ``SAC.load(...)``, ``load_replay_buffer(...)`` (off-policy), ``DynaCallback.load(...)`` and
    ``learn(..., reset_num_timesteps=False)``.

    :param dyna: the callback whose state is saved
    :param save_freq: save every ``save_freq`` calls of the callback (env steps per env, as SB3)
    :param save_path: the folder
    :param name_prefix: file name prefix, as SB3's
    :param save_replay_buffer: also save the agent's replay buffer (SB3's option)
    :param save_vecnormalize: also save the VecNormalize statistics (SB3's option)
    :param verbose: 2 prints each path, as SB3's

    Example::

        import gymnasium as gym, tempfile
        from stable_baselines3 import SAC
        from sb3_plugins import DynaCallback
        from sb3_plugins.checkpoint import DynaCheckpointCallback

        folder = tempfile.mkdtemp()
        agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=50, seed=0)
        dyna = DynaCallback(model_train_freq=100, fit_kwargs={"max_epochs": 2}, ensemble_kwargs={"hidden_sizes": (16,)})
        agent.learn(200, callback=[dyna, DynaCheckpointCallback(dyna, 200, folder, save_replay_buffer=True)])
        agent = SAC.load(f"{folder}/rl_model_200_steps.zip", env=gym.make("Pendulum-v1"))
        agent.load_replay_buffer(f"{folder}/rl_model_replay_buffer_200_steps.pkl")
        dyna = DynaCallback.load(f"{folder}/rl_model_dyna_200_steps.pt")
        agent.learn(100, callback=dyna, reset_num_timesteps=False)
        print(agent.num_timesteps, dyna.model_fits)  # 300 real steps, 4 fits (at 64, 96, 144 and 216)
    """

    def __init__(
        self,
        dyna: DynaCallback,
        save_freq: int,
        save_path: str,
        name_prefix: str = "rl_model",
        save_replay_buffer: bool = False,
        save_vecnormalize: bool = False,
        verbose: int = 0,
    ):
        from sb3_plugins.callbacks import DynaCallback

        if not isinstance(dyna, DynaCallback):
            raise TypeError(f"dyna must be the DynaCallback whose state is saved, got {type(dyna).__name__}")
        super().__init__(save_freq, save_path, name_prefix, save_replay_buffer, save_vecnormalize, verbose)
        self.dyna = dyna

    def _on_step(self) -> bool:
        if self.dyna.n_calls < self.n_calls:  # the step's real transition and refit would miss the saved state
            raise ValueError("DynaCheckpointCallback must come after its DynaCallback in the callback list, e.g. "
                             "callback=[dyna, DynaCheckpointCallback(dyna, ...)]")  # fmt: skip
        if self.n_calls % self.save_freq == 0:
            path = self.dyna.save(self._checkpoint_path("dyna_", extension="pt"))
            if self.verbose >= 2:
                print(f"Saving DynaCallback state to {path}")
        return super()._on_step()
