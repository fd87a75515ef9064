"""Users' preference heads on the server: decoded from the request, cached in memory by content hash.

A head travels in the ``USER_MODEL`` tensor, in full or as ``sha256:<hex>`` naming a head sent in
full earlier (in the same batch, or in an earlier request to this instance). Nothing is written to
disk, so a restarted server only needs the heads again, which the SDK always sends.

Memory is bounded twice: each head by ``contract.MAX_USER_MODEL_BYTES`` on arrival, and the cache
by a byte budget (least recently used heads go first). Heads of the batch at hand are kept for that
batch whatever the budget, so a reference to a head sent in full in the same batch always resolves.

The budget counts everything a cached head keeps alive. A decoded head's arrays are views into the
request's buffer and its ``meta`` is whatever JSON the client sent, so the cache keeps neither: it
keeps ``PreferenceHead.for_serving()`` (owned array copies, no meta) and charges their bytes plus a
fixed allowance per entry and per array for the Python objects around them. Otherwise many small
heads with large headers would each pin up to 64 KB of buffer and parsed JSON while being charged
a few hundred bytes.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ppo_client import contract
from ppo_client.errors import InvalidRequestError
from ppo_client.head import HeadFormatError, PreferenceHead

FIELD = contract.USER_MODEL_INPUT.name
_PREFIX = contract.USER_MODEL_REF_PREFIX.encode()
ENTRY_BYTES = 1024
"""Charged per cached head besides its arrays: the head object, its dicts, the digest key and the
LRU entry (measured at about 0.9 KB with ``tracemalloc``, see tests/unit/test_head_cache.py)."""
ARRAY_BYTES = 256
"""Charged per array besides its data: the ndarray object and its name (measured at about 0.2 KB)."""


def charge(head: PreferenceHead) -> int:
    """Bytes a cached ``for_serving()`` head keeps alive."""
    return head.nbytes + ENTRY_BYTES + ARRAY_BYTES * len(head.arrays)


class HeadCache:
    """Served heads by the digest of the head that was sent, least recently used first out once what
    they keep alive (``charge``) exceeds ``max_bytes`` (the model config's ``HeadCacheParameters``;
    ``ppo-export --head-cache-mb`` sets it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._heads: OrderedDict[str, tuple[PreferenceHead, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, digest: str) -> PreferenceHead | None:
        entry = self._heads.get(digest)
        if entry is None:
            return None
        self._heads.move_to_end(digest)
        return entry[0]

    def put(self, digest: str, head: PreferenceHead) -> None:
        """Keep ``head`` (a ``for_serving()`` copy) under the digest of the head that was sent."""
        if digest in self._heads:
            self._heads.move_to_end(digest)
            return
        cost = charge(head)
        if cost > self.max_bytes:
            return  # usable by its own batch only
        self._heads[digest] = (head, cost)
        self.bytes += cost
        while self.bytes > self.max_bytes:
            _, (_, freed) = self._heads.popitem(last=False)
            self.bytes -= freed

    def resolve_batch(self, values: list[np.ndarray]) -> list[list[PreferenceHead] | InvalidRequestError]:
        """Per request of a batch (one ``USER_MODEL`` array each), its heads, one per row, or the
        ``InvalidRequestError`` that refuses that request alone. Heads sent in full are decoded first,
        so a reference from any request of the batch to one of them resolves."""
        decoded: dict[str, PreferenceHead] = {}
        rows: list[list[PreferenceHead | str | InvalidRequestError]] = []
        for array in values:
            rows.append([self._decode(bytes(value), decoded) for value in array.reshape(-1)])
        results: list[list[PreferenceHead] | InvalidRequestError] = []
        for request in rows:
            heads: list[PreferenceHead] = []
            refusal: InvalidRequestError | None = None
            for row in request:
                if isinstance(row, str):  # a reference by digest
                    row = decoded.get(row) or self.get(row) or InvalidRequestError(
                        FIELD, f"names an unknown preference model sha256:{row[:12]}...; send the model in full"
                    )
                if isinstance(row, InvalidRequestError):
                    refusal = row
                    break
                heads.append(row)
            results.append(heads if refusal is None else refusal)
        return results

    def _decode(self, data: bytes, decoded: dict[str, PreferenceHead]) -> PreferenceHead | str | InvalidRequestError:
        if data.startswith(_PREFIX):
            return data[len(_PREFIX) :].decode("ascii", "replace")
        if len(data) > contract.MAX_USER_MODEL_BYTES:
            return InvalidRequestError(FIELD, f"is {len(data)} bytes; the limit is {contract.MAX_USER_MODEL_BYTES}")
        try:
            sent = PreferenceHead.from_bytes(data)
        except HeadFormatError as exc:
            return InvalidRequestError(FIELD, str(exc))
        digest = sent.digest
        if digest not in decoded:
            decoded[digest] = self.get(digest) or sent.for_serving()
            self.put(digest, decoded[digest])
        return decoded[digest]


def score_rows(embeddings: np.ndarray, heads: list[PreferenceHead]) -> np.ndarray:
    """Scores [N] of N embedding rows, each under its own head; rows sharing a head are one matmul
    (``resolve_batch`` gives one object per distinct head, so grouping by identity needs no hashing)."""
    scores = np.empty(len(heads), dtype=np.float32)
    groups: dict[int, list[int]] = {}
    by_id = {}
    for i, head in enumerate(heads):
        groups.setdefault(id(head), []).append(i)
        by_id[id(head)] = head
    for key, rows in groups.items():
        try:
            scores[rows] = by_id[key].score(embeddings[rows])
        except HeadFormatError as exc:
            raise InvalidRequestError(FIELD, str(exc)) from None
    return scores
