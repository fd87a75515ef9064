"""The local web app: server-rendered pages and the JSON API they use, on top of the SDK and the store.

Every request needs the access token, as ``Authorization: Bearer T`` or the cookie that the printed
link sets; a request that changes state must come from the app's own origin; images are served only
by content hash from the store. Bad input is a 4xx with a message, never a 500.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import numpy as np
import PIL.Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ppo_client.app import compare, fields, gallery, openapi, slates
from ppo_client.app.queue import ORDERS, PriorCache, choose
from ppo_client.app.runs import APP_RUN, RunManager
from ppo_client.errors import (
    DataError,
    InvalidRequestError,
    LLMError,
    OptimizationError,
    PPOError,
    RequestRejectedError,
    ServerError,
    StoreError,
)
from ppo_client.optimize.config import MAX_PROMPT_CHARS, MAX_SCREEN, Context, Optimizer
from ppo_client.piaa.embeddings import embed_stored
from ppo_client.piaa.methods import METHODS
from ppo_client.piaa.training import train_user
from ppo_client.store import (
    CHOICE_OUTCOMES,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_LENGTH,
    MAX_SHOWN,
    MIN_SHOWN,
    PoolEntry,
    UserStore,
)

logger = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "ppo_token"
MAX_BODY_BYTES = fields.MAX_BODY_BYTES
IMAGE_HASH = re.compile(r"[0-9a-f]{64}")
RUN_NUMBERS = ("iterations", "n_prompts", "seeds", "steps", "guidance_scale", "seed", "screen", "exploration", "preview_steps")
"""The run settings a request may give besides its prompt, optimizer and context (``RunConfig.checked()`` judges them)."""


@dataclass
class AppState:
    store_path: str | Path
    """The store's address: a file path or a database URL."""
    token: str
    client: object
    """A ``ScoringClient`` shared by the request threads."""
    runs: RunManager
    gallery: gallery.GalleryProgress = field(default_factory=gallery.GalleryProgress)
    priors: PriorCache = field(default_factory=PriorCache)
    slates: slates.SlateBook = field(default_factory=slates.SlateBook)

    def store(self) -> UserStore:
        return UserStore(self.store_path, check=False)  # checked once when the app started


# --- responses: JSON that can always be written ---


def _plain(value: Any) -> Any:
    """``value`` as strict JSON holds it: a non-finite number (a score or metric that came out NaN)
    becomes null, a numpy scalar a plain number, and text that UTF-8 cannot hold (a lone surrogate
    from an undecodable file name) is escaped. Starlette's own ``JSONResponse`` raises on both."""
    if isinstance(value, dict):
        return {_plain_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return _plain_text(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _plain_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class ApiResponse(JSONResponse):
    """Every JSON answer of the app: strict JSON (no NaN) in UTF-8, whatever the content holds."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_plain(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


# --- errors: the project's errors become 4xx (or 502/503 for a failing server), never 500 ---


def _status(exc: PPOError) -> int:
    text = str(exc)
    if isinstance(exc, slates.SlateConflictError):
        return 409
    if isinstance(exc, StoreError) and ("unknown user" in text or "no trained model" in text):
        return 404
    if isinstance(exc, OptimizationError) and text.startswith("no run"):
        return 404
    if isinstance(exc, RequestRejectedError):
        return 400
    if isinstance(exc, (ServerError, LLMError)):
        return 503 if "reach" in text or "unavailable" in text.lower() else 502
    if isinstance(exc, OptimizationError):
        return 409
    return 400


async def ppo_error(request: Request, exc: PPOError) -> Response:
    return ApiResponse({"error": str(exc)}, status_code=_status(exc))


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such route, a method the route does not take): in the API, in
    the app's error shape."""
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    messages = {404: "no such API route (GET /api/openapi.json lists them)",
                405: f"{request.method} is not a method of this route"}
    return ApiResponse({"error": messages.get(exc.status_code, exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug, not bad input (the server logs its traceback): still an answer in the error shape."""
    return ApiResponse({"error": f"internal error ({type(exc).__name__}); the app's log has the details"}, status_code=500)


# --- reading a request: everything passes through ``fields`` ---


async def _body(request: Request) -> dict:
    """The JSON object of the body, read no further than the size limit."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidRequestError("body", f"is over the size limit; the limit is {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return fields.parse_body(b"".join(chunks))


def _name(request: Request) -> str:
    """The user name in the path (the store checks the rest: separators, control characters)."""
    return fields.clean_text(request.path_params["name"], "name", max_chars=MAX_NAME_LENGTH)


def _state(request: Request) -> AppState:
    return request.app.state.ppo


def _image(image) -> dict:
    return {"id": image.image_hash, "url": f"/api/images/{image.image_hash}", "label": image.label, "origin": image.origin}


# --- the JSON API (described for clients in ``openapi.py``) ---


async def list_users(request: Request) -> Response:
    def work():
        with _state(request).store() as store:
            return [{"name": u.name, "ratings": u.ratings, "models": u.models, "choices": u.choices,
                     "description_version": u.description_version} for u in store.users()]

    return ApiResponse({"users": await run_in_threadpool(work)})


async def create_user(request: Request) -> Response:
    given = fields.text(await _body(request), "name").strip()  # the store checks separators and control characters
    name = fields.clean_text(given, "name", max_chars=MAX_NAME_LENGTH)

    def work():
        with _state(request).store() as store:
            store.create_user(name)

    await run_in_threadpool(work)
    return ApiResponse({"name": name}, status_code=201)


async def next_images(request: Request) -> Response:
    state, name = _state(request), _name(request)
    query = request.query_params
    count = fields.query_integer(query.get("count"), "count", 1, low=1, high=50)
    order = fields.choice(dict(query), "order", ORDERS, "active")
    exclude = [h for h in query.get("exclude", "").split(",") if h]

    def work():
        with state.store() as store:
            rated = store.user(name).ratings
            picks = choose(store, state.client, name, count, order=order, exclude=exclude, priors=state.priors)
        return rated, picks

    rated, picks = await run_in_threadpool(work)
    images = [{**_image(c.image), "why": c.why, "predicted": c.predicted, "spread": c.spread} for c in picks]
    progress = state.gallery
    return ApiResponse({"images": images, "rated": rated, "order": order,
                        "gallery": {"done": progress.done, "total": progress.total, "error": progress.error}})


async def add_rating(request: Request) -> Response:
    state, name = _state(request), _name(request)
    body = await _body(request)
    image = fields.text(body, "image", max_chars=64)
    rating = fields.number(body, "rating", 1, 10)

    def work():
        with state.store() as store:
            store.rate(name, image, rating, source="app")
            return store.user(name).ratings

    return ApiResponse({"rated": await run_in_threadpool(work)}, status_code=201)


async def remove_rating(request: Request) -> Response:
    state, name = _state(request), _name(request)
    image = fields.clean_text(request.path_params["image"], "image", max_chars=64)

    def work():
        with state.store() as store:
            removed = store.unrate(name, image)
            return removed, store.user(name).ratings

    removed, rated = await run_in_threadpool(work)
    return ApiResponse({"removed": removed, "rated": rated})


async def train(request: Request) -> Response:
    state, name = _state(request), _name(request)
    method = fields.choice(await _body(request), "method", METHODS, "bayes")

    def work():
        with state.store() as store:
            return train_user(state.client, store, name, method)

    trained = await run_in_threadpool(work)
    params = trained.params
    return ApiResponse({"model": trained.model_id, "method": method, **trained.metrics, "ratings": params["ratings"],
                        "choices": params.get("choices", 0), "signals": params["signals"],
                        "description_version": params.get("description", {}).get("version")}, status_code=201)


async def slate(request: Request) -> Response:
    """The 2-4 pool images whose pick would teach the user's model most (``slates.choose``)."""
    state, name = _state(request), _name(request)
    k = fields.query_integer(request.query_params.get("k"), "k", MAX_SHOWN, low=MIN_SHOWN, high=MAX_SHOWN)

    def work():
        with state.store() as store:
            summary = store.user(name)
            images, why, information = slates.choose(store, state.client, name, k, priors=state.priors)
        return summary, images, why, information

    summary, images, why, information = await run_in_threadpool(work)
    slate_id = state.slates.issue(name, [i.image_hash for i in images]) if images else None
    progress = state.gallery
    return ApiResponse({"slate": slate_id, "images": [_image(i) for i in images], "why": why, "information": information,
                        "rated": summary.ratings, "choices": summary.choices,
                        "gallery": {"done": progress.done, "total": progress.total, "error": progress.error}})


async def add_choice(request: Request) -> Response:
    """One answer to a slate: the image picked, or none of them, or no preference."""
    state, name = _state(request), _name(request)
    body = await _body(request)
    slate_id = fields.raw(body, "slate", None)
    slate_id = None if slate_id is None else fields.clean_text(slate_id, "slate", max_chars=64)
    issued = state.slates.shown(name, slate_id) if slate_id is not None else None
    if slate_id is not None and issued is None:
        raise slates.SlateConflictError("slate: no such slate (the app forgets slates when it restarts): ask for a new one")
    shown = fields.hashes(body, "shown", MIN_SHOWN, MAX_SHOWN, list(issued) if issued else fields.REQUIRED)
    if issued is not None and tuple(shown) != issued:
        raise InvalidRequestError("shown", "must be the slate's images, in the order they were shown")
    chosen = fields.raw(body, "chosen", None)
    if chosen is not None:
        chosen = fields.image_id(chosen, "chosen")
        if chosen not in shown:
            raise InvalidRequestError("chosen", "must be one of the images shown")
    outcome = fields.choice(body, "outcome", CHOICE_OUTCOMES, "chosen" if chosen is not None else "none")
    if (outcome == "chosen") != (chosen is not None):
        raise InvalidRequestError("chosen", "is required when the outcome is chosen" if chosen is None
                                  else f"must be null when the outcome is {outcome}")

    def work():
        with state.store() as store:
            store.user(name)  # an unknown user is a 404 before the slate is claimed
            if slate_id is not None:
                state.slates.claim(name, slate_id)
            try:
                choice_id = store.add_choice(name, shown, chosen, outcome=outcome, source="app")
            except BaseException:
                if slate_id is not None:
                    state.slates.answered(slate_id, None)
                raise
            if slate_id is not None:
                state.slates.answered(slate_id, choice_id)
            return choice_id, store.user(name).choices

    choice_id, count = await run_in_threadpool(work)
    return ApiResponse({"choice": choice_id, "choices": count}, status_code=201)


async def remove_choice(request: Request) -> Response:
    state, name = _state(request), _name(request)
    choice_id = fields.query_integer(request.path_params["choice"], "choice", 0, low=1, high=2**62)

    def work():
        with state.store() as store:
            removed = store.remove_choice(name, choice_id)
            return removed, store.user(name).choices

    removed, count = await run_in_threadpool(work)
    if removed:
        state.slates.reopen(name, choice_id)
    return ApiResponse({"removed": removed, "choices": count})


def _description(found) -> dict:
    if found is None:
        return {"version": 0, "text": "", "created": None}
    return {"version": found.version, "text": found.text, "created": found.created}


async def get_description(request: Request) -> Response:
    state, name = _state(request), _name(request)

    def work():
        with state.store() as store:
            return _description(store.description(name))

    return ApiResponse(await run_in_threadpool(work))


async def put_description(request: Request) -> Response:
    state, name = _state(request), _name(request)
    text = fields.text(await _body(request), "text", max_chars=MAX_DESCRIPTION_CHARS)

    def work():
        with state.store() as store:
            try:
                store.describe(name, text)
            except DataError as exc:
                raise InvalidRequestError("text", str(exc)) from None
            return _description(store.description(name))

    return ApiResponse(await run_in_threadpool(work))


async def models(request: Request) -> Response:
    """The user's trained models, and the images the latest one likes most and least."""
    state, name = _state(request), _name(request)

    def work():
        with state.store() as store:
            stored = store.models(name)
            listing = [{"id": m.id, "method": m.method, "ratings": m.params.get("ratings"),
                        "choices": m.params.get("choices"), "signals": m.params.get("signals"), "created": m.created,
                        "cv_srocc": m.metrics.get("cv_srocc"), "cv_mae": m.metrics.get("cv_mae")} for m in stored]
            if not stored:
                return listing, [], []
            images = store.pool()
            rated = {r.image_hash: r for r in store.ratings(name)}
            pooled = {i.image_hash for i in images}
            extra = [r for h, r in rated.items() if h not in pooled]  # rated images that came from imports
            hashes = [i.image_hash for i in images] + [r.image_hash for r in extra]
            if not hashes:
                return listing, [], []
            scores = stored[-1].head.score(embed_stored(state.client, store, hashes))
            order = np.argsort(-scores)
            labels = {i.image_hash: i.label for i in images}

            def entry(i):
                h = hashes[i]
                return {"id": h, "url": f"/api/images/{h}", "score": float(scores[i]), "label": labels.get(h, ""),
                        "rating": rated[h].rating if h in rated else None}

            return listing, [entry(i) for i in order[:6]], [entry(i) for i in order[::-1][:6]]

    listing, likes, dislikes = await run_in_threadpool(work)
    return ApiResponse({"models": listing, "likes": likes, "dislikes": dislikes})


async def start_run(request: Request) -> Response:
    state, name = _state(request), _name(request)
    body = await _body(request)
    optimizer = Optimizer(fields.choice(body, "optimizer", [o.value for o in Optimizer], APP_RUN.optimizer.value))
    d = dataclasses.replace(APP_RUN, screen=optimizer.default_screen)  # K left out: the chosen optimizer's own
    run = dataclasses.replace(
        d, user=name, prompt=fields.text(body, "prompt", max_chars=MAX_PROMPT_CHARS, min_chars=0), optimizer=optimizer,
        context=Context(fields.choice(body, "context", [c.value for c in Context], d.context.value)),
        **{key: fields.raw(body, key, getattr(d, key)) for key in RUN_NUMBERS},
    ).checked()  # every number and its range, here: a run that would fail is a 400, and nothing is created or started
    run_id = await run_in_threadpool(state.runs.start, run)
    return ApiResponse({"id": run_id}, status_code=201)


async def list_runs(request: Request) -> Response:
    state, name = _state(request), _name(request)

    def work():
        with state.store() as store:
            store.user(name)
        return [_run_status(state, run_id) for run_id in state.runs.list(name)]  # the same shape as GET /api/runs/{run}

    return ApiResponse({"runs": await run_in_threadpool(work)})


def _run_status(state: AppState, run_id: str) -> dict:
    """The run's status, with each iteration's best image served by content hash (kept in the pool,
    so a person can also rate it)."""
    status = state.runs.status(run_id)
    folder = state.runs.folder(run_id)
    entries = []
    for item in status["iterations"]:
        data = (folder / item.pop("best_image").split("/", 1)[1]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        item["best_image"] = f"/api/images/{digest}"
        entries.append(PoolEntry(data, "run", item["best_prompt"]))
    if entries:
        with state.store() as store:
            store.add_to_pool(entries)
    return status


async def run_status(request: Request) -> Response:
    return ApiResponse(await run_in_threadpool(_run_status, _state(request), request.path_params["run"]))


async def resume_run(request: Request) -> Response:
    state, run_id = _state(request), request.path_params["run"]
    await run_in_threadpool(state.runs.resume, run_id)
    return ApiResponse(await run_in_threadpool(_run_status, state, run_id))


async def run_pairs(request: Request) -> Response:
    state, run_id = _state(request), request.path_params["run"]

    def work():
        folder = state.runs.folder(run_id)
        pairs = compare.prepare(folder, state.client, state.store_path)
        return {"pairs": [{**p, "left": f"/api/images/{p['left']}", "right": f"/api/images/{p['right']}"}
                          for p in compare.public(pairs)], "result": compare.win_rate(pairs)}

    return ApiResponse(await run_in_threadpool(work))


async def answer_pair(request: Request) -> Response:
    state, run_id = _state(request), request.path_params["run"]
    k = fields.query_integer(request.path_params["k"], "pair", 0, low=0, high=compare.PAIRS - 1)
    choice = fields.choice(await _body(request), "choice", compare.CHOICES)

    def work():
        folder = state.runs.folder(run_id)
        user = state.runs.status(run_id)["user"]
        return compare.answer(folder, k, choice, state.store_path, user)

    return ApiResponse(await run_in_threadpool(work))


async def image(request: Request) -> Response:
    image_hash = request.path_params["image"]
    if not IMAGE_HASH.fullmatch(image_hash):
        return ApiResponse({"error": "no such image in the store (images are named by their SHA-256)"}, status_code=404)

    def work():
        with _state(request).store() as store:
            return store.image(image_hash)

    stored = await run_in_threadpool(work)
    if stored is None:
        return ApiResponse({"error": "no such image in the store"}, status_code=404)
    media = PIL.Image.MIME.get(stored.format.upper(), "application/octet-stream")
    return Response(stored.data, media_type=media, headers={"Cache-Control": "private, max-age=86400"})


async def openapi_document(request: Request) -> Response:
    return ApiResponse(openapi.DOCUMENT)


# --- pages ---

TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
TEMPLATES.env.globals.update(optimizers=[o.value for o in Optimizer], contexts=[c.value for c in Context], run_defaults=APP_RUN.to_dict(),
                             max_screen=MAX_SCREEN, default_screens={o.value: o.default_screen for o in Optimizer})
"""What the optimize page offers, with the app's run defaults selected."""
TEMPLATES.env.filters["segment"] = lambda value: quote(str(value), safe="")
"""``{{ name | segment }}``: a value as one URL path segment (a user may be called ``a?b#c``)."""


def page(template: str):
    async def render(request: Request) -> HTMLResponse:
        state, params = _state(request), dict(request.path_params)

        def check():
            if "name" in params:
                with state.store() as store:
                    store.user(_name(request))
            if "run" in params:
                state.runs.folder(params["run"])

        await run_in_threadpool(check)
        return TEMPLATES.TemplateResponse(request, template, params)

    return render


# --- the token and the origin ---


class Gate:
    """ASGI middleware: the token on every request, same-origin for every request that changes state."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and _is_token(given, self.token):
            # back to the same page without the token in the address bar (and never to another host: "//x")
            response = RedirectResponse("/" + _plain_text(scope["path"]).lstrip("/"), status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not _is_token(offered, self.token):
            await _refuse(scope, receive, send, 401, "an access token is needed: open the link `ppo-client app` printed")
            return
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
            await _refuse(scope, receive, send, 403, "requests that change state must come from the app's own pages")
            return
        await self.app(scope, receive, send)


def _is_token(offered: str, token: str) -> bool:
    """In constant time, for any text offered (``compare_digest`` refuses non-ASCII ``str``)."""
    return bool(offered) and secrets.compare_digest(offered.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin:
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[" and the like
            return False
        return parts.netloc == request.headers.get("host") and parts.scheme in ("http", "https")
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    response: Response
    if scope["path"].startswith("/api/"):
        response = ApiResponse({"error": message}, status_code=status)
    else:
        page = f"<!doctype html><html lang=\"en\"><title>ppo</title><main><h1>ppo</h1><p>{html.escape(message)}</p></main>"
        response = HTMLResponse(page, status_code=status)
    await response(scope, receive, send)


API_ROUTES = [
    Route("/api/openapi.json", openapi_document, methods=["GET"]),
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/users/{name}/next", next_images, methods=["GET"]),
    Route("/api/users/{name}/ratings", add_rating, methods=["POST"]),
    Route("/api/users/{name}/ratings/{image}", remove_rating, methods=["DELETE"]),
    Route("/api/users/{name}/slate", slate, methods=["GET"]),
    Route("/api/users/{name}/choices", add_choice, methods=["POST"]),
    Route("/api/users/{name}/choices/{choice}", remove_choice, methods=["DELETE"]),
    Route("/api/users/{name}/description", get_description, methods=["GET"]),
    Route("/api/users/{name}/description", put_description, methods=["PUT"]),
    Route("/api/users/{name}/train", train, methods=["POST"]),
    Route("/api/users/{name}/models", models, methods=["GET"]),
    Route("/api/users/{name}/runs", start_run, methods=["POST"]),
    Route("/api/users/{name}/runs", list_runs, methods=["GET"]),
    Route("/api/runs/{run}", run_status, methods=["GET"]),
    Route("/api/runs/{run}/resume", resume_run, methods=["POST"]),
    Route("/api/runs/{run}/pairs", run_pairs, methods=["GET"]),
    Route("/api/runs/{run}/pairs/{k}", answer_pair, methods=["POST"]),
    Route("/api/images/{image}", image, methods=["GET"]),
]
"""The JSON API; ``openapi.DOCUMENT`` describes exactly these (a test holds the two together)."""


def create_app(state: AppState) -> Starlette:
    routes = [
        Route("/", page("users.html")),
        Route("/u/{name}/rate", page("rate.html")),
        Route("/u/{name}/taste", page("taste.html")),
        Route("/u/{name}/optimize", page("optimize.html")),
        Route("/runs/{run}/compare", page("compare.html")),
        *API_ROUTES,
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Callable[..., Any]] = {PPOError: ppo_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.ppo = state
    app.add_middleware(Gate, token=state.token)
    return app
