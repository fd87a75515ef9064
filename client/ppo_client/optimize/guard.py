"""Which proposed prompts may be rendered: within the text encoder's token limit and, with a subject
guard, close enough in CLIP text space to the user's prompt that they still ask for its subject."""

from __future__ import annotations

import logging

from ppo_client.optimize.proposers import Filter

logger = logging.getLogger(__name__)


def prompt_filter(client, initial: str, max_tokens: int, guard: float) -> Filter:
    """Keeps prompts within ``max_tokens`` and (with ``guard`` > 0) at a cosine similarity of at
    least ``guard`` to ``initial``'s text embedding."""
    reference = client.embed_texts([initial]).embeddings[0]

    def keep(prompts: list[str]) -> list[str]:
        if not prompts:
            return []
        texts = client.embed_texts(prompts)
        kept = []
        for prompt, embedding, tokens in zip(prompts, texts.embeddings, texts.tokens, strict=True):
            similarity = float(embedding @ reference)
            if tokens > max_tokens:
                logger.info("dropped a prompt of %d tokens (limit %d): %s", tokens, max_tokens, prompt[:80])
            elif guard and similarity < guard:
                logger.info("dropped a prompt that strays from the subject (similarity %.2f): %s", similarity, prompt[:80])
            else:
                kept.append(prompt)
        return kept

    return keep
