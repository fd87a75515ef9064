"""`ppo-client piaa-eval` and `user train` against the real Triton server (tiny models)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.scoring import ScoringClient
from ppo_client.store import UserStore
from ppo_demo.sac import RatedImage, UserRatings, write_sac

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sac_set(tmp_path_factory):
    """8 raters of 40 images whose taste is a signed preference for brightness."""
    root = tmp_path_factory.mktemp("sac")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, brightness = [], []
    for iid in range(40):
        level = rng.uniform(20, 235)
        pixels = np.clip(rng.normal(level, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{iid}.png")
        images.append(RatedImage(iid=iid, gid=iid, prompt=f"p{iid}", path=f"images/{iid}.png"))
        brightness.append(level)
    taste = (np.array(brightness) - 128) / 40
    users = []
    for sid in range(8):
        sign = 1 if sid % 2 else -1
        truth = np.clip(5.5 + sign * taste, 1, 10)
        noisy = np.clip(np.round(truth + rng.normal(0, 0.7, 40)), 1, 10)
        users.append(UserRatings(sid, {}, [5] * 20, list(zip(range(40), noisy.astype(int).tolist(), strict=True)),
                                 list(zip(range(40), truth.tolist(), strict=True))))
    return write_sac(root / "sac.sqlite", images, users, method="test")


def test_piaa_eval_writes_the_json_and_table(triton_server, sac_set, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["piaa-eval", "--sac", str(sac_set), "--images-root", str(sac_set.parent), "--shots", "5,20",
            "--splits", "2", "--methods", "knn,finetune,bayes", "--out", str(out),
            "--store", str(tmp_path / "store.sqlite"), "--url", triton_server.grpc_url]
    assert main(args) == 0
    result = json.loads((out / "piaa_eval.json").read_text())
    for method in ("knn", "finetune", "bayes"):
        for shots in ("5", "20"):
            entry = result["results"][method][shots]
            assert {"srocc_mean", "srocc_std", "mse_mean", "mae_mean", "true_srocc_mean"} <= set(entry)
            assert -1 <= entry["srocc_mean"] <= 1 and 4 <= entry["users"] <= 8  # test users over both splits
    assert result["encoder"].startswith("tiny_clip-") and result["embedding_dim"] == 16
    assert "| bayes | 20 |" in (out / "piaa_eval.md").read_text()
    assert "| knn | 5 |" in capsys.readouterr().out
    # every image's embedding is cached in the store under this encoder
    with UserStore(tmp_path / "store.sqlite") as store:
        hashes = [r[0] for r in store.read("SELECT image_hash FROM embeddings WHERE encoder = :e", {"e": result["encoder"]})]
    assert len(set(hashes)) == 40


def test_user_train_saves_a_model_the_server_applies(triton_server, sac_set, tmp_path):
    store = ["--store", str(tmp_path / "store.sqlite")]
    url = ["--url", triton_server.grpc_url]
    for sid in range(4):
        assert main(["user", "create", f"u{sid}", *store]) == 0
        assert main(["user", "import", f"u{sid}", "--sac", str(sac_set), "--sid", str(sid),
                     "--images-root", str(sac_set.parent), *store]) == 0
    assert main(["user", "train", "u0", "--method", "bayes", *store, *url]) == 0
    assert main(["user", "train", "u1", "--method", "knn", *store, *url]) == 0
    assert main(["user", "train", "u2", "--method", "maml", "--prior-sac", str(sac_set), *store, *url]) == 0
    with UserStore(tmp_path / "store.sqlite") as s, ScoringClient(triton_server.grpc_url) as client:
        model = s.latest_model("u0")
        assert model.method == "bayes" and model.params["prior_users"] == 3 and "cv_srocc" in model.metrics
        assert model.encoder == client.encoder_info().encoder_id
        assert s.latest_model("u2").params["prior_users"] == 7  # its own rater is left out
        ratings = s.ratings("u0")
        embeddings = client.embed([np.asarray(Image.open(io.BytesIO(s.image(r.image_hash).data)).convert("RGB"))
                                   for r in ratings])
        served = client.score(embeddings, model.head)
        np.testing.assert_allclose(served, model.head.score(embeddings), rtol=1e-4, atol=1e-4)
    # a method that learns from other users needs some
    lonely = ["--store", str(tmp_path / "lonely.sqlite")]
    assert main(["user", "create", "solo", *lonely]) == 0
    assert main(["user", "import", "solo", "--sac", str(sac_set), "--sid", "0", "--images-root", str(sac_set.parent), *lonely]) == 0
    assert main(["user", "train", "solo", "--method", "finetune", *lonely, *url]) == 2
    assert main(["user", "train", "solo", "--method", "knn", *lonely, *url]) == 0
