"""A benchmark run that stops part-way goes on from its last checkpoint (sb3_plugins.benchmark.resume): a MuJoCo
``+dyna`` run takes an hour or more on one core, longer than a machine may stay."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rliable", reason="dream-envs bench summarises with rliable (the bench extra)")

from dream_envs import ModelFileError  # noqa: E402
from sb3_plugins.benchmark import RunSpec, hyperparams_for, plan_runs, run_one  # noqa: E402
from sb3_plugins.benchmark.resume import (  # noqa: E402
    RunCheckpoint,
    check_checkpoints,
    checkpoint_folder,
    load_run,
    remove_checkpoint,
)
from sb3_plugins.benchmark.runner import _check, build_agent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL_DYNA = {"fit_kwargs": {"max_epochs": 3}, "ensemble_kwargs": {"hidden_sizes": (32, 32)}, "rollout_batch_size": 50,
              "utd_ratio": 2, "n_dream_envs": 16, "dream_rollouts": 2}  # fmt: skip


def spec_of(env_id: str, algo: str, out: Path, budget: int = 800, **changes) -> RunSpec:
    hyperparams = hyperparams_for(env_id, algo)
    if algo.endswith("+dyna"):
        hyperparams["dyna"] = dict(SMALL_DYNA)
    spec = RunSpec(env_id, algo, seed=0, budget=budget, threshold=None, eval_every=200, eval_episodes=2,
                   hyperparams=hyperparams, device="cpu", stop_at_threshold=False, checkpoint_dir=str(out),
                   checkpoint_seconds=0)  # fmt: skip
    return dataclasses.replace(spec, **changes)


def interrupted(spec: RunSpec, at: int) -> None:
    """Run ``spec`` until ``at`` real steps, then stop it as Ctrl-C (or a lost machine) would."""

    def stop(steps: int) -> None:
        if steps >= at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_one(spec, progress=stop)


@pytest.mark.parametrize(
    "env_id, algo",
    [("Pendulum-v1", "sac+dyna"), ("CartPole-v1", "dqn"), ("CartPole-v1", "ppo+dyna")],
    ids=["off-policy+dyna", "off-policy", "on-policy+dyna"],
)
def test_a_run_stopped_part_way_goes_on_from_its_last_checkpoint(env_id, algo, tmp_path):
    spec = spec_of(env_id, algo, tmp_path)
    interrupted(spec, at=700)
    folder = checkpoint_folder(tmp_path, spec)
    saved = json.loads((folder / "run.json").read_text())
    # saved when the first rollout after the check at 400 started (SAC: at once; DQN and PPO: at 512)
    assert saved["real_steps"] >= 400 and [s for s, _ in saved["check"]["curve"]] == [200, 400, 600][
        : len(saved["check"]["curve"])] and len(saved["check"]["curve"]) >= 2  # fmt: skip
    assert check_checkpoints(tmp_path, [spec]) == {spec.key: saved["real_steps"]}
    record = run_one(spec)
    assert record["resumed_at"] == [saved["real_steps"]]
    # the checks before the stop are kept as they were; the run goes on to its budget from there
    assert record["curve"][: len(saved["check"]["curve"])] == saved["check"]["curve"]
    # a check every 200 real steps to the budget (the last rollout may go past it, as in a run never stopped: no
    # check there)
    assert [steps for steps, _ in record["curve"]] == list(range(200, spec.budget + 1, 200))
    assert record["real_steps"] >= spec.budget
    assert record["wall_seconds"] >= saved["wall_seconds"]  # both pieces' training time
    if algo.endswith("+dyna"):
        assert record["model_fits"] > torch.load(folder / "dyna.pt", weights_only=True)["progress"]["model_fits"] > 0


def test_a_restored_run_is_the_saved_one_networks_optimisers_replay_model_and_check(tmp_path):
    spec = spec_of("Pendulum-v1", "sac+dyna", tmp_path)
    agent, dyna = build_agent(spec)
    check = _check(spec, float("inf"))
    saver = RunCheckpoint(checkpoint_folder(tmp_path, spec), spec, check, dyna, every_seconds=0)
    agent.learn(450, callback=[dyna, check, saver])
    assert saver.saves == 2  # after the checks of 200 and 400 real steps (SAC's rollouts are 1 step long)
    saver.save()  # and now, at 450 steps: a fresh restore must give this state back
    old_agent, old_dyna = agent, dyna
    numpy_state = np.random.get_state()[1].copy()
    np.random.rand(5)  # the global generators move on before the restore
    fresh, _ = build_agent(spec)
    fresh_check = _check(spec, float("inf"))
    restored_dyna, wall, resumed_at = load_run(checkpoint_folder(tmp_path, spec), spec, fresh, fresh_check)
    assert resumed_at == [450] and wall > 0
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # the global generators are the saved ones
    for name, values in old_agent.get_parameters().items():
        for key, value in _flat(values).items():
            assert _equal(value, _flat(fresh.get_parameters()[name])[key]), f"{name}.{key}"
    assert torch.equal(fresh.log_ent_coef, old_agent.log_ent_coef)
    assert (fresh.num_timesteps, fresh._n_updates, fresh._episode_num) == (
        old_agent.num_timesteps, old_agent._n_updates, old_agent._episode_num)  # fmt: skip
    real = old_agent.replay_buffer.real
    assert fresh.replay_buffer.pos == real.pos == 450 and not fresh.replay_buffer.full
    assert np.array_equal(fresh.replay_buffer.observations[:450], real.observations[:450])
    assert np.array_equal(fresh.replay_buffer.actions[:450], real.actions[:450])
    assert restored_dyna.model_fits == old_dyna.model_fits and len(restored_dyna.real) == len(old_dyna.real)
    assert fresh_check.curve == check.curve and fresh_check._next == check._next
    assert fresh_check.eval_env.unwrapped.np_random.bit_generator.state == (
        check.eval_env.unwrapped.np_random.bit_generator.state)  # fmt: skip


def _flat(state: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                out.update(_flat(item, f"{prefix}{key}.{i}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _equal(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_a_checkpoint_of_other_settings_or_a_damaged_one_is_named_before_training(tmp_path):
    spec = spec_of("CartPole-v1", "dqn", tmp_path)
    interrupted(spec, at=700)
    folder = checkpoint_folder(tmp_path, spec)
    steps = json.loads((folder / "run.json").read_text())["real_steps"]
    with pytest.raises(ValueError, match=r"part-done CartPole-v1 dqn seed 0 run with other settings \(budget: saved "
                                         r"800, asked 900\)"):  # fmt: skip
        check_checkpoints(tmp_path, [dataclasses.replace(spec, budget=900)])
    # a save cut between its two renames leaves the previous checkpoint, under .old: it is used
    folder.rename(folder.with_name(folder.name + ".old"))
    assert check_checkpoints(tmp_path, [spec]) == {spec.key: steps}
    old = folder.with_name(folder.name + ".old")
    agent_file = (old / "agent.pt").read_bytes()
    (old / "agent.pt").write_bytes(agent_file[:100])
    with pytest.raises(ModelFileError, match=r"agent.pt' could not be read.*remove the folder"):
        check_checkpoints(tmp_path, [spec])  # before any run trains, not when this one starts
    agent, _ = build_agent(spec)
    with pytest.raises(ModelFileError, match="remove the folder"):
        load_run(folder, spec, agent, _check(spec, float("inf")))
    (old / "agent.pt").unlink()
    with pytest.raises(ModelFileError, match="lacks its agent.pt; remove the folder"):
        check_checkpoints(tmp_path, [spec])
    (old / "agent.pt").write_bytes(agent_file)
    narrow = {**spec.hyperparams, "agent": {**spec.hyperparams["agent"], "policy_kwargs": {"net_arch": [8]}}}
    narrow_agent, _ = build_agent(dataclasses.replace(spec, hyperparams=narrow))
    unfit = r"(?s)does not fit CartPole-v1 dqn seed 0 \(RuntimeError: .*\); remove the folder "
    with pytest.raises(ModelFileError, match=unfit + re.escape(repr(str(old))) + " to start the run over"):
        load_run(old, spec, narrow_agent, _check(spec, float("inf")))
    good = (old / "run.json").read_text()
    for field, value in (("real_steps", "x"), ("wall_seconds", "abc"), ("resumed_at", "ab")):
        (old / "run.json").write_text(json.dumps({**json.loads(good), field: value}))
        with pytest.raises(ModelFileError, match=rf"run.json' has bad or missing fields \({field}\)"):
            check_checkpoints(tmp_path, [spec])
    (old / "run.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"run.json' is not a readable run checkpoint"):
        check_checkpoints(tmp_path, [spec])
    remove_checkpoint(tmp_path, spec)
    assert check_checkpoints(tmp_path, [spec]) == {} and not old.exists()
    assert not (tmp_path / "checkpoints").exists()  # the last run's checkpoint gone, its folder goes too
    folder.mkdir(parents=True)  # a save cut before its run.json: no checkpoint, said so
    with pytest.warns(UserWarning, match="holds no run.json .* the run starts over"):
        assert check_checkpoints(tmp_path, [spec]) == {}


def test_a_save_cut_after_its_last_file_resumes_from_the_newest_state(tmp_path):
    spec = spec_of("CartPole-v1", "dqn", tmp_path)
    interrupted(spec, at=700)  # checkpoints at 256 and 512 real steps (DQN's 256-step rollouts)
    folder = checkpoint_folder(tmp_path, spec)
    # as if the save at 512 were cut after writing .partial whole, with the 256 one renamed to .old
    folder.rename(folder.with_name(folder.name + ".partial"))
    assert check_checkpoints(tmp_path, [spec]) == {spec.key: 512}


def test_hyperparameters_that_differ_are_named_down_to_the_key(tmp_path):
    spec = spec_of("CartPole-v1", "dqn", tmp_path)
    interrupted(spec, at=300)
    changed = dataclasses.replace(spec, hyperparams={**spec.hyperparams, "agent": {
        **spec.hyperparams["agent"], "learning_rate": 1e-3}})  # fmt: skip
    with pytest.raises(ValueError, match=r"\(hyperparameters.agent.learning_rate: saved 0.0023, asked 0.001\)"):
        check_checkpoints(tmp_path, [changed])


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sb3_plugins", "bench", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def test_bench_goes_on_with_a_part_done_run_and_removes_its_checkpoint_once_recorded(tmp_path):
    args = ["--env", "CartPole-v1", "--algos", "dqn", "--budget", "800", "--eval-every", "200", "--seeds", "1",
            "--eval-episodes", "2", "--keep-training", "--n-jobs", "1", "--no-progress", "--device", "cpu"]  # fmt: skip
    # the run bench plans, stopped part-way with a checkpoint at every check
    (spec,) = plan_runs("CartPole-v1", ["dqn"], 1, 800, None, 200, 2, "cpu", stop_at_threshold=False)
    interrupted(dataclasses.replace(spec, checkpoint_dir=str(tmp_path), checkpoint_seconds=0), at=700)
    completed = bench(*args, "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert "dqn seed 0 goes on from its checkpoint at 512 real steps" in completed.stdout
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["resumed_at"] == [512] and record["real_steps"] >= 800
    assert not checkpoint_folder(tmp_path, spec).exists()
    # a checkpoint left behind by a run that was recorded (stopped between the two) goes at the next call
    checkpoint_folder(tmp_path, spec).mkdir(parents=True)
    again = bench(*args, "--out", str(tmp_path))
    assert again.returncode == 0 and "1 already in" in " ".join(again.stdout.split())
    assert not checkpoint_folder(tmp_path, spec).exists()
    # --checkpoint-minutes 0 writes none, and still goes on from an existing one (it used to drop it)
    interrupted(dataclasses.replace(spec, checkpoint_dir=str(tmp_path / "zero"), checkpoint_seconds=0), at=700)
    zero = bench(*args, "--out", str(tmp_path / "zero"), "--checkpoint-minutes", "0")
    assert zero.returncode == 0, zero.stderr
    assert json.loads((tmp_path / "zero" / "results.jsonl").read_text())["resumed_at"] == [512]
    fresh = bench(*args, "--out", str(tmp_path / "fresh"), "--checkpoint-minutes", "0")
    assert fresh.returncode == 0 and not (tmp_path / "fresh" / "checkpoints").exists()
    refused = bench(*args, "--out", str(tmp_path / "other"), "--checkpoint-minutes", "-1")
    assert refused.returncode != 0 and "--checkpoint-minutes must be a number of minutes >= 0" in refused.stderr
