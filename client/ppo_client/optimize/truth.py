"""Known true taste: where a user's real preferences are known (the demo world's virtual users), a
run also records what that taste makes of every image it renders (``true_score``), which is how
optimizers are compared against ground truth rather than against the learned scorer they chase.

The SDK defines only the hook. A provider is registered as an entry point of the group ``GROUP``
(the demo world registers ``ppo_demo.truth:PROVIDER``); the run folder keeps the provider's name and
its spec, so a resumed run gets the same judge back without the store.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Callable, Protocol, Sequence

logger = logging.getLogger(__name__)

GROUP = "ppo_t2i.truth"
Judge = Callable[[object], float]
"""One image (PIL or RGB array) -> its true score on the 1-10 scale."""


class TruthProvider(Protocol):
    name: str

    def spec(self, store, users: Sequence[str]) -> dict | None:
        """What the run keeps to rebuild the judge of these users' (mean) taste; None if unknown."""

    def judge(self, spec: dict) -> Judge:
        ...


def providers() -> dict[str, TruthProvider]:
    found = {}
    for point in entry_points(group=GROUP):
        try:
            provider = point.load()
        except Exception as exc:  # a broken plugin must not stop a run; it only loses its truth
            logger.warning("true-taste provider %s could not be loaded: %s", point.value, exc)
            continue
        found[provider.name] = provider
    return found


def find(store, users: Sequence[str]) -> dict | None:
    """``{"provider": name, "spec": ...}`` from the first provider that knows these users' taste."""
    for name, provider in providers().items():
        spec = provider.spec(store, users)
        if spec is not None:
            return {"provider": name, "spec": spec}
    return None


def judge(truth: dict | None) -> Judge | None:
    """The judge a run's stored truth names; None where there is none or its provider is missing."""
    if not truth:
        return None
    provider = providers().get(truth.get("provider", ""))
    if provider is None:
        logger.warning("the run's true taste comes from %r, which is not installed: true scores are not recorded",
                       truth.get("provider"))
        return None
    return provider.judge(truth["spec"])
