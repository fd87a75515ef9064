"""Scoring models against the real Triton server: image encoder, preference heads, generate-and-score."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from ppo_client import AsyncScoringClient, GenerationRequest, ScoringClient
from ppo_client.errors import InferenceError
from ppo_client.head import PreferenceHead

pytestmark = [pytest.mark.integration, pytest.mark.isa]


def images(count: int, side: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def client(triton_server):
    with ScoringClient(triton_server.grpc_url) as c:
        yield c


def random_head(dim: int, seed: int = 0) -> PreferenceHead:
    rng = np.random.default_rng(seed)
    return PreferenceHead.mlp([(rng.normal(size=(dim, 8)), rng.normal(size=8)), (rng.normal(size=(8, 1)), np.zeros(1))])


def test_served_embeddings_are_unit_length_and_equal_the_onnx_graph(client, tiny_repository):
    info = client.encoder_info()
    pictures = images(5) + images(2, side=32, seed=1)
    served = client.embed(pictures)
    assert served.shape == (7, info.dim) and info.dim == 16
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    session = ort.InferenceSession(str(tiny_repository / "image_encoder" / "1" / "model.onnx"))
    (direct,) = session.run(None, {"IMAGE": np.stack(pictures[:5])})
    np.testing.assert_allclose(served[:5], direct, atol=1e-5)
    assert info.encoder_id.startswith("tiny_clip-")


def test_served_scores_equal_the_head_in_process_for_mixed_users(client, triton_server):
    embeddings = client.embed(images(6))
    heads = [random_head(16, seed) for seed in range(3)]
    knn = PreferenceHead.knn(embeddings[:3], [2.0, 5.0, 9.0], k=2)

    async def run():
        async with AsyncScoringClient(triton_server.grpc_url) as aclient:
            return await asyncio.gather(*(aclient.score(embeddings, h) for h in [*heads, knn]))

    for head, served in zip([*heads, knn], asyncio.run(run()), strict=True):
        np.testing.assert_allclose(served, head.score(embeddings), rtol=1e-5, atol=1e-5)


def test_generate_and_score_returns_image_embedding_and_the_users_score(client):
    head = random_head(16)
    rows = [GenerationRequest("a red cat", seed=s, steps=3, height=64, width=64) for s in range(3)]
    scored = client.generate_and_score(rows, head)
    assert [s.request.seed for s in scored] == [0, 1, 2]
    again = client.embed([s.image for s in scored])
    for item, embedding in zip(scored, again, strict=True):
        assert item.image.size == (64, 64)
        np.testing.assert_allclose(item.embedding, embedding, atol=1e-5)
        assert item.score == pytest.approx(float(head.score(embedding[None])[0]), abs=1e-4)
    # same prompt and seed: same image and score whoever else is in the batch
    assert client.generate_and_score(rows[:1], head)[0].score == pytest.approx(scored[0].score, abs=1e-5)


def test_a_head_for_another_encoder_is_refused_with_its_shape(client):
    with pytest.raises(InferenceError, match="expects 32-dimensional embeddings"):
        client.score(client.embed(images(2)), random_head(32))
    with pytest.raises(InferenceError, match="expects 32-dimensional"):
        client.generate_and_score([GenerationRequest("a cat", steps=2)], random_head(32))


def test_malformed_or_unknown_user_models_fail_alone(triton_server):
    def raw(user_model: bytes):
        client = grpcclient.InferenceServerClient(triton_server.grpc_url.removeprefix("grpc://"))
        embedding = grpcclient.InferInput("EMBEDDING", [1, 16], "FP32")
        embedding.set_data_from_numpy(np.ones((1, 16), np.float32))
        model = grpcclient.InferInput("USER_MODEL", [1, 1], "BYTES")
        model.set_data_from_numpy(np.array([[user_model]], dtype=object))
        return client.infer("preference", [embedding, model])

    with pytest.raises(Exception, match="USER_MODEL: not a preference model"):
        raw(b"hello")
    with pytest.raises(Exception, match="USER_MODEL: names an unknown preference model"):
        raw(b"sha256:" + b"0" * 64)
    head = random_head(16, seed=9)
    assert raw(head.to_bytes()).as_numpy("SCORE").shape == (1, 1)
    # once sent in full, the hash alone is enough for this server instance
    assert raw(f"sha256:{head.digest}".encode()).as_numpy("SCORE").shape == (1, 1)


def test_texts_embed_in_the_image_space_with_token_counts(client, tiny_repository):
    info = client.encoder_info()
    texts = ["a red cat", "a red cat", "x" * 200, "a blue dog"]
    result = client.embed_texts(texts)
    assert result.embeddings.shape == (4, info.dim)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.embeddings[0], result.embeddings[1], atol=1e-6)
    assert not np.allclose(result.embeddings[0], result.embeddings[3])
    assert result.tokens[2] > info.max_tokens == 77 > result.tokens[0] > 2
