"""The user store: users, the images they rated, picked among or were shown, their descriptions,
cached embeddings and trained preference models.

One store, two databases: an SQLite file (a path; the embedded default) or PostgreSQL
(``postgresql://user@host:port/db``; ``pip install 'ppo-t2i[postgres]'``), chosen by ``--store`` or
``$PPO_STORE``. Both hold everything, images included (content-addressed by SHA-256 and kept once),
so a store is one thing to copy, back up or share between machines. Every write is one transaction
under the store's write lock (``backends``); an import checks all its rows before it writes
anything. The tables are in ``schema``, their history in Alembic migrations.

    records    the frozen records the store hands out, and the checks inputs pass
    backends   locations (path or URL), engines, transactions, errors as one line
    schema     the tables; creating and upgrading a database
    users      users and ratings          images    images and the pool
    taste      choices and descriptions   models    embeddings and preference models
    core       ``UserStore``, assembled from the four
    copying    ``store copy`` between databases
"""

from ppo_client.store.backends import BUSY_TIMEOUT_S, STORE_ENV, default_location
from ppo_client.store.core import UserStore
from ppo_client.store.records import (
    CHOICE_OUTCOMES,
    GENERAL_USER,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_LENGTH,
    MAX_SHOWN,
    MIN_SHOWN,
    Choice,
    ChoiceRow,
    Comparison,
    Description,
    PoolEntry,
    PoolImage,
    Rating,
    RatingRow,
    StoreCheck,
    StoredImage,
    StoredModel,
    UserSummary,
    check_name,
)
from ppo_client.store.schema import SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_S", "CHOICE_OUTCOMES", "GENERAL_USER", "MAX_DESCRIPTION_CHARS", "MAX_NAME_LENGTH", "MAX_SHOWN",
    "MIN_SHOWN", "SCHEMA_VERSION", "STORE_ENV", "Choice", "ChoiceRow", "Comparison", "Description", "PoolEntry",
    "PoolImage", "Rating", "RatingRow", "StoreCheck", "StoredImage", "StoredModel", "UserStore", "UserSummary",
    "check_name", "default_location",
]
