"""The demo world's persona links live in its own table of the store's file, and reach optimization
runs only through the SDK's true-taste hook."""

import sqlite3

import numpy as np
import pytest

from ppo_client.optimize import truth
from ppo_client.store import UserStore
from ppo_demo.errors import PersonaError
from ppo_demo.personas import make_persona, score_image
from ppo_demo.scenes import example
from ppo_demo.truth import TABLE, link_persona, persona_of


def test_a_link_lives_in_the_demo_table_and_dies_with_its_user(tmp_path):
    spec = make_persona("warm-minimalist", 3).to_dict()
    with UserStore(tmp_path / "s.sqlite") as store:
        store.create_user("ana")
        store.create_user("bo")
        assert persona_of(store, "ana") is None  # no table yet: nobody linked
        link_persona(store, "ana", spec)
        assert persona_of(store, "ana") == spec and persona_of(store, "bo") is None
        store.delete_user("ana")
        store.create_user("ana")
        assert persona_of(store, "ana") is None
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert "persona" not in {row[1] for row in db.execute("PRAGMA table_info(users)")} or sqlite3.sqlite_version_info < (3, 35)
        assert db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 0


def test_a_bad_spec_is_refused_before_anything_is_written(tmp_path):
    with UserStore(tmp_path / "s.sqlite") as store:
        store.create_user("ana")
        with pytest.raises(PersonaError, match="weights"):
            link_persona(store, "ana", {**make_persona("warm-minimalist", 0).to_dict(), "weights": {}})
        assert persona_of(store, "ana") is None


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_before_schema_3_keeps_its_persona_links_in_the_demo_table(tmp_path, version):
    from tests.unit.test_store_migrations import legacy_store

    path = tmp_path / "old.sqlite"
    spec = make_persona("dark-moody", 1).to_dict()
    legacy_store(path, version, persona=spec)  # the link in users.persona, as those versions kept it
    with UserStore(path) as store:
        assert persona_of(store, "ana") == spec and persona_of(store, "bo") is None
    with sqlite3.connect(path) as db:
        if sqlite3.sqlite_version_info >= (3, 35):
            assert "persona" not in {row[1] for row in db.execute("PRAGMA table_info(users)")}
        else:
            assert db.execute("SELECT COUNT(*) FROM users WHERE persona IS NOT NULL").fetchone()[0] == 0


def test_runs_find_the_linked_taste_through_the_entry_point(tmp_path):
    spec = make_persona("pastel-soft", 2).to_dict()
    with UserStore(tmp_path / "s.sqlite") as store:
        for name in ("ana", "bo", "cy"):
            store.create_user(name)
        link_persona(store, "ana", spec)
        link_persona(store, "bo", make_persona("dark-moody", 2).to_dict())
        assert truth.find(store, ["cy"]) is None
        found = truth.find(store, ["ana"])
        crowd = truth.find(store, ["ana", "bo", "cy"])
    assert found == {"provider": "personas", "spec": {"personas": [spec]}}
    assert len(crowd["spec"]["personas"]) == 2
    image = example(5)[0]
    assert truth.judge(found)(image) == pytest.approx(score_image(make_persona("pastel-soft", 2), image))
    both = [score_image(make_persona(a, 2), image) for a in ("pastel-soft", "dark-moody")]
    assert truth.judge(crowd)(np.asarray(image)) == pytest.approx(np.mean(both))
    assert truth.judge(None) is None and truth.judge({"provider": "not-installed", "spec": {}}) is None
