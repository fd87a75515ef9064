"""Cached image embeddings (per encoder) and trained preference models."""

from __future__ import annotations

import json
import time
from typing import Iterable

import numpy as np
import sqlalchemy as sa

from ppo_client.errors import HeadFormatError, StoreError
from ppo_client.head import PreferenceHead
from ppo_client.store import schema
from ppo_client.store.backends import retrying
from ppo_client.store.base import StoreBase, new_id
from ppo_client.store.records import StoredModel, checked_covariance, stored_covariance

_CHUNK = 500


class Models(StoreBase):
    @retrying
    def embeddings(self, hashes: Iterable[str], encoder: str) -> dict[str, np.ndarray]:
        hashes = list(hashes)
        found = {}
        query = sa.text("SELECT image_hash, vector FROM embeddings WHERE encoder = :e AND image_hash IN :h").bindparams(
            sa.bindparam("h", expanding=True))
        with self._read() as db:
            for start in range(0, len(hashes), _CHUNK):
                for digest, blob in db.execute(query, {"e": encoder, "h": hashes[start : start + _CHUNK]}):
                    found[digest] = np.frombuffer(bytes(blob), dtype="<f4").copy()
        return found

    @retrying
    def put_embeddings(self, vectors: dict[str, np.ndarray], encoder: str) -> None:
        if not vectors:
            return
        with self._write() as db:
            db.execute(
                sa.text("INSERT INTO embeddings (image_hash, encoder, vector) VALUES (:h, :e, :v)"
                        " ON CONFLICT (image_hash, encoder) DO UPDATE SET vector = excluded.vector"),
                [{"h": h, "e": encoder, "v": np.asarray(v, dtype="<f4").tobytes()} for h, v in vectors.items()],
            )

    @retrying
    def save_model(self, name: str, method: str, encoder: str, head: PreferenceHead, params: dict, metrics: dict,
                   covariance: np.ndarray | None = None) -> int:
        """``covariance``: a linear head's [D + 1, D + 1] posterior covariance (kept as float32)."""
        blob = None if covariance is None else checked_covariance(head, covariance).tobytes()
        with self._write() as db:
            made = db.execute(schema.models.insert().values(
                user_id=self._user_id(db, name), method=method, encoder=encoder, head=head.to_bytes(),
                params=json.dumps(params), metrics=json.dumps(metrics), created=time.time(), covariance=blob))
        return new_id(made)

    _MODELS = "SELECT id, method, encoder, head, params, metrics, created, covariance FROM models WHERE user_id = :u"

    @retrying
    def models(self, name: str) -> list[StoredModel]:
        with self._read() as db:
            rows = db.execute(sa.text(self._MODELS + " ORDER BY id"), {"u": self._user_id(db, name)}).fetchall()
        return [self._model(name, row) for row in rows]

    @retrying
    def latest_model(self, name: str, method: str | None = None) -> StoredModel:
        """The user's newest model (of ``method``), read alone: a user may have many, each with a covariance."""
        with self._read() as db:
            row = db.execute(sa.text(self._MODELS + (" AND method = :m" if method else "") + " ORDER BY id DESC LIMIT 1"),
                             {"u": self._user_id(db, name), "m": method}).first()
        if row is None:
            wanted = f" with method {method!r}" if method else ""
            raise StoreError(f"user {name!r} has no trained model{wanted}; run `ppo-client user train {name}`")
        return self._model(name, row)

    def _model(self, name: str, row) -> StoredModel:
        i, m, e, h, p, x, c, v = row
        try:
            head = PreferenceHead.from_bytes(bytes(h))
            covariance = None if v is None else stored_covariance(head, bytes(v))
            return StoredModel(i, name, m, e, head, json.loads(p), json.loads(x), c, covariance)
        except (HeadFormatError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: a stored model of {name!r} is damaged ({exc}); retrain it") from None
