"""A small OpenAI-compatible chat-completions client over httpx.

Every call has one deadline (``timeout_s``, retries included), so a hung or trickling endpoint
fails the call in bounded time. Within it, what is worth retrying (connection errors, timeouts,
408, 429, 5xx) is retried with capped exponential backoff and jitter, honouring ``Retry-After``;
refusals (400, 401, 403, 404, 422, and any error about the request's ``response_format``) fail at
once with the server's message; a reply that is not a chat completion (not JSON, no message, larger
than ``max_reply_bytes``) fails at once naming the endpoint. Images go as ``image_url`` content
parts (PNG data URLs) for vision models.

A reply's text is returned as sent: what reads it (``optimize.parsing``, the optimizer's record)
makes clean text of it with ``text.clean``; a server's own words quoted in an error are clean text.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import httpx

from ppo_client.errors import ConfigurationError, LLMRequestError, LLMResponseError, LLMUnavailableError
from ppo_client.text import clean

logger = logging.getLogger(__name__)

BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"
MODEL_ENV = "PPO_LLM_MODEL"
TIMEOUT_ENV = "PPO_LLM_TIMEOUT"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_S = 60.0
"""One call's deadline, retries included: a dead or hung endpoint is reported within about a minute."""
DEFAULT_RETRIES = 3
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ChatConfig:
    base_url: str
    """Up to and including ``/v1``: ``{base_url}/chat/completions`` is called. Empty: the embedded
    local LLM, started when needed (``ppo_client.llm.embedded``)."""
    api_key: str = ""
    model: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Deadline of one ``complete`` call, all attempts and waits included."""
    max_retries: int = DEFAULT_RETRIES
    backoff_s: float = 0.5
    backoff_cap_s: float = 20.0
    vision: bool = False
    """Whether the model accepts image inputs (the optimizer's ``s+p+f+I`` context needs it)."""
    max_reply_bytes: int = 8 * 2**20

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigurationError(f"the LLM timeout must be a positive number of seconds, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ConfigurationError(f"the LLM retries must be 0 or more, got {self.max_retries}")

    @property
    def embedded(self) -> bool:
        return not self.base_url

    @classmethod
    def from_env(
        cls, base_url: str | None = None, api_key: str | None = None, model: str | None = None, *,
        timeout_s: float | None = None, max_retries: int | None = None, vision: bool = False,
    ) -> ChatConfig:
        """Flags first, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``PPO_LLM_MODEL`` /
        ``PPO_LLM_TIMEOUT``; no URL anywhere means the embedded local LLM."""
        url = base_url or os.environ.get(BASE_URL_ENV) or ""
        if url and not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the LLM endpoint {url!r} must be an http:// or https:// URL ending in /v1")
        if timeout_s is None:
            timeout_s = _env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
        return cls(
            url.rstrip("/"), api_key or os.environ.get(API_KEY_ENV, ""), model or os.environ.get(MODEL_ENV, ""),
            timeout_s=timeout_s, max_retries=DEFAULT_RETRIES if max_retries is None else max_retries, vision=vision,
        )


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"${name} must be a number of seconds, got {text!r}") from None


@dataclass(frozen=True)
class ChatReply:
    text: str
    seconds: float
    attempts: int
    usage: dict = field(default_factory=dict)
    finish_reason: str = ""
    """``stop``, ``length`` (the token limit cut it), ...; empty where the endpoint did not say."""


def image_part(image) -> dict:
    """A PIL image as an OpenAI ``image_url`` content part."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def user_message(text: str, images: Sequence = ()) -> dict:
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text}, *(image_part(im) for im in images)]}


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None  # unreadable: fall back to the usual backoff
    return max(0.0, seconds) if seconds == seconds else None


_FORMAT_WORDS = re.compile(rb"response_format|json_schema|json_object", re.IGNORECASE)


def _refuses_format(request: dict, body: bytes) -> bool:
    """Whether an error answers the request's ``response_format``: some servers say so with a 500
    (llama-cpp-python's validation error), which a retry would only repeat."""
    return "response_format" in request and bool(_FORMAT_WORDS.search(body[:4096]))


def _server_message(body: bytes) -> str:
    """The server's error message as clean text (it ends up on a terminal)."""
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = str(error.get("message", error) if isinstance(error, dict) else error)
    except (ValueError, RecursionError):
        message = body[:2000].decode("utf-8", "replace")
    return clean(message[:4000], max_chars=500)


def _excerpt(value: object, max_chars: int) -> str:
    """A parsed reply, quoted in an error: clean text, bounded."""
    try:
        return clean(str(value)[: 8 * max_chars], max_chars=max_chars)
    except RecursionError:  # nested about as deep as the JSON parser goes
        return "(a value nested too deep to show)"


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes


class ChatClient:
    """``health``, when given, is called before each attempt and after a failed one: a local server
    that died raises there with its exit status, instead of being retried as a closed port."""

    def __init__(
        self, config: ChatConfig, *, transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep, seed: int = 0, health: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.embedded:
            raise ConfigurationError("ChatClient needs an endpoint URL; start the embedded LLM for an empty one")
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(base_url=config.base_url, headers=headers, transport=transport)
        self._sleep = sleep
        self._clock = clock
        self._health = health or (lambda: None)
        self._random = random.Random(seed)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 10 * self.config.backoff_cap_s)
        ceiling = min(self.config.backoff_cap_s, self.config.backoff_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._random.random())  # jitter: spread retries of many clients

    def _post(self, body: dict, deadline: float) -> _Answer:
        """One attempt, read as a stream so that the deadline and the size limit hold while it arrives."""
        remaining = deadline - self._clock()
        timeout = httpx.Timeout(remaining, connect=min(remaining, CONNECT_TIMEOUT_S))
        with self._http.stream("POST", "/chat/completions", json=body, timeout=timeout) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.config.max_reply_bytes:
                    raise LLMResponseError(
                        f"the chat endpoint {self.config.base_url} sent a reply larger than {self.config.max_reply_bytes} bytes"
                    )
                if self._clock() > deadline:
                    raise httpx.ReadTimeout("the reply was still arriving at the deadline")
                chunks.append(chunk)
            return _Answer(response.status_code, response.headers, b"".join(chunks))

    def _completion(self, answer: _Answer) -> tuple[str, dict, str]:
        """The reply's text, token usage and finish reason, or ``LLMResponseError`` if it is not a chat completion."""
        where = f"the chat endpoint {self.config.base_url}"
        try:
            payload = json.loads(answer.body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise LLMResponseError(
                f"{where} answered HTTP {answer.status} with a body that is not JSON: {answer.body[:200]!r}"
            ) from None
        try:
            text = payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMResponseError(f"{where} answered without a message: {_excerpt(payload, 300)}") from None
        if not isinstance(text, str):
            raise LLMResponseError(f"{where} answered a message whose content is not text: {_excerpt(text, 200)}")
        usage = payload.get("usage")
        finish = payload["choices"][0].get("finish_reason") if isinstance(payload["choices"][0], dict) else ""
        return text, usage if isinstance(usage, dict) else {}, finish if isinstance(finish, str) else ""

    def complete(self, messages: Sequence[dict], *, temperature: float = 1.0, max_tokens: int = 512, **extra: Any) -> ChatReply:
        body = {"messages": list(messages), "temperature": temperature, "max_tokens": max_tokens, **extra}
        if self.config.model:
            body["model"] = self.config.model
        started = self._clock()
        deadline = started + self.config.timeout_s
        problem, attempts = "", 0
        for attempt in range(self.config.max_retries + 1):
            self._health()
            if self._clock() >= deadline:
                break
            attempts += 1
            retry_after = None
            try:
                answer = self._post(body, deadline)
            except httpx.TransportError as exc:  # connection refused, timeouts, resets
                self._health()
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status == 200:
                    text, usage, finish = self._completion(answer)
                    return ChatReply(text, self._clock() - started, attempts, usage, finish)
                if answer.status not in RETRY_STATUSES or _refuses_format(body, answer.body):
                    raise LLMRequestError(
                        f"the chat endpoint {self.config.base_url} refused the request (HTTP {answer.status}): "
                        f"{_server_message(answer.body)}",
                        status=answer.status,
                    )
                problem = f"HTTP {answer.status}: {_server_message(answer.body)}"
                retry_after = _retry_after(answer.headers)
            if attempt < self.config.max_retries:
                delay = min(self._delay(attempt, retry_after), max(0.0, deadline - self._clock()))
                logger.warning("chat request failed (%s); retry %d in %.1f s", problem, attempt + 1, delay)
                self._sleep(delay)
        raise LLMUnavailableError(
            f"the chat endpoint {self.config.base_url} failed {attempts} times in {self._clock() - started:.0f} s "
            f"(deadline {self.config.timeout_s:g} s, --llm-timeout or ${TIMEOUT_ENV}); last: {problem or 'no time left'}"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
