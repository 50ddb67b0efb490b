"""Automated messages (issue 11): one row per decision to message a member, committed before
the message is sent, unique per (merchant, member, trigger, occasion).

Revision ID: 0006_automations
Revises: 0005_metrics_indexes
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_automations"
down_revision = "0005_metrics_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("trigger", sa.String(length=24), nullable=False),
        sa.Column("occasion", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "member_id", "trigger", "occasion", name="uq_messages_occasion"),
    )
    op.create_index("messages_due", "messages", ["merchant_id", "status", "not_before"])
    op.create_index("messages_member_sent", "messages", ["member_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("messages_member_sent", table_name="messages")
    op.drop_index("messages_due", table_name="messages")
    op.drop_table("messages")
