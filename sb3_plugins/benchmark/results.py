"""The results directory: ``results.jsonl`` with one record per finished run, rewritten atomically after each."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dream_envs.checks import is_number
from dream_envs.io import atomic_write_text, file_in_the_way
from sb3_plugins.benchmark.runner import RECORD_FORMAT, SETTINGS, RunSpec

__all__ = ["ResultsDir", "check_writable_folder", "record_problem", "settings_differences"]

RESULTS_FILE = "results.jsonl"


class ResultsDir:
    """A benchmark's output folder. Finished runs are never lost and a file is never half written: each record is
    added by writing the whole ``results.jsonl`` to a temporary file and renaming it over the old one.

    :param path: the folder (created on the first record if it does not exist)
    :param must_exist: raise if there is no ``results.jsonl`` yet (``dream-envs report``)

    Example::

        import tempfile
        from sb3_plugins.benchmark import ResultsDir

        results = ResultsDir(tempfile.mkdtemp())
        print(results.records(), results.path)
    """

    def __init__(self, path: str | Path, must_exist: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"results dir {str(self.path)!r} is a file; expected a folder")
        self.file = self.path / RESULTS_FILE
        if must_exist and not self.path.exists():
            raise ValueError(f"results dir {str(self.path)!r} does not exist; expected the --out folder of a "
                             "'dream-envs bench' run")  # fmt: skip
        if self.file.exists() and not self.file.is_file():
            raise ValueError(f"{str(self.file)!r} is a folder; expected the results file of a 'dream-envs bench' run")
        if must_exist and not self.file.is_file():
            raise ValueError(f"{str(self.path)!r} holds no {RESULTS_FILE}; expected the --out folder of a "
                             "'dream-envs bench' run")  # fmt: skip
        self._records = self._load()

    def check_writable(self) -> None:
        """Create the folder and write and remove a probe file in it, so that a folder that cannot take the results
        (below a regular file, read-only, on a full disk) is found before any run trains, not after the first.

        :raises ValueError: naming the folder and what the system said
        """
        check_writable_folder(self.path, "results dir")

    def _load(self) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        try:
            lines = self.file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read {str(self.file)!r}: {error}") from None
        records: list[dict[str, Any]] = []
        seen: dict[tuple[Any, Any, Any], int] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if record is None and number == len(lines) and line.lstrip().startswith("{"):
                raise ValueError(f"{self.file}:{number}, its last line, is a cut-off record (a write that did not "
                                 "finish): delete that line, and the same command runs that seed again")  # fmt: skip
            if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
                raise ValueError(f"{self.file}:{number} is not a dream-envs benchmark record (expected JSON with "
                                 f"format {RECORD_FORMAT!r}); is this a results dir of another tool?")  # fmt: skip
            problem = record_problem(record)
            if problem:
                raise ValueError(f"{self.file}:{number}: {problem}")
            key = (record["env"], record["algo"], record["seed"])
            if key in seen:  # the report would count the seed twice
                raise ValueError(f"{self.file}:{number} records {key[0]} {key[1]} seed {key[2]} again (first at line "
                                 f"{seen[key]}); keep one record per env, algo and seed")  # fmt: skip
            seen[key] = number
            records.append(record)
        return records

    def records(self) -> list[dict[str, Any]]:
        return list(self._records)

    def add(self, record: dict[str, Any]) -> None:
        """Append one finished run (replacing an older record of the same env, algo and seed)."""
        key = (record["env"], record["algo"], record["seed"])
        self._records = [r for r in self._records if (r["env"], r["algo"], r["seed"]) != key] + [record]
        atomic_write_text(self.file, "".join(json.dumps(r) + "\n" for r in self._records))

    def pending(self, specs: Iterable[RunSpec]) -> list[RunSpec]:
        """The runs not yet done. A done run recorded with other settings is an error, not silently reused (a
        record from before the stays-solved metric, without ``stay``, counts as done)."""
        done = {(r["env"], r["algo"], r["seed"]): r for r in self._records}
        todo = []
        for spec in specs:
            record = done.get(spec.key)
            if record is None:
                todo.append(spec)
                continue
            wanted = spec.settings()
            # A record from before "stay" existed stopped at its first pass; it is kept as done: its first-pass
            # figure holds, and the report shows its stays-solved figure as n/a where its curve cannot tell.
            differ = [k for k in SETTINGS if record.get(k) != wanted[k] and not (k == "stay" and k not in record)]
            if differ:
                name = f"{spec.env_id} {spec.algo} seed {spec.seed}"
                details = settings_differences({k: record.get(k) for k in differ}, {k: wanted[k] for k in differ},
                                               "recorded")  # fmt: skip
                raise ValueError(f"{self.file} already holds {name} with other settings ({details}). Use another "
                                 "--out, or the same settings to resume.")  # fmt: skip
        return todo


def record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's fields that the report reads (the first problem, naming the field and its
    value), or None. Fields that records from before a metric lack (``real_steps_to_stay_solved``, ``stay``) may be
    missing; a present one must be well formed."""

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def number(value: Any) -> bool:
        return is_number(value) and math.isfinite(value)

    for name in ("env", "algo"):
        if not isinstance(record.get(name), str) or not record[name]:
            return f"{name} must be a non-empty string, got {record.get(name)!r}"
    rules: list[tuple[str, Callable[[Any], bool], str, bool]] = [
        ("seed", count, "an integer >= 0", True),
        ("budget", lambda v: count(v) and v > 0, "an integer > 0", True),
        ("real_steps_to_threshold", lambda v: v is None or count(v), "null or an integer >= 0", True),
        ("real_steps_to_stay_solved", lambda v: v is None or count(v), "null or an integer >= 0", False),
        ("threshold", lambda v: v is None or number(v), "null or a finite number", True),
        ("final_return", lambda v: v is None or number(v), "null or a finite number", True),
        ("wall_seconds", lambda v: number(v) and v >= 0, "a finite number >= 0", True),
        ("imagined_steps", count, "an integer >= 0", True),
        ("reward_termination", lambda v: isinstance(v, str), "a string", True),
        ("curve", lambda v: isinstance(v, list) and all(isinstance(c, list) and len(c) == 2 and count(c[0])
                                                        and number(c[1]) for c in v),
         "a list of [real steps >= 0, finite mean return] pairs", True),
    ]  # fmt: skip
    for name, ok, expected, required in rules:
        if name not in record:
            if required:
                return f"{name} is missing"
            continue
        if not ok(record[name]):
            shown = repr(record[name]) if len(repr(record[name])) <= 80 else repr(record[name])[:77] + "..."
            return f"{name} must be {expected}, got {shown}"
    checks = {steps for steps, _ in record["curve"]}
    for name in ("real_steps_to_threshold", "real_steps_to_stay_solved"):
        steps = record.get(name)
        if steps is not None and (steps not in checks or steps > record["budget"]):  # a figure is a check's steps
            return (f"{name} {steps} is not the real steps of one of the curve's checks within the budget of "
                    f"{record['budget']} (checks at {sorted(checks)[:3]}...{sorted(checks)[-1:]})")  # fmt: skip
    return None


def settings_differences(old: dict[str, Any], wanted: dict[str, Any], verb: str, prefix: str = "") -> str:
    """``"key: <verb> old, asked new"`` for every setting that differs, nested dicts (the hyperparameters) down to
    the keys that differ (``hyperparameters.agent.learning_rate: recorded 0.0023, asked 0.001``)."""
    parts = []
    for key in sorted(set(old) | set(wanted), key=str):
        before, after = old.get(key, _ABSENT), wanted.get(key, _ABSENT)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            parts.append(settings_differences(before, after, verb, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: {verb} {_shown(before)}, asked {_shown(after)}")
    return "; ".join(parts)


_ABSENT = object()


def _shown(value: Any) -> str:
    return "nothing" if value is _ABSENT else repr(value)


def check_writable_folder(path: str | Path, what: str = "--out") -> None:
    """Create ``path`` and write and remove a probe file in it, so that a folder that cannot take a command's output
    (below a regular file, read-only, on a full disk) is found before the work, not after it.

    :raises ValueError: naming the folder and what the system said
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass  # removed on close
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        blocker = file_in_the_way(path)
        if blocker is not None:
            reason += f": {str(blocker)!r} is a file, not a folder"
        elif error.filename and Path(error.filename) != path:
            reason += f": {str(error.filename)!r}"
        raise ValueError(f"{what} {str(path)!r} cannot be written ({reason}); choose another --out") from None
