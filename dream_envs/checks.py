"""Checks of constructor arguments, raised at the boundary with the offending name and value."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "is_number"]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int``, or a ``ValueError`` naming ``name``, the value and what was expected.

    Booleans are refused (``True`` is an ``int`` to Python, never a size to a user), as is anything below
    ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float, never a boolean (``True`` is an ``int``
    to Python, never a setting's value to a user). NaN and infinities count: each caller states its range."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
