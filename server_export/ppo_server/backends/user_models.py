"""Users' preference heads on the server: decoded from the request, cached in memory by content hash.

A head travels in the ``USER_MODEL`` tensor, in full or as ``sha256:<hex>`` naming a head sent in
full earlier (in the same batch, or in an earlier request to this instance). Nothing is written to
disk, so a restarted server only needs the heads again, which the SDK always sends.

Memory is bounded twice: each head by ``contract.MAX_USER_MODEL_BYTES`` on arrival, and the cache
by a byte budget (least recently used heads go first). Heads of the batch at hand are kept for that
batch whatever the budget, so a reference to a head sent in full in the same batch always resolves.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ppo_client import contract
from ppo_client.errors import InvalidRequestError
from ppo_client.piaa.head import HeadFormatError, PreferenceHead

FIELD = contract.USER_MODEL_INPUT.name
_PREFIX = contract.USER_MODEL_REF_PREFIX.encode()


class HeadCache:
    """Decoded heads by digest, least recently used first out once their arrays exceed ``max_bytes``
    (the model config's ``HeadCacheParameters``; ``ppo-export --head-cache-mb`` sets it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._heads: OrderedDict[str, PreferenceHead] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, digest: str) -> PreferenceHead | None:
        head = self._heads.get(digest)
        if head is not None:
            self._heads.move_to_end(digest)
        return head

    def put(self, head: PreferenceHead) -> None:
        if head.digest in self._heads:
            self._heads.move_to_end(head.digest)
            return
        if head.nbytes > self.max_bytes:
            return  # usable by its own batch only
        self._heads[head.digest] = head
        self.bytes += head.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._heads.popitem(last=False)
            self.bytes -= old.nbytes

    def resolve_batch(self, values: list[np.ndarray]) -> list[list[PreferenceHead] | InvalidRequestError]:
        """Per request of a batch (one ``USER_MODEL`` array each), its heads, one per row, or the
        ``InvalidRequestError`` that refuses that request alone. Heads sent in full are decoded first,
        so a reference from any request of the batch to one of them resolves."""
        decoded: dict[str, PreferenceHead] = {}
        rows: list[list[PreferenceHead | str | InvalidRequestError]] = []
        for array in values:
            rows.append([self._decode(bytes(value), decoded) for value in array.reshape(-1)])
        results = []
        for request in rows:
            heads = []
            for row in request:
                if isinstance(row, str):  # a reference by digest
                    row = decoded.get(row) or self.get(row) or InvalidRequestError(
                        FIELD, f"names an unknown preference model sha256:{row[:12]}...; send the model in full"
                    )
                if isinstance(row, InvalidRequestError):
                    heads = row
                    break
                heads.append(row)
            results.append(heads)
        return results

    def _decode(self, data: bytes, decoded: dict[str, PreferenceHead]) -> PreferenceHead | str | InvalidRequestError:
        if data.startswith(_PREFIX):
            return data[len(_PREFIX) :].decode("ascii", "replace")
        if len(data) > contract.MAX_USER_MODEL_BYTES:
            return InvalidRequestError(FIELD, f"is {len(data)} bytes; the limit is {contract.MAX_USER_MODEL_BYTES}")
        try:
            head = PreferenceHead.from_bytes(data)
        except HeadFormatError as exc:
            return InvalidRequestError(FIELD, str(exc))
        head = decoded.setdefault(head.digest, head)
        self.put(head)
        return head


def score_rows(embeddings: np.ndarray, heads: list[PreferenceHead]) -> np.ndarray:
    """Scores [N] of N embedding rows, each under its own head; rows sharing a head are one matmul."""
    scores = np.empty(len(heads), dtype=np.float32)
    groups: dict[str, list[int]] = {}
    by_digest = {}
    for i, head in enumerate(heads):
        groups.setdefault(head.digest, []).append(i)
        by_digest[head.digest] = head
    for digest, rows in groups.items():
        try:
            scores[rows] = by_digest[digest].score(embeddings[rows])
        except HeadFormatError as exc:
            raise InvalidRequestError(FIELD, str(exc)) from None
    return scores
