"""Replies constrained to a JSON schema, in the dialect the endpoint honours, found once per endpoint.

OpenAI and vLLM take ``response_format: {"type": "json_schema", "json_schema": {"name", "schema"}}``;
llama-cpp-python's server takes ``{"type": "json_object", "schema": ...}`` (and answers
``json_schema`` with an error). Which one an endpoint honours is learnt from its answers and kept
for the process, per (URL, model):

- an error about the ``response_format`` moves on to the next dialect at once (no reply was lost);
- a reply that does not fit the schema (other than one cut by the token limit) marks a dialect not
  yet confirmed as ignored, so the next call tries the next one; that reply still goes to the
  tolerant parser;
- a reply that fits confirms the dialect; after ``DIALECTS`` run out, calls go without one.

The constraint is a grammar on the sampler, not a request: a small model that ignores instructions
still returns exactly the shape asked for.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from ppo_client.errors import LLMRequestError
from ppo_client.llm.chat import ChatClient, ChatReply

logger = logging.getLogger(__name__)

DIALECTS = ("json_schema", "json_object")
NONE = "none"
T = TypeVar("T")
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)


def response_format(dialect: str, name: str, schema: dict) -> dict:
    if dialect == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"unknown structured-output dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")


@dataclass
class _Endpoint:
    tried: int = 0
    """How many of ``DIALECTS`` were found wanting."""
    confirmed: bool = False


_ENDPOINTS: dict[tuple[str, str], _Endpoint] = {}
_LOCK = threading.Lock()


def forget() -> None:
    """Drop what was learnt about every endpoint (tests; an endpoint that was upgraded)."""
    with _LOCK:
        _ENDPOINTS.clear()


@dataclass(frozen=True)
class StructuredReply(Generic[T]):
    reply: ChatReply
    value: T | None
    """The validated value, or None where the reply did not fit the schema."""
    dialect: str
    """The dialect the request carried (``none``: no constraint)."""


class StructuredChat:
    """``complete`` with a schema over a ``ChatClient``; ``dialects`` limits what is tried (``()``: never)."""

    def __init__(self, chat: ChatClient, dialects: Sequence[str] = DIALECTS) -> None:
        self.chat = chat
        self.dialects = tuple(dialects)
        self._key = (chat.config.base_url, chat.config.model)

    def _state(self) -> _Endpoint:
        return _ENDPOINTS.setdefault(self._key, _Endpoint())  # under _LOCK

    @property
    def dialect(self) -> str:
        """What the next call will carry."""
        with _LOCK:
            tried = self._state().tried
        return self.dialects[tried] if tried < len(self.dialects) else NONE

    def _give_up(self, dialect: str, why: str) -> None:
        with _LOCK:
            state = self._state()
            if state.tried < len(self.dialects) and self.dialects[state.tried] == dialect:  # not already moved on
                state.tried += 1
                state.confirmed = False
        nxt = self.dialect
        logger.info("the chat endpoint %s %s structured output as %s; next: %s", self._key[0], why, dialect, nxt)

    def complete(
        self, messages: Sequence[dict], *, name: str, schema: dict, validate: Callable[[Any], T | None], **kwargs: Any,
    ) -> StructuredReply[T]:
        while True:
            dialect = self.dialect
            if dialect == NONE:
                reply = self.chat.complete(messages, **kwargs)
                return StructuredReply(reply, _validated(reply.text, validate), NONE)
            try:
                reply = self.chat.complete(messages, response_format=response_format(dialect, name, schema), **kwargs)
            except LLMRequestError as exc:
                if not _FORMAT_WORDS.search(str(exc)):
                    raise  # refused for another reason (a bad key, a missing model): say so, learn nothing
                self._give_up(dialect, f"refused ({exc})")
                continue
            value = _validated(reply.text, validate)
            with _LOCK:
                confirmed = self._state().confirmed = self._state().confirmed or value is not None
            if value is None and reply.finish_reason != "length" and not confirmed:
                self._give_up(dialect, "ignored")
            return StructuredReply(reply, value, dialect)


def _validated(text: str, validate: Callable[[Any], T | None]) -> T | None:
    try:
        return validate(json.loads(text))
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        return None
