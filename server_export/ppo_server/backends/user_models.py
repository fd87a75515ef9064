"""Users' preference heads on the server: decoded from the request, cached in memory by content hash.

A head travels in the ``USER_MODEL`` tensor, in full or as ``sha256:<hex>`` naming a head sent in
full earlier (in the same batch, or in an earlier request to this instance). Nothing is written to
disk, so a restarted server only needs the heads again, which the SDK always sends.
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
    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._heads: OrderedDict[str, PreferenceHead] = OrderedDict()

    def _remember(self, head: PreferenceHead) -> PreferenceHead:
        self._heads[head.digest] = head
        self._heads.move_to_end(head.digest)
        while len(self._heads) > self.capacity:
            self._heads.popitem(last=False)
        return head

    def add_full(self, values: np.ndarray) -> None:
        """First pass over a batch: decode every head sent in full, so references to it resolve."""
        for value in values.reshape(-1):
            data = bytes(value)
            if data and not data.startswith(_PREFIX):
                try:
                    head = PreferenceHead.from_bytes(data)
                except HeadFormatError:
                    continue  # reported by resolve() for the request that sent it
                self._remember(head)

    def resolve(self, values: np.ndarray) -> list[PreferenceHead]:
        """One head per row, or ``InvalidRequestError`` naming the field."""
        heads = []
        for value in values.reshape(-1):
            data = bytes(value)
            if len(data) > contract.MAX_USER_MODEL_BYTES:
                raise InvalidRequestError(FIELD, f"is {len(data)} bytes; the limit is {contract.MAX_USER_MODEL_BYTES}")
            if data.startswith(_PREFIX):
                key = data[len(_PREFIX) :].decode("ascii", "replace")
                head = self._heads.get(key)
                if head is None:
                    raise InvalidRequestError(
                        FIELD, f"names an unknown preference model sha256:{key[:12]}...; send the model in full"
                    )
                heads.append(self._remember(head))
                continue
            try:
                head = PreferenceHead.from_bytes(data)
            except HeadFormatError as exc:
                raise InvalidRequestError(FIELD, str(exc)) from exc
            heads.append(self._remember(head))
        return heads


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
            raise InvalidRequestError(FIELD, str(exc)) from exc
    return scores
