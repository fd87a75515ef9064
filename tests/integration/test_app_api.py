"""The web app's JSON API against the real Triton server (tiny pipeline): every endpoint, bad input,
the token, other origins, two tabs at once, and an app killed in the middle of rating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the app extra is not installed: pip install -e '.[app]'")
from starlette.testclient import TestClient  # noqa: E402

from ppo_client.app import gallery  # noqa: E402
from ppo_client.app.openapi import DOCUMENT  # noqa: E402
from ppo_client.app.runs import RunManager  # noqa: E402
from ppo_client.app.web import AppState, create_app  # noqa: E402
from ppo_client.llm.chat import ChatConfig  # noqa: E402
from ppo_client.scoring import ScoringClient  # noqa: E402
from ppo_client.store import UserStore  # noqa: E402

pytestmark = pytest.mark.integration
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app(triton_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    store_path = root / "store.sqlite"
    UserStore(store_path).close()
    client = ScoringClient(triton_server.grpc_url)
    state = AppState(store_path, TOKEN, client, RunManager(store_path, triton_server.grpc_url, root / "runs", ChatConfig.from_env()))
    progress = gallery.GalleryProgress()
    gallery.render(store_path, client, progress, steps=2, batch=8)
    assert progress.done == len(gallery.PROMPTS) and not progress.error
    state.gallery = progress
    with TestClient(create_app(state), base_url="http://127.0.0.1:8765") as http:
        yield http, state
    client.close()


def rate_some(http, user: str, count: int, rating=lambda i: 1 + i % 10) -> list[str]:
    rated = []
    for i in range(count):
        (image,) = http.get(f"/api/users/{user}/next?count=1", headers=AUTH).json()["images"]
        assert http.post(f"/api/users/{user}/ratings", json={"image": image["id"], "rating": rating(i)}, headers=AUTH).status_code == 201
        rated.append(image["id"])
    return rated


def test_every_call_needs_the_token_and_the_printed_link_sets_it(app):
    http, _ = app
    assert http.get("/api/users").status_code == 401
    assert http.get("/api/users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/", follow_redirects=False).status_code == 401
    fresh = TestClient(http.app, base_url="http://127.0.0.1:8765")
    link = fresh.get(f"/?token={TOKEN}", follow_redirects=False)
    assert link.status_code == 303 and "httponly" in link.headers["set-cookie"].lower()
    assert fresh.get("/api/users").status_code == 200, "the cookie the link set is enough"
    assert "<h1>Who is rating?</h1>" in fresh.get("/").text


def test_state_changes_from_another_origin_are_refused(app):
    http, _ = app
    hostile = {**AUTH, "Origin": "http://evil.example"}
    assert http.post("/api/users", json={"name": "eve"}, headers=hostile).status_code == 403
    assert http.post("/api/users", json={"name": "eve"}, headers={**AUTH, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    same = {**AUTH, "Origin": "http://127.0.0.1:8765"}
    assert http.post("/api/users", json={"name": "eve"}, headers=same).status_code == 201
    assert http.get("/api/users", headers=hostile).status_code == 200, "reading is not refused"


def test_rating_one_image_at_a_time_with_undo_and_active_choice(app):
    http, _ = app
    assert http.post("/api/users", json={"name": "ana"}, headers=AUTH).status_code == 201
    assert http.post("/api/users", json={"name": "ana"}, headers=AUTH).status_code == 400  # exists
    batch = http.get("/api/users/ana/next?count=5", headers=AUTH).json()
    assert len(batch["images"]) == 5 and len({i["id"] for i in batch["images"]}) == 5
    assert all(i["why"].startswith("the model is least sure") and i["url"].startswith("/api/images/") for i in batch["images"])
    randomly = http.get("/api/users/ana/next?count=3&order=random", headers=AUTH).json()
    assert [i["why"] for i in randomly["images"]] == ["random order"] * 3
    first = rate_some(http, "ana", 6)
    assert http.get("/api/users/ana/next?count=50", headers=AUTH).json()["rated"] == 6
    undone = http.delete(f"/api/users/ana/ratings/{first[-1]}", headers=AUTH).json()
    assert undone == {"removed": True, "rated": 5}
    remaining = http.get("/api/users/ana/next?count=50", headers=AUTH).json()["images"]
    assert first[-1] in {i["id"] for i in remaining} and not set(first[:-1]) & {i["id"] for i in remaining}
    skipped = http.get(f"/api/users/ana/next?count=50&exclude={remaining[0]['id']}", headers=AUTH).json()["images"]
    assert remaining[0]["id"] not in {i["id"] for i in skipped}


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/api/users/ana/ratings", {"image": "f" * 64, "rating": 5}, 400, "not in the store"),
    ("POST", "/api/users/ana/ratings", {"rating": 5}, 400, "image: is required"),
    ("POST", "/api/users/ana/ratings", {"image": "x", "rating": "five"}, 400, "rating: must be a number"),
    ("POST", "/api/users/ana/ratings", {"image": "x", "rating": True}, 400, "rating: must be a number"),
    ("POST", "/api/users/nobody/ratings", {"image": "x", "rating": 5}, 404, "unknown user 'nobody'"),
    ("POST", "/api/users", {"name": "a/b"}, 400, "path separator"),
    ("POST", "/api/users", {"name": "general"}, 400, "reserved"),
    ("POST", "/api/users", {"name": 7}, 400, "name: must be text, got 7"),
    ("POST", "/api/users", [1, 2], 400, "must be a JSON object"),
    ("GET", "/api/users/ana/next?count=0", None, 400, "count: must be an integer from 1 to 50, got 0"),
    ("GET", "/api/users/ana/next?count=x", None, 400, "count: must be an integer"),
    ("GET", "/api/users/ana/next?order=best", None, 400, "order: must be one of"),
    ("POST", "/api/users/ana/train", {"method": "magic"}, 400, "method: must be one of"),
    ("POST", "/api/users/ana/runs", {"prompt": ""}, 400, "prompt: is empty"),
    ("POST", "/api/users/ana/runs", {"prompt": "a cat", "iterations": 1000}, 400, "iterations: must be an integer from 1 to 100"),
    ("POST", "/api/users/ana/ratings", {"image": "x", "rating": 10**400}, 400, "rating: must be a number from 1 to 10"),
    ("GET", "/api/runs/..%2F..%2Fetc", None, 404, ""),
    ("GET", "/api/runs/nope", None, 404, "no run 'nope'"),
    ("POST", "/api/runs/nope/pairs/0", {"choice": "left"}, 404, "no run"),
    ("GET", "/api/images/..%2F..%2Fetc%2Fpasswd", None, 404, ""),
    ("GET", "/api/images/" + "a" * 64, None, 404, "no such image"),
])
def test_bad_input_gets_a_4xx_with_a_message(app, method, path, body, status, message):
    http, _ = app
    response = http.request(method, path, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert message in response.text


def test_a_person_picks_from_slates_undoes_and_cannot_answer_a_slate_twice(app):
    http, _ = app
    assert http.post("/api/users", json={"name": "pia"}, headers=AUTH).status_code == 201
    four = http.get("/api/users/pia/slate?k=4", headers=AUTH).json()
    shown = [i["id"] for i in four["images"]]
    assert len(set(shown)) == 4 and four["slate"] and "nats" in four["why"] and four["choices"] == 0
    assert all(i["url"] == f"/api/images/{i['id']}" for i in four["images"])
    first = http.post("/api/users/pia/choices", json={"slate": four["slate"], "chosen": shown[2]}, headers=AUTH)
    assert first.status_code == 201 and first.json()["choices"] == 1, first.text
    twice = http.post("/api/users/pia/choices", json={"slate": four["slate"], "chosen": shown[1]}, headers=AUTH)
    assert twice.status_code == 409 and "already answered" in twice.json()["error"]
    undone = http.delete(f"/api/users/pia/choices/{first.json()['choice']}", headers=AUTH).json()
    assert undone == {"removed": True, "choices": 0}
    again = http.post("/api/users/pia/choices", json={"slate": four["slate"], "shown": shown, "chosen": shown[0]}, headers=AUTH)
    assert again.status_code == 201, "an undone slate can be answered again"
    pair = http.get("/api/users/pia/slate?k=2", headers=AUTH).json()
    assert len(pair["images"]) == 2
    same = http.post("/api/users/pia/choices", json={"slate": pair["slate"], "outcome": "same"}, headers=AUTH)
    three = http.get("/api/users/pia/slate?k=3", headers=AUTH).json()
    none = http.post("/api/users/pia/choices", json={"slate": three["slate"], "chosen": None}, headers=AUTH)
    loose = http.post("/api/users/pia/choices", json={"shown": shown[:2], "chosen": shown[1]}, headers=AUTH)
    assert [r.status_code for r in (same, none, loose)] == [201] * 3 and loose.json()["choices"] == 4
    with UserStore(http.app.state.ppo.store_path) as store:
        choices = store.choices("pia")
    assert [c.outcome for c in choices] == ["chosen", "same", "none", "chosen"]
    assert choices[0].shown == tuple(shown) and choices[0].chosen == shown[0] and all(c.source == "app" for c in choices)
    assert http.delete("/api/users/pia/choices/999999", headers=AUTH).json() == {"removed": False, "choices": 4}
    assert {"name": "pia", "ratings": 0, "models": 0, "choices": 4, "description_version": 0} in \
        http.get("/api/users", headers=AUTH).json()["users"]


def test_a_description_round_trip_and_training_from_choices_and_a_description(app):
    http, _ = app
    assert http.get("/api/users/pia/description", headers=AUTH).json() == {"version": 0, "text": "", "created": None}
    first = http.put("/api/users/pia/description", json={"text": "  I like dark blue scenes; no yellow  "}, headers=AUTH)
    assert first.status_code == 200 and first.json()["version"] == 1 and first.json()["text"] == "I like dark blue scenes; no yellow"
    assert http.put("/api/users/pia/description", json={"text": "I like red circles"}, headers=AUTH).json()["version"] == 2
    latest = http.get("/api/users/pia/description", headers=AUTH).json()
    assert latest["version"] == 2 and latest["text"] == "I like red circles"
    trained = http.post("/api/users/pia/train", headers=AUTH)  # no rating at all: four choices and a description
    assert trained.status_code == 201, trained.text
    assert trained.json()["signals"] == ["choices", "description"] and trained.json()["choices"] == 4
    assert trained.json()["description_version"] == 2
    assert http.get("/api/users/pia/models", headers=AUTH).json()["models"][0]["choices"] == 4


HASHES = ["f" * 64, "e" * 64, "d" * 64, "c" * 64, "b" * 64]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:1], "chosen": None}, 400, "shown: must hold 2 to 4 image ids, got 1"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES, "chosen": None}, 400, "shown: must hold 2 to 4 image ids, got 5"),
    ("POST", "/api/users/ana/choices", {"chosen": None}, 400, "shown: is required"),
    ("POST", "/api/users/ana/choices", {"shown": "f" * 64}, 400, "shown: must be a list"),
    ("POST", "/api/users/ana/choices", {"shown": ["x", "y"]}, 400, "shown: item 0 must be an image id"),
    ("POST", "/api/users/ana/choices", {"shown": [HASHES[0], HASHES[0]]}, 400, "names an image twice"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "chosen": HASHES[0]}, 400, "is not in the store"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "chosen": HASHES[3]}, 400, "chosen: must be one of the images shown"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "chosen": 1}, 400, "chosen: must be an image id"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "outcome": "chosen"}, 400, "chosen: is required"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "chosen": HASHES[0], "outcome": "same"}, 400, "must be null"),
    ("POST", "/api/users/ana/choices", {"shown": HASHES[:2], "outcome": "maybe"}, 400, "outcome: must be one of"),
    ("POST", "/api/users/ana/choices", {"slate": "nope", "chosen": None}, 409, "no such slate"),
    ("POST", "/api/users/nobody/choices", {"shown": HASHES[:2]}, 404, "unknown user"),
    ("DELETE", "/api/users/ana/choices/0", None, 400, "choice: must be an integer"),
    ("DELETE", "/api/users/ana/choices/x", None, 400, "choice: must be an integer"),
    ("GET", "/api/users/ana/slate?k=5", None, 400, "k: must be an integer from 2 to 4, got 5"),
    ("GET", "/api/users/ana/slate?k=1", None, 400, "k: must be an integer from 2 to 4, got 1"),
    ("GET", "/api/users/nobody/slate", None, 404, "unknown user"),
    ("PUT", "/api/users/ana/description", {"text": ""}, 400, "text: is empty"),
    ("PUT", "/api/users/ana/description", {"text": "   "}, 400, "text: a description is 1 to"),
    ("PUT", "/api/users/ana/description", {"text": "a\x1b[31mb"}, 400, "control or format characters"),
    ("PUT", "/api/users/ana/description", {"text": "x" * 1001}, 400, "text: has 1001 characters; the limit is 1000"),
    ("GET", "/api/users/nobody/description", None, 404, "unknown user"),
])
def test_bad_slate_answers_and_descriptions_get_a_4xx_with_a_message(app, method, path, body, status, message):
    http, _ = app
    http.post("/api/users", json={"name": "ana"}, headers=AUTH)  # created by an earlier test, unless run alone
    response = http.request(method, path, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_body_that_is_not_json_or_too_large_is_refused(app):
    http, _ = app
    assert http.post("/api/users", content=b"{nope", headers=AUTH).json()["error"] == "body: is not JSON"
    assert "the limit is" in http.post("/api/users", content=b"x" * 100_000, headers=AUTH).json()["error"]


def test_two_tabs_rating_at_once_lose_nothing(app):
    http, _ = app
    assert http.post("/api/users", json={"name": "tabs"}, headers=AUTH).status_code == 201
    images = [i["id"] for i in http.get("/api/users/tabs/next?count=20&order=random", headers=AUTH).json()["images"]]
    errors = []

    def tab(part):
        for image in part:
            response = http.post("/api/users/tabs/ratings", json={"image": image, "rating": 6}, headers=AUTH)
            if response.status_code != 201:
                errors.append(response.text)

    threads = [threading.Thread(target=tab, args=(images[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert http.get("/api/users/tabs/next", headers=AUTH).json()["rated"] == 20


def test_training_then_a_run_then_its_blind_comparison(app):
    http, state = app
    assert http.post("/api/users", json={"name": "bo"}, headers=AUTH).status_code == 201
    rate_some(http, "bo", 8)
    trained = http.post("/api/users/bo/train", json={"method": "bayes"}, headers=AUTH)
    assert trained.status_code == 201 and trained.json()["ratings"] == 8 and "cv_srocc" in trained.json()
    taste = http.get("/api/users/bo/models", headers=AUTH).json()
    assert len(taste["models"]) == 1 and len(taste["likes"]) == 6 and taste["likes"][0]["score"] >= taste["dislikes"][0]["score"]
    settings = {"prompt": "a red cat", "iterations": 1, "n_prompts": 2, "seeds": 1, "optimizer": "random", "steps": 2}
    for seed in (-1, 2**70):  # bo has a model: only the seed stands between this and a 201
        refused = http.post("/api/users/bo/runs", json={**settings, "seed": seed}, headers=AUTH)
        assert refused.status_code == 400 and refused.json()["error"].startswith("seed: must be an integer"), refused.text
    assert http.get("/api/users/bo/runs", headers=AUTH).json()["runs"] == [], "nothing was created for them"
    created = http.post("/api/users/bo/runs", json=settings, headers=AUTH)
    assert created.status_code == 201
    run = created.json()["id"]
    early = http.get(f"/api/runs/{run}/pairs", headers=AUTH)
    assert early.status_code in (200, 409), early.text  # before it has finished: refused with a message
    deadline = time.monotonic() + 120
    while (status := http.get(f"/api/runs/{run}", headers=AUTH).json())["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert status["status"] == "finished", status
    assert len(status["iterations"]) == 2 and status["iterations"][0]["best_image"].startswith("/api/images/")
    assert http.get(status["iterations"][0]["best_image"], headers=AUTH).headers["content-type"] == "image/png"
    assert [r["id"] for r in http.get("/api/users/bo/runs", headers=AUTH).json()["runs"]] == [run]
    pairs = http.get(f"/api/runs/{run}/pairs", headers=AUTH)
    assert pairs.status_code == 200, pairs.text
    pairs = pairs.json()["pairs"]
    assert len(pairs) == 8 and all(set(p) == {"k", "left", "right", "choice"} for p in pairs), "origins stay hidden"
    for pair in pairs:
        choice = ("left", "right", "same")[pair["k"] % 3]
        result = http.post(f"/api/runs/{run}/pairs/{pair['k']}", json={"choice": choice}, headers=AUTH).json()
    assert result["answered"] == 8 and result["optimized_preferred"] + result["initial_preferred"] + result["same"] == 8
    low, high = result["interval"]
    assert 0 <= low <= result["win_rate"] <= high <= 1
    folder = state.runs.folder(run)
    assert json.loads((folder / "compare.json").read_text())["result"] == result
    assert json.loads((folder / "config.json").read_text())["config"]["screen"] == 32, "no K given: random's own"
    assert "Blind comparison" in (folder / "report.html").read_text()
    with UserStore(state.store_path) as store:
        assert len(store.comparisons("bo")) == 8
    assert http.post(f"/api/runs/{run}/pairs/0", json={"choice": "up"}, headers=AUTH).status_code == 400
    assert http.post(f"/api/runs/{run}/pairs/8", json={"choice": "left"}, headers=AUTH).status_code == 400


def test_the_answers_of_a_real_session_are_what_the_openapi_document_says(app):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed: pip install -e '.[dev]'")
    http, _ = app
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    runs = http.get("/api/users/bo/runs", headers=AUTH)  # bo's finished run, from the test above
    run = runs.json()["runs"][0]["id"]
    image = http.get("/api/users/bo/next?count=1", headers=AUTH).json()["images"][0]["id"]
    answers = {
        ("GET", "/api/users"): http.get("/api/users", headers=AUTH),
        ("GET", "/api/users/{name}/next"): http.get("/api/users/bo/next?count=3", headers=AUTH),
        ("POST", "/api/users/{name}/ratings"): http.post("/api/users/bo/ratings", json={"image": image, "rating": 4.5}, headers=AUTH),
        ("DELETE", "/api/users/{name}/ratings/{image}"): http.delete(f"/api/users/bo/ratings/{image}", headers=AUTH),
        ("POST", "/api/users/{name}/train"): http.post("/api/users/bo/train", headers=AUTH),
        ("GET", "/api/users/{name}/slate"): (slate := http.get("/api/users/bo/slate?k=3", headers=AUTH)),
        ("POST", "/api/users/{name}/choices"): (chosen := http.post(
            "/api/users/bo/choices", json={"slate": slate.json()["slate"], "chosen": slate.json()["images"][0]["id"]}, headers=AUTH)),
        ("DELETE", "/api/users/{name}/choices/{choice}"): http.delete(f"/api/users/bo/choices/{chosen.json()['choice']}", headers=AUTH),
        ("PUT", "/api/users/{name}/description"): http.put("/api/users/bo/description", json={"text": "I like red"}, headers=AUTH),
        ("GET", "/api/users/{name}/description"): http.get("/api/users/bo/description", headers=AUTH),
        ("GET", "/api/users/{name}/models"): http.get("/api/users/bo/models", headers=AUTH),
        ("GET", "/api/users/{name}/runs"): runs,
        ("GET", "/api/runs/{run}"): http.get(f"/api/runs/{run}", headers=AUTH),
        ("GET", "/api/runs/{run}/pairs"): http.get(f"/api/runs/{run}/pairs", headers=AUTH),
        ("POST", "/api/runs/{run}/pairs/{k}"): http.post(f"/api/runs/{run}/pairs/0", json={"choice": "same"}, headers=AUTH),
        ("GET", "/api/openapi.json"): http.get("/api/openapi.json", headers=AUTH),
    }
    assert runs.json()["runs"][0]["iterations"], "the listing shows iterations, with their images"
    for (method, path), response in answers.items():
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        schema[path][method].validate_response(response)


def test_pages_render_for_a_known_user_and_refuse_an_unknown_one(app):
    http, _ = app
    for page in ("rate", "taste", "optimize"):
        response = http.get(f"/u/ana/{page}", headers=AUTH)
        assert response.status_code == 200 and f'data-page="{page}"' in response.text
        if page == "optimize":  # choosing an optimizer sets K to its own default (app.js)
            assert '<option data-screen="4">mix</option>' in response.text
            assert '<option data-screen="32" selected>ga</option>' in response.text
    assert http.get("/u/nobody/rate", headers=AUTH).status_code == 404
    assert http.get("/static/app.js").status_code == 200, "the static files need no token"


def test_an_app_killed_mid_rating_keeps_every_rating_choice_and_description_given(triton_server, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt.png").write_text("not an image")
    store = tmp_path / "store.sqlite"
    command = [sys.executable, "-m", "ppo_client.cli", "app", "--store", str(store), "--url", triton_server.grpc_url,
               "--port", "0", "--token", TOKEN, "--images", str(folder), "--no-gallery"]

    def start():
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        link = process.stdout.readline().strip()
        assert link.startswith("http://127.0.0.1:") and link.endswith(f"?token={TOKEN}"), process.stderr.read()
        base = link.split("/?")[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/api/users", headers=AUTH, timeout=2)
                return process, base
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the app did not answer")

    process, base = start()
    try:
        assert httpx.post(f"{base}/api/users", json={"name": "kim"}, headers=AUTH).status_code == 201
        images = httpx.get(f"{base}/api/users/kim/next?count=6&order=random", headers=AUTH).json()["images"]
        assert len(images) == 6, "the folder's six images can be rated; the non-image was skipped"
        for image in images[:4]:
            assert httpx.post(f"{base}/api/users/kim/ratings", json={"image": image["id"], "rating": 8}, headers=AUTH).status_code == 201
        slate = httpx.get(f"{base}/api/users/kim/slate?k=2", headers=AUTH, timeout=60).json()
        answer = {"slate": slate["slate"], "chosen": slate["images"][1]["id"]}
        assert httpx.post(f"{base}/api/users/kim/choices", json=answer, headers=AUTH).status_code == 201
        assert httpx.put(f"{base}/api/users/kim/description", json={"text": "I like noise"}, headers=AUTH).status_code == 200
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)  # and close its pipes
    process, base = start()
    try:
        assert httpx.get(f"{base}/api/users/kim/next", headers=AUTH).json()["rated"] == 4
        (kim,) = [u for u in httpx.get(f"{base}/api/users", headers=AUTH).json()["users"] if u["name"] == "kim"]
        assert kim["choices"] == 1 and kim["description_version"] == 1, "the answers survive the kill"
        forgotten = httpx.post(f"{base}/api/users/kim/choices", json=answer, headers=AUTH)
        assert forgotten.status_code == 409 and "no such slate" in forgotten.json()["error"]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)  # and close its pipes
