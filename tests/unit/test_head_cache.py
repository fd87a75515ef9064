"""The server's head cache: its byte budget holds for what the cached heads really keep alive, for
many small heads with large headers, for few large heads and for mixes; and the head decoder, fed any
bytes, gives a head or a ``HeadFormatError``, never another exception."""

from __future__ import annotations

import gc
import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppo_client import contract
from ppo_client.errors import InvalidRequestError
from ppo_client.head import MAGIC, MAX_HEADER_BYTES, HeadFormatError, PreferenceHead
from ppo_server.backends.user_models import ARRAY_BYTES, ENTRY_BYTES, HeadCache, charge, score_rows

BUDGET = 2**20
MARGIN = 128 * 2**10
"""Allocator slack that is not per head (the LRU's own table, numpy's small-object caches)."""


def small_head(seed: int, meta_bytes: int = 60_000) -> bytes:
    """A linear head of 516 bytes of weights in a request of ``meta_bytes`` more."""
    rng = np.random.default_rng(seed)
    return PreferenceHead.linear(rng.normal(size=128), float(seed), notes="n" * meta_bytes).to_bytes()


def large_head(seed: int, megabytes: float = 0.3) -> bytes:
    rng = np.random.default_rng(seed)
    rows = int(megabytes * 2**20 / (4 * 129))
    return PreferenceHead.knn(rng.normal(size=(rows, 128)), rng.uniform(1, 10, rows), k=3).to_bytes()


def feed(cache: HeadCache, heads: list[bytes]) -> None:
    for data in heads:  # one request each, as a client would send them
        result = cache.resolve_batch([np.array([data], dtype=object)])
        assert not isinstance(result[0], InvalidRequestError), result[0]


def kept_bytes(make_heads, cache: HeadCache) -> int:
    """Memory still allocated once the requests are gone: what the cache keeps alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for chunk in make_heads():
            feed(cache, chunk)
            del chunk
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


WORKLOADS = {  # each sends several times the budget
    "1,000 small heads with 60 KB headers": lambda: ([small_head(i) for i in range(j, j + 100)] for j in range(0, 1000, 100)),
    "20 large heads of 0.3 MB": lambda: ([large_head(i)] for i in range(20)),
    "a mix of both": lambda: ([large_head(i), *[small_head(1000 * i + j) for j in range(60)]] for i in range(10)),
}


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_cache_keeps_no_more_memory_than_its_budget_whatever_the_heads(workload):
    cache = HeadCache(BUDGET)
    kept = kept_bytes(WORKLOADS[workload], cache)
    assert cache.bytes <= BUDGET
    assert len(cache) > 0
    assert kept <= BUDGET + MARGIN, f"{kept / 2**20:.1f} MB kept for a {BUDGET / 2**20:.0f} MB budget ({len(cache)} heads)"


def test_the_charge_per_head_covers_what_a_small_head_keeps_alive():
    cache = HeadCache(2**30)  # nothing evicted: the memory per head is measured
    kept = kept_bytes(lambda: ([small_head(i)] for i in range(500)), cache)
    per_head = kept / len(cache)
    assert len(cache) == 500
    assert per_head <= charge(cache.get(next(iter(cache._heads)))), f"{per_head:.0f} bytes kept per head"
    assert per_head >= 128 * 4, "the head's weights were not kept"
    print(f"a cached linear head of 128 weights keeps {per_head:.0f} bytes; it is charged "
          f"{128 * 4 + 4 + ENTRY_BYTES + 2 * ARRAY_BYTES}")


def test_cached_heads_hold_neither_the_request_buffer_nor_the_metadata():
    data = small_head(7)
    cache = HeadCache(BUDGET)
    (heads,) = cache.resolve_batch([np.array([data], dtype=object)])
    served = heads[0]
    assert served.meta == {}
    assert all(a.flags.owndata for a in served.arrays.values())
    assert not any(a.flags.owndata for a in PreferenceHead.from_bytes(data).arrays.values()), "decoding copies now"


def test_a_cached_head_answers_a_reference_by_the_digest_of_the_head_that_was_sent():
    head = PreferenceHead.linear(np.arange(8, dtype=np.float32), 0.5, method="linear", note="x" * 1000)
    cache = HeadCache(BUDGET)
    cache.resolve_batch([np.array([head.to_bytes()], dtype=object)])
    reference = (contract.USER_MODEL_REF_PREFIX + head.digest).encode()
    (heads,) = cache.resolve_batch([np.array([reference, head.to_bytes()], dtype=object)])
    embeddings = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    np.testing.assert_allclose(score_rows(embeddings, heads), head.score(embeddings), rtol=1e-6)
    assert heads[0] is heads[1]


def test_least_recently_used_heads_go_first_and_the_count_never_exceeds_the_budget():
    heads = [PreferenceHead.linear(np.full(64, i, np.float32), 0.0) for i in range(10)]
    cost = charge(heads[0].for_serving())
    cache = HeadCache(3 * cost)
    for head in heads[:3]:
        cache.put(head.digest, head.for_serving())
    assert cache.get(heads[0].digest) is not None  # now most recently used
    cache.put(heads[3].digest, heads[3].for_serving())
    assert cache.get(heads[1].digest) is None
    assert cache.get(heads[0].digest) is not None
    assert cache.bytes == 3 * cost


def raw(header: bytes, tail: bytes = b"") -> bytes:
    return MAGIC + struct.pack("<I", len(header)) + header + tail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
array_entries = st.fixed_dictionaries(
    {"name": st.sampled_from(["w0", "b0", "w1", "b1", "support", "ratings", "x"]) | st.text(max_size=5),
     "shape": st.lists(st.integers(-2, 6) | st.floats() | st.text(max_size=2), max_size=3)}
)
headers = st.fixed_dictionaries(
    {"kind": st.sampled_from(["mlp", "knn"]) | json_values,
     "arrays": st.lists(array_entries, max_size=4) | json_values},
    optional={"k": st.integers(-3, 10) | json_values, "meta": json_values},
)


def decode_cleanly(data: bytes) -> PreferenceHead | None:
    try:
        head = PreferenceHead.from_bytes(data)
    except HeadFormatError:
        return None
    assert head.kind in ("mlp", "knn")
    assert np.isfinite(head.score(np.ones((2, head.dim), np.float32))).all()
    return head


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, tail=st.binary(max_size=200))
def test_any_header_decodes_to_a_working_head_or_is_refused_as_a_head_format_error(header, tail):
    decode_cleanly(raw(json.dumps(header).encode(), tail))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.binary(max_size=60).map(lambda b: raw(b, b"\0" * 12)))
def test_any_bytes_decode_to_a_working_head_or_are_refused_as_a_head_format_error(data):
    decode_cleanly(data)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["linear", "mlp", "knn"]),
    dim=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
    meta=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)
def test_every_valid_head_round_trips_with_the_same_digest_and_scores(kind, dim, seed, meta):
    rng = np.random.default_rng(seed)
    if kind == "linear":
        head = PreferenceHead.linear(rng.normal(size=dim), float(rng.normal()), **meta)
    elif kind == "mlp":
        head = PreferenceHead.mlp([(rng.normal(size=(dim, 3)), rng.normal(size=3)), (rng.normal(size=(3, 1)), rng.normal(size=1))], **meta)
    else:
        head = PreferenceHead.knn(rng.normal(size=(5, dim)), rng.uniform(1, 10, 5), k=int(rng.integers(1, 6)), **meta)
    data = head.to_bytes()
    if len(data) - len(MAGIC) - 4 > MAX_HEADER_BYTES:
        return
    again = decode_cleanly(data)
    assert again is not None and again.digest == head.digest
    x = rng.normal(size=(3, dim)).astype(np.float32)
    np.testing.assert_allclose(again.score(x), head.score(x), rtol=1e-5, atol=1e-6)
