"""Stores made by earlier versions (schema 1 to 4, images in a folder beside the file) upgrade in
place through the Alembic history, keeping every row and moving the images into the database; and
that history, run from nothing, makes the same tables as a new store, on both databases."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from ppo_client.cli import main
from ppo_client.store import SCHEMA_VERSION, PoolEntry, UserStore, schema

# The SQL of the versions before Alembic, as those versions wrote it.
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL, persona TEXT);
CREATE TABLE images (hash TEXT PRIMARY KEY, file TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE ratings (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    image_hash TEXT NOT NULL REFERENCES images(hash), rating REAL NOT NULL CHECK (rating >= 1 AND rating <= 10),
    source TEXT NOT NULL, created REAL NOT NULL, UNIQUE (user_id, image_hash));
CREATE TABLE embeddings (image_hash TEXT NOT NULL, encoder TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (image_hash, encoder));
CREATE TABLE models (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method TEXT NOT NULL, encoder TEXT NOT NULL, head BLOB NOT NULL, params TEXT NOT NULL, metrics TEXT NOT NULL, created REAL NOT NULL);
"""
V2 = """
CREATE TABLE pool (image_hash TEXT PRIMARY KEY REFERENCES images(hash), origin TEXT NOT NULL, label TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE comparisons (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    left_hash TEXT NOT NULL REFERENCES images(hash), right_hash TEXT NOT NULL REFERENCES images(hash),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')), context TEXT NOT NULL, created REAL NOT NULL);
"""
V4 = """
CREATE TABLE choices (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    chosen TEXT REFERENCES images(hash), outcome TEXT NOT NULL CHECK (outcome IN ('chosen', 'none', 'same')),
    source TEXT NOT NULL, created REAL NOT NULL, CHECK ((outcome = 'chosen') = (chosen IS NOT NULL)));
CREATE TABLE choice_images (choice_id INTEGER NOT NULL REFERENCES choices(id) ON DELETE CASCADE, position INTEGER NOT NULL,
    image_hash TEXT NOT NULL REFERENCES images(hash), PRIMARY KEY (choice_id, position));
CREATE TABLE descriptions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version >= 1), text TEXT NOT NULL, created REAL NOT NULL, UNIQUE (user_id, version));
ALTER TABLE models ADD COLUMN covariance BLOB;
"""


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def legacy_store(path, version: int, *, lose: int | None = None, persona: dict | None = None) -> list[str]:
    """A store as version ``version`` left it: two users, five images in ``<stem>_images``, ratings,
    and by version a pool, comparisons, persona links and a choice. ``lose``: an image whose file is
    gone. ``persona``: ana's link in a store before version 3 (default ``{"seed": 1}``). Returns the
    image hashes."""
    folder = path.parent / (path.stem + "_images")
    db = sqlite3.connect(path)
    script = V1 + (V2 if version >= 2 else "") + (V4 if version >= 4 else "")
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
    if version >= 3:
        db.execute("ALTER TABLE users DROP COLUMN persona")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    now = time.time()
    persona = [] if version >= 3 else [json.dumps(persona or {"seed": 1})]
    db.execute(f"INSERT INTO users (name, created{', persona' if persona else ''}) VALUES (?, ?{', ?' if persona else ''})",
               ("ana", now, *persona))
    db.execute("INSERT INTO users (name, created) VALUES ('bo', ?)", (now,))
    hashes = []
    for i in range(5):
        data = png(i)
        digest = hashlib.sha256(data).hexdigest()
        hashes.append(digest)
        file = f"{digest[:2]}/{digest}.png"
        if i != lose:
            (folder / digest[:2]).mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(data)
        db.execute("INSERT INTO images VALUES (?, ?, 8, 8, ?)", (digest, file, now))
    for i in range(3):
        db.execute("INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (1, ?, ?, 'csv', ?)",
                   (hashes[i], 2 + i, now))
    db.execute("INSERT INTO embeddings VALUES (?, 'enc', ?)", (hashes[0], np.ones(4, "<f4").tobytes()))
    if version >= 2:
        for i in (4, 3):  # the pool's order is its insertion order, not the hashes'
            db.execute("INSERT INTO pool VALUES (?, 'gallery', ?, ?)", (hashes[i], f"p{i}", now))
        db.execute("INSERT INTO comparisons (user_id, left_hash, right_hash, choice, context, created)"
                   " VALUES (2, ?, ?, 'right', 'run:x', ?)", (hashes[3], hashes[4], now))
    if version >= 4:
        db.execute("INSERT INTO choices (user_id, chosen, outcome, source, created) VALUES (2, ?, 'chosen', 'app', ?)",
                   (hashes[3], now))
        db.executemany("INSERT INTO choice_images VALUES (1, ?, ?)", [(0, hashes[3]), (1, hashes[4])])
        db.execute("INSERT INTO descriptions (user_id, version, text, created) VALUES (1, 1, 'blue', ?)", (now,))
    db.commit()
    db.close()
    return hashes


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_old_store_upgrades_in_place_with_its_images_moved_in(tmp_path, version):
    path = tmp_path / "old.sqlite"
    hashes = legacy_store(path, version)
    with UserStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert [(r.image_hash, r.rating) for r in store.ratings("ana")] == [(hashes[i], 2.0 + i) for i in range(3)]
        for digest in hashes:
            assert store.image(digest).data == (tmp_path / "old_images" / digest[:2] / f"{digest}.png").read_bytes()
        assert list(store.embeddings(hashes, "enc")) == [hashes[0]]
        if version >= 2:
            assert [p.image_hash for p in store.pool()] == [hashes[4], hashes[3]]
            first = [(c.shown, c.chosen) for c in store.choices("bo")][:1]
            assert first == [((hashes[3], hashes[4]), hashes[4] if version < 4 else hashes[3])]
        if version <= 2:
            assert store.read("SELECT spec FROM demo_personas") == [(json.dumps({"seed": 1}),)], "the persona link is kept"
        if version == 4:
            assert store.description("ana").text == "blue"
        assert store.read("SELECT version_num FROM alembic_version") == [(schema.REVISIONS[SCHEMA_VERSION],)]
        found = store.check()
        assert (found.integrity, found.missing, found.damaged) == ((), (), ())
        assert len(found.unreferenced) == (2 if version == 1 else 0), "version 1 had no pool to keep unrated images"
        store.create_user("cy")  # and it is writable
    assert "persona" not in {c["name"] for c in sa.inspect(sa.create_engine(f"sqlite:///{path}")).get_columns("users")} \
        or sqlite3.sqlite_version_info < (3, 35)


def test_an_image_whose_file_was_lost_is_reported_and_comes_back_with_a_new_import(tmp_path, capsys):
    path = tmp_path / "old.sqlite"
    hashes = legacy_store(path, 4, lose=1)
    assert main(["store", "check", "--store", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"image {hashes[1]} is referred to but its bytes are not in the store" in out
    with UserStore(path) as store:
        assert store.image(hashes[1]) is None and len(store.ratings("ana")) == 3
        store.add_to_pool([PoolEntry(png(1), "folder", "again")])
        assert store.image(hashes[1]).data == png(1)
    assert main(["store", "check", "--store", str(path)]) == 0


def test_unreferenced_images_are_reported_and_removed_by_a_repair(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    hashes = legacy_store(path, 4)
    with UserStore(path) as store:
        store.unrate("ana", hashes[2])  # an undo keeps the image, which nothing refers to now
    assert main(["store", "check", "--store", str(path), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["unreferenced"] == [hashes[2]] and found["schema_version"] == SCHEMA_VERSION
    assert main(["store", "check", "--repair", "--store", str(path)]) == 0
    assert main(["store", "check", "--store", str(path)]) == 0
    with UserStore(path) as store:
        assert store.image(hashes[2]) is None and store.embeddings([hashes[0]], "enc")


def _columns(engine_or_connection) -> dict[str, set[str]]:
    inspector = sa.inspect(engine_or_connection)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names() if t != "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def two_empty(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    server = request.getfixturevalue("postgres_server")
    return server.new_database(), server.new_database()


def test_the_history_from_nothing_makes_the_same_tables_as_a_new_store(two_empty):
    from alembic import command

    from ppo_client.store import backends

    fresh, replayed = two_empty
    with UserStore(fresh) as store:
        expected = _columns(store._engine)
    location = backends.locate(replayed)
    engine = sa.create_engine(location.url)
    with engine.begin() as connection:
        command.upgrade(schema._alembic_config(connection, None), "head")
    with engine.connect() as connection:
        assert _columns(connection) == expected
        assert connection.execute(sa.text("SELECT value FROM meta")).scalar() == str(SCHEMA_VERSION)
    engine.dispose()
    with UserStore(replayed) as store:
        store.create_user("ana")
        assert store.check().clean
