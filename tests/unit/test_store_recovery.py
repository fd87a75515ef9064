"""What a killed writer leaves in the store's image folder is recognised and cleaned up: swept by the
next command when its marker is there, reported and repaired by `ppo-client store check` always."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.errors import StoreError
from ppo_client.store import WRITING_MARKERS, RatingRow, UserStore


def pictures(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


@pytest.fixture()
def store(tmp_path):
    """A store where ana rated three images."""
    path = tmp_path / "store.sqlite"
    with UserStore(path) as users:
        users.create_user("ana")
        users.import_ratings("ana", [RatingRow(p.name, p, 5) for p in pictures(tmp_path / "photos", 3)], source="test")
    return path


def files(images_dir):
    return sorted(str(p.relative_to(images_dir)) for p in images_dir.rglob("*") if p.is_file())


def plant_leftovers(images_dir, *, marker: bool):
    """What an import killed mid-write leaves: a complete copy, a half-written ``*.tmp``, its marker."""
    (images_dir / "ab").mkdir(exist_ok=True)
    (images_dir / "ab" / ("ab" + "0" * 62 + ".png")).write_bytes(b"x" * 1000)
    (images_dir / "ab" / ("ab" + "1" * 62 + ".png.k2j4.tmp")).write_bytes(b"x" * 10)
    if marker:
        (images_dir / WRITING_MARKERS).mkdir(exist_ok=True)
        (images_dir / WRITING_MARKERS / "12345-dead").touch()


def test_a_killed_writers_leftovers_are_swept_by_the_next_opening(store):
    images_dir = store.parent / "store_images"
    before = files(images_dir)
    plant_leftovers(images_dir, marker=True)
    with UserStore(store) as users:
        assert len(users.ratings("ana")) == 3
    assert files(images_dir) == before


def test_without_a_marker_nothing_is_touched_until_store_check_repairs(store, capsys):
    images_dir = store.parent / "store_images"
    before = files(images_dir)
    plant_leftovers(images_dir, marker=False)  # a store left by a version that wrote no markers
    UserStore(store).close()
    assert len(files(images_dir)) == len(before) + 2
    assert main(["store", "check", "--store", str(store)]) == 1
    out = capsys.readouterr().out
    assert "found 2 files that no image row names" in out and "ppo-client store check --repair" in out
    assert len(files(images_dir)) == len(before) + 2, "a check without --repair changes nothing"
    assert main(["store", "check", "--repair", "--store", str(store)]) == 0
    assert "removed 2 files" in capsys.readouterr().out
    assert files(images_dir) == before
    assert main(["store", "check", "--store", str(store)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_a_delete_killed_before_its_commit_gets_its_files_back(store):
    images_dir = store.parent / "store_images"
    with UserStore(store) as users:
        kept = [r.image_path for r in users.ratings("ana")]
    for path in kept[:2]:  # the delete had set these aside, then died: its transaction rolled back
        path.rename(path.with_name(path.name + ".0f0f.deleting"))
    (images_dir / WRITING_MARKERS).mkdir(exist_ok=True)
    (images_dir / WRITING_MARKERS / "999-dead").touch()
    with UserStore(store) as users:
        assert all(r.image_path.exists() for r in users.ratings("ana"))
    assert not list(images_dir.rglob("*.deleting"))


def test_a_delete_killed_after_its_commit_leaves_nothing(store):
    images_dir = store.parent / "store_images"
    with UserStore(store) as users:
        users.create_user("bob")
        gone = users.ratings("ana")[0].image_path
    aside = gone.with_name(gone.name + ".1a1a.deleting")
    with UserStore(store) as users:
        users.delete_user("ana")
    aside.write_bytes(b"set aside, then the process died before removing it")
    (images_dir / WRITING_MARKERS).mkdir(exist_ok=True)
    (images_dir / WRITING_MARKERS / "999-dead").touch()
    with UserStore(store) as users:
        assert users.users()[0].name == "bob"
    assert files(images_dir) == [], "ana's images went with her; the leftover and the marker too"


def test_images_whose_files_are_gone_are_reported_not_repaired(store, capsys):
    with UserStore(store) as users:
        lost = users.ratings("ana")[0].image_path
    lost.unlink()
    assert main(["store", "check", "--repair", "--store", str(store)]) == 1
    out = capsys.readouterr().out
    assert "1 images are gone" in out and lost.name in out


def test_importing_a_lost_image_again_brings_its_file_back(store, tmp_path):
    with UserStore(store) as users:
        lost = users.ratings("ana")[0].image_path
        lost.unlink()
        users.create_user("bob")
        users.import_ratings("bob", [RatingRow("row 1", tmp_path / "photos" / "0.png", 4)], source="test")
        assert lost.exists() and users.check().clean


def test_a_failed_write_leaves_no_file_and_no_marker(store, tmp_path, monkeypatch):
    import ppo_client.store as store_module

    images_dir = store.parent / "store_images"
    before = files(images_dir)
    calls = []

    def full_disk(target, data):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(target, data)

    real = store_module._write_file
    monkeypatch.setattr(store_module, "_write_file", full_disk)
    new = [RatingRow(f"row {i}", p, 5) for i, p in enumerate(pictures(tmp_path / "other", 6)[3:])]
    with UserStore(store) as users:
        users.create_user("bob")
        with pytest.raises(StoreError, match="No space left on device.*nothing was changed"):
            users.import_ratings("bob", new, source="test")
        assert users.ratings("bob") == []
    assert files(images_dir) == before
