"""NPS answers (issue 11, item 4): one answer per member per quarter of the shop's time zone.

Revision ID: 0007_nps
Revises: 0006_automations
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_nps"
down_revision = "0006_automations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nps_answers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.Column("quarter", sa.String(length=7), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "member_id", "quarter", name="uq_nps_answers_quarter"),
        sa.CheckConstraint("score >= 0 AND score <= 10", name="ck_nps_answers_score"),
    )
    op.create_index("nps_answers_time", "nps_answers", ["merchant_id", "answered_at"])


def downgrade() -> None:
    op.drop_index("nps_answers_time", table_name="nps_answers")
    op.drop_table("nps_answers")
