"""Hostile requests next to innocent ones, against the real Triton server: each bad request fails
alone, as INVALID_ARGUMENT, and the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient

from ppo_client import contract
from ppo_client.contract import SizeLimits
from ppo_client.errors import InvalidRequestError, RequestRejectedError
from ppo_client.head import MAGIC, PreferenceHead
from ppo_client.scoring import ScoringClient
from ppo_client.txt2img import Txt2ImgClient
from tests.processes import processes_mentioning

pytestmark = [pytest.mark.integration, pytest.mark.faults]
MEMORY_BOUND_MB = 512
"""What a ``preference`` instance may hold after many large heads (the README's documented bound)."""


def raw_head(header, tail: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + tail


HOSTILE_HEADS = {
    "a shape of 1e30": raw_head({"kind": "mlp", "arrays": [{"name": "w0", "shape": [1e30, 1]}]}),
    "a shape of Infinity": raw_head(b'{"kind":"mlp","arrays":[{"name":"w0","shape":[Infinity,1]}]}'),
    "a negative shape": raw_head({"kind": "mlp", "arrays": [{"name": "w0", "shape": [-4, 1]}]}, b"\0" * 16),
    "JSON nested 20,000 deep": raw_head(b"[" * 20_000 + b"]" * 20_000),
    "a header of 200,001 bytes": raw_head(b"[" * 100_000 + b"]" * 100_000 + b" "),
    "k of Infinity": raw_head(b'{"kind":"knn","k":Infinity,"arrays":[]}'),
    "a header that is not UTF-8": raw_head(b"\xff\xfe{}"),
    "NaN weights": PreferenceHead.linear(np.ones(4), 0.0).to_bytes()[:-8] + struct.pack("<2f", np.nan, 0.0),
    "not a head": b"hello",
}


def tensor(module, name, array, dtype):
    t = module.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def preference_inputs(module, embeddings, head_bytes):
    rows = len(embeddings)
    return [tensor(module, "EMBEDDING", embeddings, "FP32"),
            tensor(module, "USER_MODEL", np.array([[head_bytes]] * rows, dtype=object), "BYTES")]


def generation_inputs(module, prompt=b"a red cat", seed=0, head_bytes=None):
    values = [("PROMPT", np.array([[prompt]], dtype=object), "BYTES"), ("SEED", np.full((1, 1), seed, np.int64), "INT64"),
              ("STEPS", np.full((1, 1), 2, np.int32), "INT32"), ("GUIDANCE_SCALE", np.full((1, 1), 3.0, np.float32), "FP32"),
              ("HEIGHT", np.full((1, 1), 64, np.int32), "INT32"), ("WIDTH", np.full((1, 1), 64, np.int32), "INT32")]
    if head_bytes is not None:
        values.append(("USER_MODEL", np.array([[head_bytes]], dtype=object), "BYTES"))
    return [tensor(grpcclient, *v) for v in values]


@pytest.fixture(scope="module")
def dim(triton_server):
    with ScoringClient(triton_server.grpc_url) as client:
        return client.encoder_info().dim


def test_hostile_heads_fail_alone_and_innocent_preference_requests_in_flight_all_succeed(triton_server, dim):
    rng = np.random.default_rng(0)
    heads = [PreferenceHead.linear(rng.normal(size=dim), float(i)) for i in range(8)]
    embeddings = rng.normal(size=(4, dim)).astype(np.float32)
    innocent = [(heads[i % 8], embeddings) for i in range(160)]

    async def run():
        client = grpcaio.InferenceServerClient(triton_server.grpc_url)
        calls = [client.infer("preference", preference_inputs(grpcclient, e, h.to_bytes())) for h, e in innocent]
        for k, bad in enumerate(HOSTILE_HEADS.values()):  # spread among the innocent ones
            calls.insert(10 + 15 * k, client.infer("preference", preference_inputs(grpcclient, embeddings, bad)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        await client.close()
        return results

    results = asyncio.run(run())
    bad_positions = [10 + 15 * k for k in range(len(HOSTILE_HEADS))]
    for position, name in zip(bad_positions, HOSTILE_HEADS, strict=True):
        error = results[position]
        assert isinstance(error, Exception), f"{name} was accepted"
        assert error.status() == "StatusCode.INVALID_ARGUMENT" and "USER_MODEL" in error.message(), (name, str(error))
    good = [r for i, r in enumerate(results) if i not in bad_positions]
    failed = [str(r) for r in good if isinstance(r, Exception)]
    assert failed == [], f"{len(failed)} innocent requests failed: {failed[:3]}"
    for (head, e), result in zip(innocent, good, strict=True):
        np.testing.assert_allclose(result.as_numpy("SCORE")[:, 0], head.score(e), rtol=1e-4, atol=1e-4)


def test_hostile_heads_fail_alone_among_generate_and_score_requests(triton_server, dim):
    head = PreferenceHead.linear(np.ones(dim), 0.0)
    hostile = [HOSTILE_HEADS["a shape of Infinity"], HOSTILE_HEADS["JSON nested 20,000 deep"], HOSTILE_HEADS["NaN weights"]]

    async def run():
        client = grpcaio.InferenceServerClient(triton_server.grpc_url)
        calls = [client.infer("txt2img_score", generation_inputs(grpcclient, seed=i, head_bytes=head.to_bytes())) for i in range(9)]
        for k, bad in enumerate(hostile):
            calls.insert(1 + 3 * k, client.infer("txt2img_score", generation_inputs(grpcclient, head_bytes=bad)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        await client.close()
        return results

    results = asyncio.run(run())
    for position in (1, 4, 7):
        assert results[position].status() == "StatusCode.INVALID_ARGUMENT", str(results[position])
    good = [r for i, r in enumerate(results) if i not in (1, 4, 7)]
    assert [type(r).__name__ for r in good if isinstance(r, Exception)] == []
    assert all(r.as_numpy("IMAGE").shape == (1, 64, 64, 3) for r in good)


def stub_rss_mb(repository: Path, model: str) -> float:
    """Resident memory of the model's python-backend stub (its command line names its model.py)."""
    marker = str(Path(repository).resolve() / model / "1" / "model.py")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def test_twenty_distinct_sixty_megabyte_heads_leave_the_preference_stub_under_its_bound(triton_server, tiny_repository, dim):
    rng = np.random.default_rng(1)
    rows = int(60 * 2**20 / (4 * (dim + 1)))
    embedding = np.ones((1, dim), np.float32) / np.sqrt(dim)
    before = stub_rss_mb(tiny_repository, "preference")
    assert before > 0, "the preference stub was not found"
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for _ in range(20):
        head = PreferenceHead.knn(rng.normal(size=(rows, dim)).astype(np.float32), rng.uniform(1, 10, rows), k=5)
        assert len(head.to_bytes()) > 59 * 2**20
        score = client.infer("preference", preference_inputs(grpcclient, embedding, head.to_bytes())).as_numpy("SCORE")
        np.testing.assert_allclose(score[:, 0], head.score(embedding), rtol=1e-4)
    after = stub_rss_mb(tiny_repository, "preference")
    print(f"preference stub: {before:.0f} MB before, {after:.0f} MB after 20 distinct 60 MB heads")
    assert after < MEMORY_BOUND_MB


FLOOD_MARGIN_MB = 64
"""What many small heads may add to a stub's memory: they are charged what they keep alive, so the
cache budget (256 MB here) is the bound, and thousands of 2 KB heads come nowhere near it."""


def small_heads_with_bulky_headers(dim: int, count: int, start: int = 0) -> list[bytes]:
    """Distinct linear heads whose ~60 KB of metadata parse into ~20,000 Python objects each."""
    return [PreferenceHead.linear(np.full(dim, i, np.float32), 0.0, notes=[{}] * 20_000).to_bytes()
            for i in range(start, start + count)]


def test_two_thousand_small_heads_with_bulky_headers_do_not_grow_the_preference_stub(triton_server, tiny_repository, dim):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    embedding = np.ones((1, dim), np.float32)
    client.infer("preference", preference_inputs(grpcclient, embedding, small_heads_with_bulky_headers(dim, 1)[0]))
    before = stub_rss_mb(tiny_repository, "preference")
    for start in range(0, 2000, 100):  # 100 distinct heads per request, 2,000 in all (120 MB of headers)
        heads = small_heads_with_bulky_headers(dim, 100, start=start + 1)
        inputs = [tensor(grpcclient, "EMBEDDING", np.ones((100, dim), np.float32), "FP32"),
                  tensor(grpcclient, "USER_MODEL", np.array(heads, dtype=object).reshape(-1, 1), "BYTES")]
        scores = client.infer("preference", inputs).as_numpy("SCORE")[:, 0]
        np.testing.assert_allclose(scores, np.arange(start + 1, start + 101) * float(dim), rtol=1e-5)
    after = stub_rss_mb(tiny_repository, "preference")
    print(f"preference stub: {before:.0f} MB before, {after:.0f} MB after 2,000 small heads with 60 KB headers")
    assert after - before < FLOOD_MARGIN_MB
    assert after < MEMORY_BOUND_MB


def test_hundreds_of_small_heads_with_bulky_headers_do_not_grow_the_txt2img_score_stub(triton_server, tiny_repository, dim):
    rows = contract.MAX_PROMPTS_PER_REQUEST
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)

    def request(heads: list[bytes]):
        values = [("PROMPT", np.array([[b"a red cat"]] * rows, dtype=object), "BYTES"),
                  ("SEED", np.zeros((rows, 1), np.int64), "INT64"), ("STEPS", np.full((rows, 1), 2, np.int32), "INT32"),
                  ("GUIDANCE_SCALE", np.full((rows, 1), 3.0, np.float32), "FP32"),
                  ("HEIGHT", np.full((rows, 1), 64, np.int32), "INT32"), ("WIDTH", np.full((rows, 1), 64, np.int32), "INT32"),
                  ("USER_MODEL", np.array(heads, dtype=object).reshape(-1, 1), "BYTES")]
        return client.infer("txt2img_score", [tensor(grpcclient, *v) for v in values])

    request(small_heads_with_bulky_headers(dim, rows))
    before = stub_rss_mb(tiny_repository, "txt2img_score")
    for start in range(rows, 50 * rows, rows):  # 392 more distinct heads (24 MB of headers)
        result = request(small_heads_with_bulky_headers(dim, rows, start=start))
        embeddings = result.as_numpy("EMBEDDING")
        np.testing.assert_allclose(result.as_numpy("SCORE")[:, 0], embeddings.sum(axis=1) * np.arange(start, start + rows),
                                   rtol=1e-4, atol=1e-4)
    after = stub_rss_mb(tiny_repository, "txt2img_score")
    print(f"txt2img_score stub: {before:.0f} MB before, {after:.0f} MB after 392 small heads with 60 KB headers")
    assert after - before < FLOOD_MARGIN_MB


def test_a_huge_prompt_is_refused_before_tokenizing_while_others_are_served(triton_server):
    huge = b"a castle " * (4 * 2**20)  # 36 MB

    async def run():
        client = grpcaio.InferenceServerClient(triton_server.grpc_url)
        started = time.perf_counter()
        results = await asyncio.gather(
            client.infer("txt2img", generation_inputs(grpcclient, prompt=huge)),
            client.infer("clip_text", [tensor(grpcclient, "TEXT", np.array([[huge]], dtype=object), "BYTES")]),
            client.infer("txt2img", generation_inputs(grpcclient, prompt=b"a small cat")),
            return_exceptions=True,
        )
        await client.close()
        return results, time.perf_counter() - started

    (prompt, text, fine), seconds = asyncio.run(run())
    assert prompt.status() == "StatusCode.INVALID_ARGUMENT" and f"the limit is {contract.MAX_TEXT_BYTES}" in prompt.message()
    assert "PROMPT" in prompt.message() and "TEXT" in text.message() and text.status() == "StatusCode.INVALID_ARGUMENT"
    assert fine.as_numpy("IMAGE").shape == (1, 64, 64, 3)
    assert seconds < 60, f"three requests took {seconds:.1f} s"
    with Txt2ImgClient(triton_server.grpc_url) as sdk:
        with pytest.raises(InvalidRequestError, match="prompt: is 4097 bytes long"):
            sdk.generate("é" * 2048 + "a")


def test_refusals_reach_every_client_as_invalid_argument(triton_server):
    bad_steps = generation_inputs(grpcclient)
    bad_steps[2] = tensor(grpcclient, "STEPS", np.zeros((1, 1), np.int32), "INT32")
    with pytest.raises(Exception) as info:
        grpcclient.InferenceServerClient(triton_server.grpc_url).infer("txt2img", bad_steps)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    http_inputs = [tensor(httpclient, "EMBEDDING", np.ones((1, 3), np.float32), "FP32"),
                   tensor(httpclient, "USER_MODEL", np.array([[b"junk"]], dtype=object), "BYTES")]
    with pytest.raises(Exception) as info:
        httpclient.InferenceServerClient(triton_server.http_url.removeprefix("http://")).infer("preference", http_inputs)
    assert info.value.status() == "400"
    with Txt2ImgClient(triton_server.http_url) as sdk:
        loose = SizeLimits(multiple=8, min_side=8, max_side=4096, native_side=64)
        sdk._pipeline = dataclasses.replace(sdk.pipeline(), limits=loose)  # looser than the server's
        with pytest.raises(RequestRejectedError, match="HEIGHT: must be a multiple of 16"):
            sdk.generate("a cat", height=72, width=64)
    assert httpx.get(f"{triton_server.http_url}/v2/health/ready").status_code == 200


def test_an_empty_prompt_list_gets_a_message_about_the_prompt_list(triton_server, dim):
    with ScoringClient(triton_server.grpc_url) as sdk:
        with pytest.raises(InvalidRequestError, match="0 prompts in one request; send between 1 and 8"):
            sdk.generate_batch([])
        with pytest.raises(InvalidRequestError, match="0 prompts in one request"):
            sdk.generate_and_score([], PreferenceHead.linear(np.ones(dim), 0.0))
        assert sdk.score(np.zeros((0, dim), np.float32), PreferenceHead.linear(np.ones(dim), 0.0)).shape == (0,)
    # Triton itself refuses a raw request with zero rows before any model sees it
    empty = [tensor(grpcclient, t.name, np.zeros((0, 1), t.dtype.numpy), t.dtype.wire)
             for t in contract.TXT2IMG.inputs if not t.optional]
    with pytest.raises(Exception) as info:
        grpcclient.InferenceServerClient(triton_server.grpc_url).infer("txt2img", empty)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_no_stub_was_left_behind_by_the_abuse(triton_server, tiny_repository):
    assert httpx.get(f"{triton_server.http_url}/v2/health/ready").status_code == 200
    stubs = [p for p in processes_mentioning(str(tiny_repository)) if "stub" in p]
    assert len(stubs) >= 8, "every model's stub is still serving"
