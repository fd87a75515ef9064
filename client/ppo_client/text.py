"""Text from outside the program, made fit to show, store and render: one function, ``clean``.

An LLM's reply (and an endpoint's error message) may carry terminal escape sequences, NUL and BEL,
Unicode bidi overrides and isolates, zero-width and tag characters, lone surrogates (a JSON string
may spell ``"\\ud800"``) and any amount of text. ``clean`` makes of it the text that is kept, and the
same text wherever it goes: a rendered prompt, ``iterations.jsonl``, ``report.html``, a terminal.

- escape sequences (``ESC [ ... m``, ``ESC ] ... BEL``, their 8-bit forms) go whole, not just their
  ``ESC``, so no ``[31m`` is left behind;
- every other character Python does not print goes: the C0 and C1 controls and DEL (``Cc``), format
  characters (``Cf``: bidi controls, zero-width joiners and spaces, soft hyphens, tags), surrogates
  (``Cs``), private-use (``Co``) and unassigned (``Cn``) code points. The zero-width joiner goes too:
  it is invisible, so two prompts that look the same would differ, and a text-to-image model reads
  nothing from it;
- whitespace of any kind becomes one space between words (``lines``: one line break between lines);
- the result is NFC-normalised and at most ``max_chars`` code points.

``clean(clean(t)) == clean(t)``: clean text passes unchanged.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 2000
"""Default bound: well above a prompt (``optimize.parsing.MAX_CHARS``), well below a flood."""

_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS ... strings: titles, hyperlinks
    r"|\x1b[ -/]*[0-~]"  # the other escapes, two or three characters
)


def hidden(text: str) -> bool:
    """Whether ``clean`` would remove characters from the text (not counting whitespace it collapses)."""
    return not text.isprintable() and any(not (ch.isprintable() or ch.isspace()) for ch in text)


def clean(text: str, *, max_chars: int = MAX_CHARS, lines: bool = False) -> str:
    """The text without escape sequences and unprintable characters, its whitespace collapsed (with
    ``lines``, line breaks kept and empty lines dropped), NFC-normalised, at most ``max_chars`` long
    (cut, with no space left at either end)."""
    if "\x1b" in text or not text.isascii():
        text = _ESCAPE.sub("", text)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    if lines:
        text = "\n".join(line for line in (" ".join(line.split()) for line in text.splitlines()) if line)
    else:
        text = " ".join(text.split())
    return _fit(text, max_chars)


def _fit(text: str, max_chars: int) -> str:
    """NFC, at most ``max_chars``, no space or line break at either end, and NFC again after the cut
    (a cut can leave a mark that composes with nothing, or break a pair a second pass would compose)."""
    while True:
        text = unicodedata.normalize("NFC", text)[:max_chars].strip(" \n")
        if unicodedata.is_normalized("NFC", text):
            return text
