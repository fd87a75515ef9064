"""What the store keeps and hands out, as frozen records, and the checks every input passes before
any write: one place for the rules that hold whichever database holds the store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ppo_client import text
from ppo_client.errors import DataError, StoreError
from ppo_client.head import PreferenceHead

CHOICE_OUTCOMES = ("chosen", "none", "same")
"""``chosen``: one shown image was picked; ``none``: none of them; ``same``: no preference."""
MIN_SHOWN, MAX_SHOWN = 2, 4
"""How many distinct images one choice shows."""
MAX_DESCRIPTION_CHARS = 1000
MAX_NAME_LENGTH = 64
GENERAL_USER = "general"
"""Not a user: ``optimize --user general`` means the crowd's taste, so no user may take the name."""
IMAGE_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RatingRow:
    """One rating to import; ``where`` names its origin in errors (``ratings.csv row 3``)."""

    where: str
    path: Path
    rating: object


@dataclass(frozen=True)
class Rating:
    image_hash: str
    rating: float
    source: str


@dataclass(frozen=True)
class StoredImage:
    """An image's bytes as they were imported, and its format (``png``, ``jpeg`` ...)."""

    image_hash: str
    data: bytes
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class StoredModel:
    id: int
    user: str
    method: str
    encoder: str
    head: PreferenceHead
    params: dict
    metrics: dict
    created: float
    covariance: np.ndarray | None = None
    """[D + 1, D + 1] float32 posterior covariance of a linear head (weights, then bias), where the
    method that trained it keeps one (``bayes``)."""


@dataclass(frozen=True)
class PoolImage:
    """An image kept for rating though nobody may have rated it yet (a starter-gallery render, a
    person's own picture, a run's image)."""

    image_hash: str
    origin: str
    """``gallery``, ``folder`` or ``run``."""
    label: str
    """What it is: the prompt that rendered it, or the file it came from."""


@dataclass(frozen=True)
class PoolEntry:
    data: bytes
    origin: str
    label: str


@dataclass(frozen=True)
class Comparison:
    left_hash: str
    right_hash: str
    choice: str
    context: str


@dataclass(frozen=True)
class Choice:
    """One choice among the images ``shown`` (content hashes, in the order shown)."""

    id: int
    shown: tuple[str, ...]
    chosen: str | None
    """The hash picked; None when the outcome is ``none`` or ``same``."""
    outcome: str
    """One of ``CHOICE_OUTCOMES``."""
    source: str
    created: float


@dataclass(frozen=True)
class ChoiceRow:
    """One choice to import; ``where`` names its origin in errors (``choices.csv row 3``)."""

    where: str
    shown: tuple[Path, ...]
    chosen: int | None
    """Index into ``shown``; None for "none of them"."""


@dataclass(frozen=True)
class Description:
    version: int
    text: str
    created: float


@dataclass(frozen=True)
class UserSummary:
    name: str
    created: float
    ratings: int
    models: int
    choices: int
    description_version: int
    """0: no description yet."""


@dataclass(frozen=True)
class StoreCheck:
    """What ``UserStore.check`` found."""

    location: str
    schema_version: int
    integrity: tuple[str, ...]
    """The database's own integrity check (SQLite's ``quick_check``; foreign keys on both): empty when sound."""
    missing: tuple[str, ...]
    """Hashes of images that rows refer to but whose bytes are not in the store (a store upgraded from
    an image folder that had lost them): no repair brings them back; import those images again."""
    damaged: tuple[str, ...]
    """Hashes of images whose stored bytes no longer hash to their name."""
    unreferenced: tuple[str, ...]
    """Images no rating, choice, comparison or pool entry refers to (left by an undo). Removed by a repair."""
    unreferenced_bytes: int
    repaired: bool

    @property
    def problems(self) -> list[str]:
        """One line per problem, for people and logs."""
        lines = [f"integrity: {line}" for line in self.integrity]
        lines += [f"image {h} is referred to but its bytes are not in the store; import it again" for h in self.missing]
        lines += [f"image {h}: its stored bytes do not match its hash" for h in self.damaged]
        if not self.repaired:
            lines += [f"image {h} is referred to by nothing (repair removes it)" for h in self.unreferenced]
        return lines

    @property
    def clean(self) -> bool:
        return not self.problems


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise StoreError(f"a user name is text, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"user name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    if re.search(r"[/\\\s]", name.replace(" ", "")) or text.hidden(name) or name in (".", ".."):
        raise StoreError(f"user name {name!r} contains a path separator, a line break or tab, or a control or format character")
    return name


def checked_choice(where: str, shown: Sequence, chosen, outcome: str | None, *, by_index: bool = False) -> str:
    """The outcome of a choice whose ``shown`` are hashes and ``chosen`` one of them (``by_index``:
    paths, and an index into them), or None; raises ``DataError`` starting with ``where``."""
    if isinstance(shown, (str, bytes)) or not MIN_SHOWN <= len(shown) <= MAX_SHOWN:
        count = "text" if isinstance(shown, (str, bytes)) else f"{len(shown)} images"
        raise DataError(f"{where}: a choice shows {MIN_SHOWN} to {MAX_SHOWN} images, got {count}")
    if outcome is None:
        outcome = "none" if chosen is None else "chosen"
    if outcome not in CHOICE_OUTCOMES:
        raise DataError(f"{where}: outcome must be one of {', '.join(CHOICE_OUTCOMES)}, got {str(outcome)[:40]!r}")
    if (outcome == "chosen") != (chosen is not None):
        raise DataError(f"{where}: outcome {outcome!r} " + ("needs the image chosen" if outcome == "chosen" else "has no image chosen"))
    if chosen is None:
        return outcome
    if by_index:
        if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(shown):
            raise DataError(f"{where}: chosen {str(chosen)[:40]!r} is not the index of one of the {len(shown)} images shown")
    elif not isinstance(chosen, str) or chosen not in shown:
        raise DataError(f"{where}: the image chosen, {str(chosen)[:80]!r}, is not one of those shown")
    return outcome


def checked_description(description: str) -> str:
    if not isinstance(description, str):
        raise DataError(f"a description is text, got {type(description).__name__}")
    description = description.strip()
    if not 1 <= len(description) <= MAX_DESCRIPTION_CHARS:
        raise DataError(f"a description is 1 to {MAX_DESCRIPTION_CHARS} characters, got {len(description)}")
    if text.hidden(description):
        raise DataError("a description may not contain control or format characters (escape sequences, zero-width ...)")
    return description


def checked_rating(row: RatingRow) -> float:
    try:
        value = float(row.rating)  # type: ignore[arg-type]  # whatever a row holds is tried; errors are caught
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{row.where}: rating {str(row.rating)[:40]!r} is not a number from 1 to 10") from None
    if not np.isfinite(value) or not 1 <= value <= 10:
        raise DataError(f"{row.where}: rating {value:g} is outside 1-10")
    return value


def checked_covariance(head: PreferenceHead, covariance: np.ndarray) -> np.ndarray:
    size = head.dim + 1
    matrix = np.asarray(covariance, dtype="<f4")
    if head.kind != "mlp" or len(head.layers()) != 1 or head.layers()[0][0].shape[1] != 1:
        raise DataError(f"a covariance belongs to a linear head, not a {head.kind} head with {len(head.layers())} layers")
    if matrix.shape != (size, size) or not np.all(np.isfinite(matrix)):
        raise DataError(f"a linear head of {head.dim} weights has a finite [{size}, {size}] covariance, got shape {matrix.shape}")
    return matrix


def stored_covariance(head: PreferenceHead, blob: bytes) -> np.ndarray:
    size = head.dim + 1
    if len(blob) != 4 * size * size:
        raise ValueError(f"its covariance has {len(blob)} bytes, not a float32 [{size}, {size}] matrix")
    return np.frombuffer(blob, dtype="<f4").reshape(size, size).copy()
