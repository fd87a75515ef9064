"""The one check of each kind of number that comes from outside: a CLI flag, an SDK argument, an
app request, an edited run folder or a server tensor row.

Values arrive as Python or numpy numbers, JSON's unbounded integers (``10**400``), floats that are
``inf`` or ``nan`` (JSON's ``1e400``), booleans (which Python counts as integers) or anything else;
each check returns a plain ``int`` or ``float`` in range, or raises ``InvalidRequestError`` naming the
field with one message per kind of value, whatever was wrong with it.
"""

from __future__ import annotations

import math
import numbers

from ppo_client.errors import InvalidRequestError


def shown(value: object, limit: int = 40) -> str:
    """The value as a message quotes it: short, one line, whatever it is."""
    text = repr(value) if isinstance(value, str) else str(value) if isinstance(value, numbers.Number) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def integer(value: object, field: str, low: int, high: int) -> int:
    """An integer from ``low`` to ``high``; an integral float (``6.0``) counts, a boolean does not."""
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        whole = int(value)  # type: ignore[call-overload]  # int() takes any real; typeshed's numbers.Real does not say so
        number = whole if value == whole else None
    if number is None or not low <= number <= high:
        raise InvalidRequestError(field, f"must be an integer from {low} to {high}, got {shown(value)}")
    return number


def _within(value: numbers.Real, low: float, high: float) -> bool:
    """``low <= value <= high``, written with ``value`` on the left of both comparisons: typeshed's
    ``numbers.Real`` declares ``<`` and ``<=`` only (a NaN fails ``value <= high``)."""
    return value <= high and not value < low


def number(value: object, field: str, low: float, high: float) -> float:
    """A finite number from ``low`` to ``high`` (compared before any conversion, so ``10**400`` is
    simply out of range)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not _within(value, low, high) or not math.isfinite(value):
        raise InvalidRequestError(field, f"must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)
