"""Where each iteration's prompts come from: the LLM (with one of the paper's context sets), the LLM
as the crossover and mutation operator of an evolutionary search (``EvoProposer``, after EvoPrompt),
or a baseline with the same budget (random keyword additions, the keyword-mask genetic algorithm).
``mix.MixProposer`` fills one pool from all of them.

A proposer sees the run's history and returns the next prompts; everything it depends on is in that
history or derived from ``(seed, iteration)``, so a resumed run continues exactly where it stopped.
It says itself what of the history it needs beyond scores and prompts (``Proposer.needs_images``).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from ppo_client import text
from ppo_client.errors import LLMError
from ppo_client.llm.chat import ChatClient, ChatReply, user_message
from ppo_client.llm.structured import DIALECTS, StructuredChat
from ppo_client.optimize import hygiene, templates
from ppo_client.optimize.config import Context, Optimizer
from ppo_client.optimize.parsing import normalise, parse_prompts, schema_prompts, usable
from ppo_client.optimize.vocabulary import MODIFIERS

logger = logging.getLogger(__name__)

LLM_ATTEMPTS = 2
GA_MAX_KEYWORDS = 15
GA_FLIP_RATE = 0.01
MAX_REPLY_TOKENS = {"diversify": 200, "propose": 200, "evolve": 200, "feedback": 100}
EVO_PARENTS = 4
"""Parents an ``EvoProposer`` request shows, drawn from the best prompts so far by roulette wheel."""
EVO_POOL = 8
"""The roulette wheel spins over this many of the best prompts so far."""
TOKENS_PER_PROMPT = 48
"""Reply budget per prompt asked for, beyond ``MAX_REPLY_TOKENS`` (a 32-word prompt is about 40 tokens)."""
FEEDBACK_CHARS = 1000
"""The LLM's feedback is kept (shown in the report, sent with the next request) up to this length."""
REPLY_CHARS = 16_000
"""Each reply is kept in the run's record (``llm_calls``) up to this length, as clean text with its lines."""


@dataclass(frozen=True)
class ScoredPrompt:
    prompt: str
    score: float
    """Mean of the user's learned scores over the run's seeds."""
    description: str = ""
    """Zero-shot tags of its best image (for text-only feedback)."""
    best_image: object = None
    """PIL image, only kept in memory for vision feedback."""
    proposer: str = ""
    """Which proposer made it (``records.RenderedPrompt.proposer``)."""


@dataclass
class Proposal:
    prompts: list[str]
    llm_calls: list[dict] = field(default_factory=list)
    """Each LLM exchange: purpose, reply (clean text, at most ``REPLY_CHARS``) and its length as sent, seconds."""
    feedback: str = ""
    """The LLM's feedback on the latest images, as clean text (``text.clean``)."""
    sources: list[str] = field(default_factory=list)
    """Where each prompt came from (the LLM proposer only): ``llm``, a reply in the shape asked for
    (a JSON object of prompts); ``repaired``, out of a reply that was not; ``fallback``, a keyword
    edit because the LLM gave too few usable ones."""
    structured: str = ""
    """The structured-output dialect of the last prompt request (``none``: unconstrained)."""
    proposers: list[str] = field(default_factory=list)
    """Which proposer made each prompt, where the optimizer names them (the mix); else the loop
    names them all after the optimizer."""
    pool: dict = field(default_factory=dict)
    """The mix's pool: per proposer its share, the candidates asked of it and made, and any error."""

    def add(self, prompt: str, source: str, proposer: str = "") -> None:
        self.prompts.append(prompt)
        self.sources.append(source)
        self.proposers += [""] * (len(self.prompts) - 1 - len(self.proposers)) + [proposer]

    def keep_only(self, indices: Sequence[int]) -> None:
        """Keep these prompts (in this order), e.g. the ones a screen chose to render."""
        self.prompts = [self.prompts[i] for i in indices]
        self.sources = [self.sources[i] for i in indices] if self.sources else []
        self.proposers = [self.proposers[i] for i in indices] if self.proposers else []

    def named(self, default: str) -> list[str]:
        """Each prompt's proposer: the ones named, else the sources' ``fallback``, else ``default``."""
        out = []
        for i in range(len(self.prompts)):
            name = self.proposers[i] if i < len(self.proposers) else ""
            if not name:
                name = "fallback" if i < len(self.sources) and self.sources[i] == "fallback" else default
            out.append(name)
        return out

    @property
    def from_llm(self) -> int:
        return self.sources.count("llm")

    @property
    def repaired(self) -> int:
        return self.sources.count("repaired")

    @property
    def fallback(self) -> int:
        return self.sources.count("fallback")


Filter = Callable[[list[str]], list[str]]
"""Keeps the prompts that may be rendered (token limit, subject guard)."""


class Proposer(Protocol):
    optimizer: Optimizer
    needs_images: bool
    """Whether ``propose`` reads the best image of each latest prompt (``ScoredPrompt.best_image``);
    the loop loads them only then."""

    def initial(self, prompt: str, n: int, rng: np.random.Generator, seen: set[str], keep: Filter) -> Proposal:
        """Iteration 0: ``n`` new prompts from the user's own (which is rendered beside them)."""

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng: np.random.Generator,
                seen: set[str], keep: Filter) -> Proposal:
        """The next ``n`` prompts, from the history of every iteration so far."""


def with_keywords(base: str, keywords: Sequence[str]) -> str:
    return ", ".join([base, *keywords]) if keywords else base


def mutate(prompt: str, rng: np.random.Generator, count: int | None = None, rules: hygiene.PromptRules | None = None) -> str | None:
    """1-3 keyword edits (add, remove, replace) of a prompt, free of contradictions, within the word
    budget (None where no such edit came out)."""
    return (rules or hygiene.PromptRules.for_prompt(prompt)).edit(prompt, rng, count)


def _take(candidates: Iterator[str], n: int, seen: set[str], keep: Filter, *, limit: int) -> list[str]:
    """Up to ``n`` new prompts from ``candidates`` (at most ``limit`` drawn). Candidates go to ``keep``
    a batch at a time, the batch as large as what is still missing, so the filter's server calls
    do not grow with the number of candidates."""
    taken: list[str] = []
    drawn = 0
    while len(taken) < n and drawn < limit:
        batch: dict[str, str] = {}
        for candidate in candidates:
            drawn += 1
            key = normalise(candidate)
            if key and key not in seen:
                batch.setdefault(key, candidate)
            if len(batch) >= n - len(taken) or drawn >= limit:
                break
        if not batch:
            break
        for candidate in keep(list(batch.values()))[: n - len(taken)]:
            seen.add(normalise(candidate))
            taken.append(candidate)
    return taken


def _mutations(
    pool: Sequence[str], rng, rules: hygiene.PromptRules, count: Callable[[], int | None] = lambda: None,
    ops: Sequence[str] = hygiene.EDITS,
) -> Iterator[str]:
    while True:
        edited = rules.edit(pool[int(rng.integers(len(pool)))], rng, count(), ops=ops)
        yield edited or ""  # no clean edit this time: _take counts it as drawn and goes on


def _fill(
    prompts: list[str], n: int, pools: Sequence[Sequence[str]], seen: set[str], rng, keep: Filter, rules: hygiene.PromptRules,
) -> list[str]:
    """Up to ``n - len(prompts)`` keyword mutations of the first pool, then of the next ones. A later
    pool (the user's own short prompt) rescues a run whose best prompts have grown so long that no
    mutation of them fits the token limit."""
    added: list[str] = []
    for pool in pools:
        if len(prompts) + len(added) >= n:
            break
        added += _take(_mutations(pool, rng, rules), n - len(prompts) - len(added), seen, keep, limit=50 * n)
    return added


def _tidied(prompts: Sequence[str], seen: set[str], rules: hygiene.PromptRules) -> list[str]:
    """The LLM's prompts repaired by ``PromptRules.tidy`` (those it cannot repair dropped), still
    usable (tidying can leave too little: "a, , ," is "a") and new."""
    out, keys = [], set(seen)
    for prompt in prompts:
        tidy = rules.tidy(prompt)
        if tidy is None:
            logger.info("dropped a prompt that contradicts itself: %s", prompt[:80])
            continue
        for kept in usable([tidy], seen=keys):
            keys.add(normalise(kept))
            out.append(kept)
    return out


class RandomProposer:
    """Random modifier additions: the initial prompt plus 1-5 keywords drawn from ``MODIFIERS``
    (one side of each contradiction group, within the word budget)."""

    optimizer = Optimizer.RANDOM
    needs_images = False

    def initial(self, prompt: str, n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        return self._draw(prompt, n, rng, seen, keep)

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        return self._draw(initial, n, rng, seen, keep)

    def _draw(self, prompt, n, rng, seen, keep) -> Proposal:
        candidates = _mutations([prompt], rng, hygiene.PromptRules.for_prompt(prompt), lambda: int(rng.integers(1, 6)), ops=("add",))
        return Proposal(_take(candidates, n, seen, keep, limit=100 * n))


class GeneticProposer:
    """Pavlichenko & Ustalov (2023): genomes are masks over the keyword list (at most 15 set); each
    generation crosses the two best genomes found so far and flips each bit with probability 1%."""

    optimizer = Optimizer.GA
    needs_images = False

    def __init__(self, keywords: Sequence[str] = MODIFIERS) -> None:
        self.keywords = list(keywords)

    def prompt(self, initial: str, mask: np.ndarray) -> str:
        return with_keywords(initial, [k for k, on in zip(self.keywords, mask, strict=True) if on])

    def mask(self, initial: str, prompt: str) -> np.ndarray:
        rest = prompt[len(initial) :].split(", ") if prompt.startswith(initial) else []
        present = {r.strip() for r in rest}
        return np.array([k in present for k in self.keywords])

    def initial(self, prompt: str, n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        def masks():
            while True:
                yield rng.random(len(self.keywords)) < 4 / len(self.keywords)

        return Proposal(_take(self._prompts(prompt, masks(), seen, rng), n, seen, keep, limit=20 * n))

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        everyone = sorted((sp for it in history for sp in it), key=lambda sp: sp.score, reverse=True)
        parents = [self.mask(initial, sp.prompt) for sp in everyone[:2]]
        if len(parents) < 2:
            parents = parents * 2

        def children():
            while True:
                pick = rng.random(len(self.keywords)) < 0.5
                yield np.where(pick, parents[0], parents[1]) ^ (rng.random(len(self.keywords)) < GA_FLIP_RATE)

        return Proposal(_take(self._prompts(initial, children(), seen, rng), n, seen, keep, limit=20 * n))

    def _prompts(self, initial: str, masks: Iterator[np.ndarray], seen: set[str], rng) -> Iterator[str]:
        """Each genome as a prompt, trimmed to ``GA_MAX_KEYWORDS`` and mutated away from known genomes."""
        rules = hygiene.PromptRules.for_prompt(initial)
        for mask in masks:
            mask = mask.copy()
            while mask.sum() > GA_MAX_KEYWORDS:
                mask[rng.choice(np.flatnonzero(mask))] = False
            mask = self._tidy(initial, mask, rng, rules)
            while normalise(self.prompt(initial, mask)) in seen:
                flip = int(rng.integers(len(mask)))
                if mask[flip] or mask.sum() < GA_MAX_KEYWORDS:
                    mask[flip] = not mask[flip]
                    mask = self._tidy(initial, mask, rng, rules)
            yield self.prompt(initial, mask)

    def _tidy(self, initial: str, mask: np.ndarray, rng, rules: hygiene.PromptRules) -> np.ndarray:
        """The genome without contradictions and within the word budget: keywords join in a random
        order, each only if the prompt stays clean, so neither side of a group is favoured."""
        keep = np.zeros_like(mask)
        for i in rng.permutation(np.flatnonzero(mask)):
            trial = keep.copy()
            trial[i] = True
            if not rules.problems(self.prompt(initial, trial)):
                keep = trial
        return keep


class LLMProposer:
    """The paper's optimizer: an LLM rewrites the prompts, seeing what the context set allows."""

    optimizer = Optimizer.LLM

    def __init__(
        self, chat: ChatClient, context: Context | str, *, top_k: int = 20, temperature: float = 1.0, structured: bool = True,
        anchored: bool = False, fill: bool = True,
    ) -> None:
        self.chat, self.context, self.top_k, self.temperature = chat, Context(context), top_k, temperature
        self.fill = fill
        """Fill what the LLM did not give with keyword edits (off in the mix, whose other proposers fill it)."""
        self.needs_images = self.context.images
        self.schema_chat = StructuredChat(chat, DIALECTS if structured else ())
        self.anchored = anchored and structured
        """Each prompt must start with the subject (the user's prompt up to its first comma)."""

    @staticmethod
    def asked(n: int) -> int:
        """How many prompts to ask for when ``n`` are needed: repeats, strays from the subject and
        contradictions are dropped afterwards, so a few more come with each request."""
        return n + max(2, n // 2)

    @staticmethod
    def _record(calls: list[dict], purpose: str, reply: ChatReply, started: float, **more) -> None:
        """One exchange for the run's record: the reply as clean text, bounded, with its lines."""
        calls.append({"purpose": purpose, "reply": text.clean(reply.text, max_chars=REPLY_CHARS, lines=True),
                      "reply_chars": len(reply.text), "seconds": time.perf_counter() - started, "attempts": reply.attempts,
                      "usage": {k: v for k, v in reply.usage.items() if k in ("prompt_tokens", "completion_tokens")
                                and isinstance(v, int)},
                      **more})

    def _ask(self, purpose: str, messages: list[dict], calls: list[dict], temperature: float | None = None) -> str:
        """A free-text answer (the feedback), as clean text of at most ``FEEDBACK_CHARS``."""
        started = time.perf_counter()
        reply = self.chat.complete(
            messages, temperature=self.temperature if temperature is None else temperature, max_tokens=MAX_REPLY_TOKENS[purpose]
        )
        self._record(calls, purpose, reply, started)
        return text.clean(reply.text, max_chars=FEEDBACK_CHARS)

    def _prompts(
        self, purpose: str, request: str, n: int, seen: set[str], keep: Filter, calls: list[dict], rules: hygiene.PromptRules, images=(),
    ) -> Proposal:
        """Up to ``n`` prompts from at most ``LLM_ATTEMPTS`` requests for ``asked(n)`` prompts each,
        constrained to ``templates.prompts_schema`` where the endpoint honours it. A reply in that
        shape (``parsing.schema_prompts``: no more prompts than asked, no hidden characters) gives
        ``llm`` prompts, any other ``repaired`` ones; both are clean text (``parsing.usable``), and at
        most twice the prompts asked for are read from either."""
        anchor = hygiene.split(rules.subject)[0] if self.anchored else None
        if anchor and not templates.anchorable(anchor):
            anchor = None  # a quote or backslash in the subject: the free schema is the safe one
        if anchor:
            request += "\n" + templates.anchored(anchor)
        messages = [{"role": "system", "content": templates.SYSTEM}, user_message(request, images)]
        asked = self.asked(n)
        proposal = Proposal([], calls)
        for _ in range(LLM_ATTEMPTS):
            started = time.perf_counter()
            answer = self.schema_chat.complete(
                messages, name="prompts", schema=templates.prompts_schema(asked, anchor),
                validate=functools.partial(schema_prompts, most=asked),
                temperature=self.temperature, max_tokens=MAX_REPLY_TOKENS[purpose] + TOKENS_PER_PROMPT * asked,
            )
            fits = answer.value is not None
            self._record(calls, purpose, answer.reply, started, structured=answer.dialect, fits_schema=fits)
            proposal.structured = answer.dialect
            # a reply with thousands of prompts costs no more than one asked for
            if answer.value is not None:
                candidates = usable(answer.value, seen=seen, limit=2 * asked)
            else:
                candidates = parse_prompts(answer.reply.text, seen=seen, limit=2 * asked)
            for prompt in keep(_tidied(candidates, seen, rules)):
                if len(proposal.prompts) < n:
                    seen.add(normalise(prompt))
                    proposal.add(prompt, "llm" if fits else "repaired")
            if len(proposal.prompts) >= n:
                break
        return proposal

    def initial(self, prompt: str, n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        rules = hygiene.PromptRules.for_prompt(prompt)
        proposal = self._prompts("diversify", templates.diversify(prompt, self.asked(n)), n, seen, keep, [], rules)
        for edit in _fill(proposal.prompts, n, [[prompt]], seen, rng, keep, rules) if self.fill else ():
            proposal.add(edit, "fallback")
        return proposal

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        calls: list[dict] = []
        latest = list(history[-1])
        images = self.context.images
        feedback = ""
        if self.context.feedback:
            items = [(sp.prompt, sp.score, "" if images else sp.description) for sp in latest]
            messages = [
                {"role": "system", "content": templates.feedback_system()},
                user_message(templates.feedback(items, with_images=images), [sp.best_image for sp in latest] if images else ()),
            ]
            feedback = self._ask("feedback", messages, calls, temperature=0.7)
        if self.context is Context.NONE:
            current = [sp.prompt for sp in latest]
            request = templates.propose(initial, self.asked(n), current=current, history=None, feedback=None, with_images=False)
        else:
            best = {}
            for it in history:
                for sp in it:
                    best[sp.prompt] = sp.score
            ranked = sorted(best.items(), key=lambda item: item[1])[-self.top_k :]  # ascending: best last
            request = templates.propose(initial, self.asked(n), current=[], history=ranked, feedback=feedback, with_images=images)
        rules = hygiene.PromptRules.for_prompt(initial)
        proposal = self._prompts("propose", request, n, seen, keep, calls, rules, [sp.best_image for sp in latest] if images else ())
        leaders = [sp.prompt for sp in sorted(latest, key=lambda sp: sp.score, reverse=True)[:2]]
        pools = [leaders, [initial]] if leaders else [[initial]]
        for edit in _fill(proposal.prompts, n, pools, seen, rng, keep, rules) if self.fill else ():
            proposal.add(edit, "fallback")
        proposal.feedback = feedback
        if proposal.fallback:
            logger.info(
                "the LLM gave %d usable prompts of %d; %d filled in by keyword mutation", n - proposal.fallback, n, proposal.fallback
            )
        return proposal


class EvoProposer(LLMProposer):
    """EvoPrompt's genetic operators with the LLM as the operator: each request shows a few parents
    drawn by roulette wheel from the best prompts so far and asks for children that cross two of
    them over and mutate one phrase. In iteration 0 the user's prompt is the only parent (mutation
    only). Structured output, hygiene and filters as for ``LLMProposer``; no keyword fill."""

    def __init__(self, chat: ChatClient, **kwargs) -> None:
        super().__init__(chat, Context.SCORES_PROMPTS, fill=False, **kwargs)
        self.needs_images = False

    def initial(self, prompt: str, n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        rules = hygiene.PromptRules.for_prompt(prompt)
        return self._prompts("evolve", templates.evolve(prompt, [(prompt, None)], self.asked(n)), n, seen, keep, [], rules)

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        parents = roulette(history, rng)
        rules = hygiene.PromptRules.for_prompt(initial)
        return self._prompts("evolve", templates.evolve(initial, parents, self.asked(n)), n, seen, keep, [], rules)


def roulette(history: Sequence[Sequence[ScoredPrompt]], rng, count: int = EVO_PARENTS, pool: int = EVO_POOL) -> list[tuple[str, float]]:
    """Up to ``count`` distinct parents from the ``pool`` best prompts so far, drawn with probability
    rising with the score (the worst of the pool gets a small chance), best last."""
    best: dict[str, float] = {}
    for it in history:
        for sp in it:
            best[sp.prompt] = max(sp.score, best.get(sp.prompt, -np.inf))
    ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)[:pool]
    if len(ranked) <= count:
        return ranked[::-1]
    scores = np.array([s for _, s in ranked])
    weights = scores - scores.min() + 0.1 * (np.ptp(scores) or 1.0)
    picked = rng.choice(len(ranked), size=count, replace=False, p=weights / weights.sum())
    return sorted((ranked[i] for i in picked), key=lambda item: item[1])


def make_proposer(optimizer: Optimizer | str, context: Context | str, chat: ChatClient | None, **kwargs) -> Proposer:
    optimizer = Optimizer(optimizer)
    if optimizer is Optimizer.RANDOM:
        return RandomProposer()
    if optimizer is Optimizer.GA:
        return GeneticProposer()
    if optimizer is Optimizer.MIX:
        raise ValueError("the mix is not a single proposer: make it with mix.make_proposer")
    if chat is None:
        raise LLMError("the llm optimizer needs a chat endpoint")
    return LLMProposer(chat, context, **kwargs)
