"""``--optimizer mix``: one candidate pool per iteration, filled by several proposers at once, each
with a share of the pool that follows how its past prompts scored.

Proposers: ``llm`` (the paper's rewrites with the run's context), ``evo`` (the LLM crossing over and
mutating good parents, EvoPrompt-style), ``ga`` (the keyword-mask genetic algorithm) and ``random``
(random keywords). The screen then chooses what to render from the whole pool, so the pool only
has to hold good candidates, not decide among them.

The shares are a bandit over proposers. Every rendered prompt is scored against what the run had
rendered before it (``(score - mean) / sd`` of the earlier iterations' prompts; in iteration 0,
against the user's own prompt), and a proposer's estimate is the discounted mean of its prompts'
rewards, shrunk towards 0 by ``PRIOR`` pseudo-observations. Shares are a softmax of the estimates
at ``TEMPERATURE``, with ``FLOOR`` of the pool spread evenly so every proposer keeps being tried.
Everything is computed from the run's history (which prompt came from which proposer, and its
score), so a resumed run has the shares it had.

A proposer that fails (an LLM endpoint that times out, errors, or gives nothing usable) leaves its
slots to the others (the GA, then random keywords), the pool stays full, and the record says why;
after consecutive failures it is only asked every 2nd, 4th, then 8th iteration.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ppo_client.errors import LLMError
from ppo_client.optimize import proposers as single
from ppo_client.optimize.config import Context, Optimizer
from ppo_client.optimize.proposers import (
    EvoProposer,
    Filter,
    GeneticProposer,
    LLMProposer,
    Proposal,
    Proposer,
    RandomProposer,
    ScoredPrompt,
)

logger = logging.getLogger(__name__)

PRIOR = 2.0
"""Pseudo-observations at reward 0 in each proposer's estimate."""
DISCOUNT = 0.8
"""Weight of an iteration's rewards per iteration of age: a proposer that stalls loses its share."""
TEMPERATURE = 0.5
FLOOR = 0.2
"""Part of the pool spread evenly over the proposers, whatever their estimates."""
FILLERS = ("ga", "random")
"""Who fills the slots a failed proposer left, in this order (they cannot fail)."""


def rewards(history: Sequence[Sequence[ScoredPrompt]], names: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Each proposer's ``(iteration, reward)`` per rendered prompt (see the module's docstring)."""
    out: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    for k, iteration in enumerate(history):
        if k == 0:
            earlier = [sp.score for sp in iteration if not sp.proposer] or [sp.score for sp in iteration]
            spread = [sp.score for sp in iteration]
        else:
            earlier = spread = [sp.score for it in history[:k] for sp in it]
        centre, scale = float(np.mean(earlier)), float(np.std(spread)) or 1.0
        for sp in iteration:
            if sp.proposer in out:
                out[sp.proposer].append((k, (sp.score - centre) / scale))
    return out


def estimates(history: Sequence[Sequence[ScoredPrompt]], names: Sequence[str]) -> dict[str, float]:
    now = len(history)
    out = {}
    for name, items in rewards(history, names).items():
        weights = np.array([DISCOUNT ** (now - 1 - k) for k, _ in items])
        values = np.array([r for _, r in items])
        out[name] = float(weights @ values / (weights.sum() + PRIOR)) if items else 0.0
    return out


def shares(history: Sequence[Sequence[ScoredPrompt]], names: Sequence[str]) -> dict[str, float]:
    """Each proposer's share of the next pool."""
    values = np.array([estimates(history, names)[name] for name in names]) / TEMPERATURE
    soft = np.exp(values - values.max())
    soft /= soft.sum()
    return {name: float((1 - FLOOR) * p + FLOOR / len(names)) for name, p in zip(names, soft, strict=True)}


def allocate(share: dict[str, float], total: int) -> dict[str, int]:
    """Whole slots in proportion to the shares (largest remainder), at least one each where the pool
    has room for everyone."""
    names = list(share)
    minimum = 1 if total >= len(names) else 0
    rest = total - minimum * len(names)
    raw = {name: share[name] * rest for name in names}
    counts = {name: minimum + int(np.floor(raw[name])) for name in names}
    left = total - sum(counts.values())
    for name in sorted(names, key=lambda name: raw[name] - np.floor(raw[name]), reverse=True)[:left]:
        counts[name] += 1
    return counts


class MixProposer:
    """The pool of several proposers (see the module's docstring)."""

    optimizer = Optimizer.MIX
    needs_images = False

    def __init__(self, proposers: dict[str, Proposer]) -> None:
        self.proposers = proposers
        self.needs_images = any(getattr(p, "needs_images", False) for p in proposers.values())
        self._failures: dict[str, int] = {name: 0 for name in proposers}

    @classmethod
    def standard(cls, chat, context: Context | str, **llm_options) -> MixProposer:
        """The LLM, its evolutionary operators, the GA and random keywords; without a chat endpoint
        the last two only."""
        proposers: dict[str, Proposer] = {}
        if chat is not None:
            proposers["llm"] = LLMProposer(chat, context, fill=False, **llm_options)
            proposers["evo"] = EvoProposer(chat, **{k: v for k, v in llm_options.items() if k != "top_k"})
        proposers["ga"] = GeneticProposer()
        proposers["random"] = RandomProposer()
        return cls(proposers)

    def initial(self, prompt: str, n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        return self._pool(lambda p, count: p.initial(prompt, count, rng, seen, keep), [], n)

    def propose(self, initial: str, history: Sequence[Sequence[ScoredPrompt]], n: int, rng, seen: set[str], keep: Filter) -> Proposal:
        return self._pool(lambda p, count: p.propose(initial, history, count, rng, seen, keep), history, n)

    def _skipped(self, name: str, iteration: int) -> bool:
        failures = self._failures[name]
        return failures > 0 and iteration % (2 ** min(failures, 3)) != 0

    def _pool(self, ask, history, n: int) -> Proposal:
        names = list(self.proposers)
        share = shares(history, names)
        counts = allocate(share, n)
        iteration = len(history)
        pool = Proposal([])
        stats = {name: {"share": round(share[name], 4), "asked": counts[name], "candidates": 0, "error": ""} for name in names}
        for name in names:
            if not counts[name]:
                continue
            if self._skipped(name, iteration):
                stats[name]["error"] = f"skipped: failed the last {self._failures[name]} time(s)"
                continue
            self._add(pool, name, ask, counts[name], stats)
        for name in FILLERS:  # slots a failed or short proposer left
            missing = n - len(pool.prompts)
            if missing > 0 and name in self.proposers:
                self._add(pool, name, ask, missing, stats, filling=True)
        pool.pool = stats
        return pool

    def _add(self, pool: Proposal, name: str, ask, count: int, stats: dict, *, filling: bool = False) -> None:
        try:
            got = ask(self.proposers[name], count)
        except LLMError as exc:
            self._failures[name] += 1
            stats[name]["error"] = str(exc)[:300]
            logger.warning("the %s proposer failed (%s); the other proposers fill its %d slots", name, exc, count)
            return
        if not filling and isinstance(self.proposers[name], LLMProposer):
            self._failures[name] = 0 if got.prompts else self._failures[name] + 1
            if not got.prompts:
                stats[name]["error"] = "no usable prompt in its replies"
        pool.llm_calls += got.llm_calls
        if got.structured:
            pool.structured = got.structured
        sources = got.sources or [name] * len(got.prompts)
        for prompt, source in zip(got.prompts, sources, strict=True):  # a proposer's sources: none or one per prompt
            pool.add(prompt, source, name)
        stats[name]["candidates"] += len(got.prompts)


def make_proposer(optimizer: Optimizer | str, context: Context | str, chat, **llm_options) -> Proposer:
    """The run's proposer: the mix, or one of ``proposers.make_proposer``'s."""
    if Optimizer(optimizer) is Optimizer.MIX:
        return MixProposer.standard(chat, context, **llm_options)
    return single.make_proposer(optimizer, context, chat, **llm_options)
