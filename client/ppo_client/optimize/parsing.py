"""Getting prompts out of an LLM reply, whatever shape it came in.

Tried in order: a JSON list (or an object with a list value) anywhere in the reply, then quoted
strings, then non-empty lines with list markers removed. Prompts are cleaned and de-duplicated
case-insensitively; ones seen before, chatter ("Here are ..."), echoed field names and single words
are dropped.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

MIN_CHARS, MAX_CHARS = 3, 400
MIN_WORDS = 2
"""Single words are almost always a small model echoing a template's field names ("prompt1")."""
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.):]|\[\d+\]|(?:prompt|answer|a)\s*\d*\s*:|prompt\s*\d*\s*[.-])\s*", re.IGNORECASE)
_GIBBERISH = re.compile(r"\b(?=\w*\d)(?=\w*[a-z])\w{12,}\b", re.IGNORECASE)
"""Long letter-digit runs ("maxi2cbe5eab9fefddeb"): token soup from a small model, not words."""
_PLACEHOLDER = re.compile(r"^(prompt|score|response|name|title|answer|output|example|image|feedback)\s*\d*$", re.IGNORECASE)
_CHATTER = re.compile(r"^(here (are|is)|sure|certainly|okay|ok[,!. ]|i (can|will|hope)|these prompts|note:)", re.IGNORECASE)


def normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split()).strip(" .,;")


def _json_candidates(text: str) -> list[str]:
    for start_char, end_char in (("[", "]"), ("{", "}")):
        start = text.find(start_char)
        end = text.rfind(end_char)
        if start == -1 or end <= start:
            continue
        try:
            value = json.loads(text[start : end + 1])
        except ValueError:
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
    previous = None
    while previous != candidate:  # "- 2. Prompt 2: ..." carries several markers
        previous, candidate = candidate, _MARKER.sub("", candidate.strip())
    candidate = candidate.strip().strip('"“”\'`').strip()
    return " ".join(candidate.split())


def schema_prompts(value: object) -> list[str] | None:
    """The prompts of a reply shaped as ``templates.prompts_schema`` asks, or None if it is not."""
    if not isinstance(value, dict) or set(value) != {"prompts"} or not isinstance(value["prompts"], list):
        return None
    items = value["prompts"]
    return items if items and all(isinstance(item, str) for item in items) else None


def parse_prompts(reply: str, *, seen: Iterable[str] = ()) -> list[str]:
    """Usable, new, distinct prompts in the reply's order (possibly none)."""
    candidates = _json_candidates(reply)
    if not candidates:
        candidates = re.findall(r'"([^"\n]{3,})"|“([^”\n]{3,})”', reply)
        candidates = [a or b for a, b in candidates]
    if not candidates:
        candidates = [line for line in reply.splitlines() if line.strip()]
    return usable(candidates, seen=seen)


def usable(candidates: Iterable[str], *, seen: Iterable[str] = ()) -> list[str]:
    """The candidates cleaned, without chatter, placeholders, token soup, repeats and known ones."""
    known = {normalise(s) for s in seen}
    prompts = []
    for candidate in candidates:
        prompt = _clean(candidate)
        key = normalise(prompt)
        if not (MIN_CHARS <= len(prompt) <= MAX_CHARS) or _CHATTER.match(prompt) or key in known:
            continue
        if prompt.endswith(":") or _PLACEHOLDER.match(prompt) or len(prompt.split()) < MIN_WORDS or _GIBBERISH.search(prompt):
            continue
        known.add(key)
        prompts.append(prompt)
    return prompts
