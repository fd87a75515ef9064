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

from ppo_client.errors import HeadFormatError

MAGIC = b"PPOHEAD1"
KINDS = ("mlp", "knn")
MAX_HEADER_BYTES = 64 * 2**10
"""A real header names a handful of arrays; anything longer is refused before JSON parsing."""

__all__ = ["HeadFormatError", "PreferenceHead", "MAGIC", "KINDS"]


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

    @property
    def nbytes(self) -> int:
        """Memory its arrays take."""
        return sum(a.nbytes for a in self.arrays.values())

    def for_serving(self) -> PreferenceHead:
        """The same scoring function holding only what scoring needs: arrays copied out of the
        buffer they were decoded from (a view would keep the whole request alive) and no ``meta``
        (free-form, so a client can make it large). What a server keeps between requests; its
        ``digest`` is that of the copy, not of the head that was sent."""
        return PreferenceHead(self.kind, {name: array.copy() for name, array in self.arrays.items()}, k=self.k)

    def _parts(self) -> list:
        names = sorted(self.arrays)
        header = {
            "kind": self.kind,
            "k": self.k,
            "meta": dict(self.meta),
            "arrays": [{"name": n, "shape": list(self.arrays[n].shape)} for n in names],
        }
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return [MAGIC, struct.pack("<I", len(head)), head, *(memoryview(self.arrays[n]).cast("B") for n in names)]  # type: ignore[arg-type]  # ndarray is a buffer; numpy<2 stubs do not say so

    def to_bytes(self) -> bytes:
        return b"".join(self._parts())

    @cached_property
    def digest(self) -> str:
        """SHA-256 of ``to_bytes()``, hashed part by part so that no second copy of the arrays is made."""
        sha = hashlib.sha256()
        for part in self._parts():
            sha.update(part)
        return sha.hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> PreferenceHead:
        """Decode a head; every way the bytes can be wrong (they come from the network) is a
        ``HeadFormatError``, never another exception type. The arrays share ``data``'s memory."""
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise HeadFormatError("not a preference model (bad magic bytes)")
        (length,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        if length > MAX_HEADER_BYTES or start + length > len(data):
            raise HeadFormatError(f"preference model header of {length} bytes is too long or truncated")
        try:
            return cls._decode(memoryview(data), json.loads(bytes(data[start : start + length])), start + length)
        except HeadFormatError:
            raise
        except Exception as exc:  # hostile headers reach json/int/numpy in many ways (RecursionError, OverflowError ...)
            raise HeadFormatError(f"malformed preference model header: {type(exc).__name__}: {exc}"[:300]) from None

    @classmethod
    def _decode(cls, data: memoryview, header: dict, offset: int) -> PreferenceHead:
        arrays = {}
        for entry in header["arrays"]:
            shape = tuple(int(s) for s in entry["shape"])
            if any(s < 0 for s in shape) or len(shape) > 2:
                raise HeadFormatError(f"preference model array {entry['name']!r} has shape {shape}")
            count = 1
            for side in shape:
                count *= side  # Python integers: a huge shape cannot overflow, it fails the length check
            end = offset + 4 * count
            if end > len(data):
                raise HeadFormatError(f"preference model truncated in array {entry['name']!r}")
            arrays[str(entry["name"])] = np.frombuffer(data[offset:end], dtype="<f4").reshape(shape)
            offset = end
        if offset != len(data):
            raise HeadFormatError(f"preference model has {len(data) - offset} trailing bytes")
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise HeadFormatError("preference model meta is not an object")
        return cls(str(header["kind"]), arrays, k=int(header.get("k", 0)), meta=meta)


def _validate(head: PreferenceHead) -> None:
    if head.kind not in KINDS:
        raise HeadFormatError(f"unknown preference model kind {head.kind!r}; expected one of {KINDS}")
    for name, array in head.arrays.items():
        if not np.all(np.isfinite(array)):
            raise HeadFormatError(f"preference model array {name!r} has non-finite values")
    if head.kind == "knn":
        if set(head.arrays) != {"support", "ratings"}:
            raise HeadFormatError(f"a knn preference model has arrays support and ratings only, not {sorted(head.arrays)[:6]}")
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
