"""Getting prompts out of an LLM reply, whatever shape it came in.

Tried in order: a JSON list (or an object with a list value) anywhere in the reply, then quoted
strings, then non-empty lines with list markers removed. Every candidate, whichever way it was found
(a reply in the schema's shape included), goes through ``usable``: made clean text (``text.clean``:
no escape sequences, control or bidi characters, one space between words, bounded), then
de-duplicated case-insensitively; ones seen before, chatter ("Here are ..."), echoed field names and
single words are dropped. Parsing never raises: a reply with nothing usable gives no prompts.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

from ppo_client import text

MIN_CHARS, MAX_CHARS = 3, 400
"""Bounds of a usable prompt, in characters of its clean text."""
READ_PER_PROMPT = 50
"""With a ``limit``, ``usable`` reads at most this many candidates per prompt wanted, so a reply of a
million one-word lines costs no more than a short one."""
MIN_WORDS = 2
"""Single words are almost always a small model echoing a template's field names ("prompt1")."""
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.):]|\[\d+\]|(?:prompt|answer|a)\s*\d*\s*:|prompt\s*\d*\s*[.-])\s*", re.IGNORECASE)
_GIBBERISH = re.compile(r"\b(?=\w*\d)(?=\w*[a-z])\w{12,}\b", re.IGNORECASE)
"""Long letter-digit runs ("maxi2cbe5eab9fefddeb"): token soup from a small model, not words."""
_PLACEHOLDER = re.compile(r"^(prompt|score|response|name|title|answer|output|example|image|feedback)\s*\d*$", re.IGNORECASE)
_CHATTER = re.compile(r"^(here (are|is)|sure|certainly|okay|ok[,!. ]|i (can|will|hope)|these prompts|note:)", re.IGNORECASE)


def normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split()).strip(" .,;")


def _json_candidates(reply: str) -> list[str]:
    for start_char, end_char in (("[", "]"), ("{", "}")):
        start = reply.find(start_char)
        end = reply.rfind(end_char)
        if start == -1 or end <= start:
            continue
        try:
            value = json.loads(reply[start : end + 1])
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
            continue
        if isinstance(value, dict):
            value = next((v for v in value.values() if isinstance(v, list)), [])
        items = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict):
                item = item.get("prompt") or next((v for v in item.values() if isinstance(v, str)), "")
            if isinstance(item, str):
                items.append(item)
        if items:
            return items
    return []


def _clean(candidate: str) -> str:
    """The candidate as clean text without list markers and quotes around it."""
    candidate = text.clean(candidate, max_chars=4 * MAX_CHARS)  # bounded before the markers are peeled off
    previous = None
    while previous != candidate:  # "- 2. Prompt 2: ..." carries several markers
        previous, candidate = candidate, _MARKER.sub("", candidate.strip())
    return text.clean(candidate.strip('"“”\'` '))


def schema_prompts(value: object, most: int | None = None) -> list[str] | None:
    """The prompts of a reply shaped as ``templates.prompts_schema`` asks, or None if it is not.

    ``most`` is the schema's ``maxItems``: a reply with more prompts than that is out of shape
    however many of them are usable, and so is one whose prompts hold characters the schema's
    pattern never allows and ``text.clean`` removes (controls, bidi and other format characters):
    either means the endpoint ignored the constraint."""
    if not isinstance(value, dict) or set(value) != {"prompts"} or not isinstance(value["prompts"], list):
        return None
    items = value["prompts"]
    if not items or (most is not None and len(items) > most):
        return None
    return items if all(isinstance(item, str) and not text.hidden(item) for item in items) else None


def parse_prompts(reply: str, *, seen: Iterable[str] = (), limit: int | None = None) -> list[str]:
    """Usable, new, distinct prompts in the reply's order (possibly none; at most ``limit``)."""
    candidates = _json_candidates(reply)
    if not candidates:
        quoted = re.findall(r'"([^"\n]{3,})"|“([^”\n]{3,})”', reply)
        candidates = [a or b for a, b in quoted]
    if not candidates:
        candidates = [line for line in reply.splitlines() if line.strip()]
    return usable(candidates, seen=seen, limit=limit)


def usable(candidates: Iterable[str], *, seen: Iterable[str] = (), limit: int | None = None) -> list[str]:
    """The candidates as clean text (``text.clean``), without chatter, placeholders, token soup,
    repeats and known ones; at most ``limit`` of them, from at most ``READ_PER_PROMPT * limit``
    candidates read."""
    known = {normalise(s) for s in seen}
    prompts: list[str] = []
    for read, candidate in enumerate(candidates):
        if limit is not None and (len(prompts) >= limit or read >= READ_PER_PROMPT * limit):
            break
        prompt = _clean(candidate)
        key = normalise(prompt)
        if not (MIN_CHARS <= len(prompt) <= MAX_CHARS) or _CHATTER.match(prompt) or key in known:
            continue
        if prompt.endswith(":") or _PLACEHOLDER.match(prompt) or len(prompt.split()) < MIN_WORDS or _GIBBERISH.search(prompt):
            continue
        known.add(key)
        prompts.append(prompt)
    return prompts
