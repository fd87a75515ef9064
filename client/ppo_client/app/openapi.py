"""The app's JSON API as an OpenAPI 3 document, written as data and served at ``GET /api/openapi.json``
(behind the same token as every other route).

Every ``/api/...`` route of ``web.API_ROUTES`` is here with its parameters, body and answers, and
nothing else is (``tests/unit/test_app_openapi.py`` holds the two together). Ranges come from the
project's own constants, so the document does not drift from what the handlers accept. Every
refusal has one shape, ``{"error": message}``.
"""

from __future__ import annotations

from ppo_client import contract
from ppo_client.app import compare
from ppo_client.app.fields import MAX_BODY_BYTES, MAX_TEXT_CHARS
from ppo_client.app.queue import ORDERS
from ppo_client.app.runs import APP_RUN
from ppo_client.optimize.config import (
    KEYWORD_SCREEN,
    LLM_SCREEN,
    MAX_EXPLORATION,
    MAX_ITERATIONS,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_SCREEN,
    MAX_SEED,
    Context,
    Optimizer,
)
from ppo_client.piaa.methods import METHODS
from ppo_client.piaa.training import SIGNALS
from ppo_client.store import CHOICE_OUTCOMES, MAX_DESCRIPTION_CHARS, MAX_NAME_LENGTH, MAX_SHOWN, MIN_SHOWN

REF = "#/components/{}/{}"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": REF.format(kind, name)}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict, required: tuple[str, ...] | None = None) -> dict:
    """An object with these properties, all of them required unless ``required`` says which."""
    names = list(properties if required is None else required)
    return {"type": "object", "properties": properties, **({"required": names} if names else {})}


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


TEXT = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
IMAGE_URL = {"type": "string", "pattern": "^/api/images/[0-9a-f]{64}$"}

SCHEMAS = {
    "Error": _object({"error": {**TEXT, "description": "what was wrong, naming the field"}}),
    "UserSummary": _object({"name": TEXT, "ratings": INTEGER, "models": INTEGER, "choices": INTEGER,
                            "description_version": {**INTEGER, "description": "0: no description yet"}}),
    "SlateImage": _object({"id": HASH, "url": IMAGE_URL, "label": TEXT, "origin": TEXT}),
    "Slate": _object({
        "slate": _nullable({**TEXT, "description": "the slate's id, to send back with the answer (null: no slate)"}),
        "images": {"type": "array", "items": _ref("schemas", "SlateImage"), "maxItems": MAX_SHOWN,
                   "description": f"the images to show side by side, in this order ({MIN_SHOWN} to {MAX_SHOWN}; "
                                  "none while the pool is smaller than the slate)"},
        "why": {**TEXT, "description": "why the app shows these images"},
        "information": {**NUMBER, "description": "the expected information of the answer about the model, in nats"},
        "rated": INTEGER, "choices": INTEGER,
        "gallery": _object({"done": INTEGER, "total": INTEGER, "error": TEXT}),
    }),
    "Description": _object({"version": {**INTEGER, "description": "0: no description yet"}, "text": TEXT,
                            "created": _nullable(NUMBER)}),
    "Image": _object({
        "id": HASH, "url": IMAGE_URL, "label": TEXT, "origin": TEXT,
        "why": {**TEXT, "description": "why the app asks for this image"},
        "predicted": _nullable(NUMBER), "spread": _nullable(NUMBER),
    }),
    "Trained": {
        **_object({"model": INTEGER, "method": {"type": "string", "enum": list(METHODS)},
                   "cv_srocc": _nullable(NUMBER), "cv_mae": _nullable(NUMBER), "ratings": INTEGER,
                   "choices": INTEGER, "signals": {"type": "array", "items": {"type": "string", "enum": list(SIGNALS)}},
                   "description_version": _nullable(INTEGER)},
                  required=("model", "method", "cv_srocc", "cv_mae", "ratings", "choices", "signals")),
        "description": "the new model's id, what it learnt from, and cross-validated metrics (null where undefined, "
                       "as SROCC of equal ratings)",
    },
    "ModelSummary": _object({"id": INTEGER, "method": TEXT, "ratings": _nullable(INTEGER), "choices": _nullable(INTEGER),
                             "signals": _nullable({"type": "array", "items": TEXT}), "created": NUMBER,
                             "cv_srocc": _nullable(NUMBER), "cv_mae": _nullable(NUMBER)}),
    "ScoredImage": _object({"id": HASH, "url": IMAGE_URL, "score": _nullable(NUMBER), "label": TEXT,
                            "rating": _nullable(NUMBER)}),
    "RunIteration": _object({"iteration": INTEGER, "best_prompt": TEXT, "best_score": _nullable(NUMBER),
                             "best_image": IMAGE_URL}),
    "RunStatus": _object({
        "id": TEXT, "user": TEXT, "prompt": TEXT, "optimizer": TEXT,
        "status": {"type": "string", "enum": ["running", "finished", "stopped", "failed"]},
        "error": TEXT, "iterations_total": INTEGER,
        "iterations": {"type": "array", "items": _ref("schemas", "RunIteration")},
        "best_prompt": _nullable(TEXT), "best_score": _nullable(NUMBER), "init_score": _nullable(NUMBER),
    }),
    "WinRate": _object({
        "answered": INTEGER, "total": INTEGER, "optimized_preferred": INTEGER, "same": INTEGER,
        "initial_preferred": INTEGER, "win_rate": _nullable({**NUMBER, "minimum": 0, "maximum": 1}),
        "interval": _nullable({"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2}),
    }),
    "Pair": _object({"k": INTEGER, "left": IMAGE_URL, "right": IMAGE_URL,
                     "choice": _nullable({"type": "string", "enum": list(compare.CHOICES)})}),
}

_ERRORS = {
    "400": "bad input: a field, parameter or body that is not what this route takes",
    "401": "no access token, or the wrong one",
    "403": "a request that changes state from another origin",
    "404": "no such user, run, image or trained model",
    "409": "a conflict, such as comparing a run that has not finished",
    "502": "the inference server or the LLM answered with an error",
    "503": "the inference server or the LLM cannot be reached",
}
RESPONSES = {code: _json(_ref("schemas", "Error"), text) for code, text in _ERRORS.items()}


def _errors(*codes: str) -> dict:
    return {code: _ref("responses", code) for code in ("400", "401", *codes)}


def _body(schema: dict, *, required: bool = True) -> dict:
    return {"required": required, "description": f"a JSON object of at most {MAX_BODY_BYTES} bytes; "
            "other fields are ignored, and null is the same as leaving a field out",
            "content": {"application/json": {"schema": schema}}}


def _path(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


PARAMETERS = {
    "name": _path("name", {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}, "a user of the store"),
    "run": _path("run", {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,120}$"}, "a run id (its folder's name)"),
    "image": _path("image", HASH, "an image's content hash (SHA-256)"),
    "choice": _path("choice", {"type": "integer", "minimum": 1}, "a stored choice's id"),
    "k": _path("k", {"type": "integer", "minimum": 0, "maximum": compare.PAIRS - 1}, "a pair of the comparison"),
}
USER, RUN = [_ref("parameters", "name")], [_ref("parameters", "run")]
STATE_CHANGE = "Needs the app's own origin (`Origin` equal to the app's address, or no `Origin` and `Sec-Fetch-Site: same-origin`)."


def _operation(summary: str, ok: dict, errors: dict, *, parameters: list | None = None, body: dict | None = None,
               changes_state: bool = False) -> dict:
    operation = {"summary": summary + (" " + STATE_CHANGE if changes_state else ""), "responses": {**ok, **errors}}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _status_response(code: str = "200") -> dict:
    return {code: _json(_ref("schemas", "RunStatus"), "the run's status")}


RUN_REQUEST = _object({
    "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "description": "the prompt to optimize"},
    "iterations": {"type": "integer", "minimum": 1, "maximum": MAX_ITERATIONS, "default": APP_RUN.iterations},
    "n_prompts": {"type": "integer", "minimum": 1, "maximum": MAX_PROMPTS, "default": APP_RUN.n_prompts},
    "seeds": {"type": "integer", "minimum": 1, "maximum": contract.MAX_PROMPTS_PER_REQUEST, "default": APP_RUN.seeds},
    "optimizer": {"type": "string", "enum": [o.value for o in Optimizer], "default": APP_RUN.optimizer.value},
    "context": {"type": "string", "enum": [c.value for c in Context], "default": APP_RUN.context.value},
    "steps": {"type": "integer", "minimum": contract.MIN_STEPS, "maximum": contract.MAX_STEPS, "default": APP_RUN.steps},
    "guidance_scale": {"type": "number", "minimum": 0, "maximum": contract.MAX_GUIDANCE_SCALE, "default": APP_RUN.guidance_scale},
    "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": APP_RUN.seed},
    "screen": {"type": "integer", "minimum": 0, "maximum": MAX_SCREEN, "default": APP_RUN.screen,
               "description": "K: propose K x N candidates and render the N the screen chooses (0: off; the mix needs 2 or more); "
                              f"left out: {KEYWORD_SCREEN} for ga and random, {LLM_SCREEN} for llm and mix"},
    "exploration": {"type": "number", "minimum": 0, "maximum": MAX_EXPLORATION, "default": APP_RUN.exploration,
                    "description": "the screen's UCB weight (0: the best predicted)"},
    "preview_steps": {"type": "integer", "minimum": 0, "maximum": contract.MAX_STEPS, "default": APP_RUN.preview_steps,
                      "description": "preview the screen's shortlist at this many steps and render the best in full (0: off)"},
}, required=("prompt",))

PATHS = {
    "/api/openapi.json": {"get": _operation(
        "This document.", {"200": _json({"type": "object"}, "the OpenAPI document")}, {"401": _ref("responses", "401")})},
    "/api/users": {
        "get": _operation("The store's users.", {"200": _json(_object({"users": {
            "type": "array", "items": _ref("schemas", "UserSummary")}}), "every user, by name")}, {"401": _ref("responses", "401")}),
        "post": _operation(
            "Create a user.", {"201": _json(_object({"name": TEXT}), "the user as created (name trimmed)")}, _errors("403"),
            body=_body(_object({"name": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS,
                                         "description": f"1 to {MAX_NAME_LENGTH} characters once trimmed; "
                                                        "no / \\ or control characters"}})),
            changes_state=True),
    },
    "/api/users/{name}/next": {"get": _operation(
        "The images to rate next, with why each was chosen.",
        {"200": _json(_object({
            "images": {"type": "array", "items": _ref("schemas", "Image")}, "rated": INTEGER,
            "order": {"type": "string", "enum": list(ORDERS)},
            "gallery": _object({"done": INTEGER, "total": INTEGER, "error": TEXT}),
        }), "up to `count` unrated images")},
        _errors("404", "502", "503"),
        parameters=USER + [
            {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1}},
            {"name": "order", "in": "query", "schema": {"type": "string", "enum": list(ORDERS), "default": "active"}},
            {"name": "exclude", "in": "query", "schema": TEXT, "description": "comma-separated hashes of skipped images"},
        ])},
    "/api/users/{name}/ratings": {"post": _operation(
        "Rate an image (again: the new rating replaces the old).",
        {"201": _json(_object({"rated": INTEGER}), "the user's number of ratings")}, _errors("403", "404"), parameters=USER,
        body=_body(_object({"image": {"type": "string", "minLength": 1, "maxLength": 64, "description": "the image's hash"},
                            "rating": {"type": "number", "minimum": 1, "maximum": 10}})),
        changes_state=True)},
    "/api/users/{name}/ratings/{image}": {"delete": _operation(
        "Undo a rating.", {"200": _json(_object({"removed": {"type": "boolean"}, "rated": INTEGER}),
                                        "whether there was a rating, and the user's number of ratings")},
        _errors("403", "404"), parameters=USER + [_ref("parameters", "image")], changes_state=True)},
    "/api/users/{name}/slate": {"get": _operation(
        "The images whose pick would teach the user's model most (from their ratings, choices and description), "
        "with why, and the slate's id to answer it with.",
        {"200": _json(_ref("schemas", "Slate"), "the slate")}, _errors("404", "502", "503"),
        parameters=USER + [{"name": "k", "in": "query", "schema": {
            "type": "integer", "minimum": MIN_SHOWN, "maximum": MAX_SHOWN, "default": MAX_SHOWN}, "description": "images in the slate"}])},
    "/api/users/{name}/choices": {"post": _operation(
        "Answer a slate: the image picked, none of them, or no preference (stored at once). A slate answered "
        "again, or one this app did not hand out (it forgets them when it restarts), is a 409.",
        {"201": _json(_object({"choice": {**INTEGER, "description": "the stored choice's id (for an undo)"},
                               "choices": {**INTEGER, "description": "the user's number of choices"}}), "the stored choice")},
        _errors("403", "404", "409"), parameters=USER,
        body=_body(_object({
            "slate": {"type": "string", "minLength": 1, "maxLength": 64, "description": "the slate's id, from GET .../slate"},
            "shown": {"type": "array", "items": HASH, "minItems": MIN_SHOWN, "maxItems": MAX_SHOWN, "uniqueItems": True,
                      "description": "the images shown, in their order (with `slate`: may be left out, else must be its images)"},
            "chosen": _nullable({**HASH, "description": "the image picked, one of `shown`; null for none of them or the same"}),
            "outcome": {"type": "string", "enum": list(CHOICE_OUTCOMES),
                        "description": "`chosen` (the default with an image chosen), `none` (the default without) or `same`"},
        }, required=())),
        changes_state=True)},
    "/api/users/{name}/choices/{choice}": {"delete": _operation(
        "Undo a choice (its slate can be answered again).",
        {"200": _json(_object({"removed": {"type": "boolean"}, "choices": INTEGER}),
                      "whether there was such a choice, and the user's number of choices")},
        _errors("403", "404"), parameters=USER + [_ref("parameters", "choice")], changes_state=True)},
    "/api/users/{name}/description": {
        "get": _operation("The user's latest description of their taste.",
                          {"200": _json(_ref("schemas", "Description"), "the latest version (version 0, empty: none yet)")},
                          _errors("404"), parameters=USER),
        "put": _operation(
            "Describe the user's taste in words: a new version of their description.",
            {"200": _json(_ref("schemas", "Description"), "the new version")}, _errors("403", "404"), parameters=USER,
            body=_body(_object({"text": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_CHARS,
                                         "description": "what the person likes and dislikes; no control characters"}})),
            changes_state=True),
    },
    "/api/users/{name}/train": {"post": _operation(
        "Train a taste model on every signal the user has given (ratings, choices, description).",
        {"201": _json(_ref("schemas", "Trained"), "the new model")},
        _errors("403", "404", "502", "503"), parameters=USER,
        body=_body(_object({"method": {"type": "string", "enum": list(METHODS), "default": "bayes"}}, required=()),
                   required=False),
        changes_state=True)},
    "/api/users/{name}/models": {"get": _operation(
        "The user's models, and the six images the newest likes most and least.",
        {"200": _json(_object({"models": {"type": "array", "items": _ref("schemas", "ModelSummary")},
                               "likes": {"type": "array", "items": _ref("schemas", "ScoredImage")},
                               "dislikes": {"type": "array", "items": _ref("schemas", "ScoredImage")}}), "models and images")},
        _errors("404", "502", "503"), parameters=USER)},
    "/api/users/{name}/runs": {
        "post": _operation(
            "Start an optimization run in the background. Every field is checked first: a run that would fail "
            "is refused here, and nothing is created.",
            {"201": _json(_object({"id": TEXT}), "the run's id")}, _errors("403", "404", "409", "502", "503"),
            parameters=USER, body=_body(RUN_REQUEST), changes_state=True),
        "get": _operation("The user's runs, newest first.", {"200": _json(_object({"runs": {
            "type": "array", "items": _ref("schemas", "RunStatus")}}), "their status")}, _errors("404"), parameters=USER),
    },
    "/api/runs/{run}": {"get": _operation("A run's status.", _status_response(), _errors("404"), parameters=RUN)},
    "/api/runs/{run}/resume": {"post": _operation(
        "Resume a stopped run.", _status_response(), _errors("403", "404", "409"), parameters=RUN, changes_state=True)},
    "/api/runs/{run}/pairs": {"get": _operation(
        "The blind comparison of a finished run (rendered on first use); never which side is which prompt.",
        {"200": _json(_object({"pairs": {"type": "array", "items": _ref("schemas", "Pair")},
                               "result": _ref("schemas", "WinRate")}), "the pairs and the result so far")},
        _errors("404", "409", "502", "503"), parameters=RUN)},
    "/api/runs/{run}/pairs/{k}": {"post": _operation(
        "Answer one pair.", {"200": _json(_ref("schemas", "WinRate"), "the result so far")}, _errors("403", "404", "409"),
        parameters=RUN + [_ref("parameters", "k")],
        body=_body(_object({"choice": {"type": "string", "enum": list(compare.CHOICES)}})), changes_state=True)},
    "/api/images/{image}": {"get": _operation(
        "An image of the store, by content hash.",
        {"200": {"description": "the image", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
        {"401": _ref("responses", "401"), "404": _ref("responses", "404")}, parameters=[_ref("parameters", "image")])},
}

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {
        "title": "ppo-client app",
        "version": "1",
        "description": "The JSON API of the local web app (docs/app.md). Bad input is a 4xx with "
                       "`{\"error\": message}`, never a 500.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer", "description": "the token in the link `ppo-client app` printed"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "ppo_token", "description": "set by opening the printed link"},
        },
    },
    "security": [{"token": []}, {"cookie": []}],
}
