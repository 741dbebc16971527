"""Per-env defaults of the benchmark: thresholds, budgets, check intervals, and each algorithm's hyperparameters.

Stock agents use rl-zoo's hyperparameters (linear schedules replaced by their start values); a ``+dyna`` variant is
the stock row plus ``DynaCallback()`` with no arguments, so the comparison is side by side and measures the defaults
a user gets (no per-env Dyna settings: they made figures about tuning).
Everything here can be overridden from a YAML file (:func:`load_overrides`).
"""

from __future__ import annotations

import copy
import difflib
import importlib
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from gymnasium import spaces

from dream_envs.agents.muzero.agent import DEFAULT_SELF_PLAY_ENVS
from sb3_plugins.dream_training import ALGOS

__all__ = ["ENV_DEFAULTS", "OWN_AGENTS", "Hyperparams", "algorithm_class", "default_budget", "env_defaults",
           "hyperparams_for", "is_own_agent", "load_overrides", "own_eval_every", "parse_algo"]  # fmt: skip

DYNA_SUFFIX = "+dyna"
# dream-envs' own model-based agents, which the benchmark runs beside SB3's: benchmark name -> class in
# dream_envs.agents. They take an env id, not a policy string, and their settings are constructor arguments
# ("mpc" is MPCAgent(env) with no arguments, PETS with the terminal value: issue 14's mpc row).
OWN_AGENTS = {"muzero": "MuZero", "world-models": "WorldModels", "mpc": "MPCAgent"}
_DISCRETE_ONLY = {"dqn", "muzero"}
_BOX_ONLY = {"sac", "td3"}

# Thresholds where the env spec has none, and budgets / check intervals (real steps) per env. "dyna_budget" is
# the default budget of the +dyna variants: they stop once solved and stayed solved, but one that never passes
# would otherwise dream through the stock agent's whole budget.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"budget": 30_000, "dyna_budget": 5_000, "eval_every": 250, "own_budget": 20_000,
                    "mpc_budget": 1_000},
    "Acrobot-v1": {"budget": 150_000, "dyna_budget": 5_000, "eval_every": 250},
    "Pendulum-v1": {"threshold": -200.0, "budget": 10_000, "dyna_budget": 3_000, "eval_every": 200,
                    "mpc_budget": 1_000},
    "MountainCarContinuous-v0": {"budget": 50_000, "dyna_budget": 10_000, "eval_every": 1_000},
    # gymnasium's MuJoCo suite (pip install ".[mujoco]"): thresholds are the specs' (InvertedPendulum 950,
    # InvertedDoublePendulum 9,100, Reacher -3.75, HalfCheetah 4,800). Reacher's and HalfCheetah's comparisons are
    # returns at a fixed number of real steps (--keep-training), so their +dyna budget is the stock one.
    "InvertedPendulum-v5": {"budget": 20_000, "dyna_budget": 5_000, "eval_every": 500, "mpc_budget": 2_000},
    "InvertedDoublePendulum-v5": {"budget": 50_000, "dyna_budget": 15_000, "eval_every": 1_000},
    "Reacher-v5": {"budget": 20_000, "dyna_budget": 20_000, "eval_every": 1_000},
    "HalfCheetah-v5": {"budget": 30_000, "dyna_budget": 30_000, "eval_every": 5_000},
}  # fmt: skip
_GENERIC_ENV = {"budget": 50_000, "dyna_budget": 10_000, "eval_every": 1_000, "own_budget": 20_000,
                "mpc_budget": 3_000}  # fmt: skip
# "own_budget" is the default budget of dream-envs' own agents (MuZero, World Models): their targets are stated
# within 20,000 real steps. Their checks run every OWN_EVAL_EVERY real steps (a search per action, or rendering
# every frame, makes a check cost seconds), unless --eval-every says otherwise.
OWN_EVAL_EVERY = 1_000
# MPCAgent's targets are hundreds of real steps, and each of its actions is a planning run (0.05-0.1 s on one core,
# plus a value fit per refit), so it has a budget of its own ("mpc_budget") and is checked after each refit: every
# MPC_EVAL_EVERY real steps, MPCAgent's default train_freq.
MPC_EVAL_EVERY = 200

# Hyperparameters is a dict with "n_envs", "agent" (keyword arguments of the SB3 class) and, for +dyna, "dyna"
# (keyword arguments of DynaCallback). Two keys of "agent" are the benchmark's own, because rl-zoo states them
# in steps while SB3 wants something else: "exploration_steps" (DQN: epsilon decays over that many real steps,
# turned into exploration_fraction of the budget) and "action_noise_std" (TD3/SAC: Gaussian action noise).
_ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("CartPole-v1", "ppo"): {"n_envs": 8, "agent": {
        "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
        "learning_rate": 1e-3, "clip_range": 0.2}},
    ("CartPole-v1", "a2c"): {"n_envs": 8, "agent": {"ent_coef": 0.0}},
    ("CartPole-v1", "dqn"): {"n_envs": 1, "agent": {
        "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
        "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_steps": 8_000,
        "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]}}},
    # rl-zoo also normalises Acrobot's observations; the checks here play raw observations, and DynaCallback
    # learns from raw ones, so both variants run without VecNormalize.
    ("Acrobot-v1", "ppo"): {"n_envs": 16, "agent": {
        "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0}},
    ("Acrobot-v1", "a2c"): {"n_envs": 16, "agent": {"ent_coef": 0.0}},
    ("Acrobot-v1", "dqn"): {"n_envs": 1, "agent": {
        "learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0, "gamma": 0.99,
        "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1, "exploration_steps": 12_000,
        "exploration_final_eps": 0.1, "policy_kwargs": {"net_arch": [256, 256]}}},
    ("Pendulum-v1", "sac"): {"n_envs": 1, "agent": {"learning_rate": 1e-3}},
    ("Pendulum-v1", "td3"): {"n_envs": 1, "agent": {"learning_rate": 1e-3, "action_noise_std": 0.1}},
    ("Pendulum-v1", "ppo"): {"n_envs": 4, "agent": {
        "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 1e-3,
        "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4}},
    ("MountainCarContinuous-v0", "sac"): {"n_envs": 1, "agent": {
        "learning_rate": 3e-4, "buffer_size": 50_000, "batch_size": 512, "ent_coef": 0.1, "train_freq": 32,
        "gradient_steps": 32, "gamma": 0.9999, "tau": 0.01, "learning_starts": 0, "use_sde": True,
        "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]}}},
    # rl-zoo's MuJoCo defaults (HalfCheetah, Hopper, Walker2d, Ant): SB3's SAC with 10,000 random steps first. It has
    # no entry for gymnasium's InvertedPendulum, InvertedDoublePendulum or Reacher: those run SB3's defaults.
    ("HalfCheetah-v5", "sac"): {"n_envs": 1, "agent": {"learning_starts": 10_000}},
    ("Hopper-v5", "sac"): {"n_envs": 1, "agent": {"learning_starts": 10_000}},
    ("Walker2d-v5", "sac"): {"n_envs": 1, "agent": {"learning_starts": 10_000}},
}  # fmt: skip

# dream-envs' own agents, per env; "agent" holds constructor arguments. Keys missing here take the class defaults.
_OWN: dict[tuple[str, str], dict[str, Any]] = {
    # Tuned on seeds 0-2: learning rate 3e-3 -> 1e-3 and one gradient step per real step (was 0.5) took seed 0
    # from > 20,000 real steps to 8,000 in a one-seed run; 50-step value targets and a lower self-play temperature
    # took seed 2 from 12,000 to 6,000.
    # 50 simulations per action solved 2/3 seeds where 25 solved 1/3. Self-play visit temperature 1 -> 0.25 at the
    # 2,000th real step, and no lower: a further drop to 0.1 at 4,000 left seed 1 stalled near a return of 125
    # (3/3 solved without it, docs/benchmarks.md).
    ("CartPole-v1", "muzero"): {"n_envs": DEFAULT_SELF_PLAY_ENVS, "agent": {
        "num_simulations": 50, "learning_rate": 1e-3, "train_ratio": 1.0, "td_steps": 50,
        "temperature_schedule": [[0, 1.0], [2_000, 0.25]]}},
}  # fmt: skip

Hyperparams = dict[str, Any]


def parse_algo(name: str) -> tuple[str, bool]:
    """``"ppo+dyna"`` -> ``("ppo", True)``; a clear error for anything not in :data:`ALGOS` or :data:`OWN_AGENTS`."""
    if not isinstance(name, str):
        raise ValueError(f"an algo must be a string such as 'ppo' or 'ppo+dyna', got {name!r}")
    base, dyna = (name[: -len(DYNA_SUFFIX)], True) if name.endswith(DYNA_SUFFIX) else (name, False)
    if base in OWN_AGENTS and dyna:
        raise ValueError(f"unknown algo {name!r}: {DYNA_SUFFIX} adds DynaCallback to an SB3 algorithm; {base} is "
                         f"model-based already, use {base!r}")  # fmt: skip
    if base not in ALGOS and base not in OWN_AGENTS:
        known = sorted(ALGOS) + sorted(a + DYNA_SUFFIX for a in ALGOS) + sorted(OWN_AGENTS)
        raise ValueError(f"unknown algo {name!r}; expected one of {', '.join(known)}")
    return base, dyna


def is_own_agent(algo: str) -> bool:
    """Whether ``algo`` names one of dream-envs' own agents (MuZero, World Models, MPC) rather than an SB3 algorithm."""
    return parse_algo(algo)[0] in OWN_AGENTS


def own_eval_every(algo: str) -> int:
    """The default check interval (real steps) of one of dream-envs' own agents."""
    return MPC_EVAL_EVERY if parse_algo(algo)[0] == "mpc" else OWN_EVAL_EVERY


def default_budget(algo: str, defaults: dict[str, Any]) -> int:
    """A run's default budget (real steps) from :func:`env_defaults`: the stock, ``+dyna``, MPC or own agents' one."""
    base, dyna = parse_algo(algo)
    if base == "mpc":
        return defaults["mpc_budget"]
    return defaults["own_budget" if base in OWN_AGENTS else "dyna_budget" if dyna else "budget"]


def algorithm_class(name: str) -> type:
    """The SB3 algorithm, or the dream-envs agent class, that ``name`` runs."""
    base = parse_algo(name)[0]
    if base in OWN_AGENTS:
        import dream_envs.agents

        return getattr(dream_envs.agents, OWN_AGENTS[base])
    return ALGOS[base]


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The env's spec, or a clear error naming the id. ``module:EnvId`` imports ``module`` first, as ``gym.make``
    does (``gym.spec`` does not), so that an env registered by the user's own module is found here, in the main
    process, and again in every worker process, which calls this before ``gym.make`` with the same string."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"--env must be a gymnasium env id such as 'CartPole-v1', got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    unknown = (f"unknown env id {env_id!r}: not in gymnasium's registry ({{}}). Register your env, or pass "
               "'your_module:YourEnv-v0' so that the module registering it is imported first.")  # fmt: skip
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ValueError(unknown.format(error) + f" {module!r} must be importable here: run from the folder that "
                             "holds it, or put that folder on PYTHONPATH") from None  # fmt: skip
        except Exception as error:  # the user's module raised while registering: say where, keep its traceback
            raise ValueError(f"--env {env_id!r}: importing {module!r} raised {type(error).__name__}: "
                             f"{error}") from error  # fmt: skip
    try:
        return gym.spec(name)
    except gym.error.Error as error:
        raise ValueError(unknown.format(error)) from None


def check_action_space(algo: str, env_id: str, action_space: spaces.Space) -> None:
    base, _ = parse_algo(algo)
    if base in _DISCRETE_ONLY and not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"algo {algo!r} needs a Discrete action space; {env_id} has {action_space}")
    if base in _BOX_ONLY and not isinstance(action_space, spaces.Box):
        raise ValueError(f"algo {algo!r} needs a Box (continuous) action space; {env_id} has {action_space}")
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ValueError(f"algo {algo!r}: the benchmark supports Discrete and Box action spaces; {env_id} has "
                         f"{action_space}")  # fmt: skip


def env_defaults(env_id: str) -> dict[str, Any]:
    """Threshold (the spec's ``reward_threshold``, else the table's, else ``None``), budgets and check interval."""
    spec = check_env_id(env_id)
    defaults = {**_GENERIC_ENV, "threshold": None, **ENV_DEFAULTS.get(env_id, {})}
    if spec.reward_threshold is not None:
        defaults["threshold"] = float(spec.reward_threshold)
    return defaults


def hyperparams_for(env_id: str, algo: str, overrides: dict[str, Any] | None = None) -> Hyperparams:
    """The resolved settings of one benchmark row: ``{"n_envs", "agent", "dyna"}`` (``dyna`` is None for stock).

    :param env_id: a gymnasium env id
    :param algo: ``"ppo"``, ``"ppo+dyna"``, ...
    :param overrides: parsed YAML (see :func:`load_overrides`); its entries replace the defaults key by key
    """
    base, dyna = parse_algo(algo)
    fallback = {"n_envs": DEFAULT_SELF_PLAY_ENVS if base == "muzero" else 1, "agent": {}}
    stock = copy.deepcopy((_OWN if base in OWN_AGENTS else _ZOO).get((env_id, base), fallback))
    params: Hyperparams = {"n_envs": stock["n_envs"], "agent": stock["agent"], "dyna": None}
    if dyna:  # the stock row plus DynaCallback() with no arguments: its defaults are the product
        params["dyna"] = {}
    for key in ("*", env_id):
        entry = (overrides or {}).get(key, {}).get(algo)
        if entry:
            params["n_envs"] = entry.get("n_envs", params["n_envs"])
            params["agent"].update(entry.get("agent", {}))
            if params["dyna"] is not None:
                params["dyna"].update(entry.get("dyna", {}))
    return params


_OVERRIDE_KEYS = {"n_envs", "agent", "dyna"}


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of hyperparameter overrides and check its shape, naming the offending entry.

    The file maps an env id (or ``"*"`` for every env) to algo names to any of ``n_envs`` (int), ``agent`` (SB3
    keyword arguments) and ``dyna`` (:class:`~sb3_plugins.DynaCallback` keyword arguments)::

        CartPole-v1:
          ppo+dyna:
            agent: {learning_rate: 0.0005}
            dyna: {dream_rollouts: 20}
        "*":
          sac: {n_envs: 1}
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read the hyperparameter file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:  # a binary file (a saved agent, a model) given by mistake
        raise ValueError(f"the hyperparameter file {str(path)!r} is not a text (YAML) file: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"the hyperparameter file {str(path)!r} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"the hyperparameter file {str(path)!r} must map env ids to algos, got {type(data).__name__}")
    for env_id, algos in data.items():
        if env_id != "*":  # a misspelt id would be ignored silently: the run would use the defaults
            try:
                check_env_id(env_id)
            except ValueError:
                near = difflib.get_close_matches(str(env_id), list(gym.registry), n=3)
                hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
                raise ValueError(f"{path}: entry {env_id!r} is not a registered gymnasium env id{hint}; use an env id "
                                 "or '*' for every env") from None  # fmt: skip
        if not isinstance(algos, dict):
            raise ValueError(f"{path}: entry {env_id!r} must map algo names to settings, got {algos!r}")
        for algo, entry in algos.items():
            _, dyna = parse_algo(algo)
            if not isinstance(entry, dict) or not set(entry) <= _OVERRIDE_KEYS:
                raise ValueError(f"{path}: {env_id}/{algo} must be a mapping with keys among {sorted(_OVERRIDE_KEYS)}, "
                                 f"got {entry!r}")  # fmt: skip
            if "dyna" in entry and not dyna:
                if algo in OWN_AGENTS:
                    raise ValueError(f"{path}: {env_id}/{algo} sets 'dyna', but {algo!r} is model-based already and "
                                     "takes no DynaCallback; its settings go under 'agent'")  # fmt: skip
                raise ValueError(f"{path}: {env_id}/{algo} sets 'dyna', but {algo!r} is a stock algo; use {algo}+dyna")
            for key in ("agent", "dyna"):
                if not isinstance(entry.get(key, {}), dict):
                    raise ValueError(f"{path}: {env_id}/{algo}/{key} must be a mapping, got {entry[key]!r}")
            n_envs = entry.get("n_envs", 1)
            if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs < 1:
                raise ValueError(f"{path}: {env_id}/{algo}/n_envs must be a positive integer, got {n_envs!r}")
    return data
