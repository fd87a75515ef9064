"""Schema version 3: the store holds users and their ratings, nothing about who they are.

Version 2 kept the demo world's persona link in ``users.persona``. Those links (only a demo world's
store has any) move to the demo world's own table, ``demo_personas``, which the demo package creates
and uses from then on; the column is dropped (emptied where SQLite is older than 3.35).

Revision ID: 0003
Revises: 0002
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if "persona" in {c["name"] for c in sa.inspect(bind).get_columns("users")}:
        links = bind.execute(sa.text("SELECT id, persona FROM users WHERE persona IS NOT NULL")).fetchall()
        if links:
            op.execute(
                "CREATE TABLE IF NOT EXISTS demo_personas "
                "(user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, spec TEXT NOT NULL)"
            )
            bind.execute(sa.text("INSERT INTO demo_personas VALUES (:u, :s) ON CONFLICT DO NOTHING"),
                         [{"u": u, "s": s} for u, s in links])
        if bind.dialect.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
            op.execute("ALTER TABLE users DROP COLUMN persona")
        else:  # rebuilding the table would cascade the users' deletion into their ratings
            op.execute("UPDATE users SET persona = NULL")
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
