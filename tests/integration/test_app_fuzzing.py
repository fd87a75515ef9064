"""Schemathesis against the running app (uvicorn on a loopback port picked at run time), driven by the
app's own OpenAPI document: every operation, with valid and invalid input, must answer a documented
status in the documented shape, and never a 500.

The store holds a user with ratings and pool images and one stopped run, so generated requests reach
the handlers' depths; about half of them use those real names and hashes. No Triton server runs:
what needs one answers 503, which the document allows.
"""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the app extra is not installed: pip install -e '.[app]'")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed: pip install -e '.[dev]'")
import uvicorn  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ppo_client.app.launch import listening_socket  # noqa: E402
from ppo_client.app.openapi import DOCUMENT  # noqa: E402
from ppo_client.app.runs import RunManager  # noqa: E402
from ppo_client.app.web import AppState, create_app  # noqa: E402
from ppo_client.llm.chat import ChatConfig  # noqa: E402
from ppo_client.optimize.config import Optimizer, RunConfig  # noqa: E402
from ppo_client.scoring import ScoringClient  # noqa: E402
from ppo_client.store import PoolEntry, UserStore  # noqa: E402

pytestmark = pytest.mark.faults
TOKEN = "t0ken"
NO_TRITON = "127.0.0.1:1"
USER = "ana"
RUN = "ana-20260101-000000-000"
EXAMPLES = 40
"""Per operation and mode: 20 operations, most in two modes, 40 requests each."""


def no_internal_error(ctx, response, case):
    """A 500 is a bug. (Schemathesis' own ``not_a_server_error`` also refuses the 503 that every route
    needing the absent Triton server answers, as documented.)"""
    assert response.status_code != 500, f"500: {response.text[:300]}"


CHECKS = [no_internal_error, response_schema_conformance, status_code_conformance, content_type_conformance]


HOSTILE_QUERY = st.sampled_from(["", "a\x00b", "x" * 5000, "\u0661", " 7 ", "1_0", "9" * 5000, "-1", "NaN", "%ff"])
"""Text a URL can carry (a lone surrogate cannot: HTTP clients refuse to encode it, and servers
decode undecodable bytes as U+FFFD)."""
HOSTILE = st.one_of(
    HOSTILE_QUERY,
    st.sampled_from(["\ud800", "a\udfffb"]),
    st.sampled_from([10**400, -(10**400), 2**70, 2**63, -1, 0, 1e308, -0.0, True, False, None, [], {}, [[[[1]]]], {"a": {"b": 1}}]),
)
"""Values that once gave a 500 (10**400 as a rating, a lone surrogate as a name) and their kin."""


def body_fields(method: str, path: str) -> set[str]:
    """The documented fields of an operation's JSON body."""
    body = DOCUMENT["paths"][path][method.lower()].get("requestBody")
    return set(body["content"]["application/json"]["schema"].get("properties", {})) if body else set()


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def running_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed_app")
    store_path = root / "store.sqlite"
    with UserStore(store_path) as store:
        store.create_user(USER)
        store.create_user("a?b#c")
        hashes = store.add_to_pool([PoolEntry(png(i), "folder", f"{i}.png") for i in range(6)])
        for image_hash in hashes[:3]:
            store.rate(USER, image_hash, 7.0, source="app")
    run = root / "runs" / RUN
    run.mkdir(parents=True)
    config = RunConfig(user=USER, prompt="a red cat", iterations=2, optimizer=Optimizer.RANDOM)
    (run / "config.json").write_text(json.dumps({"config": config.to_dict()}))  # stopped before its first image
    client = ScoringClient(NO_TRITON, connect_retry_s=0)  # fail at once: no server runs here
    state = AppState(store_path, TOKEN, client, RunManager(store_path, NO_TRITON, root / "runs", ChatConfig.from_env()))
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fuzzed-app")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the app did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", hashes
    server.should_exit = True
    thread.join(15)
    sock.close()
    client.close()


@pytest.fixture(scope="module")
def app_schema(running_app):
    base, hashes = running_app
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    schema.config.update(base_url=base, headers={"Authorization": f"Bearer {TOKEN}", "Origin": base})
    real = {"name": st.just(USER), "run": st.just(RUN), "image": st.sampled_from(hashes), "k": st.integers(0, 7)}

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        """Half the cases name the store's real user, run and images (the other half: whatever was generated)."""
        def known(parameters):
            return st.fixed_dictionaries({key: real.get(key, st.just(value)) for key, value in parameters.items()})
        return st.one_of(strategy, strategy.flatmap(lambda p: known(p) if isinstance(p, dict) else st.just(p)))

    @schema.hook
    def before_generate_body(context, strategy):
        """Besides what Schemathesis makes of the document: bodies naming a real image (so the rating
        itself is what is tested), and bodies with one field set to a hostile value."""
        fields = body_fields(context.operation.method, context.operation.path)

        def real_image(body):
            return {**body, "image": hashes[0]} if isinstance(body, dict) and "image" in body else body

        def hostile(drawn):
            body, value, i = drawn
            if not isinstance(body, dict):
                return body
            names = sorted(fields or body)  # a documented field, where there are any
            return {**body, names[i % len(names)]: value} if names else body

        return st.one_of(strategy, strategy.map(real_image), st.tuples(strategy, HOSTILE, st.integers(0, 20)).map(hostile))

    @schema.hook
    def before_generate_query(context, strategy):
        """Query values as hostile text, sometimes (``int()`` takes "\u0661" and "1_0")."""
        def hostile(drawn):
            query, value = drawn
            return {key: value for key in query} if isinstance(query, dict) and query else query

        return st.one_of(strategy, st.tuples(strategy, HOSTILE_QUERY).map(hostile))

    return schema


OPERATIONS = [(method.upper(), path, operation) for path, item in DOCUMENT["paths"].items() for method, operation in item.items()]
CASES = [pytest.param(method, path, mode, id=f"{method} {path} {mode.value}") for method, path, operation in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or "parameters" in operation or "requestBody" in operation]
"""Invalid requests for every operation that takes something to make invalid (parameters or a body)."""


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_generated_request_gets_a_500_or_an_undocumented_answer(app_schema, method, path, mode):
    operation = app_schema[path][method]

    @given(operation.as_strategy(generation_mode=mode, hooks=app_schema.hooks))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def every_case(case):
        case.call_and_validate(checks=CHECKS, timeout=30)

    every_case()
