"""TransitionBuffer: the real transitions a dynamics model learns from."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from dream_envs.checks import check_bool, check_int
from dream_envs.io import ModelFileError, atomic_write
from dream_envs.spaces import (
    check_action_space,
    check_actions,
    check_observation_space,
    check_observations,
    out_of_bounds_report,
)

__all__ = ["TransitionBuffer", "Transitions"]

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode_start")
_FORMAT = "dream-envs/transitions"
_FORMAT_VERSION = 1


class Transitions(NamedTuple):
    """A read-only view of ``N`` stored transitions (observations flattened to ``N x obs_dim``).

    Example::

        import gymnasium as gym
        from dream_envs import TransitionBuffer

        env = gym.make("Pendulum-v1")
        data = TransitionBuffer.from_env(env).collect(env, n_steps=10, seed=0).transitions()
        print(data.obs.shape, data.action.shape, data.reward.shape)  # (10, 3) (10, 1) (10,)
    """

    obs: np.ndarray  # (N, obs_dim) float32
    action: np.ndarray  # (N,) int64 for Discrete, (N, act_dim) float32 for Box
    reward: np.ndarray  # (N,) float32
    next_obs: np.ndarray  # (N, obs_dim) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    episode_start: np.ndarray  # (N,) bool: obs is the first observation of an episode (a real start state)


class TransitionBuffer:
    """Growable store of real transitions ``(obs, action, reward, next_obs, terminated)``.

    Storage doubles when full, so adding ``N`` transitions costs ``O(N)`` copies in total. Non-finite
    transitions are rejected with an error that counts them, so a model is never fitted on NaN.

    :param observation_space: the env's observation space (any float ``Box``; stored flattened)
    :param action_space: the env's action space (``Discrete`` or ``Box``)
    :param capacity: initial number of rows allocated (grows as needed)

    Example::

        import gymnasium as gym
        from dream_envs import TransitionBuffer

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env)
        buffer.collect(env, n_steps=500, seed=0)
        print(len(buffer), buffer.start_states().shape)
    """

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Space, capacity: int = 1024):
        self.observation_space = check_observation_space(observation_space)
        self.action_space = check_action_space(action_space)
        check_int("capacity", capacity)
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.act_dim = 1 if self._discrete else int(np.prod(self.action_space.shape))
        self._size = 0
        self._data = self._allocate(int(capacity))
        self._warned_out_of_bounds: set[int] = set()

    @classmethod
    def from_env(cls, env: gym.Env, capacity: int = 1024) -> TransitionBuffer:
        """An empty buffer with ``env``'s spaces."""
        return cls(env.observation_space, env.action_space, capacity=capacity)

    def _allocate(self, capacity: int) -> dict[str, np.ndarray]:
        action_shape = (capacity,) if self._discrete else (capacity, self.act_dim)
        return {
            "obs": np.zeros((capacity, self.obs_dim), np.float32),
            "action": np.zeros(action_shape, np.int64 if self._discrete else np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, self.obs_dim), np.float32),
            "terminated": np.zeros(capacity, bool),
            "truncated": np.zeros(capacity, bool),
            "episode_start": np.zeros(capacity, bool),
        }

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return len(self._data["reward"])

    def _reserve(self, extra: int) -> None:
        needed = self._size + extra
        if needed <= self.capacity:
            return
        new_capacity = max(needed, 2 * self.capacity)
        grown = self._allocate(new_capacity)
        for name in _FIELDS:
            grown[name][: self._size] = self._data[name][: self._size]
        self._data = grown

    def add(
        self,
        obs: Any,
        action: Any,
        reward: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any = False,
        episode_start: Any = False,
    ) -> None:
        """Append one transition or a batch of them (leading dimension ``B`` on every argument).

        Observations outside the declared observation space are stored as they are, with a ``UserWarning`` that
        counts them per dimension (once per buffer for each newly offending dimension): a model must learn what the
        env really does, and a dream is never clamped to a bound that real data crossed.

        :param obs: ``B x *obs_shape`` (or one observation)
        :param action: ``B`` whole numbers in the Discrete space's range, or ``B x *action_shape`` finite floats
        :param reward: ``B`` numbers (one per row: a single reward is never copied to every row)
        :param terminated: ``B`` booleans (``True``/``False``, or 0/1)
        :param truncated: ``B`` booleans, or one for every row
        :param episode_start: ``B`` booleans, or one for every row
        :raises ValueError: if any value is NaN/inf (the message counts them per field, nothing is added), an action
            is outside the action space, or a shape or type does not fit (naming the argument)
        """
        # tensors (a torch training loop's) are read as numpy arrays; NaN is counted below, per field
        obs, action, reward, next_obs, terminated, truncated, episode_start = (
            _host(value) for value in (obs, action, reward, next_obs, terminated, truncated, episode_start)
        )
        obs = check_observations(self.observation_space, obs, "obs", read_values=False)
        rows = len(obs)
        if rows == 0:  # an empty batch adds nothing
            check_observations(self.observation_space, next_obs, "next_obs", read_values=False)
            return
        next_obs = check_observations(self.observation_space, next_obs, "next_obs", read_values=False)
        if len(next_obs) != rows:
            raise ValueError(f"next_obs has {len(next_obs)} row(s) where obs has {rows}")
        columns = {
            "obs": obs,
            "next_obs": next_obs,
            "action": check_actions(self.action_space, action, rows),
            "reward": _per_row("reward", _numbers("reward", reward), rows, broadcast=False).astype(np.float32),
            "terminated": _per_row("terminated", _flags("terminated", terminated), rows, broadcast=False),
            # their defaults (False) stand for every row
            "truncated": _per_row("truncated", _flags("truncated", truncated), rows, broadcast=True),
            "episode_start": _per_row("episode_start", _flags("episode_start", episode_start), rows, broadcast=True),
        }
        non_finite = {
            name: ~np.isfinite(columns[name].reshape(rows, -1)).all(axis=1)
            for name in ("obs", "action", "reward", "next_obs")
        }
        n_bad = int(np.logical_or.reduce(list(non_finite.values())).sum())
        if n_bad:
            detail = ", ".join(f"{name}: {int(mask.sum())}" for name, mask in non_finite.items() if mask.any())
            raise ValueError(
                f"rejected {n_bad} of {rows} transition(s) with NaN/inf values ({detail}); "
                "nothing was added. Filter them out before adding, or fix the env/wrapper that produced them."
            )
        # obs and next_obs of every row are counted as observations
        report = out_of_bounds_report(self.observation_space, np.concatenate([columns["obs"], columns["next_obs"]]))
        if report is not None and not report[0] <= self._warned_out_of_bounds:
            self._warned_out_of_bounds |= report[0]
            warnings.warn(
                f"TransitionBuffer.add: observations outside the declared observation space {self.observation_space}"
                f" ({report[1]}); they are kept as they are",
                stacklevel=2,
            )
        self._reserve(rows)
        end = self._size + rows
        for name in _FIELDS:
            self._data[name][self._size : end] = columns[name]
        self._size = end

    def collect(
        self,
        env: gym.Env,
        n_steps: int,
        policy: Callable[[np.ndarray], Any] | None = None,
        seed: int | None = None,
        progress_bar: bool = False,
    ) -> TransitionBuffer:
        """Step ``env`` for ``n_steps`` and store every transition.

        :param env: a gymnasium env with this buffer's spaces
        :param n_steps: number of real steps to take
        :param policy: ``obs -> action``; uniform random actions (seeded) when ``None``. For an SB3 model use
            ``lambda obs: model.predict(obs, deterministic=False)[0]``.
        :param seed: seeds the first ``env.reset`` and the random policy
        :param progress_bar: show a tqdm bar over steps
        :return: ``self``. Transitions with NaN/inf values are left out with a warning that counts them (the
            others are kept), and if ``env`` or ``policy`` raises, the steps taken before are added first.
        :raises ValueError: for a ``policy`` that is not callable, a bad ``n_steps`` or ``seed``, or an env of other
            spaces
        """
        check_int("n_steps", n_steps)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)  # gymnasium's reset takes Python ints only
        progress_bar = check_bool("progress_bar", progress_bar)
        if env.observation_space.shape != self.observation_space.shape or env.action_space != self.action_space:
            raise ValueError(
                f"env spaces ({env.observation_space}, {env.action_space}) differ from this buffer's "
                f"({self.observation_space}, {self.action_space})"
            )
        if policy is not None and not callable(policy):
            raise ValueError(f"policy must be a function obs -> action, or None for uniform random actions, got "
                             f"{policy!r}; for an SB3 model pass lambda obs: model.predict(obs)[0]")  # fmt: skip
        if policy is None:
            env.action_space.seed(seed)

            def policy(_obs: np.ndarray) -> Any:
                return env.action_space.sample()

        from tqdm.auto import tqdm

        obs, _ = env.reset(seed=seed)
        episode_start = True
        rows: dict[str, list] = {name: [] for name in _FIELDS}
        try:
            for _ in tqdm(range(int(n_steps)), disable=not progress_bar, desc="collect", unit="step"):
                action = policy(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                for name, value in zip(_FIELDS, (obs, action, reward, next_obs, terminated, truncated, episode_start)):
                    rows[name].append(value)
                # a non-finite observation cannot be stepped from: start a new episode
                episode_start = bool(terminated or truncated or not np.isfinite(next_obs).all())
                obs = env.reset()[0] if episode_start else next_obs
        finally:  # an env that raises part-way keeps the steps it gave
            self._add_finite_rows({name: np.asarray(rows[name]) for name in _FIELDS})
        return self

    def _add_finite_rows(self, columns: dict[str, np.ndarray]) -> None:
        """Add collected rows, leaving out those with NaN/inf values or an action outside the action space (that the
        env took anyway) with a warning that counts them per field."""
        n = len(columns["reward"])
        if n == 0:
            return
        if self._discrete and columns["action"].dtype == bool:  # the env took True/False as its actions 1/0
            columns["action"] = columns["action"].astype(np.int64)
        bad = {
            name: ~np.isfinite(columns[name].astype(np.float64).reshape(n, -1)).all(axis=1)
            for name in ("obs", "action", "reward", "next_obs")
            if columns[name].dtype.kind in "iuf"
        }
        bad["action"] = bad.get("action", np.zeros(n, bool)) | ~_valid_actions(self.action_space, columns["action"], n)
        dropped = np.logical_or.reduce(list(bad.values()))
        if dropped.any():
            detail = ", ".join(f"{name}: {int(mask.sum())}" for name, mask in bad.items() if mask.any())
            warnings.warn(
                f"TransitionBuffer.collect: left out {int(dropped.sum())} of {n} transitions with NaN/inf values or "
                f"actions outside {self.action_space} ({detail}); the other {n - int(dropped.sum())} were added",
                stacklevel=3,
            )
            columns = {name: value[~dropped] for name, value in columns.items()}
        if len(columns["reward"]):
            self.add(*(columns[name] for name in _FIELDS))

    def transitions(self) -> Transitions:
        """All stored transitions as views (no copy)."""
        return Transitions(*(self._data[name][: self._size] for name in _FIELDS))

    def start_states(self) -> np.ndarray:
        """Observations that began an episode (``K x obs_dim``); these are the real start states."""
        data = self.transitions()
        return data.obs[data.episode_start]

    def successors(self) -> np.ndarray:
        """For every row, the row that continues its trajectory, or -1 (``N`` int64).

        Row ``j`` continues row ``i`` when ``obs[j]`` equals ``next_obs[i]`` exactly and row ``i`` ended no episode.
        Matching on the observations (not on row order) finds the trajectories whatever order the rows were added
        in: one env at a time, several envs interleaved (SB3's ``VecEnv`` adds ``n_envs`` rows per step), or
        buffers concatenated. Where several rows start from the same observation, the first one after row ``i``
        is taken (else the first one before it): in a Markov env any real transition from that state continues the
        trajectory truthfully.
        """
        data = self.transitions()
        n = len(data.reward)
        if n == 0:
            return np.zeros(0, np.int64)
        rows = np.concatenate([data.obs, data.next_obs])  # (2N, obs_dim)
        keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, key_id = np.unique(keys, return_inverse=True)
        obs_key, next_key = key_id.reshape(-1)[:n], key_id.reshape(-1)[n:]
        # Rows sorted by (observation, row index); a query (next_obs of i, i) lands just after row i's place.
        order = np.lexsort((np.arange(n), obs_key))
        sorted_code = obs_key[order].astype(np.int64) * (n + 1) + order
        after = np.searchsorted(sorted_code, next_key.astype(np.int64) * (n + 1) + np.arange(n), side="right")
        first = np.searchsorted(sorted_code, next_key.astype(np.int64) * (n + 1), side="left")
        pick = np.where((after < n) & (obs_key[order[np.minimum(after, n - 1)]] == next_key), after, first)
        pick = np.minimum(pick, n - 1)
        successor = np.where(obs_key[order[pick]] == next_key, order[pick], -1)
        successor[data.terminated | data.truncated] = -1
        return successor

    def segments(
        self,
        length: int,
        max_segments: int | None = None,
        seed: int | None = None,
        exclude: np.ndarray | None = None,
        successors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Disjoint runs of ``length`` consecutive real transitions of one trajectory (no episode end inside).

        The segments are what the model is judged on: roll it ``length`` steps from ``obs[rows[:, 0]]`` along
        ``action[rows]`` and compare with ``next_obs[rows[:, -1]]``.

        :param length: transitions per segment (``k``)
        :param max_segments: stop after this many (``None``: as many as fit)
        :param seed: seeds which runs are taken, in random order
        :param exclude: ``N`` booleans: rows no segment may use
        :param successors: :meth:`successors`, when the caller has it already
        :return: row indices ``S x length``; row ``t + 1`` of a segment continues row ``t``
        """
        check_int("length", length)
        if max_segments is not None:
            max_segments = check_int("max_segments", max_segments, minimum=0)
        n = len(self)
        for name, value, kind in (("exclude", exclude, np.bool_), ("successors", successors, np.integer)):
            array = None if value is None else np.asarray(value)
            if array is not None and (array.shape != (n,) or not np.issubdtype(array.dtype, kind)):
                expected = "booleans" if kind is np.bool_ else "row indices (TransitionBuffer.successors())"
                raise ValueError(f"{name} must be {n} {expected}, one per row; got an array of shape {array.shape} "
                                 f"and dtype {array.dtype}")  # fmt: skip
        if length > n or max_segments == 0:
            return np.zeros((0, length), np.int64)
        successor = self.successors() if successors is None else np.asarray(successors)
        # rows[t] holds, for every start row, the row t steps on (-1 once the trajectory ends).
        chain = [np.arange(n)]
        for _ in range(length - 1):
            previous = chain[-1]
            chain.append(np.where(previous >= 0, successor[np.maximum(previous, 0)], -1))
            if (chain[-1] < 0).all():  # no trajectory is this long
                return np.zeros((0, length), np.int64)
        rows = np.stack(chain, axis=1) if n else np.zeros((0, length), np.int64)  # (N, length)
        complete = np.flatnonzero((rows >= 0).all(axis=1))
        taken = np.zeros(n, bool) if exclude is None else np.array(exclude, bool)
        chosen = []
        for start in np.random.default_rng(seed).permutation(complete):
            if max_segments is not None and len(chosen) >= max_segments:
                break
            segment = rows[start]
            if taken[segment].any():
                continue
            taken[segment] = True
            chosen.append(segment)
        return np.stack(chosen) if chosen else np.zeros((0, length), np.int64)

    def save(self, path: str | os.PathLike) -> Path:
        """Save to a compressed ``.npz`` atomically (a failed write leaves any previous file intact)."""
        arrays = {name: value for name, value in zip(_FIELDS, self.transitions())}
        arrays["format"] = np.array(_FORMAT)
        arrays["format_version"] = np.array(_FORMAT_VERSION)
        arrays["obs_shape"] = np.array(self.observation_space.shape, np.int64)
        arrays["action_space"] = np.array(repr(self.action_space))

        def write(handle):
            np.savez_compressed(handle, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(
        cls, path: str | os.PathLike, observation_space: gym.spaces.Box, action_space: gym.spaces.Space
    ) -> TransitionBuffer:
        """Load a buffer saved by :meth:`save`, checking that it was made for these spaces.

        :raises FileNotFoundError: if ``path`` does not exist
        :raises ModelFileError: if the file is truncated, corrupted, foreign or for other spaces
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no transition file at {str(path)!r}")
        source = repr(str(path))
        unreadable = f"{source} is not a readable .npz transition file: it is truncated, corrupted or not an .npz"
        # np.load takes a file that is no zip for a single .npy array (or a pickle): ask for the archive first.
        if path.stat().st_size == 0:
            raise ModelFileError(f"{unreadable} (it is empty, 0 bytes: was its write interrupted?)")
        if not zipfile.is_zipfile(path):
            raise ModelFileError(f"{unreadable} (no zip archive: its end record is missing)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                # Reading a member to its end checks its CRC-32 (zipfile), so changed bytes cannot load silently.
                content = {name: archive[name] for name in archive.files}
        except Exception as error:  # zipfile, zlib and numpy's header parser raise many types; all mean "unreadable"
            raise ModelFileError(f"{unreadable} ({type(error).__name__}: {error})") from error
        if content.get("format") is None or content["format"].shape != () or str(content["format"]) != _FORMAT:
            raise ModelFileError(f"{source} is not a dream-envs transition file (no '{_FORMAT}' marker)")
        missing = [name for name in ("format_version", "obs_shape", "action_space", *_FIELDS) if name not in content]
        if missing:
            raise ModelFileError(f"{source} has no {', '.join(map(repr, missing))} entry: the file is damaged or "
                                 "was not written by TransitionBuffer.save")  # fmt: skip
        version = content["format_version"]
        if version.shape != () or not np.issubdtype(version.dtype, np.integer) or int(version) != _FORMAT_VERSION:
            raise ModelFileError(f"{source} has transition format version {version!r}; this dream-envs reads "
                                 f"version {_FORMAT_VERSION}")  # fmt: skip
        buffer = cls(observation_space, action_space, capacity=max(1, content["reward"].size))
        same_obs = content["obs_shape"].tolist() == list(buffer.observation_space.shape)
        if not same_obs or str(content["action_space"]) != repr(buffer.action_space):
            raise ModelFileError(
                f"{source} holds transitions for observation shape {tuple(content['obs_shape'].tolist())} and "
                f"action space {content['action_space']}, not {buffer.observation_space.shape} and "
                f"{buffer.action_space!r}"
            )
        _check_columns(content, buffer, source)
        try:
            buffer.add(*(content[name] for name in _FIELDS))
        except ValueError as error:  # e.g. NaN rows: add() counts them per field
            raise ModelFileError(f"{source} holds transitions that cannot be stored: {error}") from error
        return buffer


def _numbers(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numbers, got {value!r} (dtype {array.dtype})")
    return array


def _flags(name: str, value: Any) -> np.ndarray:
    """Booleans from ``True``/``False`` or 0/1 numbers; a string such as ``"no"`` (truthy to Python) is refused."""
    array = np.asarray(value)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{name} must be booleans (True/False or 0/1), got {value!r}")


def _per_row(name: str, array: np.ndarray, rows: int, broadcast: bool) -> np.ndarray:
    """``array`` as ``(rows,)``: one value per row, or (``broadcast``) a single value that stands for every row."""
    if array.size == rows:
        return array.reshape(rows)
    if broadcast and array.size == 1:
        return np.full(rows, array.reshape(-1)[0], array.dtype)
    raise ValueError(f"{name} has {array.size} value(s) of shape {array.shape} for {rows} row(s): give one per row")


def _check_columns(content: dict[str, np.ndarray], buffer: TransitionBuffer, source: str) -> None:
    """The arrays of a loaded file must be what :meth:`TransitionBuffer.save` writes: one row per transition in
    every column, the saved dtypes, and finite numbers (a model must never be fitted on NaN).

    :raises ModelFileError: naming the first column that is not
    """
    n = content["reward"].shape[0] if content["reward"].ndim == 1 else -1
    action_shape = (n,) if buffer._discrete else (n, buffer.act_dim)
    expected = {
        "obs": ((n, buffer.obs_dim), np.floating),
        "action": (action_shape, np.integer if buffer._discrete else np.floating),
        "reward": ((n,), np.floating),
        "next_obs": ((n, buffer.obs_dim), np.floating),
        "terminated": ((n,), np.bool_),
        "truncated": ((n,), np.bool_),
        "episode_start": ((n,), np.bool_),
    }
    for name, (shape, kind) in expected.items():
        array = content[name]
        if array.shape != shape or not np.issubdtype(array.dtype, kind):
            rows = "one row per transition" if n >= 0 else "a 1-d reward column"
            raise ModelFileError(f"{source}: its {name!r} column has shape {array.shape} and dtype {array.dtype}; "
                                 f"expected shape {shape} ({rows}) and a {kind.__name__} dtype")  # fmt: skip
        if kind is np.floating and not np.isfinite(array).all():
            bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
            raise ModelFileError(f"{source}: its {name!r} column holds NaN/inf in {bad} of {n} row(s)")


def _host(value: Any) -> Any:
    """A tensor as a numpy array (detached, on the CPU); anything else as it is."""
    import torch

    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _valid_actions(space: gym.spaces.Space, actions: np.ndarray, n: int) -> np.ndarray:
    """Per row, whether its action is in ``space`` (collect keeps the rows whose actions are)."""
    try:
        check_actions(space, actions, n)
        return np.ones(n, bool)
    except ValueError:
        valid = np.zeros(n, bool)
        for i in range(n):  # only when the batch holds a bad action: find which
            try:
                check_actions(space, actions[i], 1)
                valid[i] = True
            except ValueError:
                pass
        return valid
