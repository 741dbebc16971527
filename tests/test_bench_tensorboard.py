"""``dream-envs bench --tensorboard-log DIR``: one TensorBoard run folder per run, for SB3's agents and dream-envs'
own, without changing what a run is (its record, and whether a resumed benchmark counts it as done)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="TensorBoard logs need the tensorboard package (the test extra has it)")
pytest.importorskip("rliable", reason="dream-envs bench summarises with rliable (the bench extra)")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from dream_envs.agents import DynaQ  # noqa: E402
from sb3_plugins.benchmark import RunSpec, hyperparams_for, plan_runs, run_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["--env", "CartPole-v1", "--algos", "ppo", "--budget", "200", "--eval-every", "100", "--seeds", "1",
            "--eval-episodes", "1", "--n-jobs", "1", "--no-progress"]  # fmt: skip


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sb3_plugins", "bench", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def scalar_tags(run_folder: Path) -> set[str]:
    events = list(run_folder.glob("events.out.tfevents.*"))
    assert len(events) == 1, f"expected one events file in {run_folder}, found {events}"
    accumulator = EventAccumulator(str(run_folder))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def test_bench_writes_one_tensorboard_run_per_run_and_resumes_without_it(tmp_path):
    out, tb = tmp_path / "out", tmp_path / "tb"
    completed = bench(*TINY_RUN, "--out", str(out), "--tensorboard-log", str(tb))
    assert completed.returncode == 0, completed.stderr
    assert [p.name for p in tb.iterdir()] == ["CartPole-v1_ppo_seed0_1"]
    assert {"rollout/ep_rew_mean", "eval/mean_reward"} <= scalar_tags(tb / "CartPole-v1_ppo_seed0_1")
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert not any("tensorboard" in key for key in record)  # where the logs went is no setting of the run
    # The same benchmark without the option (or with another folder) finds its run done: its identity is unchanged.
    again = bench(*TINY_RUN, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "1 runs on CartPole-v1 (1 already in" in " ".join(again.stdout.split())
    assert [p.name for p in tb.iterdir()] == ["CartPole-v1_ppo_seed0_1"]


def test_a_run_spec_names_its_tensorboard_run_and_keeps_its_settings():
    spec = RunSpec("my_pkg.envs:Dance-v0", "ppo+dyna", 3, 100, None, 50, tensorboard_log="tb")
    assert spec.tb_log_name == "my_pkg.envs_Dance-v0_ppo+dyna_seed3"  # ':' and '/' make no folder names
    assert spec.settings() == dataclasses.replace(spec, tensorboard_log=None).settings()


def test_own_agents_log_their_run_into_its_own_folder(tmp_path):
    # 300 real steps: enough episodes (10) for MuZero's first log dump
    spec = RunSpec("CartPole-v1", "muzero", 0, budget=300, threshold=1000.0, eval_every=300, eval_episodes=1,
                   hyperparams={**hyperparams_for("CartPole-v1", "muzero"), "n_envs": 2,
                                "agent": {"num_simulations": 4, "batch_size": 8, "learning_starts": 16}},
                   device="cpu", tensorboard_log=str(tmp_path))  # fmt: skip
    run_one(spec)
    assert [p.name for p in tmp_path.iterdir()] == ["CartPole-v1_muzero_seed0_1"]
    assert "train/loss" in scalar_tags(tmp_path / "CartPole-v1_muzero_seed0_1")


def test_model_based_agents_open_a_run_folder_per_learn_call_like_sb3(tmp_path):
    agent = DynaQ("FrozenLake-v1", planning_steps=2, seed=0, tensorboard_log=str(tmp_path))
    agent.learn(300, log_interval=1)
    agent.learn(300, log_interval=1)  # a new run
    agent.learn(300, log_interval=1, reset_num_timesteps=False)  # goes on in the last run's folder
    agent.learn(300, log_interval=1, tb_log_name="second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DynaQ_1", "DynaQ_2", "second_1"]
    assert "rollout/ep_rew_mean" in scalar_tags(tmp_path / "DynaQ_1")
    with pytest.raises(ValueError, match="tb_log_name must be a non-empty string"):
        agent.learn(10, tb_log_name=False)


def test_bad_tensorboard_folders_are_refused_before_any_run(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--tensorboard-log .* is a file"):
        plan_runs("CartPole-v1", ["ppo"], seeds=1, tensorboard_log=str(blocker))
    overrides = {"CartPole-v1": {"ppo": {"agent": {"tensorboard_log": "elsewhere"}}}}
    with pytest.raises(ValueError, match="tensorboard_log='elsewhere' and --tensorboard-log"):
        plan_runs("CartPole-v1", ["ppo"], seeds=1, overrides=overrides, tensorboard_log=str(tmp_path))
