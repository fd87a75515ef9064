"""The app's OpenAPI document (``ppo_client.app.openapi``) against the app itself: every API route is
documented with its methods and path parameters, nothing else is, and the document is valid OpenAPI 3."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("starlette", reason="the app extra is not installed: pip install -e '.[app]'")
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from ppo_client.app import web  # noqa: E402
from ppo_client.app.openapi import DOCUMENT  # noqa: E402
from ppo_client.app.runs import RunManager  # noqa: E402
from ppo_client.llm.chat import ChatConfig  # noqa: E402
from ppo_client.store import UserStore  # noqa: E402

TOKEN = "t0ken"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture()
def app(tmp_path):
    store_path = tmp_path / "store.sqlite"
    UserStore(store_path).close()
    state = web.AppState(store_path, TOKEN, object(), RunManager(store_path, None, tmp_path / "runs", ChatConfig.from_env()))
    return web.create_app(state)


def routed(app) -> set[tuple[str, str]]:
    return {(route.path, method.lower()) for route in app.routes if isinstance(route, Route) and route.path.startswith("/api/")
            for method in route.methods - {"HEAD"}}


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, item in DOCUMENT["paths"].items() for method in item if method in HTTP_METHODS}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        _, kind, name = node["$ref"].rsplit("/", 2)
        node = DOCUMENT["components"][kind][name]
    return node


def test_every_api_route_is_documented_and_every_documented_operation_is_a_route(app):
    assert routed(app) - documented() == set(), "routes the document lacks"
    assert documented() - routed(app) == set(), "documented operations the app does not have"
    assert all(not path.startswith("/api/") for route in app.routes if isinstance(route, Route) and route not in web.API_ROUTES
               for path in [route.path]), "every API route is in web.API_ROUTES"


def test_every_path_parameter_is_described_and_every_described_one_is_in_the_path():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            described = {resolve(p)["name"] for p in operation.get("parameters", []) if resolve(p)["in"] == "path"}
            assert described == set(re.findall(r"{(\w+)}", path)), f"{method.upper()} {path}"


def test_every_refusal_is_documented_in_the_error_shape():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "401" in responses, f"{method.upper()} {path}: every route needs the token"
            if method != "get":
                assert "403" in responses, f"{method.upper()} {path}: a state change from another origin"
            assert "500" not in responses
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    schema = resolve(response)["content"]["application/json"]["schema"]
                    assert resolve(schema)["required"] == ["error"], f"{method.upper()} {path} {code}"


def test_the_document_is_valid_openapi_3():
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.validate()
    assert len(list(schema.get_all_operations())) == len(documented())


def test_the_document_is_served_to_holders_of_the_token_only(app):
    http = TestClient(app, base_url="http://127.0.0.1:8765")
    assert http.get("/api/openapi.json").status_code == 401
    served = http.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert served.status_code == 200 and served.json() == DOCUMENT
