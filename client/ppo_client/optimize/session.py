"""Putting a run together: the user's scorer from the store, the LLM endpoint, the served models.

Used by ``ppo-client optimize``, ``ppo-client experiment`` and the app; everything here is also
usable from Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ppo_client.errors import InvalidRequestError, OptimizationError, StoreError
from ppo_client.head import PreferenceHead
from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.llm.embedded import MODEL_NAME, EmbeddedLLMServer
from ppo_client.optimize import metrics, report, truth
from ppo_client.optimize.config import Context, RunConfig, SubjectAnchor
from ppo_client.optimize.folder import SUMMARY, RunInfo, RunState, create_run, load_run, write_json
from ppo_client.optimize.guard import prompt_filter
from ppo_client.optimize.loop import run_iterations
from ppo_client.optimize.mix import make_proposer
from ppo_client.optimize.records import IterationRecord
from ppo_client.optimize.renderer import Renderer
from ppo_client.optimize.screen import Screener
from ppo_client.optimize.truth import Judge
from ppo_client.piaa.methods import MethodConfig, fit_general
from ppo_client.piaa.training import user_task
from ppo_client.store import GENERAL_USER, UserStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scorer:
    head: PreferenceHead
    model: str
    """What the head is: ``user:alice model 3 (bayes)`` or ``general``."""
    truth: dict | None
    """Known true taste behind the scorer (``truth.find``): its judge scores every rendered image."""
    reference_embeddings: np.ndarray
    reference_ratings: np.ndarray

    @property
    def judge(self) -> Judge | None:
        return truth.judge(self.truth)


def user_scorer(store: UserStore, client, user: str, *, method: str | None = None) -> Scorer:
    if user == GENERAL_USER:
        return general_scorer(store, client)
    model = store.latest_model(user, method)
    encoder = client.encoder_info()
    if model.encoder != encoder.encoder_id:
        raise StoreError(
            f"{user}'s model {model.id} was trained on encoder {model.encoder}, but the server runs "
            f"{encoder.encoder_id}; retrain it with `ppo-client user train {user}`"
        )
    task = user_task(client, store, user)
    return Scorer(model.head, f"user:{user} model {model.id} ({model.method})", truth.find(store, [user]),
                  task.x.astype(np.float32), task.y)


def general_scorer(store: UserStore, client) -> Scorer:
    """A general head fitted on every stored user's ratings; its judge is the crowd's mean true taste."""
    users = [u.name for u in store.users() if u.ratings]
    if len(users) < 2:
        raise StoreError("the general scorer is fitted on every user in the store; it holds fewer than two with ratings")
    tasks = [user_task(client, store, u) for u in users]
    theta = fit_general(tasks, MethodConfig().general_ridge)
    head = PreferenceHead.linear(theta[:-1], float(theta[-1]), method="general", users=len(users))
    return Scorer(head, f"general ({len(users)} users)", truth.find(store, users), np.zeros((0, head.dim), np.float32),
                  np.zeros(0))


@contextlib.contextmanager
def chat_endpoint(config: ChatConfig, *, needed: bool = True) -> Iterator[ChatClient | None]:
    """The configured endpoint, or the embedded local LLM started for the duration and watched (a
    call made after it died fails at once, saying how it ended); None when the runs at hand need no
    LLM, so none is started."""
    if not needed:
        yield None
        return
    if not config.embedded:
        with ChatClient(config) as chat:
            yield chat
        return

    with EmbeddedLLMServer() as server:
        local = dataclasses.replace(config, base_url=server.base_url, model=MODEL_NAME)
        with ChatClient(local, health=server.check) as chat:
            yield chat


def check_context(context: Context | str, chat_config: ChatConfig, *, text_fallback: bool) -> Context:
    """The context a run can have with this endpoint: images need a vision model."""
    context = Context(context)
    if not context.images or (chat_config.vision and not chat_config.embedded):
        return context
    if not text_fallback:
        raise InvalidRequestError(
            "context", "s+p+f+I sends images, but this LLM endpoint is text-only (pass --vision for a vision model, "
            "or --text-fallback to run s+p+f instead)"
        )
    logger.warning("the LLM endpoint is text-only: running s+p+f instead of s+p+f+I")
    return Context.FEEDBACK


class _Summary:
    """Rewrites summary.json and report.html; the reference ratings are read once."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.reference = state.reference()

    def write(self) -> dict:
        state = self.state
        summary = metrics.summarize(state.records, *self.reference, state.config.high_rating_quantile)
        write_json(state.folder / SUMMARY, summary)
        report.write_report(state.folder, state.config.to_dict(), state.records, summary)
        return summary


def execute(state: RunState, client, chat: ChatClient | None,
            on_iteration: Callable[[IterationRecord], None] = lambda r: None) -> dict:
    """Run what is left of ``state``, then release the run folder. The summary and report are
    rewritten after every finished iteration, so a run stopped early (Ctrl-C, a server or LLM
    failure) leaves them up to date."""
    try:
        c = state.config
        keep = prompt_filter(client, c.prompt, client.encoder_info().max_tokens, c.subject_guard)
        proposer = make_proposer(
            c.optimizer, c.context, chat, top_k=c.top_k, structured=c.structured_output,
            anchored=c.subject_anchor is SubjectAnchor.ON,
        )
        renderer = Renderer(client, c, state.head, truth.judge(state.info.truth))
        summary = _Summary(state)

        def after(record: IterationRecord) -> None:
            summary.write()
            on_iteration(record)

        try:
            screener = Screener(client, state.head, c.screen, c.exploration) if c.screen > 1 else None
            run_iterations(state, proposer, renderer, keep, on_iteration=after, screener=screener)
        finally:
            renderer.close()
        return summary.write()
    finally:
        state.close()


def needs_llm(state: RunState) -> bool:
    return state.config.optimizer.uses_llm and not state.done


def new_run(folder: Path, config: RunConfig, scorer: Scorer, client, chat_config: ChatConfig) -> RunState:
    config = config.checked()
    if config.subject_anchor is SubjectAnchor.AUTO:  # decided once, kept in the run's config for a resume
        anchor = SubjectAnchor.ON if chat_config.embedded else SubjectAnchor.OFF
        config = dataclasses.replace(config, subject_anchor=anchor)
    encoder = client.encoder_info()
    if scorer.head.dim != encoder.dim:
        raise OptimizationError(f"the scorer expects {scorer.head.dim}-d embeddings; the server's encoder gives {encoder.dim}")
    info = RunInfo(
        scorer=scorer.model,
        encoder=encoder.encoder_id,
        llm={"embedded": True} if chat_config.embedded else {"base_url": chat_config.base_url, "model": chat_config.model},
        truth=scorer.truth,
    )
    return create_run(folder, config, scorer.head, info, (scorer.reference_embeddings, scorer.reference_ratings))


def resume_run(folder: Path) -> RunState:
    """The run's state (its judge is the truth saved with it); no store needed."""
    return load_run(folder)
