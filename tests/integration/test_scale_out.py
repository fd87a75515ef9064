"""One client, two Triton servers: requests go to the least busy one."""

from __future__ import annotations

import asyncio

import pytest

from ppo_client import AsyncTxt2ImgClient, GenerationRequest, Txt2ImgClient
from ppo_client.errors import ServerUnavailableError
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from tests.triton_stats import settled, successes

pytestmark = pytest.mark.integration


def test_concurrent_requests_are_spread_over_both_servers(triton_server, tiny_repository):
    with EmbeddedTritonServer(ServerConfig(tiny_repository)) as second:
        before = [successes(triton_server), successes(second)]

        async def run():
            async with AsyncTxt2ImgClient(f"{triton_server.grpc_url},{second.grpc_url}") as client:
                images = await asyncio.gather(
                    *(client.generate(GenerationRequest("a red cat", seed=i, steps=2, height=64, width=64)) for i in range(12))
                )
                return images, list(client.requests_sent)

        images, sent = asyncio.run(run())
        served = tuple(settled(lambda: [successes(triton_server), successes(second)], before, 12))
    assert len(images) == 12 and sum(sent) == 12
    assert min(sent) > 0, f"both servers should be used, sent {sent}"
    assert served == tuple(sent)


def test_the_error_names_the_server_that_failed(triton_server):
    with Txt2ImgClient([triton_server.grpc_url, "127.0.0.1:9"]) as client:
        client.size_limits()
        with pytest.raises(ServerUnavailableError, match="127.0.0.1:9"):
            for seed in range(2):  # the second request goes to the dead server
                client.generate(GenerationRequest("a red cat", seed=seed, steps=2))
