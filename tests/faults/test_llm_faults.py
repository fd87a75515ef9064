"""LLM endpoints that hang, trickle, talk nonsense or die: every call ends within its deadline with
one error that names the endpoint."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from ppo_client import text
from ppo_client.cli import main
from ppo_client.errors import ConfigurationError, LLMRequestError, LLMResponseError, LLMUnavailableError
from ppo_client.head import PreferenceHead
from ppo_client.llm.chat import DEFAULT_TIMEOUT_S, ChatClient, ChatConfig, user_message
from ppo_client.optimize import metrics, templates
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.folder import ITERATIONS, RunInfo, create_run, read_records
from ppo_client.optimize.loop import run_iterations
from ppo_client.optimize.proposers import LLMProposer
from ppo_client.optimize.records import RenderedPrompt
from ppo_client.optimize.report import write_report
from ppo_client.processes import check_alive

pytestmark = pytest.mark.faults
DEAD_ENDPOINT_BOUND_S = 90.0
"""The issue's promise: a dead LLM endpoint is reported within this, with the default settings."""


@contextmanager
def raw_server(behaviour):
    """A loopback TCP server whose every connection is handled by ``behaviour(connection)``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    connections = []

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connections.append(connection)
            threading.Thread(target=behaviour, args=(connection, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        for connection in connections:
            connection.close()
        listener.close()


def hang(connection, stop):
    connection.recv(65536)
    stop.wait()


def trickle(connection, stop):
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.2):
        try:
            connection.sendall(b" ")
        except OSError:
            return


def answer(status: int, body: bytes):
    def behaviour(connection, stop):
        connection.recv(65536)
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        connection.sendall(head + body)
    return behaviour


def endless(connection, stop):
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"choices\": [\"")
    chunk = b"x" * 65536
    while not stop.is_set():
        try:
            connection.sendall(chunk)
        except OSError:
            return


def timed_call(url, **config):
    client = ChatClient(ChatConfig(url, **config), sleep=time.sleep)
    started = time.monotonic()
    try:
        client.complete([user_message("hi")])
    except Exception as exc:
        return exc, time.monotonic() - started
    finally:
        client.close()
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("behaviour", [hang, trickle], ids=["hangs", "trickles"])
def test_a_hung_or_trickling_endpoint_fails_the_call_at_its_deadline(behaviour):
    with raw_server(behaviour) as url:
        error, seconds = timed_call(url, timeout_s=1.5, max_retries=3)
    assert isinstance(error, LLMUnavailableError) and url in str(error), str(error)
    assert "deadline 1.5 s" in str(error)
    assert seconds < 10, f"took {seconds:.1f} s against a 1.5 s deadline"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [(200, b"<html>proxy error</html>", "a body that is not JSON"), (200, b'{"choices": []}', "answered without a message"),
     (200, b'{"choices": [{"message": {"content": {"a": 1}}}]}', "content is not text"), (200, b"[1, 2]", "without a message")],
    ids=["html", "no choices", "content not text", "a list"],
)
def test_a_reply_that_is_not_a_chat_completion_is_one_clear_error(status, body, expected):
    with raw_server(answer(status, body)) as url:
        error, _ = timed_call(url, timeout_s=10)
    assert isinstance(error, LLMResponseError) and expected in str(error) and url in str(error), str(error)


def test_an_endless_reply_is_cut_at_the_size_limit():
    with raw_server(endless) as url:
        error, _ = timed_call(url, timeout_s=20, max_reply_bytes=2**20)
    assert isinstance(error, LLMResponseError) and "larger than 1048576 bytes" in str(error)


def test_with_the_defaults_a_dead_endpoint_is_reported_within_ninety_seconds():
    """Time is simulated: each attempt times out after the read timeout it was given."""
    now = [0.0]

    def handler(request: httpx.Request):
        now[0] += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("no answer", request=request)

    def sleep(seconds):
        now[0] += seconds

    client = ChatClient(ChatConfig("http://hung.invalid/v1"), transport=httpx.MockTransport(handler), sleep=sleep,
                        clock=lambda: now[0])
    with pytest.raises(LLMUnavailableError, match="hung.invalid"):
        client.complete([user_message("hi")])
    assert DEFAULT_TIMEOUT_S <= now[0] <= DEAD_ENDPOINT_BOUND_S


def test_a_closed_port_is_reported_within_seconds():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, seconds = timed_call(f"http://127.0.0.1:{port}/v1")
    assert isinstance(error, LLMUnavailableError) and "ConnectError" in str(error)
    assert seconds < 30


def test_a_local_server_that_died_is_named_with_its_signal_and_log_at_once(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("loading model\nready\n")
    process = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    process.wait()

    def health():
        check_alive(process, name="the local LLM server", log_file=log, error=LLMUnavailableError)

    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    client = ChatClient(ChatConfig("http://127.0.0.1:9/v1"), transport=httpx.MockTransport(handler), health=health)
    with pytest.raises(LLMUnavailableError) as info:
        client.complete([user_message("hi")])
    message = str(info.value)
    assert f"(pid {process.pid}) was killed by signal 11 (SIGSEGV)" in message and "ready" in message
    assert calls == [], "a dead local server is not retried as a closed port"


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_the_embedded_llm_killed_mid_session_is_reported_with_its_exit():
    from ppo_client.llm.embedded import EmbeddedLLMServer

    with EmbeddedLLMServer() as server, ChatClient(server.chat_config(timeout_s=30), health=server.check) as chat:
        assert isinstance(chat.complete([user_message("Say hi.")], max_tokens=8).text, str)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        with pytest.raises(LLMUnavailableError, match=r"the local LLM server \(pid \d+\) was killed by signal 9 \(SIGKILL\)"):
            chat.complete([user_message("Say hi.")], max_tokens=8)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_the_embedded_llm_ignores_a_shell_that_sets_port_host_or_an_api_key(monkeypatch):
    from ppo_client.llm.embedded import SERVER_SETTINGS, EmbeddedLLMServer, server_environment
    from ppo_client.processes import free_port

    taken = free_port()
    for name, value in {"PORT": str(taken), "HOST": "192.0.2.1", "API_KEY": "secret", "n_ctx": "8", "Verbose": "maybe"}.items():
        monkeypatch.setenv(name, value)
    assert not {k.lower() for k in server_environment()} & SERVER_SETTINGS and "PATH" in server_environment()
    with EmbeddedLLMServer() as server, ChatClient(server.chat_config(timeout_s=30), health=server.check) as chat:
        assert server.port != taken
        assert isinstance(chat.complete([user_message("Say hi.")], max_tokens=8).text, str)  # no key needed, on our port


def test_llm_settings_are_checked_and_named(monkeypatch, tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="positive number of seconds"):
        ChatConfig("http://x/v1", timeout_s=0)
    monkeypatch.setenv("PPO_LLM_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match=r"\$PPO_LLM_TIMEOUT must be a number of seconds, got 'soon'"):
        ChatConfig.from_env()
    monkeypatch.setenv("PPO_LLM_TIMEOUT", "12.5")
    assert ChatConfig.from_env().timeout_s == 12.5 and ChatConfig.from_env(timeout_s=3).timeout_s == 3
    monkeypatch.delenv("PPO_LLM_TIMEOUT")
    args = ["optimize", "--user", "a", "--prompt", "a cat", "--llm-url", "ftp://llm", "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 2
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


INITIAL = "a red circle on a blue background"
HOSTILE_PROMPTS = [
    f"{INITIAL}\x1b[31m, soft light\x1b[0m",
    f"<script>alert(1)</script> {INITIAL}, matte",
    f"{INITIAL}\x00, golden\x07 hour, \u2066bokeh\u2069",
    f"{INITIAL}, \u202ewatercolor\u202c",
    f"{INITIAL} \ud800, oil painting\x7f",
    f"{INITIAL},\u200b pastel\x1b]8;;http://evil.invalid\x1b\\ colours",
]
HOSTILE_FEEDBACK = "Warmer \x1b[1mlight\x1b[0m wins.\u202e <img src=x onerror=alert(1)>\x07\n\nMore \ud800 grain."


class HostileLLM:
    """Answers in the shape the schema asks for, filled with escape sequences, NUL, BEL, bidi
    controls, lone surrogates and markup; then with 5,000 of them; and feedback of the same kind."""

    def __init__(self) -> None:
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["messages"][0]["content"] == templates.feedback_system():
            content = HOSTILE_FEEDBACK
        else:
            self.requests += 1
            fmt = body.get("response_format") or {}
            schema = fmt.get("json_schema", {}).get("schema") or fmt.get("schema")
            n = schema["properties"]["prompts"]["maxItems"] if schema else 6
            flood = [f"{INITIAL}, \x1b[3{i % 8}mvariation {i}\u202e" for i in range(5000)]
            content = json.dumps({"prompts": HOSTILE_PROMPTS[:n] if self.requests == 1 else flood})
        return completion(content)


def completion(content: str) -> httpx.Response:
    """A chat completion of this content; a lone surrogate in it travels as a JSON escape, as a server sends it."""
    body = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})
    return httpx.Response(200, content=body.encode(), headers={"content-type": "application/json"})


def strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


class WordRenderer:
    """Renders nothing: scores a prompt by its length."""

    server_seconds = 0.0
    scheduler = "euler"

    def render(self, prompts, folder, iteration):
        return [RenderedPrompt(prompt=p, scores=[float(len(p))], score=float(len(p)), images=["a.png"], best=0,
                               embeddings=[[1.0, 0.0]], description="blue, round") for p in prompts]


def test_a_hostile_structured_reply_leaves_only_clean_text_in_the_record_and_the_report(tmp_path):
    llm = HostileLLM()
    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(llm.handler), sleep=lambda s: None)
    config = RunConfig("u", INITIAL, iterations=1, n_prompts=3, seeds=1, optimizer="llm", context="s+p+f")
    state = create_run(tmp_path / "run", config, PreferenceHead.linear(np.ones(2), 0.0), RunInfo(),
                       (np.zeros((0, 2), np.float32), np.zeros(0)))
    run_iterations(state, LLMProposer(chat, "s+p+f"), WordRenderer(), list)
    state.close()

    lines = [json.loads(line) for line in (tmp_path / "run" / ITERATIONS).read_text(encoding="utf-8").splitlines()]
    assert [s for s in strings(lines) if text.hidden(s)] == []
    records = read_records(tmp_path / "run")
    prompts = [p.prompt for r in records for p in r.prompts]
    assert len(prompts) == 1 + 3 + 3
    assert all(p == text.clean(p) and not text.hidden(p) for p in prompts)
    assert prompts[:4] == [INITIAL, f"{INITIAL}, soft light", f"<script>alert(1)</script> {INITIAL}, matte",
                           f"{INITIAL}, golden hour, bokeh"]
    assert records[1].feedback == "Warmer light wins. <img src=x onerror=alert(1)> More grain."
    assert all(not text.hidden(call["reply"]) for r in records for call in r.llm_calls)
    # neither the hostile reply of the right length nor the flood was in the shape asked for
    assert [r.llm_prompts for r in records] == [0, 0] and records[0].repaired_prompts == 3
    assert not any(call.get("fits_schema") for r in records for call in r.llm_calls)

    summary = metrics.summarize(records, np.zeros((0, 2), np.float32), np.zeros(0), quantile=0.5)
    page = write_report(tmp_path / "run", config.to_dict(), records, summary).read_text(encoding="utf-8")
    assert not text.hidden(page)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_hostile_error_message_reaches_the_terminal_as_clean_text():
    def handler(request):
        return httpx.Response(400, json={"error": {"message": "bad \x1b]0;owned\x07request\x1b[2J\u202e" + "!" * 10_000}})

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    with pytest.raises(LLMRequestError) as info:
        chat.complete([user_message("hi")])
    message = str(info.value)
    assert "bad request!" in message and not text.hidden(message) and len(message) < 700


def test_a_reply_nested_deeper_than_json_goes_is_a_response_error():
    body = b'{"choices": ' + b"[" * 100_000
    with raw_server(answer(200, body)) as url:
        error, _ = timed_call(url, timeout_s=10)
    assert isinstance(error, LLMResponseError) and "not JSON" in str(error)
