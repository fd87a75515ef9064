"""Hostile LLM text: whatever a reply holds, the prompts, feedback and records made of it are clean
text from one function (``ppo_client.text.clean``), and reading a reply never raises anything but
the project's own errors."""

from __future__ import annotations

import json
import unicodedata

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ppo_client import text
from ppo_client.errors import LLMResponseError
from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.llm.structured import StructuredChat
from ppo_client.optimize import templates
from ppo_client.optimize.parsing import MAX_CHARS, MIN_CHARS, parse_prompts, schema_prompts, usable
from ppo_client.optimize.proposers import FEEDBACK_CHARS, REPLY_CHARS, LLMProposer, ScoredPrompt

INITIAL = "a red circle on a blue background"
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
HOSTILE = [
    "\x1b[31m", "\x1b[0m", "\x1b]0;owned\x07", "\x1b]8;;http://evil.invalid\x1b\\", "\x9b2J", "\x1b", "\x00", "\x07", "\x7f",
    "\x85", "\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200d", "\u00ad", "\ufeff", "\U000e0041", "\ud800", "\udfff",
    "\ue000", "\U0010ffff", "e\u0301", "\u0f73", "\u0958", "\u2028", "\u3000", "\t", "\r\n", "\n", "  ", '"', ",", "<script>",
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# any code point, lone surrogates included (JSON strings can carry them as "\ud800" escapes)
any_char = st.characters(exclude_categories=()) | st.integers(0xD800, 0xDFFF).map(chr)
words = st.sampled_from(["a", "red", "circle", "soft light", "watercolor", "matte", "Here are", "1.", "- ", "prompt1:"])
pieces = st.sampled_from(HOSTILE) | words | st.text(any_char, max_size=3)
hostile_text = st.text(any_char, max_size=60) | st.lists(pieces, max_size=25).map("".join)


def assert_clean(value: str, *, max_chars: int, lines: bool = False) -> None:
    assert len(value) <= max_chars
    assert not [ch for ch in value if unicodedata.category(ch) in HIDDEN_CATEGORIES and not (lines and ch == "\n")], value
    assert all(ch == " " or not ch.isspace() or (lines and ch == "\n") for ch in value), value
    for line in (value.split("\n") if lines else [value]) if value else []:
        assert line == " ".join(line.split()) and line, value
    assert unicodedata.is_normalized("NFC", value)
    assert not text.hidden(value)
    assert text.clean(value, max_chars=max_chars, lines=lines) == value, "clean text passes unchanged"


def assert_prompts(prompts: list[str]) -> None:
    for prompt in prompts:
        assert_clean(prompt, max_chars=MAX_CHARS)
        assert len(prompt) >= MIN_CHARS and len(prompt.split()) >= 2


@SETTINGS
@given(hostile_text, st.integers(1, 80), st.booleans())
@example("a\x1b[31mred\x1b[0m \u202ecat\u2066\x00\x07", 80, False)
@example("\u0f73\u0f73", 1, False)
def test_clean_text_has_no_hidden_characters_one_space_between_words_and_passes_unchanged(value, max_chars, lines):
    assert_clean(text.clean(value, max_chars=max_chars, lines=lines), max_chars=max_chars, lines=lines)


def test_clean_text_drops_whole_escape_sequences_and_keeps_the_words():
    assert text.clean("a \x1b[1;31mred\x1b[0m\tcat\x07") == "a red cat"
    assert text.clean("see \x1b]8;;http://evil.invalid\x1b\\this\x1b]8;;\x1b\\ link") == "see this link"
    assert text.clean("evil\u202egnp.exe \u2066x\u2069 y\u200bz") == "evilgnp.exe x yz"
    assert text.clean("lone \ud800 surrogate, e\u0301") == "lone surrogate, \u00e9"
    assert text.clean("one\r\n\r\n  two \x85three", lines=True) == "one\ntwo\nthree"
    assert text.clean("x" * 50, max_chars=10) == "x" * 10 and text.clean("ab " * 10, max_chars=9) == "ab ab ab"


@SETTINGS
@given(hostile_text)
@example("[" * 100_000)
@example('{"prompts": ["a \\ud800 red circle", "\\u001b[31ma blue\\u202e one\\u0000"]}')
def test_any_free_text_reply_parses_to_clean_prompts_and_never_raises(reply):
    assert_prompts(parse_prompts(reply))


@SETTINGS
@given(st.lists(hostile_text, max_size=12), st.integers(1, 12))
def test_a_structured_reply_of_hostile_strings_gives_clean_prompts_and_counts_as_out_of_shape(items, most):
    body = json.dumps({"prompts": items})  # ensure_ascii: surrogates travel as "\ud800" escapes
    decoded = json.loads(body)["prompts"]  # a high and a low surrogate side by side come back as one character
    value = schema_prompts({"prompts": decoded}, most=most)
    if value is not None:
        assert len(value) <= most and not any(text.hidden(item) for item in value)
    if any(text.hidden(item) for item in decoded) or len(items) > most:
        assert value is None
    assert_prompts(usable(value or []))
    assert_prompts(parse_prompts(body))


@pytest.mark.parametrize("count", [7, 12, 5000])
def test_a_reply_with_more_prompts_than_the_schema_allows_is_out_of_shape(count):
    items = [f"{INITIAL}, variation {i}" for i in range(count)]
    assert schema_prompts({"prompts": items}, most=6) is None
    assert schema_prompts({"prompts": items[:6]}, most=6) == items[:6]
    assert len(parse_prompts(json.dumps({"prompts": items}), limit=12)) == min(count, 12)  # still repaired, at most twice the ask


def test_a_reply_nested_deeper_than_the_parser_goes_is_no_reply():
    endpoint = Mock('{"prompts": ' + "[" * 100_000)
    assert StructuredChat(endpoint.client()).complete(
        [{"role": "user", "content": "x"}], name="prompts", schema=templates.prompts_schema(4), validate=schema_prompts,
    ).value is None
    assert parse_prompts("[" * 100_000 + "]" * 100_000) == []


def completion(content: str) -> httpx.Response:
    """A chat completion of this content; a lone surrogate in it travels as a JSON escape, as a server sends it."""
    body = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})
    return httpx.Response(200, content=body.encode(), headers={"content-type": "application/json"})


class Mock:
    """A chat endpoint that answers every request with one reply text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def handler(self, request: httpx.Request) -> httpx.Response:
        return completion(self.reply)

    def client(self) -> ChatClient:
        return ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(self.handler), sleep=lambda s: None)


completions = hostile_text.map(lambda t: json.dumps({"choices": [{"message": {"content": t}}]}).encode())
json_values = st.recursive(
    st.none() | st.integers() | hostile_text,
    lambda inner: st.lists(inner) | st.dictionaries(st.sampled_from(["choices", "message", "content", "error"]), inner),
    max_leaves=8,
).map(lambda value: json.dumps(value).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | completions | json_values)
def test_any_reply_body_is_a_reply_or_a_response_error(body):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    client = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=transport)
    try:
        reply = client.complete([{"role": "user", "content": "x"}])
    except LLMResponseError as error:
        assert not text.hidden(str(error))  # what it quotes of the reply is clean text
    else:
        assert isinstance(reply.text, str)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_text, min_size=1, max_size=8), hostile_text, st.booleans())
def test_the_optimizer_keeps_only_clean_prompts_feedback_and_replies(items, feedback, structured):
    reply = json.dumps({"prompts": [f"{INITIAL}, {item}" for item in items]})

    def handler(request: httpx.Request) -> httpx.Response:
        asks_feedback = json.loads(request.content)["messages"][0]["content"] == templates.feedback_system()
        return completion(feedback if asks_feedback else reply)

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    proposal = LLMProposer(chat, "s+p+f", structured=structured).propose(
        INITIAL, [[ScoredPrompt(INITIAL, 4.0, "blue")]], 4, np.random.default_rng(0), {INITIAL}, list)
    assert len(proposal.prompts) == 4
    assert_prompts(proposal.prompts)
    if proposal.feedback:
        assert_clean(proposal.feedback, max_chars=FEEDBACK_CHARS)
    for call in proposal.llm_calls:
        assert_clean(call["reply"], max_chars=REPLY_CHARS, lines=True)
    if any(call.get("fits_schema") for call in proposal.llm_calls):  # structured or not, the reply was in shape
        sent = json.loads(reply)["prompts"]
        assert len(sent) <= LLMProposer.asked(4) and not any(text.hidden(item) for item in sent)


def test_the_report_shows_any_text_of_an_edited_run_folder_escaped_and_clean(tmp_path):
    from ppo_client.optimize.records import IterationRecord, RenderedPrompt
    from ppo_client.optimize.report import write_report

    hostile = "<script>x</script>\x1b[2J\u202e\ud800'\"&"
    prompts = [RenderedPrompt(f"{INITIAL} {hostile}", [1.0], 1.0, [f"a.png'{hostile}"], 0, [[1.0]], description=hostile)]
    records = [IterationRecord(0, [0], prompts, feedback=hostile, screen={"candidates": hostile})]
    config = {"prompt": hostile, "user": hostile, "optimizer": "llm", "context": hostile, "n_prompts": hostile, "seeds": 1,
              "iterations": hostile}
    page = write_report(tmp_path, config, records, {"best_prompt": hostile}).read_text(encoding="utf-8")
    assert "<script>" not in page and "'&lt;script" not in page and not text.hidden(page)
    assert page.count("&lt;script&gt;x&lt;/script&gt;&#x27;&quot;&amp;") >= 8
