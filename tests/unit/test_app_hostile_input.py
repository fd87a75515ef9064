"""Hostile input to the web app, in process and without a Triton server: every refusal is a 4xx with
``{"error": message}`` naming what was wrong, never a 500. Each case here once was a 500 or a wrong
answer (a token that is not ASCII, JSON 20,000 levels deep, a lone surrogate, a rating of 10**400,
a run seed of -1 accepted, a user called ``a?b#c`` breaking the page links, a link printed for a
port the app could not bind)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the app extra is not installed: pip install -e '.[app]'")
from starlette.testclient import TestClient  # noqa: E402

from ppo_client.app import web  # noqa: E402
from ppo_client.app.runs import RunManager  # noqa: E402
from ppo_client.llm.chat import ChatConfig  # noqa: E402
from ppo_client.optimize.config import Optimizer, RunConfig  # noqa: E402
from ppo_client.scoring import ScoringClient  # noqa: E402
from ppo_client.store import PoolEntry, UserStore  # noqa: E402

pytestmark = pytest.mark.faults
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NO_TRITON = "127.0.0.1:1"
RUN = "ana-20260101-000000-000"
ODD_NAME = "a?b#c"


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def app(tmp_path):
    store_path = tmp_path / "store.sqlite"
    with UserStore(store_path) as store:
        store.create_user("ana")
        store.create_user(ODD_NAME)
        hashes = store.add_to_pool([PoolEntry(png(i), "folder", f"{i}.png") for i in range(3)])
    run = tmp_path / "runs" / RUN
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": RunConfig(user="ana", prompt="a cat", optimizer=Optimizer.RANDOM).to_dict()}))
    client = ScoringClient(NO_TRITON, connect_retry_s=0)
    state = web.AppState(store_path, TOKEN, client, RunManager(store_path, NO_TRITON, tmp_path / "runs", ChatConfig.from_env()))
    with TestClient(web.create_app(state), base_url="http://127.0.0.1:8765") as http:
        yield http, state, hashes
    client.close()


def refused(response, status: int, start: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert message.startswith(start), message
    return message


def asgi(app, method: str, path: str, *, body: bytes = b"", query: bytes = b"", token: str | None = TOKEN) -> tuple[int, dict, bytes]:
    """One request straight into the ASGI app, for a path no HTTP client sends as it is (a lone
    surrogate, or ``//host/``, which a client reads as another host)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode("utf-8", "surrogatepass"), "query_string": query, "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8765")] + ([(b"authorization", f"Bearer {token}".encode())] if token else []),
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(m.get("body", b"") for m in messages[1:])


# --- the token ---


def test_a_token_that_is_not_ascii_is_refused_wherever_it_is_offered(app):
    http, _, _ = app
    assert http.get("/?token=%C3%A9", follow_redirects=False).status_code == 401
    refused(http.get("/api/users", headers={"Authorization": "Bearer é".encode()}), 401, "an access token is needed")
    refused(http.get("/api/users", headers={"Cookie": "ppo_token=é".encode()}), 401, "an access token is needed")
    assert http.get("/api/users", headers={"Cookie": f"ppo_token={TOKEN}"}).status_code == 200


def test_the_link_sends_back_to_this_app_only(app):
    http, _, _ = app
    status, headers, _ = asgi(http.app, "GET", "//evil.example/", query=f"token={TOKEN}".encode(), token=None)
    assert status == 303 and headers["location"] == "/evil.example/"


def test_a_malformed_origin_is_refused_as_another_origin(app):
    http, _, _ = app
    refused(http.post("/api/users", json={"name": "eve"}, headers={**AUTH, "Origin": "http://["}), 403, "requests that change state")


# --- bodies ---


def test_a_body_nested_20000_deep_is_refused_as_the_body(app):
    http, _, _ = app
    refused(http.post("/api/users", content=b"[" * 20_000 + b"]" * 20_000, headers=AUTH), 400, "body: is nested too deeply")
    refused(http.post("/api/users", content=b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", headers=AUTH), 400, "body:")


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(app):
    http, _, _ = app
    refused(http.post("/api/users", content=iter([b"x" * 40_000] * 100), headers=AUTH), 400,
            "body: is over the size limit; the limit is 65536 bytes")


def test_a_lone_surrogate_in_a_user_name_is_refused_in_the_body_and_in_the_path(app):
    http, _, _ = app
    refused(http.post("/api/users", content=b'{"name": "\\ud800"}', headers=AUTH), 400, "name: holds a lone surrogate")
    status, _, body = asgi(http.app, "GET", "/api/users/\ud800/next")
    assert status == 400 and json.loads(body)["error"].startswith("name: holds a lone surrogate")
    status, _, body = asgi(http.app, "GET", "/u/\ud800/rate")
    assert status == 400 and json.loads(body)["error"].startswith("name: holds a lone surrogate")


NUMBER_FIELDS = [
    ("/api/users/ana/ratings", {"image": "0" * 64}, "rating", "number"),
    *[("/api/users/ana/runs", {"prompt": "a cat"}, name, "integer") for name in ("iterations", "n_prompts", "seeds", "steps", "seed")],
    ("/api/users/ana/runs", {"prompt": "a cat"}, "guidance_scale", "number"),
]
NOT_NUMBERS = ["1" + "0" * 400, "-1" + "0" * 400, "1e400", "-1e400", "true", "false", '"5"', "[5]", '{"n": 5}', '""']
"""JSON literals, as sent: 10**400 is an integer of 401 digits, 1e400 overflows a float to infinity."""


NUMBER_CASES = [(*f, literal) for f in NUMBER_FIELDS for literal in NOT_NUMBERS + ["2" + "0" * 20, "-1", "5.5"]
                if not (f[3] == "number" and literal == "5.5")]  # 5.5 is a valid rating and guidance scale


@pytest.mark.parametrize(("path", "rest", "field", "kind", "literal"), NUMBER_CASES,
                         ids=[f"{c[2]}-{c[4][:12]}" for c in NUMBER_CASES])
def test_every_numeric_field_refuses_what_is_not_a_number_in_its_range_naming_the_field(app, path, rest, field, kind, literal):
    http, _, _ = app
    body = json.dumps(rest)[:-1] + f', "{field}": {literal}}}'
    refused(http.post(path, content=body.encode(), headers=AUTH), 400, f"{field}: ")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_as_not_json(app, constant):
    http, _, _ = app
    body = f'{{"image": "{"0" * 64}", "rating": {constant}}}'.encode()
    refused(http.post("/api/users/ana/ratings", content=body, headers=AUTH), 400, f"body: holds {constant}, which is not a JSON number")


TEXT_FIELDS = [
    ("/api/users", {}, "name"),
    ("/api/users/ana/ratings", {"rating": 5}, "image"),
    ("/api/users/ana/train", {}, "method"),
    ("/api/users/ana/runs", {}, "prompt"),
    ("/api/users/ana/runs", {"prompt": "a cat"}, "optimizer"),
    ("/api/users/ana/runs", {"prompt": "a cat"}, "context"),
    (f"/api/runs/{RUN}/pairs/0", {}, "choice"),
]


BAD_TEXTS = {"surrogate": "\ud800", "nul": "a\x00b", "long": "x" * 5000, "int": 7, "null": None, "list": ["a"]}
TEXT_CASES = [(*f, kind) for f in TEXT_FIELDS for kind in BAD_TEXTS
              if not (kind == "null" and f[2] in ("method", "optimizer", "context"))]  # there null means the default


@pytest.mark.parametrize(("path", "rest", "field", "kind"), TEXT_CASES, ids=[f"{c[2]}-{c[3]}" for c in TEXT_CASES])
def test_every_text_field_refuses_surrogates_nul_overlong_text_and_other_types_naming_the_field(app, path, rest, field, kind):
    http, _, _ = app
    value = BAD_TEXTS[kind]
    content = json.dumps({**rest, field: value}).encode()  # ensure_ascii: a lone surrogate goes as \ud800
    refused(http.post(path, content=content, headers=AUTH), 400, f"{field}: ")


# --- runs ---


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_a_run_with_a_seed_out_of_range_is_refused_before_anything_starts(app, seed):
    http, state, _ = app
    started = []
    state.runs.start = lambda config: started.append(config) or "started"
    refused(http.post("/api/users/ana/runs", json={"prompt": "a cat", "seed": seed}, headers=AUTH), 400,
            "seed: must be an integer from 0 to")
    assert started == []
    created = http.post("/api/users/ana/runs", json={"prompt": "a cat", "seed": 7}, headers=AUTH)
    assert created.status_code == 201 and [c.seed for c in started] == [7], "a valid seed does reach the run manager"


def test_a_run_for_a_user_without_a_model_is_a_404_not_a_201(app):
    http, state, _ = app
    refused(http.post("/api/users/ana/runs", json={"prompt": "a cat"}, headers=AUTH), 404, "user 'ana' has no trained model")
    assert [p.name for p in state.runs.runs_dir.iterdir()] == [RUN]


# --- path parameters, routes, responses ---


@pytest.mark.parametrize(("method", "path", "status", "start"), [
    ("GET", "/api/users/a%00b/next", 400, "name: holds a NUL character"),
    ("GET", "/api/users/" + "x" * 65 + "/next", 400, "name: has 65 characters; the limit is 64"),
    ("GET", "/api/users/nobody/runs", 404, "unknown user 'nobody'"),
    ("GET", "/api/runs/a%0Ab", 400, "run: 'a\\nb' is not a run id"),
    ("GET", "/api/runs/" + "r" * 200, 400, "run: 'rrrrr"),
    ("POST", f"/api/runs/{RUN}/pairs/%D9%A1", 400, "pair: must be an integer from 0 to 7"),
    ("POST", f"/api/runs/{RUN}/pairs/" + "9" * 30, 400, "pair: must be an integer from 0 to 7"),
    ("POST", f"/api/runs/{RUN}/pairs/8", 400, "pair: must be an integer from 0 to 7, got 8"),
    ("POST", f"/api/runs/{RUN}/pairs/0", 409, "this run's pairs have not been prepared"),
    ("POST", f"/api/runs/{RUN}/resume", 409, ""),
    ("GET", f"/api/runs/{RUN}/pairs", 409, "the run has not finished"),
    ("DELETE", "/api/users/ana/ratings/" + "x" * 65, 400, "image: has 65 characters"),
    ("GET", "/api/images/%00", 404, "no such image"),
    ("GET", "/api/nothing", 404, "no such API route"),
    ("PUT", "/api/users", 405, "PUT is not a method of this route"),
    ("GET", "/runs/a%0Ab/compare", 400, "run: "),
])
def test_every_path_parameter_and_route_refuses_in_the_error_shape(app, method, path, status, start):
    http, _, _ = app
    refused(http.request(method, path, json={"choice": "left"} if method == "POST" else None, headers=AUTH), status, start)


def test_answers_are_strict_json_whatever_they_hold():
    response = web.ApiResponse({"nan": math.nan, "inf": -math.inf, "numpy": np.float32(1.5), "count": np.int64(3),
                                "flag": np.bool_(True), "text": "a\udcffb", "list": (1, math.nan)})
    assert json.loads(response.body.decode("utf-8")) == {"nan": None, "inf": None, "numpy": 1.5, "count": 3, "flag": True,
                                                         "text": "a\\udcffb", "list": [1, None]}


# --- pages ---


def test_page_links_encode_a_user_name_that_has_url_syntax(app):
    http, _, _ = app
    page = http.get("/u/a%3Fb%23c/rate", headers=AUTH)
    assert page.status_code == 200
    for target in ("rate", "taste", "optimize"):
        assert f'href="/u/a%3Fb%23c/{target}"' in page.text
    assert 'data-user="a?b#c"' in page.text


def test_the_page_script_encodes_every_value_it_puts_into_a_url():
    script = (Path(web.HERE) / "static" / "app.js").read_text()
    urls = re.findall(r"`([/#][^`]*|[a-z]+[/?]\$\{[^`]*)`", script)  # "/api/...", "#id", and parts such as "ratings/${...}"
    assert len(urls) > 10, "the script builds its URLs in template literals"
    allowed = re.compile(r"encodeURIComponent\([^()]*\)|k|query|page|rest")  # k: a number; query: URLSearchParams; page, rest: built here
    for url in urls:
        for value in re.findall(r"\$\{([^}]*)\}", url):
            assert allowed.fullmatch(value), f"{url!r} puts {value!r} into a URL unencoded"


# --- the command ---


def test_a_busy_port_fails_in_one_line_and_prints_no_link(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "ppo_client.cli", "app", "--store", str(tmp_path / "store.sqlite"), "--url", NO_TRITON,
                   "--port", str(port), "--no-gallery"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", "no link for an address the app does not hold"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    expected = f"error: cannot listen on 127.0.0.1:{port}: the port is in use; pass another --port, or --port 0 for a free one"
    assert lines == [expected], done.stderr
