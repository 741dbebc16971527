"""rl-zoo3 trains with :class:`sb3_plugins.DynaCallback` named in its YAML (issue 16, docs/rl_zoo.md).

The real package, run as a user runs it (``python -m rl_zoo3.train``) in a subprocess: the zoo builds the callback
from the YAML before it builds the agent and its VecEnv, so what reaches the callback (the seed, VecNormalize) is
the zoo's own doing and only a real run shows it. rl_zoo3 comes with the ``test`` extra.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from sb3_plugins import DynaCallback

DOC = Path(__file__).resolve().parents[1] / "docs" / "rl_zoo.md"

# The YAML of docs/rl_zoo.md, made small: a few hundred real steps, a tiny ensemble, four refits. trust_errors: null
# uses the dream whatever two epochs make of the model, so the imagined branches are exercised too; utd_ratio: null
# keeps the YAML's gradient_steps (checked below).
CONF = """\
Pendulum-v1:
  n_timesteps: 300
  policy: 'MlpPolicy'
  learning_starts: 100
  batch_size: 64
  gradient_steps: 2
  policy_kwargs: "dict(net_arch=[32, 32])"
{extra}  callback:
    - sb3_plugins.DynaCallback:
        ensemble_kwargs: {{hidden_sizes: [16]}}
        fit_kwargs: {{max_epochs: 2}}
        model_train_freq: 100
        n_dream_envs: 4
        rollout_batch_size: 32
        utd_ratio: null
        trust_errors: null
        verbose: 1
"""
FIT = re.compile(r"^DynaCallback: model fit (\d+) on (\d+) real steps", re.M)


def train(tmp_path: Path, name: str, seed: int, extra: str = "") -> tuple[str, Path]:
    """Run the zoo's train script; return its output and the folder it saved the run in."""
    conf = tmp_path / f"{name}.yml"
    conf.write_text(CONF.format(extra=extra))
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "sac", "--env", "Pendulum-v1", "-conf", str(conf),
        "-n", "300", "--seed", str(seed), "-f", str(tmp_path / name),
        "--eval-freq", "-1",  # the zoo's own EvalCallback is not under test
        "--log-interval", "1",  # dump the logger after every (200-step) episode, so dyna/ keys reach stdout
        "--verbose", "1", "--device", "cpu", "--num-threads", "1",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"rl_zoo3.train exited {run.returncode}:\n{output[-4000:]}"
    return output, tmp_path / name / "sac" / "Pendulum-v1_1"


def logged(output: str) -> dict[str, float]:
    """The last value of every key in the SB3 logger tables the run printed (``section/key``)."""
    values: dict[str, float] = {}
    section = ""
    for line in output.splitlines():
        match = re.match(r"^\|( *)(\S+) *\| *(\S*) *\|$", line)
        if not match:
            continue
        indent, key, value = match.groups()
        if len(indent) == 1:  # a section header, "| dyna/ |   |"
            section = key
        elif value:
            values[section + key] = float(value)
    return values


def saved_parameters(run_folder: Path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(run_folder / "Pendulum-v1.zip") as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)


def check_dyna_ran(output: str) -> dict[str, float]:
    fits = [(int(n), int(steps)) for n, steps in FIT.findall(output)]
    # from min_real_steps as the data grow by half (refit_growth), until model_train_freq (100) apart
    assert fits == [(1, 64), (2, 96), (3, 144), (4, 216)], output[-4000:]
    values = logged(output)
    assert {"dyna/model_trust", "dyna/model_holdout_loss", "dyna/real_ratio"} <= set(values), sorted(values)
    assert values["dyna/imagined_steps"] > 0  # the imagined branches went into the agent's buffer
    return values


@pytest.fixture(scope="module")
def seed_5(tmp_path_factory) -> tuple[str, Path]:
    """One run, shared: the plain test checks it, the seed test compares it with two more."""
    return train(tmp_path_factory.mktemp("zoo"), "a", seed=5)


def test_the_zoo_trains_sac_with_dyna_callback_from_its_yaml(seed_5):
    output, folder = seed_5
    values = check_dyna_ran(output)
    # utd_ratio: null keeps the YAML's gradient_steps: 2 per real step (train_freq 1), nothing added.
    assert values["dyna/gradient_steps"] == 2
    assert (folder / "Pendulum-v1.zip").exists()


def test_the_zoo_trains_with_dyna_callback_under_normalize(tmp_path):
    """``normalize: true`` makes the zoo wrap the env in VecNormalize (observations and rewards): the callback
    still fits its model and dreams."""
    output, folder = train(tmp_path, "normalized", seed=3, extra="  normalize: true\n")
    check_dyna_ran(output)
    # The zoo saves VecNormalize's statistics only when it wrapped the env in one: it did, and ended as usual.
    assert (folder / "Pendulum-v1" / "vecnormalize.pkl").exists()


def test_the_zoos_seed_reaches_the_callback(tmp_path, seed_5):
    """The zoo builds the callback from the YAML before the agent and passes ``--seed`` to the agent only: the
    callback takes the agent's seed, so two runs with one seed are identical (the model's losses and the agent's
    as logged, and the saved policy), and another seed gives another run."""
    runs = {"a": seed_5, "b": train(tmp_path, "b", seed=5), "c": train(tmp_path, "c", seed=6)}
    # Everything logged but the wall-clock numbers (time/fps, dyna/model_fit_seconds...), as text: NaN == NaN.
    values = {name: {k: str(v) for k, v in logged(output).items() if not k.startswith("time/") and "seconds" not in k}
              for name, (output, _) in runs.items()}  # fmt: skip
    params = {name: saved_parameters(folder) for name, (_, folder) in runs.items()}
    assert "dyna/model_holdout_loss" in values["a"]
    assert values["a"] != values["c"]  # different seeds: the comparisons below can tell runs apart
    assert any(not torch.equal(params["a"][key], params["c"][key]) for key in params["a"])
    assert values["a"] == values["b"]
    assert all(torch.equal(params["a"][key], params["b"][key]) for key in params["a"])


def test_the_docs_yaml_builds_its_callbacks():
    """Every YAML block of docs/rl_zoo.md is a zoo entry whose callbacks rl_zoo3's own parser builds: the names
    and arguments the page shows exist and pass DynaCallback's checks (no training: that is the tests above)."""
    from rl_zoo3.utils import get_callback_list

    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.M | re.S)
    assert len(blocks) >= 3
    for block in blocks:
        for env_id, entry in yaml.safe_load(block).items():
            callbacks = get_callback_list(entry)
            assert any(isinstance(callback, DynaCallback) for callback in callbacks), (env_id, entry)
