"""``ppo-client store copy``: SQLite -> PostgreSQL -> SQLite gives the same users, ratings, choices,
descriptions, models, embeddings, pool and image bytes; a non-empty destination is refused."""

from __future__ import annotations

import numpy as np
import pytest

from ppo_client.cli import main
from ppo_client.head import PreferenceHead
from ppo_client.store import PoolEntry, UserStore
from tests.unit.test_user_store import png_bytes


def fill(store: UserStore) -> None:
    hashes = store.add_to_pool([PoolEntry(png_bytes(i), "gallery", f"prompt {i}") for i in range(6)])
    for name in ("ana", "bo"):
        store.create_user(name)
    for i, digest in enumerate(hashes[:4]):
        store.rate("ana", digest, 1 + i, source="app")
    store.rate("bo", hashes[0], 9, source="app")
    store.add_choice("ana", hashes[2:5], hashes[3], source="app:pick")
    store.add_comparison("bo", hashes[4], hashes[5], "left", context="run:r:pair:0")
    store.describe("ana", "dark blue scenes")
    store.describe("ana", "dark blue scenes, no yellow")
    store.put_embeddings({h: np.arange(4, dtype=np.float32) + i for i, h in enumerate(hashes)}, "enc")
    head = PreferenceHead.linear(np.ones(4), 0.5, method="bayes")
    store.save_model("ana", "bayes", "enc", head, {"ratings": 4}, {"cv_srocc": 0.5}, covariance=np.eye(5))


def contents(store: UserStore) -> dict:
    hashes = [p.image_hash for p in store.pool()]
    return {
        "users": [(u.name, u.ratings, u.models, u.choices, u.description_version) for u in store.users()],
        "ratings": {u: [(r.image_hash, r.rating, r.source) for r in store.ratings(u)] for u in ("ana", "bo")},
        "choices": [(c.shown, c.chosen, c.outcome, c.source) for c in store.choices("ana") + store.choices("bo")],
        "comparisons": store.comparisons("bo"),
        "descriptions": [(d.version, d.text) for d in store.descriptions("ana")],
        "models": [(m.method, m.head.digest, m.params, m.metrics, m.covariance.tolist()) for m in store.models("ana")],
        "embeddings": {h: v.tolist() for h, v in store.embeddings(hashes, "enc").items()},
        "pool": store.pool(),
        "images": {h: store.image(h) for h in hashes},
    }


def test_a_round_trip_through_postgresql_keeps_everything(tmp_path, postgres_url, capsys):
    first, back = str(tmp_path / "first.sqlite"), str(tmp_path / "back.sqlite")
    with UserStore(first) as store:
        fill(store)
        expected = contents(store)
    assert main(["store", "copy", first, postgres_url]) == 0
    out = capsys.readouterr().out
    assert "users=2" in out and "ratings=5" in out
    with UserStore(postgres_url) as store:
        assert contents(store) == expected
        store.create_user("cy")  # its ids go on after the copied ones
        store.rate("cy", expected["pool"][0].image_hash, 5, source="app")
        store.delete_user("cy")
    assert main(["store", "copy", postgres_url, back]) == 0
    with UserStore(back) as store:
        assert contents(store) == expected
        assert store.check().clean


def test_a_destination_that_holds_users_is_refused_unless_replaced(tmp_path, capsys):
    source, target = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    with UserStore(source) as store:
        fill(store)
    with UserStore(target) as store:
        store.create_user("zed")
    assert main(["store", "copy", source, target]) == 2
    err = capsys.readouterr().err
    assert "already holds users" in err and len(err.strip().splitlines()) == 1
    with UserStore(target) as store:
        assert [u.name for u in store.users()] == ["zed"], "nothing was written"
    assert main(["store", "copy", source, target, "--replace"]) == 0
    with UserStore(target) as store, UserStore(source) as original:
        assert contents(store) == contents(original)
    assert main(["store", "copy", source, source]) == 2


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql://u@h:notaport/db", "postgresql://u@127.0.0.1:1/"])
def test_store_urls_that_cannot_work_are_refused_in_one_line(tmp_path, capsys, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    assert main(["user", "list", "--store", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == [], "nothing was written (no folder named after the URL)"
