import csv
import json
import re
import sqlite3

import numpy as np
from PIL import Image

from ppo_demo.cli import main
from ppo_demo.sac import PERSONAS_TABLE, SAC_TABLES, TRUTH_TABLES, RatedImage, UserRatings, read_personas, write_sac
from ppo_demo.scenes import example


def test_the_sac_file_has_the_real_schema_plus_the_truth_tables(tmp_path):
    images = [RatedImage(iid=i, gid=i, prompt=f"p{i}", path=f"images/{i}.png") for i in (1, 2)]
    users = [UserRatings(sid=1, persona_spec={"name": "a"}, survey=[5] * 20, ratings=[(1, 7), (2, 3)],
                         true_scores=[(1, 6.5), (2, 3.2)])]
    path = write_sac(tmp_path / "sac.sqlite", images, users, method="test")
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == set(SAC_TABLES) | set(TRUTH_TABLES) | set(PERSONAS_TABLE)
        columns = [row[1] for row in db.execute("PRAGMA table_info(ratings)")]
        assert columns == ["sid", "iid", "rating", "verified"]
        joined = db.execute(
            "SELECT g.prompt, p.path, r.rating FROM ratings r JOIN images i ON r.iid = i.id "
            "JOIN generations g ON i.gid = g.id JOIN paths p ON p.iid = i.id ORDER BY r.iid"
        ).fetchall()
        assert joined == [("p1", "images/1.png", 7), ("p2", "images/2.png", 3)]
        assert db.execute("SELECT COUNT(*) FROM survey WHERE id = 1").fetchone()[0] == 20
    assert not (tmp_path / "sac.sqlite.tmp").exists()
    assert read_personas(path) == {1: {"name": "a"}} and read_personas(path, sid=2) == {}


def test_demo_persona_and_rate_commands_write_a_spec_and_ratings(tmp_path):
    spec = tmp_path / "ana.json"
    assert main(["persona", "--archetype", "warm-minimalist", "--seed", "3", "--out", str(spec)]) == 0
    assert json.loads(spec.read_text())["archetype"] == "warm-minimalist"
    files = []
    for seed in range(5):
        path = tmp_path / f"{seed}.png"
        Image.fromarray(example(seed)[0]).save(path)
        files.append(str(path))
    noisy, true = tmp_path / "noisy.csv", tmp_path / "true.csv"
    assert main(["rate", "--persona", str(spec), "--csv", str(noisy), *files]) == 0
    assert main(["rate", "--persona", str(spec), "--true", "--csv", str(true), *files]) == 0
    rows = list(csv.DictReader(noisy.read_text().splitlines()))
    assert [r["image"] for r in rows] == files
    assert all(1 <= int(r["rating"]) <= 10 for r in rows)
    true_scores = [float(r["rating"]) for r in csv.DictReader(true.read_text().splitlines())]
    assert all(1.0 <= s <= 10.0 for s in true_scores) and np.std(true_scores) > 0


def test_rating_a_missing_or_non_image_file_names_it(tmp_path, capsys):
    spec = tmp_path / "p.json"
    main(["persona", "--archetype", "warm-minimalist", "--out", str(spec)])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert main(["rate", "--persona", str(spec), "--csv", str(tmp_path / "o.csv"), str(text)]) == 2
    assert "notes.txt is not a readable image" in capsys.readouterr().err
    missing = tmp_path / "gone.png"
    assert main(["rate", "--persona", str(spec), "--csv", str(tmp_path / "o.csv"), str(missing)]) == 2
    assert re.search(r"cannot read image \S*gone.png \(No such file", capsys.readouterr().err)


def test_a_bad_persona_spec_is_refused_with_the_field_named(tmp_path, capsys):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"version": 1, "name": "x", "archetype": "y", "weights": {"brightness": "lots"},
                                "bias": 0, "scale": 1, "noise": 1}))
    image = tmp_path / "a.png"
    Image.fromarray(example(0)[0]).save(image)
    assert main(["rate", "--persona", str(spec), "--csv", str(tmp_path / "o.csv"), str(image)]) != 0
    assert "weights.brightness" in capsys.readouterr().err
