"""`ppo-client user score` against the real Triton server (tiny models): images embedded by the server,
scored by the user's model, best first, with the predictive spread where the model keeps a covariance."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.head import PreferenceHead
from ppo_client.piaa.methods import design
from ppo_client.scoring import ScoringClient
from ppo_client.store import UserStore

pytestmark = pytest.mark.integration


@pytest.fixture()
def rated_user(tmp_path):
    """A user with 12 imported ratings that prefer bright images, and 4 more images to score."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    lines = []
    for i in range(16):
        level = 20 + i * 14
        pixels = np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"{i}.png")
        if i < 12:
            lines.append(f"{i}.png,{1 + 9 * i / 15:.1f}")
    (photos / "ratings.csv").write_text("\n".join(lines) + "\n")
    store = ["--store", str(tmp_path / "store.sqlite")]
    assert main(["user", "create", "alice", *store]) == 0
    assert main(["user", "import", "alice", "--csv", str(photos / "ratings.csv"), *store]) == 0
    return photos, store


def read_scores(capsys) -> list[list[str]]:
    lines = capsys.readouterr().out.splitlines()  # piped: a header line, then tab-separated rows
    assert lines[0].split("\t") == ["image", "score", "sd"]
    return [line.split("\t") for line in lines[1:]]


def test_user_score_ranks_images_by_the_users_model(triton_server, rated_user, tmp_path, capsys):
    photos, store = rated_user
    url = ["--url", triton_server.grpc_url]
    assert main(["user", "train", "alice", "--method", "knn", *store, *url]) == 0
    images = [str(photos / f"{i}.png") for i in (12, 3, 15, 0)]
    capsys.readouterr()
    assert main(["user", "score", "alice", *images, "--csv", str(tmp_path / "scores.csv"), *store, *url]) == 0
    rows = read_scores(capsys)
    with UserStore(tmp_path / "store.sqlite") as s, ScoringClient(triton_server.grpc_url) as client:
        model = s.latest_model("alice")
        embeddings = client.embed([np.asarray(Image.open(p).convert("RGB")) for p in images])
    expected = model.head.score(embeddings)
    order = np.argsort(-expected, kind="stable")
    assert [r[0] for r in rows] == [images[i] for i in order], "best first"
    np.testing.assert_allclose([float(r[1]) for r in rows], expected[order], atol=2e-3)
    assert {r[2] for r in rows} == {"-"}, "a model without a covariance has no spread to show"
    with open(tmp_path / "scores.csv", newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == ["image", "score", "sd"] and [r[0] for r in written[1:]] == [r[0] for r in rows]
    assert all(r[2] == "" for r in written[1:])
    np.testing.assert_allclose([float(r[1]) for r in written[1:]], expected[order], rtol=1e-5, atol=1e-5)


def test_user_score_shows_the_predictive_spread_of_a_model_with_a_covariance(triton_server, rated_user, tmp_path, capsys):
    photos, store = rated_user
    url = ["--url", triton_server.grpc_url]
    images = [str(photos / f"{i}.png") for i in (14, 1, 7)]
    with UserStore(tmp_path / "store.sqlite") as s, ScoringClient(triton_server.grpc_url) as client:
        encoder = client.encoder_info().encoder_id
        embeddings = client.embed([np.asarray(Image.open(p).convert("RGB")) for p in images])
        dim = embeddings.shape[1]
        rng = np.random.default_rng(0)
        spread = rng.normal(0, 0.3, (dim + 1, dim + 1))
        covariance = (spread @ spread.T + 0.1 * np.eye(dim + 1)).astype(np.float32)
        head = PreferenceHead.linear(rng.normal(0, 1, dim), 5.5)
        with_cov = s.save_model("alice", "bayes", encoder, head, {"ratings": 12}, {}, covariance=covariance)
        other = s.save_model("alice", "ridge", "another-encoder", head, {}, {})
        s.save_model("alice", "ridge", encoder, head, {"ratings": 12}, {})  # the latest keeps none
    capsys.readouterr()
    assert main(["user", "score", "alice", *images, "--model", str(with_cov), "--csv", str(tmp_path / "s.csv"),
                 *store, *url]) == 0
    rows = read_scores(capsys)
    a = design(embeddings)
    sd = np.sqrt(np.diag(a @ covariance.astype(np.float64) @ a.T))
    scores = head.score(embeddings)
    order = np.argsort(-scores, kind="stable")
    assert [r[0] for r in rows] == [images[i] for i in order]
    np.testing.assert_allclose([float(r[2]) for r in rows], sd[order], rtol=1e-3, atol=2e-3)
    with open(tmp_path / "s.csv", newline="") as f:
        written = list(csv.reader(f))[1:]
    np.testing.assert_allclose([float(r[2]) for r in written], sd[order], rtol=1e-4)
    assert main(["user", "score", "alice", *images, *store, *url]) == 0
    assert {r[2] for r in read_scores(capsys)} == {"-"}, "the latest model, which keeps no covariance"
    assert main(["user", "score", "alice", *images, "--model", str(other), *store, *url]) == 2
    assert "trained on the encoder another-encoder" in capsys.readouterr().err
