"""A user's preference model as it travels to the server: a small numpy function of embeddings.

Every training method ends in one of two kinds, so the server needs to know only these:

- ``mlp``: dense layers with ReLU between them (one layer is a linear head), ``score = f(e)``;
- ``knn``: a support set of embeddings with ratings, ``score`` = similarity-weighted mean of the
  ``k`` most similar support ratings.

The wire format is deterministic (same head, same bytes, same hash), so the server can cache
decoded heads by content hash: ``MAGIC``, a little-endian uint32 header length, a JSON header
naming the arrays and their shapes, then the arrays as little-endian float32.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

import numpy as np

MAGIC = b"PPOHEAD1"
KINDS = ("mlp", "knn")


class HeadFormatError(ValueError):
    """Bytes that are not a preference head, or a head that cannot score these embeddings."""


@dataclass(frozen=True, eq=False)
class PreferenceHead:
    kind: str
    arrays: Mapping[str, np.ndarray]
    """mlp: ``w0, b0, w1, b1, ...`` (``w`` is [in, out]); knn: ``support`` [N, D], ``ratings`` [N]."""
    k: int = 0
    meta: Mapping[str, object] = field(default_factory=dict)
    """Free-form facts (method, encoder, seed); part of the bytes, so part of the hash."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "arrays", {name: np.ascontiguousarray(a, dtype="<f4") for name, a in self.arrays.items()}
        )
        _validate(self)

    @classmethod
    def linear(cls, weight: np.ndarray, bias: float, **meta) -> PreferenceHead:
        weight = np.asarray(weight, dtype=np.float32).reshape(-1, 1)
        return cls("mlp", {"w0": weight, "b0": np.array([bias], dtype=np.float32)}, meta=meta)

    @classmethod
    def mlp(cls, layers: list[tuple[np.ndarray, np.ndarray]], **meta) -> PreferenceHead:
        arrays = {}
        for i, (w, b) in enumerate(layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        return cls("mlp", arrays, meta=meta)

    @classmethod
    def knn(cls, support: np.ndarray, ratings: np.ndarray, k: int, **meta) -> PreferenceHead:
        return cls("knn", {"support": support, "ratings": np.asarray(ratings).reshape(-1)}, k=k, meta=meta)

    @property
    def dim(self) -> int:
        """Embedding size the head expects."""
        first = self.arrays["w0"] if self.kind == "mlp" else self.arrays["support"].T
        return int(first.shape[0])

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        count = sum(1 for name in self.arrays if name.startswith("w"))
        return [(self.arrays[f"w{i}"], self.arrays[f"b{i}"]) for i in range(count)]

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores of [B, D] embeddings, shape [B]."""
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HeadFormatError(
                f"the preference model expects {self.dim}-dimensional embeddings, got shape {tuple(x.shape)}; "
                "it was trained on another image encoder"
            )
        if self.kind == "knn":
            return _knn_scores(x, self.arrays["support"], self.arrays["ratings"], self.k)
        layers = self.layers()
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = np.maximum(x, 0.0)
        return x[:, 0]

    def to_bytes(self) -> bytes:
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        names = sorted(self.arrays)
        header = {
            "kind": self.kind,
            "k": self.k,
            "meta": dict(self.meta),
            "arrays": [{"name": n, "shape": list(self.arrays[n].shape)} for n in names],
        }
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return b"".join([MAGIC, struct.pack("<I", len(head)), head, *(self.arrays[n].tobytes() for n in names)])

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> PreferenceHead:
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise HeadFormatError("not a preference model (bad magic bytes)")
        (length,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = json.loads(data[start : start + length])
            offset = start + length
            arrays = {}
            for entry in header["arrays"]:
                shape = tuple(int(s) for s in entry["shape"])
                count = int(np.prod(shape, dtype=np.int64))
                end = offset + 4 * count
                if end > len(data):
                    raise HeadFormatError(f"preference model truncated in array {entry['name']!r}")
                arrays[entry["name"]] = np.frombuffer(data[offset:end], dtype="<f4").reshape(shape)
                offset = end
            if offset != len(data):
                raise HeadFormatError(f"preference model has {len(data) - offset} trailing bytes")
            return cls(header["kind"], arrays, k=int(header.get("k", 0)), meta=header.get("meta", {}))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, HeadFormatError):
                raise
            raise HeadFormatError(f"malformed preference model header: {exc}") from exc


def _validate(head: PreferenceHead) -> None:
    if head.kind not in KINDS:
        raise HeadFormatError(f"unknown preference model kind {head.kind!r}; expected one of {KINDS}")
    for name, array in head.arrays.items():
        if not np.all(np.isfinite(array)):
            raise HeadFormatError(f"preference model array {name!r} has non-finite values")
    if head.kind == "knn":
        support, ratings = head.arrays.get("support"), head.arrays.get("ratings")
        if support is None or ratings is None or support.ndim != 2 or ratings.shape != (support.shape[0],):
            raise HeadFormatError("a knn preference model needs support [N, D] and ratings [N]")
        if support.shape[0] == 0 or head.k < 1:
            raise HeadFormatError("a knn preference model needs at least one support row and k >= 1")
        return
    layers = head.layers()
    if not layers or len(layers) * 2 != len(head.arrays):
        raise HeadFormatError("an mlp preference model needs arrays w0, b0, w1, b1, ...")
    width = layers[0][0].shape[0]
    for i, (w, b) in enumerate(layers):
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise HeadFormatError(f"mlp layer {i} has shapes {w.shape} and {b.shape} that do not chain")
        width = w.shape[1]
    if width != 1:
        raise HeadFormatError(f"an mlp preference model must end in one output, not {width}")


def _knn_scores(x: np.ndarray, support: np.ndarray, ratings: np.ndarray, k: int) -> np.ndarray:
    sims = _unit(x) @ _unit(support).T
    k = min(k, support.shape[0])
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0) + 1e-6
    return (weights * ratings[nearest]).sum(axis=1) / weights.sum(axis=1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
