"""A small OpenAI-compatible chat-completions client over httpx.

Retries what is worth retrying (connection errors, timeouts, 408, 429, 5xx) with capped exponential
backoff and jitter, honouring ``Retry-After``; refusals (400, 401, 403, 404, 422) fail at once with
the server's message. Images go as ``image_url`` content parts (PNG data URLs) for vision models.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import httpx

from ppo_client.errors import LLMRequestError, LLMUnavailableError

logger = logging.getLogger(__name__)

BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"
MODEL_ENV = "PPO_LLM_MODEL"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ChatConfig:
    base_url: str
    """Up to and including ``/v1``: ``{base_url}/chat/completions`` is called."""
    api_key: str = ""
    model: str = ""
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_cap_s: float = 20.0
    vision: bool = False
    """Whether the model accepts image inputs (the optimizer's ``s+p+f+I`` context needs it)."""

    @classmethod
    def from_env(cls, base_url: str | None = None, api_key: str | None = None, model: str | None = None, **kwargs) -> ChatConfig | None:
        """Flags first, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``PPO_LLM_MODEL``; None when no endpoint is set."""
        url = base_url or os.environ.get(BASE_URL_ENV)
        if not url:
            return None
        return cls(url.rstrip("/"), api_key or os.environ.get(API_KEY_ENV, ""), model or os.environ.get(MODEL_ENV, ""), **kwargs)


@dataclass(frozen=True)
class ChatReply:
    text: str
    seconds: float
    attempts: int
    usage: dict = field(default_factory=dict)


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        return str(error.get("message", error) if isinstance(error, dict) else error)
    except ValueError:
        return response.text[:500]


class ChatClient:
    def __init__(
        self, config: ChatConfig, *, transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep, seed: int = 0,
    ) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(base_url=config.base_url, headers=headers, timeout=config.timeout_s, transport=transport)
        self._sleep = sleep
        self._random = random.Random(seed)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 10 * self.config.backoff_cap_s)
        ceiling = min(self.config.backoff_cap_s, self.config.backoff_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._random.random())  # jitter: spread retries of many clients

    def complete(self, messages: Sequence[dict], *, temperature: float = 1.0, max_tokens: int = 512, **extra: Any) -> ChatReply:
        body = {"messages": list(messages), "temperature": temperature, "max_tokens": max_tokens, **extra}
        if self.config.model:
            body["model"] = self.config.model
        started = time.perf_counter()
        problem = ""
        for attempt in range(self.config.max_retries + 1):
            retry_after = None
            try:
                response = self._http.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # connection refused, timeouts, resets
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    payload = response.json()
                    try:
                        text = payload["choices"][0]["message"]["content"] or ""
                    except (KeyError, IndexError, TypeError) as exc:
                        raise LLMRequestError(f"the chat endpoint answered without a message: {str(payload)[:300]}", status=200) from exc
                    return ChatReply(text, time.perf_counter() - started, attempt + 1, payload.get("usage") or {})
                if response.status_code not in RETRY_STATUSES:
                    raise LLMRequestError(
                        f"the chat endpoint refused the request (HTTP {response.status_code}): {_server_message(response)}",
                        status=response.status_code,
                    )
                problem = f"HTTP {response.status_code}: {_server_message(response)}"
                retry_after = _retry_after(response)
            if attempt < self.config.max_retries:
                delay = self._delay(attempt, retry_after)
                logger.warning("chat request failed (%s); retry %d in %.1f s", problem, attempt + 1, delay)
                self._sleep(delay)
        raise LLMUnavailableError(
            f"the chat endpoint {self.config.base_url} failed {self.config.max_retries + 1} times; last: {problem}"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
