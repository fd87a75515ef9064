"""What a request to the app carries, checked: the JSON body, its fields, and path and query values.

Every function here returns a valid value or raises ``InvalidRequestError`` naming the field, for any
input at all (JSON nested 20,000 deep, an integer of 400 digits, a lone surrogate, a list where a
number belongs); the web handlers read requests through nothing else, so bad input is a 400 with a
message. ``tests/unit/test_app_fields.py`` holds them to that with Hypothesis.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ppo_client import checks
from ppo_client.checks import shown
from ppo_client.errors import InvalidRequestError

MAX_BODY_BYTES = 64 * 1024
MAX_DIGITS = 4000
"""The longest integer literal a body may hold: far beyond any field's range (so the field's own
check names it), below the 4300 digits past which Python refuses to convert one."""
MAX_TEXT_CHARS = 1000
REQUIRED: Any = object()
"""The default of a field that must be given."""
_BAD_CHARS = re.compile(r"[\x00\ud800-\udfff]")
_INTEGER = re.compile(r"[0-9]{1,9}")
_HASH = re.compile(r"[0-9a-f]{64}")


def _kind(value: object) -> str:
    """What a JSON value is, for "must be X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**15 else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return f"{value:g}"
    names: dict[type, str] = {str: "text", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _integer_literal(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise InvalidRequestError("body", f"holds an integer of {digits} digits; the limit is {MAX_DIGITS}")
    return int(text)


def _no_constant(text: str) -> float:
    raise InvalidRequestError("body", f"holds {text}, which is not a JSON number")


def parse_body(data: bytes) -> dict:
    """The request body as a JSON object (an empty body is ``{}``)."""
    if len(data) > MAX_BODY_BYTES:
        raise InvalidRequestError("body", f"is {len(data)} bytes; the limit is {MAX_BODY_BYTES}")
    if not data.strip():
        return {}
    try:
        value = json.loads(data, parse_int=_integer_literal, parse_constant=_no_constant)
    except InvalidRequestError:
        raise
    except RecursionError:
        raise InvalidRequestError("body", "is nested too deeply") from None
    except ValueError:  # malformed JSON, or bytes that are not UTF-8/16/32
        raise InvalidRequestError("body", "is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("body", f"must be a JSON object, got {_kind(value)}")
    return value


def clean_text(value: object, name: str, *, max_chars: int = MAX_TEXT_CHARS, min_chars: int = 1) -> str:
    """Text within its length, without NUL characters (C strings end there) or lone surrogates (UTF-8
    cannot encode them: SQLite, files and JSON answers would fail on them)."""
    if not isinstance(value, str):
        raise InvalidRequestError(name, f"must be text, got {_kind(value)}")
    if len(value) < min_chars:
        raise InvalidRequestError(name, f"has {len(value)} characters; at least {min_chars} are needed" if value else "is empty")
    if len(value) > max_chars:
        raise InvalidRequestError(name, f"has {len(value)} characters; the limit is {max_chars}")
    bad = _BAD_CHARS.search(value)
    if bad:
        what = "a NUL character" if bad.group() == "\x00" else f"a lone surrogate ({shown(bad.group())})"
        raise InvalidRequestError(name, f"holds {what} at position {bad.start()}")
    return value


def text(body: dict, name: str, default: Any = REQUIRED, *, max_chars: int = MAX_TEXT_CHARS, min_chars: int = 1) -> str:
    return clean_text(_get(body, name, default), name, max_chars=max_chars, min_chars=min_chars)


def choice(body: dict, name: str, options: Sequence[str], default: Any = REQUIRED) -> str:
    value = _get(body, name, default)
    if not isinstance(value, str) or value not in options:
        raise InvalidRequestError(name, f"must be one of {', '.join(options)}, got {shown(value)}")
    return value


def raw(body: dict, name: str, default: Any = REQUIRED) -> Any:
    """The field as sent (``null`` or absent: ``default``), for a check elsewhere to judge (the run
    settings: ``RunConfig.checked()``, which the CLI and a resumed run folder pass through too)."""
    return _get(body, name, default)


def integer(body: dict, name: str, low: int, high: int, default: Any = REQUIRED) -> int:
    """An integer from ``low`` to ``high`` (``checks.integer``: ``6.0`` counts, ``true`` does not)."""
    return checks.integer(_get(body, name, default), name, low, high)


def number(body: dict, name: str, low: float, high: float, default: Any = REQUIRED) -> float:
    """A finite number from ``low`` to ``high``, as a float (``checks.number``: ``10**400`` is out of
    range, not an overflow)."""
    return checks.number(_get(body, name, default), name, low, high)


def query_integer(value: str | None, name: str, default: int, *, low: int, high: int) -> int:
    """A query or path value of ASCII digits (``int()`` would also take ``"١"``, ``" 7 "`` and ``"1_0"``)."""
    if value is None:
        return default
    return checks.integer(int(value) if _INTEGER.fullmatch(value) else value, name, low, high)


def _get(body: dict, name: str, default: Any) -> Any:
    value = body.get(name, default)
    if value is REQUIRED or value is None and default is REQUIRED:
        raise InvalidRequestError(name, "is required")
    if value is None:  # null means "the default", as leaving the field out does
        return default
    return value


def hashes(body: dict, name: str, low: int, high: int, default: Any = REQUIRED) -> list[str]:
    """A list of ``low`` to ``high`` distinct image ids (SHA-256 hex digests)."""
    value = _get(body, name, default)
    if not isinstance(value, list):
        raise InvalidRequestError(name, f"must be a list of {low} to {high} image ids, got {_kind(value)}")
    if not low <= len(value) <= high:
        raise InvalidRequestError(name, f"must hold {low} to {high} image ids, got {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _HASH.fullmatch(item):
            raise InvalidRequestError(name, f"item {i} must be an image id (64 hex digits), got {shown(item)}")
    if len(set(value)) != len(value):
        raise InvalidRequestError(name, "names an image twice; the images shown are distinct")
    return list(value)


def image_id(value: object, name: str) -> str:
    """One image id (a SHA-256 hex digest)."""
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise InvalidRequestError(name, f"must be an image id (64 hex digits), got {shown(value)}")
    return value
