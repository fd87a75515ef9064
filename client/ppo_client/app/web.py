"""The local web app: server-rendered pages and the JSON API they use, on top of the SDK and the store.

Every request needs the access token, as ``Authorization: Bearer T`` or the cookie that the printed
link sets; a request that changes state must come from the app's own origin; images are served only
by content hash from the store. Bad input is a 4xx with a message, never a 500.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ppo_client.app import compare, gallery
from ppo_client.app.queue import ORDERS, PriorCache, choose
from ppo_client.app.runs import APP_RUN, RunManager
from ppo_client.errors import (
    InvalidRequestError,
    LLMError,
    OptimizationError,
    PPOError,
    RequestRejectedError,
    ServerError,
    StoreError,
)
from ppo_client.store import PoolEntry, UserStore

logger = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "ppo_token"
MAX_BODY_BYTES = 64 * 1024


@dataclass
class AppState:
    store_path: Path
    token: str
    client: object
    """A ``ScoringClient`` shared by the request threads."""
    runs: RunManager
    gallery: gallery.GalleryProgress = field(default_factory=gallery.GalleryProgress)
    priors: PriorCache = field(default_factory=PriorCache)

    def store(self) -> UserStore:
        return UserStore(self.store_path, check=False)  # checked once when the app started


# --- errors: the project's errors become 4xx (or 503 for an unreachable server), never 500 ---


def _status(exc: PPOError) -> int:
    text = str(exc)
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


async def ppo_error(request: Request, exc: PPOError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=_status(exc))


async def _json(request: Request) -> dict:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequestError("body", f"is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise InvalidRequestError("body", "is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("body", "must be a JSON object")
    return value


def _field(body: dict, name: str, kind, default=None):
    value = body.get(name, default)
    if value is None:
        raise InvalidRequestError(name, "is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidRequestError(name, f"must be {kind.__name__}, got {type(value).__name__}")
    return value


def _state(request: Request) -> AppState:
    return request.app.state.ppo


def _image(image) -> dict:
    return {"id": image.image_hash, "url": f"/api/images/{image.image_hash}", "label": image.label, "origin": image.origin}


# --- the JSON API ---


async def list_users(request: Request) -> JSONResponse:
    def work():
        with _state(request).store() as store:
            return [{"name": u.name, "ratings": u.ratings, "models": u.models} for u in store.users()]

    return JSONResponse({"users": await run_in_threadpool(work)})


async def create_user(request: Request) -> JSONResponse:
    name = _field(await _json(request), "name", str).strip()

    def work():
        with _state(request).store() as store:
            store.create_user(name)

    await run_in_threadpool(work)
    return JSONResponse({"name": name}, status_code=201)


async def next_images(request: Request) -> JSONResponse:
    state, name = _state(request), request.path_params["name"]
    try:
        count = int(request.query_params.get("count", "1"))
    except ValueError:
        raise InvalidRequestError("count", "must be an integer") from None
    if not 1 <= count <= 50:
        raise InvalidRequestError("count", f"must be between 1 and 50, got {count}")
    order = request.query_params.get("order", "active")
    if order not in ORDERS:
        raise InvalidRequestError("order", f"must be one of {', '.join(ORDERS)}")
    exclude = [h for h in request.query_params.get("exclude", "").split(",") if h]

    def work():
        with state.store() as store:
            rated = store.user(name).ratings
            picks = choose(store, state.client, name, count, order=order, exclude=exclude, priors=state.priors)
        return rated, picks

    rated, picks = await run_in_threadpool(work)
    images = [{**_image(c.image), "why": c.why, "predicted": c.predicted, "spread": c.spread} for c in picks]
    progress = state.gallery
    return JSONResponse({"images": images, "rated": rated, "order": order,
                         "gallery": {"done": progress.done, "total": progress.total, "error": progress.error}})


async def add_rating(request: Request) -> JSONResponse:
    state, name = _state(request), request.path_params["name"]
    body = await _json(request)
    image, rating = _field(body, "image", str), body.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, (int, float)):
        raise InvalidRequestError("rating", "must be a number from 1 to 10")

    def work():
        with state.store() as store:
            store.rate(name, image, float(rating), source="app")
            return store.user(name).ratings

    return JSONResponse({"rated": await run_in_threadpool(work)}, status_code=201)


async def remove_rating(request: Request) -> JSONResponse:
    state, name, image = _state(request), request.path_params["name"], request.path_params["image"]

    def work():
        with state.store() as store:
            removed = store.unrate(name, image)
            return removed, store.user(name).ratings

    removed, rated = await run_in_threadpool(work)
    return JSONResponse({"removed": removed, "rated": rated})


async def train(request: Request) -> JSONResponse:
    from ppo_client.piaa.methods import METHODS
    from ppo_client.piaa.training import train_user

    state, name = _state(request), request.path_params["name"]
    method = _field(await _json(request), "method", str, "bayes")
    if method not in METHODS:
        raise InvalidRequestError("method", f"must be one of {', '.join(METHODS)}")

    def work():
        with state.store() as store:
            return train_user(state.client, store, name, method)

    trained = await run_in_threadpool(work)
    return JSONResponse({"model": trained.model_id, "method": method, **trained.metrics,
                         "ratings": trained.params["ratings"]}, status_code=201)


async def models(request: Request) -> JSONResponse:
    """The user's trained models, and the images the latest one likes most and least."""
    from ppo_client.piaa.embeddings import embed_files

    state, name = _state(request), request.path_params["name"]

    def work():
        with state.store() as store:
            stored = store.models(name)
            listing = [{"id": m.id, "method": m.method, "ratings": m.params.get("ratings"), "created": m.created,
                        "cv_srocc": m.metrics.get("cv_srocc"), "cv_mae": m.metrics.get("cv_mae")} for m in stored]
            if not stored:
                return listing, [], []
            images = store.pool()
            rated = {r.image_hash: r for r in store.ratings(name)}
            pooled = {i.image_hash for i in images}
            extra = [r for h, r in rated.items() if h not in pooled]  # rated images that came from imports
            paths = [i.path for i in images] + [r.image_path for r in extra]
            hashes = [i.image_hash for i in images] + [r.image_hash for r in extra]
            if not hashes:
                return listing, [], []
            scores = stored[-1].head.score(embed_files(state.client, store, paths, hashes))
            order = np.argsort(-scores)
            labels = {i.image_hash: i.label for i in images}

            def entry(i):
                h = hashes[i]
                return {"id": h, "url": f"/api/images/{h}", "score": float(scores[i]), "label": labels.get(h, ""),
                        "rating": rated[h].rating if h in rated else None}

            return listing, [entry(i) for i in order[:6]], [entry(i) for i in order[::-1][:6]]

    listing, likes, dislikes = await run_in_threadpool(work)
    return JSONResponse({"models": listing, "likes": likes, "dislikes": dislikes})


async def start_run(request: Request) -> JSONResponse:
    state, name = _state(request), request.path_params["name"]
    body = await _json(request)
    d = APP_RUN
    run = dataclasses.replace(
        d, user=name, prompt=_field(body, "prompt", str), iterations=_field(body, "iterations", int, d.iterations),
        n_prompts=_field(body, "n_prompts", int, d.n_prompts), seeds=_field(body, "seeds", int, d.seeds),
        optimizer=_field(body, "optimizer", str, d.optimizer.value), context=_field(body, "context", str, d.context.value),
        steps=_field(body, "steps", int, d.steps), guidance_scale=_field(body, "guidance_scale", float, d.guidance_scale),
        seed=_field(body, "seed", int, d.seed),
    )
    run_id = await run_in_threadpool(state.runs.start, run)
    return JSONResponse({"id": run_id}, status_code=201)


async def list_runs(request: Request) -> JSONResponse:
    state, name = _state(request), request.path_params["name"]

    def work():
        with state.store() as store:
            store.user(name)
        return [state.runs.status(run_id) for run_id in state.runs.list(name)]

    return JSONResponse({"runs": await run_in_threadpool(work)})


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


async def run_status(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_run_status, _state(request), request.path_params["run"]))


async def resume_run(request: Request) -> JSONResponse:
    state, run_id = _state(request), request.path_params["run"]
    await run_in_threadpool(state.runs.resume, run_id)
    return JSONResponse(await run_in_threadpool(_run_status, state, run_id))


async def run_pairs(request: Request) -> JSONResponse:
    state, run_id = _state(request), request.path_params["run"]

    def work():
        folder = state.runs.folder(run_id)
        pairs = compare.prepare(folder, state.client, state.store_path)
        return {"pairs": [{**p, "left": f"/api/images/{p['left']}", "right": f"/api/images/{p['right']}"}
                          for p in compare.public(pairs)], "result": compare.win_rate(pairs)}

    return JSONResponse(await run_in_threadpool(work))


async def answer_pair(request: Request) -> JSONResponse:
    state, run_id = _state(request), request.path_params["run"]
    try:
        k = int(request.path_params["k"])
    except ValueError:
        raise InvalidRequestError("pair", "must be an integer") from None
    choice = _field(await _json(request), "choice", str)

    def work():
        folder = state.runs.folder(run_id)
        user = state.runs.status(run_id)["user"]
        return compare.answer(folder, k, choice, state.store_path, user)

    return JSONResponse(await run_in_threadpool(work))


async def image(request: Request) -> Response:
    def work():
        with _state(request).store() as store:
            return store.image_file(request.path_params["image"])

    path = await run_in_threadpool(work)
    if path is None or not path.exists():
        return JSONResponse({"error": "no such image in the store"}, status_code=404)
    return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})


# --- pages ---

TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))


def page(template: str):
    async def render(request: Request) -> HTMLResponse:
        params = dict(request.path_params)
        if "name" in params:
            def check():
                with _state(request).store() as store:
                    store.user(params["name"])

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
        if given is not None and secrets.compare_digest(given, self.token):
            response = RedirectResponse(scope["path"], status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not offered or not secrets.compare_digest(offered, self.token):
            await _refuse(scope, receive, send, 401, "an access token is needed: open the link `ppo-client app` printed")
            return
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
            await _refuse(scope, receive, send, 403, "requests that change state must come from the app's own pages")
            return
        await self.app(scope, receive, send)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin:
        parts = urlsplit(origin)
        return parts.netloc == request.headers.get("host") and parts.scheme in ("http", "https")
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    if scope["path"].startswith("/api/"):
        response = JSONResponse({"error": message}, status_code=status)
    else:
        response = HTMLResponse(f"<!doctype html><title>ppo</title><p>{message}</p>", status_code=status)
    await response(scope, receive, send)


def create_app(state: AppState) -> Starlette:
    routes = [
        Route("/", page("users.html")),
        Route("/u/{name}/rate", page("rate.html")),
        Route("/u/{name}/taste", page("taste.html")),
        Route("/u/{name}/optimize", page("optimize.html")),
        Route("/runs/{run}/compare", page("compare.html")),
        Route("/api/users", list_users, methods=["GET"]),
        Route("/api/users", create_user, methods=["POST"]),
        Route("/api/users/{name}/next", next_images, methods=["GET"]),
        Route("/api/users/{name}/ratings", add_rating, methods=["POST"]),
        Route("/api/users/{name}/ratings/{image}", remove_rating, methods=["DELETE"]),
        Route("/api/users/{name}/train", train, methods=["POST"]),
        Route("/api/users/{name}/models", models, methods=["GET"]),
        Route("/api/users/{name}/runs", start_run, methods=["POST"]),
        Route("/api/users/{name}/runs", list_runs, methods=["GET"]),
        Route("/api/runs/{run}", run_status, methods=["GET"]),
        Route("/api/runs/{run}/resume", resume_run, methods=["POST"]),
        Route("/api/runs/{run}/pairs", run_pairs, methods=["GET"]),
        Route("/api/runs/{run}/pairs/{k}", answer_pair, methods=["POST"]),
        Route("/api/images/{image}", image, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers = {PPOError: ppo_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.ppo = state
    app.add_middleware(Gate, token=state.token)
    return app

