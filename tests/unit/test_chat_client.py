"""The chat client's retry policy and request format, against httpx's mock transport."""

import json

import httpx
import pytest
from PIL import Image

from ppo_client.errors import LLMRequestError, LLMUnavailableError
from ppo_client.llm.chat import ChatClient, ChatConfig, user_message


def reply(text: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"total_tokens": 5}})


def client_for(responses, sleeps, **config):
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    config = ChatConfig("http://llm.invalid/v1", api_key="k", model="m", **config)
    return ChatClient(config, transport=httpx.MockTransport(handler), sleep=sleeps.append), requests


def test_transient_failures_are_retried_with_growing_capped_delays():
    sleeps = []
    responses = [httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(500), httpx.Response(429), reply("ok")]
    client, requests = client_for(responses, sleeps, backoff_s=1.0, backoff_cap_s=3.0, max_retries=4)
    result = client.complete([user_message("hi")])
    assert result.text == "ok" and result.attempts == 5
    assert [0.5 <= s / c <= 1.0 for s, c in zip(sleeps, [1, 2, 3, 3], strict=True)] == [True] * 4
    body = json.loads(requests[0].content)
    assert body["model"] == "m" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert requests[0].headers["authorization"] == "Bearer k"
    assert requests[0].url.path == "/v1/chat/completions"


def test_retry_after_is_honoured():
    sleeps = []
    client, _ = client_for([httpx.Response(429, headers={"Retry-After": "7"}), reply("ok")], sleeps)
    assert client.complete([user_message("hi")]).text == "ok"
    assert sleeps == [7.0]


@pytest.mark.parametrize("status", [400, 401, 404])
def test_refusals_fail_at_once_with_the_servers_message(status):
    sleeps = []
    client, requests = client_for([httpx.Response(status, json={"error": {"message": "bad key"}})], sleeps)
    with pytest.raises(LLMRequestError, match=f"HTTP {status}.*bad key") as info:
        client.complete([user_message("hi")])
    assert info.value.status == status and len(requests) == 1 and sleeps == []


def test_an_endpoint_that_keeps_failing_is_reported_after_the_retries():
    sleeps = []
    client, requests = client_for([httpx.ConnectError("refused")] * 3, sleeps, max_retries=2)
    with pytest.raises(LLMUnavailableError, match="llm.invalid/v1 failed 3 times .*; last: ConnectError"):
        client.complete([user_message("hi")])
    assert len(requests) == 3 and len(sleeps) == 2


def test_images_travel_as_image_url_parts():
    message = user_message("rate this", [Image.new("RGB", (4, 4), "red")])
    assert message["content"][0] == {"type": "text", "text": "rate this"}
    assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_configuration_comes_from_flags_then_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert ChatConfig.from_env().embedded, "no URL anywhere: the embedded local LLM"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    monkeypatch.setenv("PPO_LLM_MODEL", "gpt-x")
    config = ChatConfig.from_env()
    assert (config.base_url, config.api_key, config.model) == ("http://env/v1", "secret", "gpt-x")
    assert ChatConfig.from_env("http://flag/v1", model="other").model == "other"
