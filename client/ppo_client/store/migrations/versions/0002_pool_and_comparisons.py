"""Schema version 2: the pool of images to rate, and blind pairwise comparisons.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool",
        sa.Column("image_hash", sa.Text, sa.ForeignKey("images.hash"), primary_key=True),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("left_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
        sa.Column("right_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
        sa.Column("choice", sa.Text, sa.CheckConstraint("choice IN ('left', 'right', 'same')"), nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
