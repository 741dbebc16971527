"""Checks of settings and inputs, raised at the boundary with the offending name and value, and one seeding rule.

Every public constructor and entry point checks its numbers here, so that a boolean, a string, NaN or a numpy scalar
is treated the same way everywhere: numpy scalars (``np.float32(0.5)``, ``np.int64(3)``) and 0-d arrays are numbers;
booleans are never numbers (``True`` is an ``int`` to Python, never a setting's value to a user).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["check_bool", "check_int", "check_keywords", "check_number", "check_probability", "is_number", "seed_int",
           "seeded_generator"]  # fmt: skip


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float, or a 0-d numeric array, never a boolean.
    NaN and infinities count: each caller states its range."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int``, or a ``ValueError`` naming ``name``, the value and what was expected.

    Booleans and floats are refused (``2.0`` steps is a typo somewhere), as is anything outside
    ``[minimum, maximum]``.
    """
    scalar = value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value
    if (
        isinstance(scalar, (bool, np.bool_))
        or not isinstance(scalar, (int, np.integer))
        or scalar < minimum
        or (maximum is not None and scalar > maximum)
    ):
        if maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        else:
            expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(scalar)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a ``float`` in the interval from ``low`` to ``high``, or a ``ValueError`` naming ``name``, the value
    and the interval.

    NaN is never in an interval; infinities are only where ``low`` or ``high`` is infinite and the end is closed.

    :param low_open: whether ``low`` itself is outside the interval
    :param high_open: whether ``high`` itself is outside the interval
    :raises ValueError: for a boolean, a string, ``None``, NaN or a number outside the interval
    """
    if is_number(value):
        number = float(value[()] if isinstance(value, np.ndarray) else value)
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if above and below:  # False for NaN
            return number
    raise ValueError(f"{name} must be a number in {_interval(low, high, low_open, high_open)}, got {value!r}")


def check_probability(name: str, value: Any, *, zero: bool = True, one: bool = True) -> float:
    """``value`` as a probability (a ``float`` in [0, 1]), or a ``ValueError`` naming ``name`` and the value.

    :param zero: whether 0 is allowed
    :param one: whether 1 is allowed
    """
    return check_number(name, value, 0.0, 1.0, low_open=not zero, high_open=not one)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``; anything but ``True``/``False`` (or numpy's) raises a ``ValueError`` naming it (a
    string such as ``"no"`` is truthy to Python, and ``1`` is usually a count typed in the wrong place)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def seed_int(seed: Any = None, name: str = "seed", stream: int = 0) -> int:
    """A 32-bit seed for ``torch`` or ``numpy`` drawn from ``seed`` through numpy's ``SeedSequence``: a non-negative
    integer gives the same value every time, ``None`` fresh OS entropy. Streams are independent seeds drawn from one
    user seed (e.g. one per phase of a run); never ``torch.seed()``, which would reseed the user's global generator.

    :raises ValueError: for a negative, boolean or non-integer seed
    """
    if seed is not None:
        seed = check_int(name, seed, minimum=0)
    sequence = np.random.SeedSequence(seed, spawn_key=(stream,) if stream else ())
    return int(sequence.generate_state(1)[0])


def seeded_generator(
    seed: Any = None, device: str | torch.device = "cpu", name: str = "seed", stream: int = 0
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`seed_int` (``None``: OS entropy)."""
    return torch.Generator(device=device).manual_seed(seed_int(seed, name, stream))


def check_keywords(
    name: str, kwargs: Any, function: Callable, reserved: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``kwargs`` as a dict, once every key is checked against ``function``'s real signature (a typo is found when
    the setting is given, not when the function is first called after real steps were spent).

    :param name: the setting's name in errors, e.g. ``"fit_kwargs"``
    :param function: what the keywords are for
    :param reserved: keywords the caller sets itself, each with the reason given in the error
    :raises ValueError: for a non-mapping, a non-string key, an unknown key (with the nearest valid ones) or a
        reserved one
    """
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{name} must be a dict of keyword arguments, got {kwargs!r}")
    reserved = dict(reserved or {})
    parameters = inspect.signature(function).parameters
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    takes = [key for key, p in parameters.items() if key != "self" and p.kind in keyword]
    for key in kwargs:
        if not isinstance(key, str):
            raise ValueError(f"{name} keys must be strings, got {key!r}")
        if key in reserved:
            raise ValueError(f"{name} may not set {key!r}: {reserved[key]}")
        if key not in takes:
            near = difflib.get_close_matches(key, [k for k in takes if k not in reserved], n=3)
            hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
            allowed = [k for k in takes if k not in reserved]
            raise ValueError(f"{name} has an unknown key {key!r}{hint}; {function.__qualname__} takes {allowed}")
    return dict(kwargs)
