"""Owner-written message texts, campaigns in the database, and when a message was opened (issue 11).

* ``messages.opened_at``: the first time the member opened their card from this message's link
  (``/P/<token>?m=<message id>``); the Messages page counts opened messages per trigger.
* ``message_texts``: the owner's own words for a trigger (``key`` = the trigger) or for an A/B
  test's message variant (``key`` = the variant's template key), per language; without a row the
  built-in words (cloud/automations/templates.py) apply.
* ``campaigns``: the owner's announcements, until now JSON files in ``<data_dir>/campaigns``;
  ``cloud/automations/campaigns.py`` imports files it still finds there, once.

Revision ID: 0008_texts_opened_campaigns
Revises: 0007_nps
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_texts_opened_campaigns"
down_revision = "0007_nps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "message_texts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("subject", sa.String(length=150), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "key", "language", name="uq_message_texts_key"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("segment", sa.String(length=24), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("sent_by", sa.String(length=254), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("campaigns_merchant", "campaigns", ["merchant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("campaigns_merchant", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_table("message_texts")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("opened_at")
