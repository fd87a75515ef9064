"""Errors raised by the client SDK.

    PPOError                      base of everything the project raises on purpose
    ├── InvalidRequestError       a request field is out of range; raised before anything is sent
    ├── ConfigurationError        a flag, URL or environment setting is unusable (names it)
    ├── DataError                 imported ratings, images or a SAC file are malformed (names the row)
    │   └── HeadFormatError          bytes that are not a preference model (ppo_client.head)
    ├── StoreError                the user store refused an operation (unknown user, damaged file ...)
    ├── ServerError               the inference server was involved
    │   ├── ServerUnavailableError   it cannot be reached or is not ready
    │   ├── ModelNotFoundError       it does not serve a model the call needs
    │   └── InferenceError           it answered a request with an error (its message is kept)
    │       └── RequestRejectedError    ... because the request was invalid (INVALID_ARGUMENT)
    ├── LLMError                  the chat endpoint failed
    │   ├── LLMUnavailableError      unreachable, dead, hung past the deadline or failing after retries
    │   ├── LLMRequestError          refused the request (400/401/404; not retried)
    │   └── LLMResponseError         answered something that is not a chat completion
    ├── OptimizationError         an optimization run cannot go on (no usable prompts, run busy ...)
    └── DependencyError           an optional dependency is missing (the message says what to install)

Server-side tooling (export, embedded server) and the demo world (``ppo_demo.errors``) subclass
``PPOError`` in their own modules, so one CLI boundary can report any of them.
"""

from __future__ import annotations


class PPOError(Exception):
    """Base class; the CLIs turn it into a message and a non-zero exit code."""

    exit_code = 1


class InvalidRequestError(PPOError, ValueError):
    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    @classmethod
    def from_message(cls, text: str) -> InvalidRequestError:
        """The error again from its text (``"FIELD: message"``), as it comes back from a server."""
        field, _, message = text.partition(": ")
        return cls(field, message) if message else cls("request", text)


class ConfigurationError(PPOError, ValueError):
    """A setting the user gave (flag, URL, environment variable) cannot be used as it is."""

    exit_code = 2


class DataError(PPOError, ValueError):
    """Input data is malformed; the message names the file and row or field. Nothing was written."""

    exit_code = 2


class HeadFormatError(DataError):
    """Bytes that are not a preference head, or a head that cannot score these embeddings."""


class StoreError(PPOError):
    exit_code = 2


class ServerError(PPOError):
    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message if url is None else f"{message} (server {url})")
        self.url = url


class ServerUnavailableError(ServerError):
    pass


class ModelNotFoundError(ServerError):
    pass


class InferenceError(ServerError):
    """The server rejected or failed a request; ``server_message`` is its text, unchanged, and
    ``status`` the protocol's code for it (``"StatusCode.INTERNAL"``, ``"400"``, or empty)."""

    def __init__(self, server_message: str, *, model: str, url: str | None = None, status: str = "") -> None:
        super().__init__(f"{model}: {server_message}", url=url)
        self.server_message = server_message
        self.model = model
        self.status = status


class RequestRejectedError(InferenceError):
    """The server refused the request as invalid; sending it again will not help."""

    exit_code = 2


class LLMError(PPOError):
    pass


class LLMUnavailableError(LLMError):
    pass


class LLMRequestError(LLMError):
    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class LLMResponseError(LLMError):
    """A reply that is not JSON, has no message, or exceeds the size limit; names the endpoint."""


class OptimizationError(PPOError):
    pass


class DependencyError(PPOError):
    pass
