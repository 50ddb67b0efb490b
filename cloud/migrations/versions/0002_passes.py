"""Passes by serial (issue 7): a lost phone's pass is revoked, not its member.

Members enrolled before hold a version-1 pass without a serial; ``cloud.pass_store`` records
it the first time the hub touches the member again, so no rows are backfilled here.

Revision ID: 0002_passes
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_passes"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('passes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('merchant_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=True),
    sa.Column('serial', sa.String(length=8), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('merchant_id', 'number'),
    sa.UniqueConstraint('merchant_id', 'serial')
    )
    op.create_index(op.f('ix_passes_member_id'), 'passes', ['member_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_passes_member_id'), table_name='passes')
    op.drop_table('passes')
