import numpy as np
import pytest

from ppo_client.head import HeadFormatError, PreferenceHead


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_a_head_round_trips_through_bytes_with_a_stable_hash():
    rng = np.random.default_rng(0)
    head = PreferenceHead.mlp([(rng.normal(size=(8, 4)), rng.normal(size=4)), (rng.normal(size=(4, 1)), [0.5])], method="x")
    again = PreferenceHead.from_bytes(head.to_bytes())
    assert again.to_bytes() == head.to_bytes() and again.digest == head.digest
    assert again.meta == {"method": "x"}
    x = unit(5, 8)
    np.testing.assert_allclose(again.score(x), head.score(x))
    manual = np.maximum(x @ head.arrays["w0"] + head.arrays["b0"], 0) @ head.arrays["w1"] + head.arrays["b1"]
    np.testing.assert_allclose(head.score(x), manual[:, 0], rtol=1e-6)
    other = PreferenceHead.mlp([(rng.normal(size=(8, 1)), [0.0])])
    assert other.digest != head.digest


def test_a_linear_head_is_a_dot_product_plus_bias():
    w = np.arange(4, dtype=np.float32)
    head = PreferenceHead.linear(w, 2.0)
    assert head.dim == 4
    np.testing.assert_allclose(head.score(np.eye(4, dtype=np.float32)), w + 2.0)


def test_knn_weights_the_most_similar_ratings():
    support = np.eye(3, dtype=np.float32)
    head = PreferenceHead.knn(support, [1.0, 5.0, 9.0], k=1)
    np.testing.assert_allclose(head.score(np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 1.0]], np.float32)), [1.0, 9.0], rtol=1e-5)
    two = PreferenceHead.knn(support, [1.0, 5.0, 9.0], k=2).score(np.array([[1.0, 1.0, 0.0]], np.float32))
    assert two[0] == pytest.approx(3.0, rel=1e-4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a head", "bad magic"),
        (PreferenceHead.linear(np.ones(4), 0.0).to_bytes()[:-3], "truncated"),
        (PreferenceHead.linear(np.ones(4), 0.0).to_bytes() + b"xx", "trailing"),
    ],
)
def test_malformed_bytes_are_refused_with_a_reason(data, message):
    with pytest.raises(HeadFormatError, match=message):
        PreferenceHead.from_bytes(data)


def test_heads_that_cannot_work_are_refused():
    with pytest.raises(HeadFormatError, match="non-finite"):
        PreferenceHead.linear(np.array([1.0, np.nan]), 0.0)
    with pytest.raises(HeadFormatError, match="do not chain"):
        PreferenceHead.mlp([(np.ones((4, 3)), np.ones(3)), (np.ones((2, 1)), np.ones(1))])
    with pytest.raises(HeadFormatError, match="one output"):
        PreferenceHead.mlp([(np.ones((4, 3)), np.ones(3))])
    with pytest.raises(HeadFormatError, match="unknown preference model kind"):
        PreferenceHead("forest", {})
    with pytest.raises(HeadFormatError, match="expects 4-dimensional embeddings, got shape \\(2, 3\\)"):
        PreferenceHead.linear(np.ones(4), 0.0).score(np.ones((2, 3)))
