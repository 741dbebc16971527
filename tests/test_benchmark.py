"""The benchmark: hyperparameter resolution, planning and its errors, results folder, report, backends, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from sb3_plugins.benchmark import (
    RECORD_FORMAT,
    ResultsDir,
    RunSpec,
    env_defaults,
    execute,
    hyperparams_for,
    load_overrides,
    parse_algo,
    plan_runs,
    run_one,
    step_statistics,
    steps_to_stay_solved,
    summarize,
    write_report,
)
from sb3_plugins.benchmark.hyperparams import is_own_agent
from sb3_plugins.benchmark.report import _median_curve
from sb3_plugins.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
# Small enough that a +dyna run takes seconds: one tiny dream round per real rollout.
TINY_DYNA = {"n_dream_envs": 16, "dream_rollouts": 1, "fit_kwargs": {"max_epochs": 2}, "trust_errors": None,
             "ensemble_kwargs": {"hidden_sizes": [32], "ensemble_size": 2, "num_elites": 2}}  # fmt: skip
TINY_YAML = "CartPole-v1:\n  ppo+dyna:\n    dyna: " + json.dumps(TINY_DYNA) + "\n"


def bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sb3_plugins", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)  # fmt: skip


OLD = object()  # a record from before the stays-solved metric: no real_steps_to_stay_solved field


def record(algo: str, seed: int, hit: int | None, budget: int = 1000, curve=None, env: str = "CartPole-v1",
           stay: int | None | object = OLD, **fields) -> dict:  # fmt: skip
    curve = curve if curve is not None else ([[hit, 480.0]] if hit else [[budget, 100.0]])
    made = {"format": RECORD_FORMAT, "env": env, "algo": algo, "seed": seed, "real_steps_to_threshold": hit,
            "budget": budget, "threshold": 475.0, "curve": curve, "final_return": curve[-1][1] if curve else None,
            "wall_seconds": 1.0, "imagined_steps": 10 if "+dyna" in algo else 0,
            "reward_termination": "learned" if "+dyna" in algo else "real env", **fields}  # fmt: skip
    if stay is not OLD:
        made["real_steps_to_stay_solved"] = stay
    return made


# ---------------------------------------------------------------- hyperparameters
def test_parse_algo_and_its_error():
    assert parse_algo("ppo") == ("ppo", False) and parse_algo("sac+dyna") == ("sac", True)
    with pytest.raises(ValueError, match="unknown algo 'trpo'.*ppo\\+dyna"):
        parse_algo("trpo")


@pytest.mark.parametrize(
    "env_id, algo",
    [("CartPole-v1", "ppo"), ("CartPole-v1", "dqn"), ("Acrobot-v1", "ppo"), ("Pendulum-v1", "sac"),
     ("MountainCar-v0", "ppo"), ("InvertedPendulum-v5", "sac")],
)  # fmt: skip
def test_a_dyna_row_is_the_stock_row_plus_dyna_callback_with_no_arguments(env_id, algo):
    stock, dyna = hyperparams_for(env_id, algo), hyperparams_for(env_id, algo + "+dyna")
    assert stock["dyna"] is None and dyna["dyna"] == {}
    assert stock["agent"] == dyna["agent"] and stock["n_envs"] == dyna["n_envs"]


def test_overrides_replace_defaults_key_by_key(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text('CartPole-v1:\n  ppo+dyna:\n    agent: {learning_rate: 0.0005}\n    dyna: {dream_rollouts: 3}\n'
                    '"*":\n  ppo+dyna: {n_envs: 4}\n')  # fmt: skip
    params = hyperparams_for("CartPole-v1", "ppo+dyna", load_overrides(path))
    assert params["agent"]["learning_rate"] == 0.0005 and params["agent"]["n_steps"] == 32
    assert params["dyna"] == {"dream_rollouts": 3}
    assert params["n_envs"] == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("CartPole-v1: [1, 2]", "must map algo names"),
        ("CartPole-v1:\n  ppo: {agnet: {}}", "keys among"),
        ("CartPole-v1:\n  ppo: {dyna: {}}", "stock algo; use ppo\\+dyna"),
        ("CartPole-v1:\n  ppo: {n_envs: 0}", "n_envs must be a positive integer"),
        ("CartPole-v1:\n  trpo: {}", "unknown algo 'trpo'"),
        ("a: [b", "not valid YAML"),
        ("- 1", "must map env ids"),
    ],
)
def test_bad_override_files_are_named(tmp_path, text, message):
    path = tmp_path / "h.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_overrides(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_overrides(tmp_path / "missing.yaml")
    (tmp_path / "agent.pt").write_bytes(b"PK\x03\x04\x80\x99 not text")  # a saved agent given by mistake
    with pytest.raises(ValueError, match=r"hyperparameter file '.*agent.pt' is not a text \(YAML\) file"):
        load_overrides(tmp_path / "agent.pt")


# ---------------------------------------------------------------- planning and bad input
def test_thresholds_come_from_the_spec_then_the_table():
    assert env_defaults("CartPole-v1")["threshold"] == 475.0
    assert env_defaults("Pendulum-v1")["threshold"] == -200.0
    assert env_defaults("MountainCar-v0")["threshold"] == -110.0
    pytest.importorskip("mujoco")
    suite = {"InvertedPendulum-v5": 950.0, "InvertedDoublePendulum-v5": 9100.0, "Reacher-v5": -3.75,
             "HalfCheetah-v5": 4800.0}  # fmt: skip
    for env_id, threshold in suite.items():
        defaults = env_defaults(env_id)
        assert defaults["threshold"] == threshold and defaults["budget"] % defaults["eval_every"] == 0
        assert defaults["dyna_budget"] <= defaults["budget"]


def test_plan_resolves_every_run_with_budgets_per_variant():
    specs = plan_runs("CartPole-v1", ["ppo", "ppo+dyna"], seeds=2, device="cpu")
    assert [(s.algo, s.seed) for s in specs] == [("ppo", 0), ("ppo", 1), ("ppo+dyna", 0), ("ppo+dyna", 1)]
    assert specs[0].budget > specs[2].budget and specs[0].eval_every == 250 and specs[0].eval_episodes == 10
    quick = plan_runs("CartPole-v1", ["ppo"], quick=True, device="cpu")
    assert len(quick) == 2 and quick[0].eval_episodes == 5 and quick[0].budget % 250 == 0
    assert quick[0].budget < specs[0].budget
    assert [s.algo for s in plan_runs("Pendulum-v1", seeds=1, device="cpu")] == ["sac", "sac+dyna"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env_id="NoSuchEnv-v0"), "unknown env id 'NoSuchEnv-v0'"),
        (dict(env_id="no_such_module:Env-v0"), "unknown env id 'no_such_module:Env-v0'"),
        (dict(algos=["trpo"]), "unknown algo 'trpo'"),
        (dict(env_id="Pendulum-v1", algos=["dqn"]), "'dqn' needs a Discrete action space; Pendulum-v1 has Box"),
        (dict(algos=["sac+dyna"]), "'sac\\+dyna' needs a Box"),
        (dict(budget=100, eval_every=250), "--budget 100 is below --eval-every 250"),
        (dict(seeds=0), "--seeds must be a positive integer, got 0"),
        (dict(algos=["ppo", "ppo"]), "lists an algo twice"),
        (dict(threshold=float("nan")), "--threshold must be a finite number"),
        (dict(device="tpu"), "device='tpu'"),
        (dict(overrides={"CartPole-v1": {"ppo": {"agent": {"n_stepz": 3}}}}), "PPO rejected the agent settings"),
        (
            dict(algos=["ppo+dyna"], overrides={"*": {"ppo+dyna": {"dyna": {"real_ratio": 2}}}}),
            "DynaCallback rejected.*real_ratio must be a number in \\[0, 1\\], got 2",
        ),
    ],
)
def test_bad_input_fails_before_any_training(kwargs, message):
    kwargs = {"env_id": "CartPole-v1", "algos": ["ppo"], "seeds": 1, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_runs(**kwargs)


def test_own_agents_are_algos_with_their_own_budget_and_checks():
    assert parse_algo("muzero") == ("muzero", False) and parse_algo("world-models") == ("world-models", False)
    with pytest.raises(ValueError, match="muzero is model-based already"):
        parse_algo("muzero+dyna")
    specs = plan_runs("CartPole-v1", ["ppo", "muzero"], seeds=1, device="cpu")
    assert [(s.budget, s.eval_every) for s in specs] == [(30_000, 250), (20_000, 1_000)]
    assert specs[1].hyperparams["n_envs"] == 8 and specs[1].hyperparams["agent"]["td_steps"] == 50
    assert plan_runs("CartPole-v1", ["muzero"], seeds=1, eval_every=500, device="cpu")[0].eval_every == 500
    with pytest.raises(ValueError, match="'muzero' needs a Discrete action space; Pendulum-v1 has Box"):
        plan_runs("Pendulum-v1", ["muzero"], seeds=1, device="cpu")
    with pytest.raises(ValueError, match="MuZero rejected the agent settings.*unroll_steps"):
        plan_runs("CartPole-v1", ["muzero"], seeds=1, device="cpu",
                  overrides={"*": {"muzero": {"agent": {"unroll_steps": 0}}}})  # fmt: skip


def test_a_muzero_run_records_like_any_other():
    overrides = {"n_envs": 2, "agent": {"num_simulations": 3, "batch_size": 8, "latent_size": 8, "hidden_size": 16,
                                        "learning_starts": 8}, "dyna": None}  # fmt: skip
    spec = RunSpec("CartPole-v1", "muzero", 0, budget=40, threshold=1000.0, eval_every=20, eval_episodes=2,
                   hyperparams=overrides, device="cpu")  # fmt: skip
    record = run_one(spec)
    assert record["real_steps"] == 40 and [c[0] for c in record["curve"]] == [20, 40]
    assert record["reward_termination"] == "learned" and record["device"] == "cpu"
    assert record["hyperparameters"]["agent"]["num_simulations"] == 3


def test_a_world_models_run_checks_on_pixels():
    tiny = {"n_envs": 1, "agent": {"latent_size": 4, "hidden_size": 8, "vae_channels": [4, 8, 8, 8],
                                   "frames_per_iteration": 30, "vae_epochs": 1, "mdn_epochs": 1,
                                   "sequence_length": 8, "cma_generations": 1, "cma_popsize": 4,
                                   "dream_episodes": 1, "max_dream_steps": 5}, "dyna": None}  # fmt: skip
    spec = RunSpec("CartPole-v1", "world-models", 0, budget=60, threshold=1000.0, eval_every=30, eval_episodes=2,
                   hyperparams=tiny, device="cpu")  # fmt: skip
    record = run_one(spec)
    assert record["real_steps"] == 60 and [c[0] for c in record["curve"]] == [30, 60]
    assert all(c[1] > 0 for c in record["curve"]) and record["reward_termination"] == "learned"
    with pytest.raises(ValueError, match="WorldModels rejected the agent settings.*tau"):
        plan_runs("CartPole-v1", ["world-models"], seeds=1, device="cpu",
                  overrides={"*": {"world-models": {"agent": {"tau": -1}}}})  # fmt: skip


def test_the_mpc_row_is_mpcagent_with_no_arguments_checked_after_each_refit():
    assert parse_algo("mpc") == ("mpc", False) and is_own_agent("mpc")
    with pytest.raises(ValueError, match="mpc is model-based already"):
        parse_algo("mpc+dyna")
    specs = plan_runs("Pendulum-v1", ["sac", "mpc"], seeds=2, device="cpu")
    assert [(s.algo, s.budget, s.eval_every) for s in specs] == [("sac", 10_000, 200)] * 2 + [("mpc", 1_000, 200)] * 2
    assert specs[-1].hyperparams == {"n_envs": 1, "agent": {}, "dyna": None}  # MPCAgent(env): its defaults
    # an env outside the table gets the generic MPC budget; --budget and --eval-every still rule
    assert plan_runs("MountainCarContinuous-v0", ["mpc"], seeds=1, device="cpu")[0].budget == 3_000
    spec = plan_runs("CartPole-v1", ["mpc"], seeds=1, budget=600, eval_every=300, device="cpu")[0]
    assert (spec.budget, spec.eval_every) == (600, 300)
    with pytest.raises(ValueError, match="MPCAgent rejected the agent settings.*horizon"):
        plan_runs("CartPole-v1", ["mpc"], seeds=1, device="cpu", overrides={"*": {"mpc": {"agent": {"horizon": 0}}}})


def test_an_mpc_run_records_like_any_other():
    tiny = {"n_envs": 1, "agent": {"horizon": 3, "population": 16, "iterations": 1, "particles": 5,
                                   "learning_starts": 20, "train_freq": 20, "terminal_value": False,
                                   "ensemble_kwargs": {"hidden_sizes": [8, 8]}, "fit_kwargs": {"max_epochs": 2}},
            "dyna": None}  # fmt: skip
    spec = RunSpec("Pendulum-v1", "mpc", 0, budget=40, threshold=-200.0, eval_every=20, eval_episodes=2,
                   hyperparams=tiny, device="auto")  # fmt: skip
    record = run_one(spec)
    assert record["real_steps"] == 40 and [c[0] for c in record["curve"]] == [20, 40]
    assert record["reward_termination"] == "learned" and record["imagined_steps"] == 0
    assert record["model_fits"] == 2 and record["device"] == "cpu"  # the device used, not "auto"
    assert record["hyperparameters"]["agent"]["horizon"] == 3

    def labelled(**functions):
        hyperparams = {**tiny, "agent": {**tiny["agent"], **functions}}
        return run_one(RunSpec("Pendulum-v1", "mpc", 0, budget=20, threshold=-200.0, eval_every=20, eval_episodes=1,
                               hyperparams=hyperparams, device="cpu"))["reward_termination"]  # fmt: skip

    assert labelled(reward_fn="learned", termination_fn="learned") == "learned"
    assert labelled(reward_fn="known") == "reward given, termination learned"
    assert labelled(reward_fn="known", termination_fn="known") == "given"


@pytest.mark.parametrize(
    "algo, hyperparams, message",
    [
        ("mpc", {"n_envs": 4}, "n_envs=4, but MPCAgent acts in one real env"),
        ("world-models", {"n_envs": 2}, "n_envs=2, but WorldModels acts in one real env"),
        ("mpc", {"agent": {"seed": 3}}, "the agent settings set 'seed'.*use --seeds"),
        ("ppo", {"agent": {"device": "cpu"}}, "the agent settings set 'device'.*use --device"),
        ("ppo+dyna", {"dyna": {"seed": 1}}, "the dyna settings set 'seed'.*use --seeds"),
    ],
)
def test_settings_the_benchmark_sets_itself_or_ignores_are_refused(algo, hyperparams, message):
    with pytest.raises(ValueError, match=message):
        plan_runs("CartPole-v1", [algo], seeds=1, device="cpu", overrides={"*": {algo: hyperparams}})


def test_a_default_budget_below_the_check_interval_is_named_and_quick_never_raises_it():
    with pytest.raises(ValueError, match="mpc's default budget 1000 is below --eval-every 1500"):
        plan_runs("Pendulum-v1", ["sac", "mpc"], seeds=1, eval_every=1500, device="cpu")
    with pytest.raises(ValueError, match="mpc's default budget 1000 is below --eval-every 1500"):
        plan_runs("Pendulum-v1", ["mpc"], seeds=1, eval_every=1500, quick=True, device="cpu")
    with pytest.raises(ValueError, match="--budget 100 is below mpc's default check interval 200"):
        plan_runs("Pendulum-v1", ["mpc"], seeds=1, budget=100, device="cpu")
    assert [s.budget for s in plan_runs("Pendulum-v1", ["mpc"], seeds=1, quick=True, device="cpu")] == [400]


# ---------------------------------------------------------------- results folder
def test_results_dir_adds_atomically_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    results = ResultsDir(tmp_path / "out")
    spec = plan_runs("CartPole-v1", ["ppo"], seeds=2, budget=500, device="cpu")
    done = {**record("ppo", 0, 250, budget=500), **spec[0].settings()}
    results.add(done)
    assert ResultsDir(tmp_path / "out").records() == [done]
    assert [s.seed for s in results.pending(spec)] == [1]
    other = plan_runs("CartPole-v1", ["ppo"], seeds=1, budget=750, device="cpu")
    with pytest.raises(ValueError, match="already holds CartPole-v1 ppo seed 0 with other settings.*budget"):
        results.pending(other)

    def disk_full(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", disk_full)  # the write fails after part of the new file is out
    with pytest.raises(OSError, match="disk full"):
        results.add(record("ppo", 1, 250))
    monkeypatch.undo()
    assert ResultsDir(tmp_path / "out").records() == [done]  # the old file is untouched, no temp file left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.jsonl"]


def test_a_record_from_before_stays_solved_resumes_as_done_but_another_stay_does_not(tmp_path):
    results = ResultsDir(tmp_path)
    spec = plan_runs("CartPole-v1", ["ppo"], seeds=1, budget=500, device="cpu")
    old = {k: v for k, v in spec[0].settings().items() if k != "stay"}
    results.add({**record("ppo", 0, 250, budget=500), **old})
    assert results.pending(spec) == []
    results.add({**record("ppo", 0, 250, budget=500, stay=250), **old, "stay": 0})
    with pytest.raises(ValueError, match="other settings \\(stay: recorded 0, asked 2\\)"):
        results.pending(spec)


def test_foreign_or_missing_results_are_named(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"algo": "ppo"}\n')
    with pytest.raises(ValueError, match="results.jsonl:1 is not a dream-envs benchmark record"):
        ResultsDir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no results.jsonl"):
        ResultsDir(tmp_path / "empty", must_exist=True)
    with pytest.raises(ValueError, match="results dir '.*nowhere' does not exist"):
        ResultsDir(tmp_path / "nowhere", must_exist=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        ResultsDir(tmp_path / "file")
    (tmp_path / "odd" / "results.jsonl").mkdir(parents=True)
    with pytest.raises(ValueError, match="results.jsonl' is a folder; expected the results file"):
        ResultsDir(tmp_path / "odd")
    # a record cut short (copied while being written, say): the last line, named with the way out
    good = json.dumps(record("ppo", 0, 250)) + "\n"
    (tmp_path / "cut" / "results.jsonl").parent.mkdir()
    (tmp_path / "cut" / "results.jsonl").write_text(good + good[:40])
    with pytest.raises(ValueError, match="results.jsonl:2, its last line, is a cut-off record .*delete that line"):
        ResultsDir(tmp_path / "cut")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"real_steps_to_threshold": "many"}, "real_steps_to_threshold must be null or an integer >= 0, got 'many'"),
        ({"real_steps_to_threshold": -5}, "real_steps_to_threshold must be null or an integer >= 0, got -5"),
        ({"real_steps_to_stay_solved": 2.5}, "real_steps_to_stay_solved must be null or an integer >= 0, got 2.5"),
        ({"curve": [[250, float("nan")]]}, r"curve must be a list of \[real steps >= 0, finite mean return\] pairs"),
        ({"wall_seconds": "1"}, "wall_seconds must be a finite number >= 0, got '1'"),
        ({"budget": 0}, "budget must be an integer > 0, got 0"),
        ({"env": ""}, "env must be a non-empty string, got ''"),
        ({"real_steps_to_threshold": 999}, "real_steps_to_threshold 999 is not the real steps of one of the curve"),
        ({"real_steps_to_threshold": 1500, "curve": [[1500, 480.0]]}, "real_steps_to_threshold 1500 .* budget of 1000"),
    ],
)
def test_a_damaged_record_is_named_by_file_line_and_field(tmp_path, change, message):
    good = record("ppo", 0, 500)
    lines = [json.dumps(good), json.dumps({**record("ppo", 1, 500), **change})]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"results.jsonl:2: {message}"):
        ResultsDir(tmp_path, must_exist=True)


def test_a_seed_recorded_twice_is_refused_not_counted_twice(tmp_path):
    lines = [json.dumps(record("ppo", 0, 500)), json.dumps(record("ppo", 1, 750)), json.dumps(record("ppo", 0, 250))]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="results.jsonl:3 records CartPole-v1 ppo seed 0 again \\(first at line 1\\)"):
        ResultsDir(tmp_path, must_exist=True)


# ---------------------------------------------------------------- report
def test_summary_medians_ranges_and_speedups():
    records = [record("ppo", s, h, budget=10_000) for s, h in enumerate([4000, 6000, None])]
    records += [record("ppo+dyna", s, h) for s, h in enumerate([500, 1000, 750])]
    records += [record("dqn", 0, None, budget=8000), record("dqn+dyna", 0, 2000)]
    rows = {r["algo"]: r for r in summarize(records)}
    # the unsolved run counts as its budget: the worst is a lower bound, the median (a solved run) is exact
    assert rows["ppo"]["median_real_steps"] == 6000 and rows["ppo"]["max_real_steps"] == 10_000
    assert "max_real_steps" in rows["ppo"]["lower_bounds"] and "median_real_steps" not in rows["ppo"]["lower_bounds"]
    assert rows["ppo"]["solved"] == 2 and rows["ppo"]["speedup_vs_stock"] is None
    assert rows["ppo+dyna"]["median_real_steps"] == 750 and rows["ppo+dyna"]["speedup_vs_stock"] == 8.0
    assert rows["dqn+dyna"]["speedup_vs_stock"] == 4.0 and "speedup_vs_stock" in rows["dqn+dyna"]["lower_bounds"]


# ---------------------------------------------------------------- solved and stays solved, figures over seeds
def test_stays_solved_from_new_and_old_records():
    assert steps_to_stay_solved(record("ppo", 0, 250, stay=750)) == 750
    assert steps_to_stay_solved(record("ppo", 0, 250, stay=None)) == np.inf  # the budget ended first
    collapses = [[250, 480.0], [500, 90.0], [750, 476.0], [1000, 500.0], [1250, 490.0]]
    # records from before the metric: a streak in the curve counts, even after a first pass that collapsed
    assert steps_to_stay_solved(record("ppo", 0, 250, curve=collapses, stop_at_threshold=False)) == 750
    assert steps_to_stay_solved(record("ppo", 0, 250, curve=collapses[:4], stop_at_threshold=False)) == np.inf
    assert steps_to_stay_solved(record("ppo", 0, None)) == np.inf  # never solved
    # stopped at its first pass: it was never checked again, so it can neither claim nor be denied staying solved
    assert np.isnan(steps_to_stay_solved(record("ppo", 0, 250, curve=[[250, 480.0]])))
    assert np.isnan(steps_to_stay_solved(record("ppo", 0, 250, curve=[[250, 480.0]], stop_at_threshold=True)))


class ScriptedAgent:
    """Stands in for an SB3 agent: every step is 50 real steps, and each check returns the next scripted mean."""

    device, num_timesteps = "cpu", 0

    def __init__(self):
        from stable_baselines3.common.logger import Logger

        self.logger = Logger(folder=None, output_formats=[])

    def learn(self, total_timesteps, callback):
        for cb in callback:
            cb.init_callback(self)
            cb.on_training_start({}, {})
        while self.num_timesteps < total_timesteps:
            self.num_timesteps += 50
            if not all([cb.on_step() for cb in callback]):
                break


@pytest.mark.parametrize(
    "returns, keep_training, hit, stayed, real_steps",
    [
        ([480, 490, 500, 10], False, 100, 100, 300),  # stays solved: stops at the check that confirms it
        ([480, 90, 476, 500, 490, 10], False, 100, 300, 500),  # the first pass collapses; a later streak counts
        ([480, 90, 476, 500, 490, 10], True, 100, 300, 600),  # --keep-training: the whole budget
        ([10, 480, 490, 10, 480, 490], False, 200, None, 600),  # the budget ends before a streak of 3
        ([10] * 6, False, None, None, 600),
    ],
)
def test_a_run_goes_on_after_its_first_pass_until_it_stays_solved(monkeypatch, returns, keep_training, hit,
                                                                  stayed, real_steps):  # fmt: skip
    script = iter(returns)
    monkeypatch.setattr("sb3_plugins.evaluation.evaluate_policy", lambda *args, **kwargs: (next(script), 0.0))
    monkeypatch.setattr("sb3_plugins.benchmark.runner.build_agent", lambda spec: (ScriptedAgent(), None))
    spec = RunSpec("CartPole-v1", "ppo", 0, budget=600, threshold=475.0, eval_every=100, eval_episodes=1,
                   stop_at_threshold=not keep_training)  # fmt: skip
    made = run_one(spec)
    assert (made["real_steps_to_threshold"], made["real_steps_to_stay_solved"]) == (hit, stayed)
    assert made["real_steps"] == real_steps and made["curve"][-1][0] == real_steps and made["stay"] == 2


def test_figures_over_seeds_by_hand():
    first, stay = [100, 200, 400, 800, 1600], [400, 800, 800, 1600, None]
    records = [record("ppo+dyna", s, h, budget=2000, stay=t) for s, (h, t) in enumerate(zip(first, stay))]
    records += [record("ppo", s, h, budget=4000, stay=h) for s, h in enumerate([3000, None, None])]
    rows = {r["algo"]: r for r in summarize(records)}
    dyna, ppo = rows["ppo+dyna"], rows["ppo"]
    # first pass: median 400; IQM the mean of the middle 3 of 5 (scipy's trim_mean cuts int(5 / 4) = 1 per end)
    assert dyna["median_real_steps"] == 400 and dyna["iqm_real_steps"] == pytest.approx((200 + 400 + 800) / 3)
    assert (dyna["min_real_steps"], dyna["max_real_steps"], dyna["solved"]) == (100, 1600, 5)
    # stays solved: the unsolved run counts as its budget (2,000); the IQM trims it away, so only the worst and the
    # intervals' upper ends that reach it are lower bounds
    assert dyna["stay_solved"] == 4 and dyna["stay_median_real_steps"] == 800
    assert dyna["stay_iqm_real_steps"] == pytest.approx((800 + 800 + 1600) / 3)
    assert dyna["stay_max_real_steps"] == 2000 and "stay_max_real_steps" in dyna["lower_bounds"]
    assert not {"stay_median_real_steps", "stay_iqm_real_steps", "median_real_steps"} & set(dyna["lower_bounds"])
    # 3 runs: the IQM trims none; the stock median is an unsolved run's budget, so the speed-ups are lower bounds
    assert ppo["median_real_steps"] == 4000 and ppo["iqm_real_steps"] == pytest.approx((3000 + 4000 + 4000) / 3)
    assert {"median_real_steps", "iqm_real_steps"} <= set(ppo["lower_bounds"])
    assert dyna["speedup_vs_stock"] == 10.0 and dyna["stay_speedup_vs_stock"] == 5.0
    assert {"speedup_vs_stock", "stay_speedup_vs_stock"} <= set(dyna["lower_bounds"])
    for row in (dyna, ppo):
        for prefix in ("", "stay_"):
            for statistic in ("median", "iqm"):
                column = f"{prefix}{statistic}_real_steps"
                point, low, high = row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
                assert row[f"{prefix}min_real_steps"] <= low <= point <= high <= row[f"{prefix}max_real_steps"]
    assert summarize(records) == list(rows.values())  # the same records give the same intervals


def test_step_statistics_intervals_and_lower_bounds():
    values, lower = step_statistics(np.array([500.0, 750, 1000, np.inf]), np.full(4, 5000.0))
    assert values["iqm"] == 875.0 and values["median"] == 875.0 and values["max"] == 5000.0
    assert lower == {"max", "median_ci_high", "iqm_ci_high"}
    assert values["iqm_ci_low"] < 875.0 < values["iqm_ci_high"] and values["median_ci_low"] >= 500.0
    values, lower = step_statistics(np.array([300.0]), np.array([1000.0]))  # one seed: a point interval
    assert {values[k] for k in ("median", "median_ci_low", "iqm_ci_high", "min", "max")} == {300.0} and not lower
    state = np.random.get_state()[1].copy()
    step_statistics(np.array([1.0, 2.0, 3.0]), np.full(3, 10.0))
    assert (np.random.get_state()[1] == state).all()  # numpy's global random stream is left as it was


def test_old_records_summarize_with_n_a_and_new_ones_with_figures(tmp_path):
    records = [record("ppo", s, h) for s, h in enumerate([250, 500, None])]  # stopped at the first pass
    records += [record("ppo+dyna", s, 250, stay=250) for s in range(3)]
    paths = write_report(tmp_path, records)
    rows = {r["algo"]: r for r in summarize(records)}
    assert rows["ppo"]["stay_judged"] == 1 and rows["ppo"]["stay_median_real_steps"] is None
    assert rows["ppo"]["median_real_steps"] == 500 and rows["ppo+dyna"]["stay_speedup_vs_stock"] is None
    text = paths["md"].read_text()
    assert "| ppo | stays solved | n/a (1/3 runs can tell) | n/a | n/a | n/a |  |" in text
    assert "| ppo+dyna | stays solved | 3/3 | 250 (250 – 250) | 250 (250 – 250) | 250 – 250 |  |" in text
    assert "| ppo | first pass | 2/3 | 500 (250 – > 1,000) |" in text
    header, ppo_line = paths["csv"].read_text().splitlines()[:2]
    assert "stay_iqm_real_steps_ci_low" in header.split(",") and ",,," in ppo_line


def test_curves_have_a_log_real_step_axis_by_default(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr("sb3_plugins.benchmark.report.save_figure", lambda fig, path: figures.append(fig))
    records = [record("ppo", 0, 5000, budget=10_000, curve=[[250, 20.0], [5000, 480.0]]),
               record("ppo+dyna", 0, 500, curve=[[250, 100.0], [500, 480.0]]),
               record("sac", 0, None, env="Pendulum-v1", curve=[[200, -900.0]])]  # fmt: skip
    write_report(tmp_path, records)
    write_report(tmp_path, records, log_x=False)
    assert [ax.get_xscale() for ax in figures[0].axes] == ["log", "log"]
    assert [ax.get_xscale() for ax in figures[1].axes] == ["linear", "linear"]
    for command in (["report", "out"], ["bench"]):
        assert _parser().parse_args(command).log_x is True
        assert _parser().parse_args([*command, "--no-log-x"]).log_x is False
        assert _parser().parse_args([*command, "--log-x"]).log_x is True


def test_median_curve_carries_a_solved_run_forward():
    runs = [record("ppo", 0, None, curve=[[100, 10.0], [200, 20.0], [300, 30.0]]),
            record("ppo", 1, 200, curve=[[100, 50.0], [200, 480.0]])]  # fmt: skip
    grid, median, low, high = _median_curve(runs)
    assert list(grid) == [100, 200, 300]
    assert list(median) == [30.0, 250.0, 255.0] and list(low) == [10, 20, 30] and list(high) == [50, 480, 480]


def test_report_files(tmp_path):
    records = [record("ppo", 0, None, curve=[[250, 20.0], [500, 30.0]]), record("ppo+dyna", 0, 500,
               curve=[[250, 100.0], [500, 480.0]]), record("sac", 0, None, env="Pendulum-v1", curve=[])]  # fmt: skip
    paths = write_report(tmp_path, records, log_x=True)
    assert matplotlib.image.imread(paths["png"]).ndim == 3
    text = paths["md"].read_text()
    assert "## CartPole-v1 (threshold 475.0)" in text and "## Pendulum" in text
    assert "| ppo+dyna | first pass | 1/1 | 500 (500 – 500) |" in text and "| ppo+dyna | 1 | " in text
    assert paths["csv"].read_text().splitlines()[0].startswith("env,algo,runs,solved,threshold,budget")


# ---------------------------------------------------------------- backends and the command line
def tiny_specs(algos=("ppo", "a2c"), seeds=2):
    return plan_runs("CartPole-v1", list(algos), seeds=seeds, budget=256, eval_every=128, eval_episodes=1,
                     device="cpu", overrides={"CartPole-v1": {"ppo+dyna": {"dyna": TINY_DYNA}}})  # fmt: skip


def comparable(records):
    return sorted(({k: v for k, v in r.items() if k != "wall_seconds"} for r in records),
                  key=lambda r: (r["algo"], r["seed"]))  # fmt: skip


def test_in_process_pool_and_ray_backends_give_the_same_records():
    ray = pytest.importorskip("ray", reason="ray is in the test extra: pip install -e '.[test]'")
    specs = tiny_specs()
    by_backend = {}
    for name, kwargs in {
        "inline": dict(n_jobs=1),
        "pool": dict(n_jobs=2),
        "ray": dict(n_jobs=2, backend="ray"),
    }.items():
        records, steps = [], {}
        execute(specs, records.append, lambda key, n, steps=steps: steps.__setitem__(key, n), **kwargs)
        by_backend[name] = comparable(records)
        if name != "ray":
            assert set(steps) == {s.key for s in specs}  # real-step progress arrives from every run
    assert by_backend["inline"] == by_backend["pool"] == by_backend["ray"]
    assert len(by_backend["inline"]) == 4 and not ray.is_initialized()


def test_a_failing_run_does_not_lose_the_others():
    from sb3_plugins.benchmark import RunFailed

    good = tiny_specs(("ppo",), seeds=1)[0]
    bad = RunSpec("CartPole-v1", "ppo", 1, 256, 475.0, 128, 1, {"n_envs": 1, "agent": {"n_steps": -1}}, "cpu")
    records = []
    with pytest.raises(RunFailed, match="CartPole-v1 ppo seed 1"):
        execute([bad, good], records.append, n_jobs=2)
    assert [r["seed"] for r in records] == [0]


def test_cli_end_to_end_resume_and_report(tmp_path):
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(TINY_YAML)
    out = tmp_path / "out"

    def args(seeds: int) -> list[str]:
        # an unreachable threshold, so that each run goes on past its first rollout, where the dream starts
        return ["bench", "--algos", "ppo", "ppo+dyna", "--seeds", str(seeds), "--budget", "512", "--eval-every",
                "128", "--eval-episodes", "1", "--threshold", "1000", "--n-jobs", "1", "--out", str(out),
                "--hyperparams", str(overrides), "--device", "cpu"]  # fmt: skip

    first = bench(*args(1))
    assert first.returncode == 0, first.stderr
    records = ResultsDir(out).records()
    assert sorted(r["algo"] for r in records) == ["ppo", "ppo+dyna"]
    dyna = next(r for r in records if r["algo"] == "ppo+dyna")
    assert dyna["imagined_steps"] > 0 and dyna["real_steps"] == 512 and dyna["reward_termination"] == "learned"
    assert dyna["curve"][0][0] == 128 and dyna["command"].startswith("dream-envs bench --algos ppo ppo+dyna")
    assert {"versions", "hyperparameters", "wall_seconds", "threshold"} <= set(dyna)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "CartPole-v1: real steps to threshold" in first.stdout

    second = bench(*args(2))
    assert second.returncode == 0, second.stderr
    assert "4 runs on CartPole-v1 (2 already in" in second.stdout
    assert sorted((r["algo"], r["seed"]) for r in ResultsDir(out).records())[:2] == [("ppo", 0), ("ppo", 1)]
    assert [r for r in ResultsDir(out).records() if r["seed"] == 0] == records  # finished runs untouched

    (out / "summary.md").unlink()
    report = bench("report", str(out), "--log-x")
    assert report.returncode == 0, report.stderr
    assert (out / "summary.md").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (["bench", "--algos", "ppo", "trpo"], "unknown algo 'trpo'"),
        (["bench", "--env", "Pendulum-v1", "--algos", "dqn"], "'dqn' needs a Discrete action space"),
        (["bench", "--budget", "100", "--eval-every", "250"], "--budget 100 is below --eval-every 250"),
        (["bench", "--n-jobs", "0"], "--n-jobs must be a positive integer"),
        (["bench", "--ray-address", "auto"], "--ray-address 'auto' needs --backend ray"),
        (["bench", "--hyperparams", "missing.yaml"], "cannot read the hyperparameter file 'missing.yaml'"),
        (["report", "nowhere"], "results dir 'nowhere' does not exist"),
    ],
)
def test_cli_bad_input_is_one_clear_line_before_training(tmp_path, args, message):
    if args[0] == "bench":
        args = [*args, "--out", str(tmp_path / "out")]
    completed = bench(*args, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and message.replace("\\", "") in completed.stderr.replace("\\", "")
    assert not (tmp_path / "out").exists()


def test_the_console_script_finds_the_users_module_in_the_folder_it_runs_in(tmp_path):
    # `python -m sb3_plugins` has the current folder on sys.path; the `dream-envs` script had not, and told a user
    # who passed --env my_module:MyEnv-v0 from my_module's folder to pass exactly that
    import shutil

    script = shutil.which("dream-envs")
    if script is None:
        pytest.skip("the dream-envs console script is not installed (pip install -e .)")
    (tmp_path / "tiny_registry.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('TinyReg-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=50)\n"
    )
    found = subprocess.run([script, "bench", "--env", "tiny_registry:TinyReg-v0", "--eval-episodes", "0"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert found.returncode == 2 and "--eval-episodes must be a positive integer" in found.stderr, found.stderr
    missing = subprocess.run([script, "bench", "--env", "not_here:TinyReg-v0"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)  # fmt: skip
    assert "'not_here' must be importable here: run from the folder that holds it" in missing.stderr
    assert not (tmp_path / "results").exists()


def test_the_top_level_help_says_what_each_command_does_in_whole_sentences():
    described = _parser().description
    assert "``" not in described and described.endswith("disagreement.")
    assert all(f"{command} " in described for command in ("bench", "report", "diagnose"))


def test_the_dream_envs_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="dream-envs")
    assert script.value == "sb3_plugins.cli:main"


def test_cli_refuses_a_foreign_results_dir(tmp_path):
    (tmp_path / "results.jsonl").write_text("timestamp,score\n")
    completed = bench("bench", "--out", str(tmp_path), timeout=120)
    assert completed.returncode == 2 and "is not a dream-envs benchmark record" in completed.stderr


def test_cli_without_the_bench_extra_says_what_to_install(tmp_path, monkeypatch, capsys):
    from sb3_plugins.cli import main

    monkeypatch.setitem(sys.modules, "rliable", None)  # as if not installed: import raises ImportError
    assert main(["bench", "--out", str(tmp_path / "out")]) == 2
    assert 'pip install "dream-envs[bench]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_do_no_harm_margin_and_wall_ratio_compare_dyna_with_stock_check_by_check():
    from sb3_plugins.benchmark.report import check_margin

    stock = [record("ppo", s, None, curve=[[250, 100.0], [500, 200.0], [750, 300.0]], wall_seconds=10.0)
             for s in range(3)]  # fmt: skip
    # +dyna: ahead at 250, 45 behind at 500 (threshold 475, random 25: 10% of the distance is 45), then solved
    dyna = [record("ppo+dyna", s, 750, curve=[[250, 150.0], [500, 155.0], [750, 480.0]], wall_seconds=25.0)
            for s in range(3)]  # fmt: skip
    worst, at = check_margin(dyna, stock, threshold=475.0, random=25.0)
    assert worst == pytest.approx(-0.1) and at == 500
    # checks on another grid compare with the stock run's last check at or before them; none before its first
    late = [record("ppo+dyna", 0, 600, curve=[[100, 0.0], [600, 480.0]])]
    assert check_margin(late, stock, 475.0, 25.0) == (pytest.approx((480 - 200) / 450), 600)
    rows = {r["algo"]: r for r in summarize(stock + dyna)}
    assert rows["ppo+dyna"]["wall_vs_stock"] == 2.5 and rows["ppo+dyna"]["worst_check_vs_stock"] < 0
    assert rows["ppo"]["worst_check_vs_stock"] is None


def test_the_random_return_is_measured_and_seeded():
    from sb3_plugins.benchmark.metrics import random_return

    value = random_return("CartPole-v1", episodes=5, seed=3)
    assert 8 < value < 60 and value == random_return("CartPole-v1", episodes=5, seed=3)


def test_a_run_never_checks_past_its_budget():
    # PPO's rollouts are 8 x 32 real steps on CartPole: learn(300) runs to 512, and checks at 304 and 456 would
    # let a pass rank a solved run behind an unsolved one (which counts as its budget). The threshold of -1 makes
    # every check a pass, so the record's figures are those of the checks taken.
    spec = RunSpec("CartPole-v1", "ppo", 0, budget=300, threshold=-1.0, eval_every=100, eval_episodes=1,
                   stop_at_threshold=False, hyperparams=hyperparams_for("CartPole-v1", "ppo"),
                   device="cpu")  # fmt: skip
    record = run_one(spec)
    assert spec.hyperparams["n_envs"] == 8 and record["real_steps"] == 512  # what SB3 ran, reported as it is
    assert [steps for steps, _ in record["curve"]] == [104, 200]  # the next check's step (304) is past 300
    assert (record["real_steps_to_threshold"], record["real_steps_to_stay_solved"]) == (104, None)  # 2 checks of 3
