"""Schema version 4: choices among 2-4 shown images, descriptions, and a linear head's posterior
covariance beside its model. Every stored comparison becomes a choice (``compare:<context>``); one
of an image with itself says nothing about taste and stays a comparison only.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "choices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("chosen", sa.Text, sa.ForeignKey("images.hash")),
        sa.Column("outcome", sa.Text, sa.CheckConstraint("outcome IN ('chosen', 'none', 'same')"), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.CheckConstraint("(outcome = 'chosen') = (chosen IS NOT NULL)"),
    )
    op.create_table(
        "choice_images",
        sa.Column("choice_id", sa.Integer, sa.ForeignKey("choices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("image_hash", sa.Text, sa.ForeignKey("images.hash"), nullable=False),
    )
    op.create_index("choice_images_hash", "choice_images", ["image_hash"])
    op.create_index("choices_user", "choices", ["user_id"])
    op.create_table(
        "descriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, sa.CheckConstraint("version >= 1"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("user_id", "version"),
    )
    op.add_column("models", sa.Column("covariance", sa.LargeBinary))
    rows = bind.execute(sa.text(
        "SELECT user_id, left_hash, right_hash, choice, context, created FROM comparisons ORDER BY id")).fetchall()
    choices = sa.Table("choices", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("user_id", sa.Integer),
                       sa.Column("chosen", sa.Text), sa.Column("outcome", sa.Text), sa.Column("source", sa.Text),
                       sa.Column("created", sa.Float))
    for user_id, left, right, choice, context, created in rows:
        if left == right:
            continue
        chosen = {"left": left, "right": right}.get(choice)
        made = bind.execute(choices.insert().values(user_id=user_id, chosen=chosen, outcome="chosen" if chosen else "same",
                                                    source=f"compare:{context}", created=created))
        choice_id = made.inserted_primary_key[0]  # type: ignore[index]  # an insert of one row has its key
        bind.execute(sa.text("INSERT INTO choice_images VALUES (:c, :p, :h)"),
                     [{"c": choice_id, "p": 0, "h": left}, {"c": choice_id, "p": 1, "h": right}])
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
