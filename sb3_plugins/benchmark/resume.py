"""Part-done benchmark runs: a run that stops part-way (the session ends, the machine goes, Ctrl-C) goes on from
its last checkpoint when the same ``dream-envs bench`` command runs again, instead of starting over.

A MuJoCo ``+dyna`` run takes an hour or more on one core; ``results.jsonl`` only keeps finished runs. So every
``checkpoint_seconds`` of a run's training (between two rollouts after the next check), the run's whole state goes into
``<out>/checkpoints/<env>_<algo>_seed<seed>/``, in safe files only (``weights_only`` torch files and JSON, no
pickle): the agent's networks, optimisers and counters, its replay buffer, the DynaCallback's state (model, real
and imagined transitions, generators), the check's curve and evaluation env, the global random generators, and the
training wall time so far. A finished run's record says where it was resumed (``resumed_at``), and its folder is
removed once the record is written.

A save is made between two of the agent's rollouts, so every step collected is in the replay buffer and trained
on. A resumed run is still not bit-identical to one that never stopped: the real env starts a new episode (an env's
simulator state is not saved). The time spent writing checkpoints is not counted in the run's ``wall_seconds``.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import get_device

from dream_envs import ModelFileError
from dream_envs.checks import is_number
from dream_envs.io import atomic_write_text, load_torch_file, save_torch_file
from sb3_plugins.benchmark.hyperparams import parse_algo
from sb3_plugins.benchmark.results import settings_differences
from sb3_plugins.callbacks import DynaCallback
from sb3_plugins.checkpoint import FORMAT as DYNA_FORMAT
from sb3_plugins.checkpoint import FORMAT_VERSION as DYNA_FORMAT_VERSION
from sb3_plugins.dream_training import ALGOS
from sb3_plugins.evaluation import RealStepsToThreshold

if TYPE_CHECKING:
    from sb3_plugins.benchmark.runner import RunSpec

__all__ = ["CHECKPOINTS", "RunCheckpoint", "check_checkpoints", "checkpoint_folder", "load_run", "remove_checkpoint"]

CHECKPOINTS = "checkpoints"  # the folder under a results dir
FORMAT = "dream-envs-bench/run-checkpoint"
FORMAT_VERSION = 1
STATE = "run.json"  # written last: a folder without it is no checkpoint
AGENT, REPLAY, DYNA = "agent.pt", "replay.pt", "dyna.pt"
# Where the agent is (its settings come from the run's spec); the ones an algorithm lacks are skipped.
_COUNTERS = ("num_timesteps", "_episode_num", "_n_updates", "_current_progress_remaining", "_n_calls",
             "exploration_rate")  # fmt: skip
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def checkpoint_folder(root: str | Path, spec: RunSpec) -> Path:
    """The folder of ``spec``'s checkpoint under the results dir ``root``."""
    return Path(root) / CHECKPOINTS / spec.tb_log_name


def remove_checkpoint(root: str | Path, spec: RunSpec) -> None:
    """Remove ``spec``'s checkpoint (its run is recorded), and ``checkpoints/`` once it holds no other."""
    folder = checkpoint_folder(root, spec)
    for path in (folder, _old(folder), _partial(folder)):
        shutil.rmtree(path, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:  # absent, or other runs' checkpoints are in it
        pass


def _old(folder: Path) -> Path:
    return folder.with_name(folder.name + ".old")


def _partial(folder: Path) -> Path:
    return folder.with_name(folder.name + ".partial")


def _complete(folder: Path) -> Path | None:
    """The newest complete checkpoint. A save writes ``.partial`` whole (``run.json`` last), then renames the
    folder to ``.old`` and ``.partial`` to the folder: a save cut between those steps leaves its complete
    ``.partial`` (newest), or the previous checkpoint under ``.old``."""
    for path in (_partial(folder), folder, _old(folder)):
        if (path / STATE).is_file():
            return path
    if folder.exists():
        warnings.warn(f"{str(folder)!r} holds no {STATE} (a save cut before its end): it is no checkpoint, and the run "
                      "starts over", stacklevel=3)  # fmt: skip
    return None


def _read_state(path: Path) -> dict[str, Any]:
    """``run.json``, every field checked, so that a damaged file names itself here and not as a bare error later."""
    file = path / STATE
    fix = _start_over(path)
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{str(file)!r} is not a readable run checkpoint ({error}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{str(file)!r} is not a dream-envs run checkpoint of format {FORMAT!r} version "
                             f"{FORMAT_VERSION}; {fix}")  # fmt: skip
    check = state.get("check")
    problems = [
        name for name, good in (
            ("settings", isinstance(state.get("settings"), dict)),
            ("real_steps", _count(state.get("real_steps"))),
            ("wall_seconds", is_number(state.get("wall_seconds")) and state["wall_seconds"] >= 0),
            ("resumed_at", isinstance(state.get("resumed_at"), list) and all(map(_count, state["resumed_at"]))),
            ("check", isinstance(check, dict)),
            ("check.curve", isinstance(check, dict) and isinstance(check.get("curve"), list) and all(
                isinstance(p, list) and len(p) == 2 and _count(p[0]) and is_number(p[1]) for p in check["curve"])),
            ("check.hit", isinstance(check, dict) and (check.get("hit") is None or _count(check.get("hit")))),
            ("check.stayed", isinstance(check, dict) and (check.get("stayed") is None or _count(check.get("stayed")))),
            ("check.next", isinstance(check, dict) and _count(check.get("next"))),
            ("check.eval_rng", isinstance(check, dict) and isinstance(check.get("eval_rng"), dict)),
        ) if not good
    ]  # fmt: skip
    if problems:
        raise ModelFileError(f"{str(file)!r} has bad or missing fields ({', '.join(problems)}): it is damaged; {fix}")
    return state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _files(spec: RunSpec, path: Path) -> dict[str, Path]:
    """The files a checkpoint of ``spec`` must hold beside ``run.json``."""
    names = [AGENT]
    if issubclass(ALGOS[parse_algo(spec.algo)[0]], OffPolicyAlgorithm):
        names.append(REPLAY)
    if parse_algo(spec.algo)[1]:
        names.append(DYNA)
    return {name: path / name for name in names}


def _start_over(path: Path) -> str:
    return f"remove the folder {str(path)!r} to start the run over"


def _require_files(spec: RunSpec, path: Path) -> None:
    for name, file in _files(spec, path).items():
        if not file.is_file():
            raise ModelFileError(f"the run checkpoint {str(path)!r} lacks its {name}; {_start_over(path)}")


def _verify_files(spec: RunSpec, path: Path) -> None:
    """Every file of the checkpoint reads as what it is (CRC-checked, ``weights_only``)."""
    for name, file in _files(spec, path).items():
        if name == DYNA:
            load_torch_file(file, DYNA_FORMAT, DYNA_FORMAT_VERSION, "DynaCallback state")
        else:
            load_torch_file(file, f"{FORMAT}/{name.split('.')[0]}", FORMAT_VERSION, "dream-envs run checkpoint")


def check_checkpoints(root: str | Path, specs: list[RunSpec]) -> dict[tuple[str, str, int], int]:
    """Check the part-done runs of ``specs`` under ``root`` before anything trains, as
    :meth:`~sb3_plugins.benchmark.ResultsDir.pending` checks the finished ones.

    :return: ``{run key: real steps done}`` of the runs that will resume
    :raises ValueError: a checkpoint made with other settings, naming them
    :raises ModelFileError: an unreadable checkpoint, naming its folder
    """
    resuming = {}
    for spec in specs:
        path = _complete(checkpoint_folder(root, spec))
        if path is None:
            continue
        state = _read_state(path)
        _check_settings(path, state, spec)
        _require_files(spec, path)
        try:
            _verify_files(spec, path)
        except ModelFileError as error:
            raise ModelFileError(f"{error}; {_start_over(path)}") from None
        resuming[spec.key] = int(state["real_steps"])
    return resuming


def _check_settings(path: Path, state: dict[str, Any], spec: RunSpec) -> None:
    wanted, saved = spec.settings(), state["settings"]
    if any(saved.get(k) != wanted[k] for k in wanted):
        details = settings_differences({k: saved.get(k) for k in wanted}, wanted, "saved")
        raise ValueError(f"{str(path)!r} holds a part-done {spec.env_id} {spec.algo} seed {spec.seed} run with other "
                         f"settings ({details}). Use another --out, the same settings to resume, or remove the "
                         "folder to start it over")  # fmt: skip


class RunCheckpoint(BaseCallback):
    """Saves the run (see the module) once ``every_seconds`` of training have passed, at the start of the agent's
    first rollout after the next check (its updates on the steps it collected are done); place it after the run's
    :class:`~sb3_plugins.RealStepsToThreshold` (and its DynaCallback) in the callback list.

    :param folder: the run's checkpoint folder (:func:`checkpoint_folder`)
    :param spec: the run
    :param check: the run's check, whose curve says when a check has just been made
    :param dyna: the run's DynaCallback, or None
    :param every_seconds: training seconds between saves (0: at every check)
    :param wall_before: training seconds of the run before this piece of it (a resumed run's)
    :param resumed_at: real steps at which the run was resumed so far

    Example::

        import tempfile
        from sb3_plugins.benchmark import RunSpec, hyperparams_for, run_one
        from sb3_plugins.benchmark.resume import checkpoint_folder

        out = tempfile.mkdtemp()
        spec = RunSpec("CartPole-v1", "dqn", seed=0, budget=300, threshold=None, eval_every=200, eval_episodes=1,
                       hyperparams=hyperparams_for("CartPole-v1", "dqn"), device="cpu", checkpoint_dir=out,
                       checkpoint_seconds=0)
        record = run_one(spec)  # after the check at 200, saved when DQN's next 256-step rollout starts
        print(sorted(p.name for p in checkpoint_folder(out, spec).iterdir()), record["resumed_at"])
    """

    def __init__(self, folder: Path, spec: RunSpec, check: RealStepsToThreshold, dyna: DynaCallback | None,
                 every_seconds: float, wall_before: float = 0.0, resumed_at: list[int] | None = None):  # fmt: skip
        super().__init__()
        self.folder, self.spec, self.check, self.dyna = Path(folder), spec, check, dyna
        self.every_seconds, self.wall_before = float(every_seconds), float(wall_before)
        self.resumed_at = list(resumed_at or [])
        self.save_seconds = 0.0  # spent writing checkpoints: not the run's training time
        self.saves = 0
        self._checks = len(check.curve)
        self._started = time.perf_counter()
        self._last_save = self._started
        self._due = False  # a check found a save due: it is made when the next rollout starts

    def training_seconds(self) -> float:
        """The run's training wall time so far, all its pieces, without the time spent saving."""
        return self.wall_before + time.perf_counter() - self._started - self.save_seconds

    def _on_step(self) -> bool:
        if len(self.check.curve) != self._checks:  # a check was just made
            self._checks = len(self.check.curve)
            self._due = self._due or time.perf_counter() - self._last_save >= self.every_seconds
        return True

    def _on_rollout_start(self) -> None:
        # Saved between rollouts: the agent has trained on every step it collected and stored each in its replay
        # buffer (mid-rollout, an on-policy agent's part-collected rollout and SB3's not-yet-stored transition of
        # the current step would be lost). A run that ends at its check collects no further rollout.
        if not self._due:
            return
        self._due = False
        started = time.perf_counter()
        self.save()
        self._last_save = time.perf_counter()
        self.save_seconds += self._last_save - started

    def save(self) -> Path:
        """Write the checkpoint: into a ``.partial`` folder, then swapped in by renames (the previous one stays
        usable until the new one is complete)."""
        agent: BaseAlgorithm = self.model
        partial = _partial(self.folder)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_torch_file(partial / AGENT, _agent_payload(agent))
        if isinstance(agent, OffPolicyAlgorithm):
            save_torch_file(partial / REPLAY, _replay_payload(agent))
        if self.dyna is not None:
            self.dyna.save(partial / DYNA)
        state = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "settings": self.spec.settings(),
            "real_steps": int(agent.num_timesteps), "wall_seconds": self.training_seconds(),
            "resumed_at": self.resumed_at,
            "check": {"curve": self.check.curve, "hit": self.check.hit, "stayed": self.check.stayed,
                      "next": self.check._next, "eval_rng": _eval_rng(self.check).bit_generator.state},
        }  # fmt: skip
        atomic_write_text(partial / STATE, json.dumps(state))
        old = _old(self.folder)
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(old)
        partial.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)
        self.saves += 1
        return self.folder


def load_run(
    folder: Path, spec: RunSpec, agent: BaseAlgorithm, check: RealStepsToThreshold
) -> tuple[DynaCallback | None, float, list[int]] | None:
    """Restore a part-done run into its freshly built ``agent`` and ``check``.

    :return: ``None`` if there is no checkpoint, else the restored DynaCallback (``None`` for a stock agent), the
        training seconds already spent and the real steps of every resume (this one included)
    :raises ValueError: a checkpoint of other settings; :class:`ModelFileError` for a damaged one
    """
    path = _complete(folder)
    if path is None:
        return None
    state = _read_state(path)
    _check_settings(path, state, spec)
    what = "dream-envs run checkpoint"
    _require_files(spec, path)
    try:
        _restore_agent(agent, load_torch_file(path / AGENT, FORMAT + "/agent", FORMAT_VERSION, what))
        if isinstance(agent, OffPolicyAlgorithm):
            _restore_replay(agent, load_torch_file(path / REPLAY, FORMAT + "/replay", FORMAT_VERSION, what))
        dyna = DynaCallback.load(path / DYNA, device=agent.device) if parse_algo(spec.algo)[1] else None
        saved = state["check"]
        check.curve = [(int(s), float(r)) for s, r in saved["curve"]]
        check.hit, check.stayed, check._next = saved["hit"], saved["stayed"], int(saved["next"])
        _eval_rng(check).bit_generator.state = saved["eval_rng"]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, ModelFileError):
            raise ModelFileError(f"{error}; {_start_over(path)}") from None
        raise ModelFileError(f"the run checkpoint {str(path)!r} does not fit {spec.env_id} {spec.algo} seed "
                             f"{spec.seed} ({type(error).__name__}: {error}); "
                             f"{_start_over(path)}") from None  # fmt: skip
    return dyna, float(state["wall_seconds"]), [*state["resumed_at"], int(state["real_steps"])]


def _eval_rng(check: RealStepsToThreshold) -> np.random.Generator:
    """The generator the check's evaluation env draws its episodes' starts from."""
    return check.eval_env.unwrapped.np_random


def _agent_payload(agent: BaseAlgorithm) -> dict[str, Any]:
    _, variables = agent._get_torch_save_params()
    return {
        "format": FORMAT + "/agent", "format_version": FORMAT_VERSION,
        "parameters": agent.get_parameters(),
        "variables": {name: _attribute(agent, name).detach().cpu() for name in variables},
        "counters": {name: getattr(agent, name) for name in _COUNTERS if hasattr(agent, name)},
        # SB3 samples replay batches with numpy's global generator and actions with torch's
        "numpy_rng": _numpy_state(), "torch_rng": torch.get_rng_state(),
    }  # fmt: skip


def _restore_agent(agent: BaseAlgorithm, payload: dict[str, Any]) -> None:
    agent.set_parameters(payload["parameters"], exact_match=True, device=get_device(agent.device))
    for name, value in payload["variables"].items():
        _attribute(agent, name).data.copy_(value.to(agent.device))
    for name, value in payload["counters"].items():
        setattr(agent, name, value)
    np.random.set_state(_numpy_tuple(payload["numpy_rng"]))
    torch.set_rng_state(payload["torch_rng"])


def _attribute(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["kind"], keys, state["pos"], state["has_gauss"], state["cached"])


def _real_buffer(agent: OffPolicyAlgorithm) -> Any:
    """The agent's own ReplayBuffer (a DynaCallback's MixedReplayBuffer wraps it)."""
    buffer = agent.replay_buffer
    return getattr(buffer, "real", buffer)


def _replay_payload(agent: OffPolicyAlgorithm) -> dict[str, Any]:
    buffer = _real_buffer(agent)
    rows = buffer.buffer_size if buffer.full else buffer.pos  # only the filled rows: SAC's holds 10^6
    arrays = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(buffer, name)[:rows]))
        for name in _REPLAY_ARRAYS
        if getattr(buffer, name, None) is not None  # optimize_memory_usage keeps no next_observations
    }
    return {"format": FORMAT + "/replay", "format_version": FORMAT_VERSION, "type": type(buffer).__name__,
            "pos": int(buffer.pos), "full": bool(buffer.full), "arrays": arrays}  # fmt: skip


def _restore_replay(agent: OffPolicyAlgorithm, payload: dict[str, Any]) -> None:
    buffer = _real_buffer(agent)
    if payload["type"] != type(buffer).__name__:
        raise ValueError(f"the checkpoint holds a {payload['type']}, the agent has a {type(buffer).__name__}")
    for name, values in payload["arrays"].items():
        target = getattr(buffer, name)
        values = values.numpy()
        if values.shape[1:] != target.shape[1:] or len(values) > len(target):
            raise ValueError(f"replay {name} of shape {tuple(values.shape)} does not fit the agent's "
                             f"{tuple(target.shape)}")  # fmt: skip
        target[: len(values)] = values
    buffer.pos, buffer.full = int(payload["pos"]), bool(payload["full"])
