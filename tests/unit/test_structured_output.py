"""Structured output: the dialect each kind of endpoint honours is found once and kept; the
optimizer counts where its prompts came from."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from ppo_client.errors import LLMRequestError
from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.llm.structured import StructuredChat
from ppo_client.optimize import templates
from ppo_client.optimize.parsing import schema_prompts
from ppo_client.optimize.proposers import REPLY_CHARS, LLMProposer, ScoredPrompt

INITIAL = "a red circle on a blue background"
GOOD = {"prompts": [f"{INITIAL}, soft light", f"{INITIAL}, watercolor", f"{INITIAL}, golden hour", f"{INITIAL}, bokeh",
                    f"{INITIAL}, matte", f"{INITIAL}, oil painting"]}


class Endpoint:
    """A mock chat endpoint in one of the flavours met in the wild; records each request's response_format."""

    def __init__(self, flavour: str, url: str = "http://llm.invalid/v1", finish: str = "stop"):
        self.flavour, self.url, self.finish, self.formats = flavour, url, finish, []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        fmt = body.get("response_format")
        self.formats.append(fmt and fmt["type"])
        if self.flavour == "unauthorized":
            return httpx.Response(401, json={"error": {"message": "invalid api key"}})
        if self.flavour == "llama-cpp-python" and fmt and fmt["type"] == "json_schema":
            return httpx.Response(500, json={"error": {"message": "1 validation error: ('body', 'response_format', 'type') "
                                                                  "Input should be 'text' or 'json_object'"}})
        honours = {"openai": "json_schema", "llama-cpp-python": "json_object"}.get(self.flavour)
        if fmt and fmt["type"] == honours:
            n = (fmt.get("json_schema", {}).get("schema") or fmt.get("schema"))["properties"]["prompts"]["minItems"]
            text = json.dumps({"prompts": GOOD["prompts"][:n]})
        else:  # unconstrained: a list in prose, as a chatty model writes it
            text = "Here are some prompts:\n" + "\n".join(f"{i}. {p}" for i, p in enumerate(GOOD["prompts"], 1))
        return httpx.Response(200, json={"choices": [{"message": {"content": text}, "finish_reason": self.finish}]})

    def client(self) -> ChatClient:
        return ChatClient(ChatConfig(self.url, max_retries=3), transport=httpx.MockTransport(self.handler), sleep=lambda s: None)


def ask(chat: StructuredChat):
    return chat.complete([{"role": "user", "content": "x"}], name="prompts", schema=templates.prompts_schema(4), validate=schema_prompts)


@pytest.mark.parametrize("flavour, first, then", [
    ("openai", ["json_schema"], ["json_schema"]),
    ("llama-cpp-python", ["json_schema", "json_object"], ["json_object"]),  # its refusal is a 500, and is not retried
    ("plain", ["json_schema"], ["json_object"]),  # ignored: that reply still parsed, the next call tries the next dialect
])
def test_each_kind_of_endpoint_is_learnt_once(flavour, first, then):
    endpoint = Endpoint(flavour)
    chat = StructuredChat(endpoint.client())
    answer = ask(chat)
    assert endpoint.formats == first
    assert (answer.value is not None) == (flavour != "plain")
    endpoint.formats.clear()
    ask(chat)
    assert endpoint.formats == then
    if flavour == "plain":
        endpoint.formats.clear()
        ask(chat)
        ask(chat)
        assert endpoint.formats == [None, None] and chat.dialect == "none"
    # another client of the same endpoint in this process knows already; another endpoint does not
    assert StructuredChat(endpoint.client()).dialect == chat.dialect
    assert StructuredChat(Endpoint(flavour, "http://other.invalid/v1").client()).dialect == "json_schema"


def test_a_refusal_for_another_reason_is_raised_and_teaches_nothing():
    endpoint = Endpoint("unauthorized")
    chat = StructuredChat(endpoint.client())
    with pytest.raises(LLMRequestError, match="HTTP 401"):
        ask(chat)
    assert endpoint.formats == ["json_schema"] and chat.dialect == "json_schema"


def test_a_reply_cut_by_the_token_limit_is_not_taken_for_an_ignored_schema():
    endpoint = Endpoint("plain", finish="length")
    chat = StructuredChat(endpoint.client())
    assert ask(chat).value is None and chat.dialect == "json_schema"


def test_an_error_about_the_format_is_not_retried_but_other_server_errors_are():
    calls = []

    def handler(request):
        calls.append(json.loads(request.content).get("response_format"))
        return httpx.Response(500, json={"error": {"message": "overloaded"}})

    chat = ChatClient(ChatConfig("http://llm.invalid/v1", max_retries=2), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    with pytest.raises(Exception, match="failed 3 times"):
        chat.complete([{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    assert len(calls) == 3


@pytest.mark.parametrize("flavour", ["openai", "llama-cpp-python", "plain"])
def test_the_optimizer_says_where_each_prompt_came_from(flavour):
    endpoint = Endpoint(flavour)
    proposer = LLMProposer(endpoint.client(), "s+p")
    history = [[ScoredPrompt(INITIAL, 4.0)]]
    first = proposer.propose(INITIAL, history, 4, np.random.default_rng(0), {INITIAL}, list)
    assert len(first.prompts) == 4 and first.fallback == 0
    assert (first.from_llm, first.repaired) == ((0, 4) if flavour == "plain" else (4, 0))
    seen = {INITIAL, *(p.lower() for p in first.prompts)}
    second = proposer.propose(INITIAL, history, 4, np.random.default_rng(1), seen, list)
    assert second.from_llm + second.repaired + second.fallback == len(second.prompts) == 4
    assert second.fallback >= 2  # the mock has only 6 prompts and 4 are seen: the rest are keyword edits


def test_structured_output_can_be_switched_off():
    endpoint = Endpoint("openai")
    proposal = LLMProposer(endpoint.client(), "s+p", structured=False).propose(
        INITIAL, [[ScoredPrompt(INITIAL, 4.0)]], 4, np.random.default_rng(0), {INITIAL}, list)
    assert endpoint.formats == [None] and proposal.repaired == 4 and proposal.structured == "none"


def test_the_schema_asks_for_plain_prompts_and_the_validator_wants_exactly_that_shape():
    schema = templates.prompts_schema(3)
    assert schema["properties"]["prompts"]["minItems"] == schema["properties"]["prompts"]["maxItems"] == 3
    assert schema_prompts({"prompts": ["a b", "c d"]}) == ["a b", "c d"]
    for bad in ([], ["a b"], {"prompts": "a b"}, {"prompts": [1, 2]}, {"prompts": []}, {"prompts": ["a b"], "x": 1}):
        assert schema_prompts(bad) is None


def test_an_anchored_schema_makes_every_prompt_start_with_the_subject():
    import re

    endpoint = Endpoint("llama-cpp-python")
    bodies = []
    handler = endpoint.handler

    def recording(request):
        bodies.append(json.loads(request.content))
        return handler(request)

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(recording), sleep=lambda s: None)
    subject = "a (red) circle? on a blue background"
    proposal = LLMProposer(chat, "s+p", anchored=True).propose(
        f"{subject}, matte", [[ScoredPrompt(subject, 4.0)]], 2, np.random.default_rng(0), {subject}, list)
    last = bodies[-1]
    pattern = last["response_format"]["schema"]["properties"]["prompts"]["items"]["pattern"]
    assert re.fullmatch(pattern, f"{subject}, soft light, bokeh") and not re.fullmatch(pattern, "a red circle, soft light")
    assert not re.fullmatch(pattern, subject)  # at least one phrase after it
    assert f'starts with "{subject}"' in last["messages"][1]["content"]
    assert len(proposal.prompts) == 2
    # a subject with a quote in it would need escaping inside the grammar's JSON string: not anchored
    LLMProposer(chat, "s+p", anchored=True).propose('a "quoted" cat', [[ScoredPrompt("a cat", 4.0)]], 2,
                                                   np.random.default_rng(0), set(), list)
    assert bodies[-1]["response_format"]["schema"]["properties"]["prompts"]["items"]["pattern"] == templates.PROMPT_PATTERN
    assert templates.anchorable("l'été à Paris") and not templates.anchorable("a \\ b") and not templates.anchorable("a\nb")


def test_the_subject_anchor_setting_is_checked():
    from ppo_client.errors import InvalidRequestError
    from ppo_client.optimize.config import RunConfig, SubjectAnchor

    with pytest.raises(InvalidRequestError, match="subject_anchor"):
        RunConfig("u", "a cat", subject_anchor="sometimes").checked()
    assert RunConfig("u", "a cat").subject_anchor is SubjectAnchor.AUTO == "auto"


def test_a_reply_with_thousands_of_prompts_costs_what_one_asked_for_does_and_is_out_of_shape():
    flood = json.dumps({"prompts": [f"{INITIAL}, variation {i}" for i in range(5000)]})

    def handler(request):
        return httpx.Response(200, json={"choices": [{"message": {"content": flood}, "finish_reason": "stop"}]})

    kept = []

    def keep(prompts):
        kept.append(len(prompts))
        return list(prompts)

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    proposer = LLMProposer(chat, "s+p")
    proposal = proposer.propose(INITIAL, [[ScoredPrompt(INITIAL, 4.0)]], 4, np.random.default_rng(0), {INITIAL}, keep)
    assert len(proposal.prompts) == 4 and kept == [2 * proposer.asked(4)]
    # 5,000 prompts for a schema of asked(4): not in the shape asked for, though the extra ones were dropped
    assert [call["fits_schema"] for call in proposal.llm_calls] == [False]
    assert (proposal.from_llm, proposal.repaired) == (0, 4)
    assert proposal.llm_calls[0]["reply_chars"] == len(flood) and len(proposal.llm_calls[0]["reply"]) <= REPLY_CHARS
