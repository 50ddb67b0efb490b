"""The hub on the web (issue 9): member profiles and consents, owner logins, API tokens, rate
limits, the programme's TOML source with each revision, and who settled a conflict.

Revision ID: 0004_web
Revises: 0003_kiosk_ledgers
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_web"
down_revision = "0003_kiosk_ledgers"
branch_labels = None
depends_on = None

_MEMBER_COLUMNS = [
    sa.Column("email", sa.String(length=254), nullable=True),
    sa.Column("birthday", sa.Date(), nullable=True),
    sa.Column("referred_by", sa.String(length=32), nullable=True),
    sa.Column("joined_via", sa.String(length=32), nullable=True),
    sa.Column("language", sa.String(length=8), nullable=True),
    sa.Column("consent_program_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("consent_marketing_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
]


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        for column in _MEMBER_COLUMNS:
            batch.add_column(column)
    with op.batch_alter_table("conflicts") as batch:
        batch.add_column(sa.Column("resolved_by", sa.String(length=254), nullable=True))
        batch.add_column(sa.Column("resolution", sa.String(length=500), nullable=True))
    with op.batch_alter_table("config_revisions") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=254), nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("login", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("login"),
    )
    op.create_index("ix_users_merchant_id", "users", ["merchant_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_api_tokens_merchant_id", "api_tokens", ["merchant_id"])
    op.create_table(
        "rate_hits",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window"),
    )


def downgrade() -> None:
    op.drop_table("rate_hits")
    op.drop_index("ix_api_tokens_merchant_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("ix_users_merchant_id", table_name="users")
    op.drop_table("users")
    with op.batch_alter_table("config_revisions") as batch:
        batch.drop_column("created_by")
        batch.drop_column("source")
    with op.batch_alter_table("conflicts") as batch:
        batch.drop_column("resolution")
        batch.drop_column("resolved_by")
    with op.batch_alter_table("members") as batch:
        for column in reversed(_MEMBER_COLUMNS):
            batch.drop_column(column.name)
