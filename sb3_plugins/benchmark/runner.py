"""One benchmark run: a stock SB3 agent (optionally + DynaCallback) on a real env, with the yardstick's checks."""

from __future__ import annotations

import copy
import json
import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

import sb3_plugins
from dream_envs.agents.base import ModelBasedAgent
from dream_envs.checks import seed_int
from dream_envs.envs.pixels import PixelObservation
from sb3_plugins.benchmark.hyperparams import (
    OWN_AGENTS,
    Hyperparams,
    algorithm_class,
    check_action_space,
    check_env_id,
    is_own_agent,
    parse_algo,
)
from sb3_plugins.callbacks import DynaCallback
from sb3_plugins.dream_training import ALGOS
from sb3_plugins.evaluation import RealStepsToThreshold

__all__ = ["RECORD_FORMAT", "STAY", "RunSpec", "run_one"]

RECORD_FORMAT = "dream-envs-bench/1"
# "Solved and stays solved" (the yardstick's stay=2): the first pass counts only if the 2 checks after it pass too.
STAY = 2
# The fields of a record that a resumed benchmark must agree on before it may skip the run.
SETTINGS = ("budget", "threshold", "eval_every", "eval_episodes", "stop_at_threshold", "stay", "hyperparameters")


@dataclass(frozen=True)
class RunSpec:
    """One (env, algo, seed) run of the benchmark, fully resolved, so that it can be shipped to a worker process.

    :param env_id: the real gymnasium env
    :param algo: ``"ppo"``, ``"ppo+dyna"``, ... (see :func:`~sb3_plugins.benchmark.hyperparams.parse_algo`)
    :param seed: seeds the agent, the training envs, the model and the evaluation env
    :param budget: real steps to train for at most
    :param threshold: mean evaluation return that counts as solved (``None``: curves only)
    :param eval_every: real steps between checks (10 deterministic episodes of a fresh real env each)
    :param eval_episodes: episodes per check
    :param hyperparams: ``{"n_envs", "agent", "dyna"}`` from :func:`~sb3_plugins.benchmark.hyperparams_for`
    :param device: the agent's (and model's) device
    :param stop_at_threshold: end the run once it is solved and stays solved: at the check that completes its
        first streak of ``stay + 1`` passing checks (a first pass that collapses does not end it: the run goes on,
        looking for a later streak, until its budget). ``False`` trains the whole budget (full curves).
    :param stay: passing checks that must follow a first pass for the run to count as solved and staying solved;
        the record's ``real_steps_to_stay_solved`` is the real steps of the streak's first check, ``None`` if no
        streak ends within the budget (the budget is never extended to finish one)
    :param tensorboard_log: a folder where the agent writes TensorBoard logs, one run folder per run
        (``<tensorboard_log>/<tb_log_name>_1``, see :attr:`tb_log_name`), or None. Where the logs go is no setting
        of the run: the record, and whether a resumed benchmark counts the run as done, do not depend on it
    :param checkpoint_dir: a results dir whose ``checkpoints/`` folder keeps the run's state every
        ``checkpoint_seconds`` of training, and from which a part-done run goes on (:mod:`sb3_plugins.benchmark.resume`;
        stock SB3 agents and their ``+dyna`` variants), or None; no setting of the run either
    :param checkpoint_seconds: training seconds between checkpoints (at the first check after them; 0: every check;
        ``math.inf``: none written, an existing one still resumed)

    Example::

        from sb3_plugins.benchmark import RunSpec, hyperparams_for, run_one

        spec = RunSpec("CartPole-v1", "ppo", seed=0, budget=512, threshold=475, eval_every=256, eval_episodes=2,
                       hyperparams=hyperparams_for("CartPole-v1", "ppo"), device="cpu")
        record = run_one(spec)
        print(record["curve"], record["real_steps_to_threshold"], record["real_steps_to_stay_solved"])
    """

    env_id: str
    algo: str
    seed: int
    budget: int
    threshold: float | None
    eval_every: int
    eval_episodes: int = 10
    hyperparams: Hyperparams = field(default_factory=dict)
    device: str = "auto"
    stop_at_threshold: bool = True
    stay: int = STAY
    tensorboard_log: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_seconds: float = 600.0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.env_id, self.algo, self.seed)

    @property
    def tb_log_name(self) -> str:
        """The run's TensorBoard name, one per (env, algo, seed): ``CartPole-v1_ppo+dyna_seed0``; characters a
        folder name should not hold (``/`` of a namespaced id, ``:`` of ``module:EnvId``) become ``_``."""
        return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{self.env_id}_{self.algo}_seed{self.seed}")

    def settings(self) -> dict[str, Any]:
        """What this run's record must match to count as done (JSON-normalised, as it is stored)."""
        values = asdict(self)
        values["hyperparameters"] = values.pop("hyperparams")
        return json.loads(json.dumps({k: values[k] for k in SETTINGS}))


def build_agent(spec: RunSpec) -> tuple[BaseAlgorithm | ModelBasedAgent, DynaCallback | None]:
    """The agent and DynaCallback of a run, built but not trained; raises a clear error for bad settings."""
    base, dyna = parse_algo(spec.algo)
    check_env_id(spec.env_id)
    _refuse_run_keys(spec)
    if base in OWN_AGENTS:
        return _build_own_agent(spec), None
    env = make_vec_env(spec.env_id, n_envs=spec.hyperparams.get("n_envs", 1), seed=spec.seed)
    check_action_space(spec.algo, spec.env_id, env.action_space)
    kwargs = {**_sb3_kwargs(spec, env.action_space), **_tensorboard_kwargs(spec)}
    try:
        agent = ALGOS[base]("MlpPolicy", env, seed=spec.seed, device=spec.device, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:  # torch: e.g. a negative layer width
        raise ValueError(f"{spec.env_id}/{spec.algo}: {ALGOS[base].__name__} rejected the agent settings "
                         f"{kwargs} (or the env's spaces): {error}") from None  # fmt: skip
    callback = None
    if dyna:
        try:
            callback = DynaCallback(seed=spec.seed, **(spec.hyperparams.get("dyna") or {}))
            callback.check_agent(agent)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{spec.env_id}/{spec.algo}: DynaCallback rejected the dyna settings "
                             f"{spec.hyperparams.get('dyna')}: {error}") from None  # fmt: skip
    return agent, callback


def _build_own_agent(spec: RunSpec) -> ModelBasedAgent:
    """One of dream-envs' own agents (MuZero, World Models, MPCAgent) on the real env, with the run's settings."""
    cls = algorithm_class(spec.algo)
    kwargs = {**copy.deepcopy(spec.hyperparams.get("agent") or {}), **_tensorboard_kwargs(spec)}
    if spec.algo == "muzero":
        probe = gym.make(spec.env_id)
        check_action_space(spec.algo, spec.env_id, probe.action_space)
        probe.close()
        kwargs["n_envs"] = spec.hyperparams.get("n_envs")  # None: MuZero's own default
    elif spec.hyperparams.get("n_envs", 1) != 1:  # a setting that would be recorded, and compared, but not used
        raise ValueError(f"{spec.env_id}/{spec.algo}: n_envs={spec.hyperparams['n_envs']!r}, but {cls.__name__} acts "
                         "in one real env; remove n_envs (only muzero plays several envs at once)")  # fmt: skip
    try:
        return cls(spec.env_id, seed=spec.seed, device=spec.device, **kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{spec.env_id}/{spec.algo}: {cls.__name__} rejected the agent settings {kwargs} (or the "
                         f"env's spaces): {error}") from None  # fmt: skip


# Constructor arguments that the benchmark sets for every run itself, and where the user sets them instead.
_RUN_KEYS = {"seed": "--seeds (each run is seeded with its seed number)", "device": "--device",
             "env": "--env", "policy": "the benchmark's MlpPolicy"}  # fmt: skip


def _refuse_run_keys(spec: RunSpec) -> None:
    """A clear error for agent settings that the benchmark sets itself (they would clash with its own arguments)."""
    for part, keys in (("agent", _RUN_KEYS), ("dyna", ("seed",))):
        for key in keys:
            if key in (spec.hyperparams.get(part) or {}):
                raise ValueError(f"{spec.env_id}/{spec.algo}: the {part} settings set {key!r}, which the benchmark "
                                 f"sets for every run; use {_RUN_KEYS[key]}")  # fmt: skip


def _tensorboard_kwargs(spec: RunSpec) -> dict[str, Any]:
    """``tensorboard_log`` for the agent's constructor, refused where the hyperparameters name another folder."""
    if spec.tensorboard_log is None:
        return {}
    given = (spec.hyperparams.get("agent") or {}).get("tensorboard_log")
    if given is not None and given != spec.tensorboard_log:
        raise ValueError(f"{spec.env_id}/{spec.algo}: the hyperparameters set tensorboard_log={given!r} and "
                         f"--tensorboard-log asks for {spec.tensorboard_log!r}; keep one of them")  # fmt: skip
    return {"tensorboard_log": spec.tensorboard_log}


def _check(spec: RunSpec, threshold: float) -> RealStepsToThreshold:
    """The run's yardstick; own agents play the check's episodes as one batch, World Models on pixels."""
    settings: dict[str, Any] = {"n_envs": spec.eval_episodes} if is_own_agent(spec.algo) else {}
    if spec.algo == "world-models":
        settings.update(env_kwargs={"render_mode": "rgb_array"}, wrapper=PixelObservation)
    return RealStepsToThreshold(spec.env_id, threshold, spec.eval_every, n_episodes=spec.eval_episodes,
                                stop=spec.stop_at_threshold, seed=10_000 + spec.seed, stay=spec.stay,
                                budget=spec.budget, **settings)  # fmt: skip


def _sb3_kwargs(spec: RunSpec, action_space: gym.spaces.Space) -> dict[str, Any]:
    kwargs = copy.deepcopy(spec.hyperparams.get("agent") or {})
    if "exploration_steps" in kwargs:  # rl-zoo thinks in steps; SB3 in a fraction of total_timesteps
        kwargs["exploration_fraction"] = min(1.0, kwargs.pop("exploration_steps") / spec.budget)
    if "action_noise_std" in kwargs:
        std = float(kwargs.pop("action_noise_std"))
        shape = action_space.shape
        kwargs["action_noise"] = NormalActionNoise(np.zeros(shape), std * np.ones(shape))
    return kwargs


class _ReportProgress(BaseCallback):
    def __init__(self, report: Callable[[int], None], every: int):
        super().__init__()
        self.report, self.every, self._next = report, every, every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            self.report(self.num_timesteps)
        return True


def run_one(spec: RunSpec, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and check one run on 1 torch thread (the figures must not depend on the worker count); its record.

    :param spec: the run
    :param progress: called now and then with the real steps done so far
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent, dyna = build_agent(spec)
        threshold = math.inf if spec.threshold is None else spec.threshold
        check = _check(spec, threshold)
        checkpoint, resumed_at = None, []
        if spec.checkpoint_dir is not None and not is_own_agent(spec.algo):
            checkpoint, dyna, resumed_at = _resume(spec, agent, dyna, check)
        callbacks: list[BaseCallback] = ([dyna] if dyna is not None else []) + [check]
        if checkpoint is not None:
            callbacks.append(checkpoint)  # after the check (whose curve it saves) and the DynaCallback
        if progress is not None:
            callbacks.append(_ReportProgress(progress, max(spec.budget // 100, 1)))
        started = time.perf_counter()
        # The run's name only matters where TensorBoard logs are written; otherwise learn() is called as it always was.
        names = {"tb_log_name": spec.tb_log_name} if spec.tensorboard_log is not None else {}
        if resumed_at:  # the rest of the budget, counted on from where the checkpoint was
            agent.learn(spec.budget - agent.num_timesteps, callback=callbacks, reset_num_timesteps=False, **names)
        else:
            agent.learn(spec.budget, callback=callbacks, **names)
        wall = time.perf_counter() - started if checkpoint is None else checkpoint.training_seconds()
    finally:
        torch.set_num_threads(threads)
    record = {
        "format": RECORD_FORMAT, "env": spec.env_id, "algo": spec.algo, "seed": spec.seed,
        "real_steps_to_threshold": check.hit, "real_steps_to_stay_solved": check.stayed,
        "real_steps": int(agent.num_timesteps),
        "curve": [[int(s), float(r)] for s, r in check.curve],
        "final_return": float(check.curve[-1][1]) if check.curve else None,
        "imagined_steps": int(dyna.imagined_steps) if dyna else 0,
        "model_fits": int(dyna.model_fits if dyna else getattr(agent, "model_fits", 0)),
        "reward_termination": _reward_termination(spec, agent, dyna),
        "wall_seconds": round(wall, 2), "resumed_at": resumed_at,
        "device": _device_used(agent),
        "versions": {"dream_envs": sb3_plugins.__version__, "sb3": stable_baselines3.__version__,
                     "torch": torch.__version__, "gymnasium": gym.__version__, "python": platform.python_version()},
        **spec.settings(),
    }  # fmt: skip
    return record


def _resume(
    spec: RunSpec, agent: BaseAlgorithm, dyna: DynaCallback | None, check: RealStepsToThreshold
) -> tuple[BaseCallback, DynaCallback | None, list[int]]:
    """The run's checkpointer, and the run restored from its checkpoint if it has one (its DynaCallback, and the real
    steps at which it was resumed so far)."""
    from sb3_plugins.benchmark.resume import RunCheckpoint, checkpoint_folder, load_run

    folder = checkpoint_folder(spec.checkpoint_dir, spec)
    restored = load_run(folder, spec, agent, check)
    wall_before, resumed_at = 0.0, []
    if restored is not None:
        dyna, wall_before, resumed_at = restored  # load_run gives a DynaCallback exactly for a +dyna run
        # the real env starts a new episode (its simulator state was not saved), from a seed of its own
        agent.get_env().seed(seed_int(spec.seed, stream=len(resumed_at)))
    return RunCheckpoint(folder, spec, check, dyna, spec.checkpoint_seconds, wall_before, resumed_at), dyna, resumed_at


def _reward_termination(spec: RunSpec, agent: BaseAlgorithm | ModelBasedAgent, dyna: DynaCallback | None) -> str:
    """``"real env"``, ``"learned"``, ``"given"``, or which of the two is given where only one is."""
    # MuZero's reward head and absorbing states, World Models' reward and termination heads; a DynaCallback, and an
    # agent that takes reward_fn / termination_fn (MPCAgent), learn both unless given a function (None and
    # "learned" both mean the learned head)
    planner = dyna if dyna is not None else agent if hasattr(agent, "reward_fn") else None
    if planner is None:
        return "learned" if is_own_agent(spec.algo) else "real env"
    reward, termination = (value not in (None, "learned") for value in (planner.reward_fn, planner.termination_fn))
    if reward == termination:
        return "given" if reward else "learned"
    return "reward given, termination learned" if reward else "reward learned, termination given"


def _device_used(agent: BaseAlgorithm | ModelBasedAgent) -> str:
    """The device the agent ran on (SB3's resolved ``device``; MuZero's ``_device``; MPCAgent's model's)."""
    if isinstance(agent, BaseAlgorithm):
        return str(agent.device)
    model = getattr(agent, "model", None)
    return str(getattr(agent, "_device", None) or getattr(model, "device", None) or agent.device)
