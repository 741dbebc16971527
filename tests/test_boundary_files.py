"""Damaged files: every kind of file dream-envs saves either loads exactly as saved or raises ``ModelFileError``
naming the file and what is wrong (flipped bytes, truncation, a missing entry, NaN, no zip at all, no bytes)."""

from __future__ import annotations

import io
import math
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from dream_envs import EnsembleDynamics, ModelFileError, TransitionBuffer
from dream_envs.agents import DynaQ, MPCAgent

CARTPOLE = gym.make("CartPole-v1")


def record_span(data: bytes, member: str) -> tuple[int, int]:
    """Where the stored bytes of one zip member lie in ``data``: after its local header, ``compress_size`` long."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def largest_tensor_record(data: bytes) -> str:
    """The biggest tensor record of a ``torch.save`` file (``archive/data/N``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        records = [info for info in archive.infolist() if "/data/" in info.filename]
    return max(records, key=lambda info: info.file_size).filename


def rewrite_torch(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def rewrite_npz(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    with np.load(path) as archive:
        content = {name: archive[name] for name in archive.files}
    change(content)
    with open(path, "wb") as handle:  # np.savez_compressed would add ".npz" to a str path of another suffix
        np.savez_compressed(handle, **content)


def poison(array: Any, index: tuple[int, ...]) -> None:
    array[index] = math.nan


@dataclass
class Kind:
    """One kind of file: how to make it, load it, compare loads, and where its entries and numbers lie."""

    make: Callable[[Path], Any]  # -> the saved object; its file is written to the path given
    load: Callable[[Path], Any]
    snapshot: Callable[[Any], dict[str, np.ndarray]]
    record: Callable[[bytes], str]  # the zip member whose bytes are flipped
    rewrite: Callable[[Path, Callable], None]
    # (change, what the message must name): each drops one entry / puts one NaN in
    missing: list[tuple[Callable[[dict], None], str]]
    nan: list[tuple[Callable[[dict], None], str]]


def make_model(path: Path) -> EnsembleDynamics:
    buffer = TransitionBuffer.from_env(CARTPOLE).collect(CARTPOLE, 200, seed=0)
    model = EnsembleDynamics(CARTPOLE.observation_space, CARTPOLE.action_space, ensemble_size=2, num_elites=2,
                             hidden_sizes=(16,), device="cpu", seed=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too little data to calibrate the cutoff: not what is tested here
        model.fit(buffer, max_epochs=2, seed=0)
    model.save(path)
    return model


def make_transitions(path: Path) -> TransitionBuffer:
    buffer = TransitionBuffer.from_env(CARTPOLE).collect(CARTPOLE, 40, seed=0)
    buffer.save(path)
    return buffer


def make_dyna_q(path: Path) -> DynaQ:
    agent = DynaQ("FrozenLake-v1", planning_steps=3, seed=0).learn(300)
    agent.save(path)
    return agent


def make_mpc(path: Path) -> MPCAgent:
    # the random phase only (no fit, no plan): the file still holds a model payload, the buffer and the counters
    agent = MPCAgent("Pendulum-v1", horizon=2, population=8, iterations=1, particles=4, learning_starts=50,
                     train_freq=50, terminal_value=False, fit_kwargs={"max_epochs": 1}, device="cpu", seed=0,
                     ensemble_kwargs={"ensemble_size": 4, "num_elites": 4, "hidden_sizes": (8,)})  # fmt: skip
    agent.learn(20)
    agent.save(path)
    return agent


def model_snapshot(model: EnsembleDynamics) -> dict[str, np.ndarray]:
    return {name: value.cpu().numpy() for name, value in model.state_dict().items()}


def transitions_snapshot(buffer: TransitionBuffer) -> dict[str, np.ndarray]:
    return buffer.transitions()._asdict()


def dyna_q_snapshot(agent: DynaQ) -> dict[str, np.ndarray]:
    states = np.arange(agent.observation_space.n)
    return {"q": agent.q, "last_tried": agent.last_tried, "visited": agent.visited, "counts": agent.model.counts,
            "greedy": agent.predict(states, deterministic=True)[0], "steps": np.array(agent.num_timesteps)}  # fmt: skip


def mpc_snapshot(agent: MPCAgent) -> dict[str, np.ndarray]:
    return {**{f"model.{k}": v for k, v in model_snapshot(agent.model).items()},
            **{f"buffer.{k}": v for k, v in transitions_snapshot(agent.buffer).items()},
            "steps": np.array(agent.num_timesteps)}  # fmt: skip


def drop(container: dict, key: str) -> None:
    del container[key]


KINDS = {
    "model": Kind(
        make_model, lambda path: EnsembleDynamics.load(path, device="cpu"), model_snapshot, largest_tensor_record,
        rewrite_torch,
        missing=[(lambda p: drop(p, "state_dict"), "'state_dict'"),
                 (lambda p: drop(p, "observation_space"), "observation_space"),
                 (lambda p: drop(p["state_dict"], "in_mean"), "in_mean")],
        nan=[(lambda p: poison(p["state_dict"]["hidden.0.weight"], (1, 2, 3)), "1 NaN/inf value(s) in its tensor "
              "'hidden.0.weight'"),
             (lambda p: poison(p["state_dict"]["out_std"], (1,)), "tensor 'out_std'")],
    ),
    "transitions": Kind(
        make_transitions, lambda path: TransitionBuffer.load(path, CARTPOLE.observation_space, CARTPOLE.action_space),
        transitions_snapshot, lambda data: "obs.npy", rewrite_npz,
        missing=[(lambda c: drop(c, "reward"), "'reward'"), (lambda c: drop(c, "format_version"), "'format_version'"),
                 (lambda c: c.update(terminated=c["terminated"][:-1]), "'terminated' column has shape (39,)"),
                 (lambda c: c.update(action=c["action"].astype(np.float32)), "'action' column has shape (40,) and "
                  "dtype float32")],
        nan=[(lambda c: poison(c["reward"], (3,)), "'reward' column holds NaN/inf in 1 of 40 row(s)"),
             (lambda c: poison(c["next_obs"], (5, 2)), "'next_obs' column holds NaN/inf in 1 of 40 row(s)")],
    ),
    "DynaQ agent": Kind(
        make_dyna_q, lambda path: DynaQ.load(path, "FrozenLake-v1"), dyna_q_snapshot, largest_tensor_record,
        rewrite_torch,
        missing=[(lambda p: drop(p, "hyperparams"), "'hyperparams' entry"),
                 (lambda p: drop(p, "state"), "'state' entry"),
                 (lambda p: drop(p["state"], "q"), "no entry 'q' in its learned state"),
                 (lambda p: drop(p["state"]["model"], "counts"), "no entry 'counts' in its learned state")],
        nan=[(lambda p: poison(p["state"]["q"], (4, 1)), "NaN/inf values in state['q']"),
             (lambda p: poison(p["state"]["model"]["rewards"], (0, 0, 0)), "state['model']['rewards']")],
    ),
    "MPCAgent": Kind(
        make_mpc, lambda path: MPCAgent.load(path, "Pendulum-v1"), mpc_snapshot, largest_tensor_record,
        rewrite_torch,
        missing=[(lambda p: drop(p, "action_space"), "'action_space' entry"),
                 (lambda p: drop(p["state"], "model_fits"), "no entry 'model_fits' in its learned state"),
                 (lambda p: drop(p["state"]["buffer"], "reward"), "no entry 'reward' in its learned state"),
                 (lambda p: drop(p["state"]["model"], "state_dict"), "'state_dict'")],
        nan=[(lambda p: poison(p["state"]["buffer"]["obs"], (2, 1)), "NaN/inf values in state['buffer']['obs']"),
             (lambda p: poison(p["state"]["model"]["state_dict"]["head.weight"], (1, 0, 0)),
              "the saved agent's model holds 1 NaN/inf value(s) in its tensor 'head.weight'")],
    ),
}  # fmt: skip
SUFFIX = {"transitions": ".npz"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, tuple[Any, bytes]]:
    """Each kind's object and the bytes of its undamaged file, made once."""
    folder = tmp_path_factory.mktemp("saved")
    made = {}
    for name, kind in KINDS.items():
        path = folder / f"{name.replace(' ', '_')}{SUFFIX.get(name, '.pt')}"
        made[name] = (kind.make(path), path.read_bytes())
    return made


def damaged_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"damaged{SUFFIX.get(name, '.pt')}"
    path.write_bytes(data)
    return path


def assert_same(loaded: dict[str, np.ndarray], original: dict[str, np.ndarray]) -> None:
    assert loaded.keys() == original.keys()
    for key in original:
        np.testing.assert_array_equal(loaded[key], original[key], err_msg=key)


@pytest.mark.parametrize("name", KINDS)
def test_an_undamaged_file_loads_as_it_was_saved(saved, tmp_path, name):
    kind, (original, data) = KINDS[name], saved[name]
    assert_same(kind.snapshot(kind.load(damaged_file(tmp_path, name, data))), kind.snapshot(original))


@pytest.mark.parametrize("name", KINDS)
def test_flipped_bytes_in_the_middle_of_a_record_are_caught(saved, tmp_path, name):
    kind, (_, data) = KINDS[name], saved[name]
    member = kind.record(data)
    start, end = record_span(data, member)
    assert end - start >= 8
    middle = (start + end) // 2
    damaged = bytearray(data)
    damaged[middle : middle + 4] = bytes(byte ^ 0xFF for byte in damaged[middle : middle + 4])
    path = damaged_file(tmp_path, name, bytes(damaged))
    with pytest.raises(ModelFileError) as caught:
        kind.load(path)
    message = str(caught.value)
    assert str(path) in message and "corrupted" in message
    if name != "transitions":  # torch files: the check names the record (an .npz's deflate may fail first)
        assert f"record {member!r} fails its CRC-32 check" in message


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.99])
def test_a_truncated_file_is_named(saved, tmp_path, name, fraction):
    kind, (_, data) = KINDS[name], saved[name]
    path = damaged_file(tmp_path, name, data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match="truncated") as caught:
        kind.load(path)
    assert str(path) in str(caught.value)
    if fraction == 0.0:
        assert "empty, 0 bytes" in str(caught.value)


@pytest.mark.parametrize("name", KINDS)
def test_a_file_that_is_no_zip_at_all_is_named(saved, tmp_path, name):
    path = damaged_file(tmp_path, name, b"these are not the weights you are looking for\n" * 20)
    with pytest.raises(ModelFileError, match="truncated, corrupted or not a") as caught:
        KINDS[name].load(path)
    assert str(path) in str(caught.value)


def cases(field: str) -> list[Any]:
    return [pytest.param(name, index, id=f"{name}-{index}") for name, kind in KINDS.items()
            for index in range(len(getattr(kind, field)))]  # fmt: skip


@pytest.mark.parametrize("field, name, index", [pytest.param(field, *case.values, id=f"{field}-{case.id}")
                                                for field in ("missing", "nan") for case in cases(field)])  # fmt: skip
def test_a_missing_entry_or_nan_in_the_saved_state_is_refused_and_named(saved, tmp_path, field, name, index):
    kind, (_, data) = KINDS[name], saved[name]
    change, expected = getattr(kind, field)[index]
    path = damaged_file(tmp_path, name, data)
    kind.rewrite(path, change)
    with pytest.raises(ModelFileError) as caught:
        kind.load(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_rewriting_without_damage_still_loads(saved, tmp_path):
    """The rewrite helpers themselves change nothing, so each damage above is what the load refuses."""
    for name, kind in KINDS.items():
        original, data = saved[name]
        path = damaged_file(tmp_path, name, data)
        kind.rewrite(path, lambda payload: None)
        assert_same(kind.snapshot(kind.load(path)), kind.snapshot(original))


def test_a_record_flagged_as_a_folder_is_damage(saved, tmp_path):
    """torch's reader hands back an uninitialised tensor for a record whose MS-DOS folder bit (0x10) is set."""
    data = saved["model"][1]
    member = largest_tensor_record(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [info.filename for info in archive.infolist()]
        start_dir = archive.start_dir
    entry = start_dir
    for filename in names:  # walk the central directory to the member's entry
        name_length, extra_length, comment_length = struct.unpack("<HHH", data[entry + 28 : entry + 34])
        if filename == member:
            break
        entry += 46 + name_length + extra_length + comment_length
    damaged = bytearray(data)
    damaged[entry + 38] |= 0x10  # external attributes, low byte: MS-DOS attributes
    path = damaged_file(tmp_path, "model", bytes(damaged))
    with pytest.raises(ModelFileError, match=f"record '{member}' is marked as a folder"):
        EnsembleDynamics.load(path, device="cpu")


def test_an_agent_file_with_a_hyperparameter_the_class_does_not_take_is_refused(saved, tmp_path):
    path = damaged_file(tmp_path, "DynaQ agent", saved["DynaQ agent"][1])
    rewrite_torch(path, lambda payload: payload["hyperparams"].update(gama=0.5))
    with pytest.raises(ModelFileError, match=r"holds hyperparameters \['gama'\] that DynaQ does not take"):
        DynaQ.load(path, "FrozenLake-v1")


def test_an_agent_saved_on_a_registered_env_loads_without_one_like_sb3(tmp_path):
    agent = DynaQ("FrozenLake-v1", planning_steps=3, seed=0).learn(100)
    agent.save(tmp_path / "lake.pt")
    loaded = DynaQ.load(tmp_path / "lake.pt")  # gym.make("FrozenLake-v1"), as saved
    assert loaded.get_env().get_attr("spec")[0].id == "FrozenLake-v1" and loaded.num_timesteps == 100
    # made with other arguments: its id alone would make another env, so the env is asked for
    DynaQ(gym.make("FrozenLake-v1", is_slippery=False), planning_steps=3, seed=0).save(tmp_path / "steady.pt")
    with pytest.raises(ValueError, match=r"does not name an env gym.make can remake .*: pass env= to DynaQ.load"):
        DynaQ.load(tmp_path / "steady.pt")
    assert DynaQ.load(tmp_path / "steady.pt", gym.make("FrozenLake-v1", is_slippery=False)).num_timesteps == 0


def test_an_agent_that_renders_its_env_reloads_from_the_id_and_one_on_a_dream_vec_env_saves(tmp_path):
    from dream_envs.agents import MuZero
    from sb3_plugins import DreamVecEnv

    # made from an id, MuZero's envs render (render_mode='rgb_array' in their spec): only drawing, so load() remakes
    # them from the id as the constructor did
    settings = {"num_simulations": 2, "learning_starts": 10, "batch_size": 8, "seed": 0}
    MuZero("CartPole-v1", n_envs=1, **settings).learn(20).save(tmp_path / "cartpole.pt")
    assert MuZero.load(tmp_path / "cartpole.pt").num_timesteps == 20
    # a DreamVecEnv's envs have no spec at all: the file is written, and load() asks for the env
    model = gym.make("Dream-CartPole-v0").unwrapped.model
    MuZero(DreamVecEnv(model, n_envs=2, max_episode_steps=200, seed=0), **settings).learn(20).save(tmp_path / "d.pt")
    with pytest.raises(ValueError, match=r"does not name an env gym.make can remake .*: pass env= to MuZero.load"):
        MuZero.load(tmp_path / "d.pt")
