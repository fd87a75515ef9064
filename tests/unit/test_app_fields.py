"""The app's request validators (``ppo_client.app.fields``): for any input at all, a valid value or an
``InvalidRequestError`` naming the field, never another exception."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ppo_client.app import fields
from ppo_client.errors import InvalidRequestError

SETTINGS = settings(max_examples=150, deadline=None)

ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
"""Every code point, lone surrogates and NUL included (Hypothesis leaves surrogates out by default)."""
TRICKY_CHARACTER = st.sampled_from(["\ud800", "\udfff", "\x00", "\x7f", "\u0661", "\ufffd", "\U0001f600", "a", " "])
"""Surrogates and NUL, which uniform drawing over all code points almost never picks."""
ANY_TEXT = (st.text(ANY_CHARACTER, max_size=80) | st.text(TRICKY_CHARACTER, max_size=8)
            | st.text(ANY_CHARACTER, min_size=900, max_size=1200))
NUMBERS = (st.integers() | st.integers(min_value=-(10**500), max_value=10**500)
           | st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                           max_leaves=8)


def _refusal_names(exc: InvalidRequestError, name: str) -> None:
    message = str(exc)
    assert message.startswith(f"{name}: ") and len(message) > len(name) + 2, message
    message.encode("utf-8")  # a message the error response can always carry
    assert len(message) < 300, message


def _json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # NaN and Infinity come out as those literals


@SETTINGS
@given(st.binary(max_size=300) | JSON_VALUES.map(_json_bytes) | st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4).map(_json_bytes))
@example(b"[" * 20_000 + b"]" * 20_000)
@example(b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
@example(b'{"rating": 1' + b"0" * 400 + b"}")
@example(b'{"rating": 1' + b"0" * 5000 + b"}")
@example(b'{"x": NaN, "y": -Infinity}')
@example(b'{"name": "\\ud800"}')
@example(b"\xff\xfe{}")
@example(b"x" * (fields.MAX_BODY_BYTES + 1))
def test_any_body_parses_to_an_object_or_is_refused_as_the_body(data):
    try:
        body = fields.parse_body(data)
    except InvalidRequestError as exc:
        _refusal_names(exc, "body")
    else:
        assert isinstance(body, dict)


def test_the_hostile_bodies_that_once_crashed_the_app_are_refused_with_a_reason():
    with pytest.raises(InvalidRequestError, match="body: is nested too deeply"):
        fields.parse_body(b"[" * 20_000 + b"]" * 20_000)
    with pytest.raises(InvalidRequestError, match="body: holds NaN, which is not a JSON number"):
        fields.parse_body(b'{"rating": NaN}')
    with pytest.raises(InvalidRequestError, match="body: holds an integer of 5001 digits"):
        fields.parse_body(b'{"rating": 1' + b"0" * 5000 + b"}")
    assert fields.parse_body(b'{"rating": 1' + b"0" * 400 + b"}") == {"rating": 10**400}
    assert fields.parse_body(b"  ") == {} and fields.parse_body(b'{"a": 1e400}') == {"a": math.inf}


@SETTINGS
@given(JSON_VALUES, st.integers(min_value=0, max_value=3), st.integers(min_value=1, max_value=1000))
def test_text_fields_are_clean_text_within_their_length_or_refused_naming_the_field(value, min_chars, max_chars):
    try:
        text = fields.text({"prompt": value}, "prompt", min_chars=min_chars, max_chars=max_chars)
    except InvalidRequestError as exc:
        _refusal_names(exc, "prompt")
    else:
        assert text == value and min_chars <= len(text) <= max_chars
        assert "\x00" not in text and text.encode("utf-8").decode("utf-8") == text


@pytest.mark.parametrize(("value", "message"), [
    ("\ud800", "name: holds a lone surrogate ('\\ud800') at position 0"),
    ("ab\x00", "name: holds a NUL character at position 2"),
    ("x" * 65, "name: has 65 characters; the limit is 64"),
    ("", "name: is empty"),
    (7, "name: must be text, got 7"),
    (None, "name: is required"),
])
def test_bad_text_is_refused_with_what_is_wrong_and_where(value, message):
    with pytest.raises(InvalidRequestError) as refused:
        fields.text({"name": value}, "name", max_chars=64)
    assert str(refused.value) == message


@SETTINGS
@given(JSON_VALUES, st.integers(-5, 5), st.integers(-5, 5))
@example(2**70, 0, 2**32 - 1)
@example(-1, 0, 10)
@example(10**400, 0, 10)
@example(6.0, 0, 10)
@example(True, 0, 10)
def test_integer_fields_are_integers_in_range_or_refused_naming_the_field(value, low, high):
    try:
        number = fields.integer({"seed": value}, "seed", low, high, default=0)
    except InvalidRequestError as exc:
        _refusal_names(exc, "seed")
    else:
        assert type(number) is int and low <= number <= high
        assert number == (0 if value is None else value) and not isinstance(value, bool)


@SETTINGS
@given(JSON_VALUES, st.floats(-20, 20), st.floats(-20, 20))
@example(10**400, 1, 10)
@example(-(10**400), -1e308, 1e308)
@example(math.inf, 1, 10)
@example(math.nan, 1, 10)
@example(False, 0, 1)
def test_number_fields_are_finite_floats_in_range_or_refused_naming_the_field(value, low, high):
    try:
        number = fields.number({"rating": value}, "rating", low, high)
    except InvalidRequestError as exc:
        _refusal_names(exc, "rating")
    else:
        assert type(number) is float and math.isfinite(number) and low <= number <= high


@SETTINGS
@given(JSON_VALUES)
@example(None)
def test_a_raw_field_is_what_was_sent_or_the_default_for_null(value):
    default = object()
    assert fields.raw({"seed": value}, "seed", default) is (default if value is None else value)


@SETTINGS
@given(JSON_VALUES)
@example("left")
def test_choice_fields_are_one_of_the_options_or_refused_listing_them(value):
    try:
        chosen = fields.choice({"choice": value}, "choice", ("left", "right", "same"))
    except InvalidRequestError as exc:
        _refusal_names(exc, "choice")
        assert "left, right, same" in str(exc) or value is None and str(exc) == "choice: is required"
    else:
        assert chosen in ("left", "right", "same")


@SETTINGS
@given(st.none() | st.text(ANY_CHARACTER, max_size=30))
@example("\u0661")  # ARABIC-INDIC DIGIT ONE: int() would take it
@example(" 7 ")
@example("1_0")
@example("9" * 5000)
def test_query_integers_are_ascii_digits_in_range_or_refused_naming_the_parameter(value):
    try:
        count = fields.query_integer(value, "count", 1, low=1, high=50)
    except InvalidRequestError as exc:
        _refusal_names(exc, "count")
    else:
        assert 1 <= count <= 50
        assert value is None or value == str(count)
