"""The store's tables (SQLAlchemy Core) and how a database comes to have them.

A new store is created from these tables and stamped with the newest migration; an older one is
upgraded in place by Alembic, whose history (``migrations/versions``) starts at schema version 1.
``meta.schema_version`` is kept beside Alembic's own table, so a program that predates Alembic still
refuses a store newer than itself."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ppo_client.errors import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 5
REVISIONS = {1: "0001", 2: "0002", 3: "0003", 4: "0004", 5: "0005"}
"""The Alembic revision of each schema version."""
MIGRATIONS = Path(__file__).with_name("migrations")

METADATA = sa.MetaData()

meta = sa.Table("meta", METADATA, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
users = sa.Table(
    "users", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
)
images = sa.Table(
    "images", METADATA,
    sa.Column("hash", sa.Text, primary_key=True),
    sa.Column("file", sa.Text, nullable=False),  # the content-addressed name; its suffix says the format
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("data", sa.LargeBinary),  # last, so scans of the other columns do not read it
)
ratings = sa.Table(
    "ratings", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("image_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
    sa.Column("rating", sa.Float, sa.CheckConstraint("rating >= 1 AND rating <= 10"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "image_hash"),
)
embeddings = sa.Table(
    "embeddings", METADATA,
    sa.Column("image_hash", sa.Text, primary_key=True),
    sa.Column("encoder", sa.Text, primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)
models = sa.Table(
    "models", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("encoder", sa.Text, nullable=False),
    sa.Column("head", sa.LargeBinary, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("covariance", sa.LargeBinary),
)
pool = sa.Table(
    "pool", METADATA,
    sa.Column("image_hash", sa.Text, sa.ForeignKey("images.hash"), primary_key=True),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("seq", sa.Integer),  # insertion order (timestamps can tie)
)
comparisons = sa.Table(
    "comparisons", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("left_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
    sa.Column("right_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
    sa.Column("choice", sa.Text, sa.CheckConstraint("choice IN ('left', 'right', 'same')"), nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
choices = sa.Table(
    "choices", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("chosen", sa.Text, sa.ForeignKey("images.hash")),
    sa.Column("outcome", sa.Text, sa.CheckConstraint("outcome IN ('chosen', 'none', 'same')"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.CheckConstraint("(outcome = 'chosen') = (chosen IS NOT NULL)"),
    sa.Index("choices_user", "user_id"),
)
choice_images = sa.Table(
    "choice_images", METADATA,
    sa.Column("choice_id", sa.Integer, sa.ForeignKey("choices.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("image_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
    sa.Index("choice_images_hash", "image_hash"),
)
descriptions = sa.Table(
    "descriptions", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, sa.CheckConstraint("version >= 1"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "version"),
)

USER_TABLES = ("users", "images", "ratings", "embeddings", "models", "pool", "comparisons", "choices",
               "choice_images", "descriptions")
"""The tables a store copy carries, parents before children."""


def version(connection: Connection, shown: str) -> int | None:
    """The store's schema version; None for an empty database. Refuses a database that holds tables
    but is not a user store (another application's), or whose version is unreadable."""
    tables = set(sa.inspect(connection).get_table_names())
    if not tables:
        return None
    if "meta" not in tables or "users" not in tables:
        raise StoreError(
            f"{shown} holds tables ({', '.join(sorted(tables)[:5])}{' ...' if len(tables) > 5 else ''}) but is not a "
            "user store; give an empty database or another file"
        )
    found = connection.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    try:
        return int(str(found))
    except ValueError:
        raise StoreError(f"{shown} has no readable schema version") from None


def prepare(connection: Connection, shown: str, images_dir: Path | None) -> None:
    """Create or upgrade the store's tables; call inside a write transaction, so that two processes
    creating or upgrading one store do it once. ``images_dir``: an SQLite store's former image folder,
    whose files an upgrade to version 5 moves into the database."""
    found = version(connection, shown)
    if found == SCHEMA_VERSION and _alembic_revision(connection) == REVISIONS[SCHEMA_VERSION]:
        return
    if found is not None and found > SCHEMA_VERSION:
        raise StoreError(f"{shown} has schema version {found}; this program reads up to {SCHEMA_VERSION}: upgrade ppo-t2i")
    config = _alembic_config(connection, images_dir)
    from alembic import command

    if found is None:
        METADATA.create_all(connection)
        connection.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        command.stamp(config, REVISIONS[SCHEMA_VERSION])
        logger.info("created the user store %s (schema version %d)", shown, SCHEMA_VERSION)
        return
    if _alembic_revision(connection) is None:  # made before the store's history moved to Alembic
        command.stamp(config, REVISIONS[found])
    command.upgrade(config, "head")
    logger.info("upgraded %s from schema version %d to %d", shown, found, SCHEMA_VERSION)


def _alembic_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _alembic_config(connection: Connection, images_dir: Path | None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["images_dir"] = images_dir
    return config
