"""Schema version 5: images live in the database (``images.data``), so a store is one thing to copy
or share, and the pool keeps its insertion order (``pool.seq``) without SQLite's rowid.

An SQLite store's image folder (``<store>_images`` beside the file) is read into the database; an
image whose file is gone, or no longer hashes to its name, keeps a row without bytes, which
``ppo-client store check`` reports. The folder itself is left where it was, for its owner to remove.

Revision ID: 0005
Revises: 0004
"""

import hashlib
import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("images", sa.Column("data", sa.LargeBinary))
    op.add_column("pool", sa.Column("seq", sa.Integer))
    if bind.dialect.name == "sqlite":
        op.execute("UPDATE pool SET seq = rowid")
    else:
        op.execute("UPDATE pool SET seq = ordered.n FROM (SELECT image_hash, ROW_NUMBER() OVER (ORDER BY created, "
                   "image_hash) AS n FROM pool) AS ordered WHERE pool.image_hash = ordered.image_hash")
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    config = op.get_context().config
    folder = config.attributes.get("images_dir") if config is not None else None
    if folder is None or not folder.is_dir():
        return
    moved, lost = 0, []
    for digest, file in bind.execute(sa.text("SELECT hash, file FROM images")).fetchall():
        try:
            data = (folder / file).read_bytes()
        except OSError:
            lost.append(digest)
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            lost.append(digest)
            continue
        bind.execute(sa.text("UPDATE images SET data = :d WHERE hash = :h"), {"d": data, "h": digest})
        moved += 1
    logger.warning(  # a warning: the person should learn that the folder may go
        "moved %d images from %s into the store%s; the folder is no longer used and may be removed", moved, folder,
        f" ({len(lost)} were missing or damaged: `ppo-client store check` lists them)" if lost else "",
    )
