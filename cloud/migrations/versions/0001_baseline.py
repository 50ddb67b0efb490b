"""The schema of release 0.1.0, the last one made by ``create_all``: the baseline of every upgrade.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Release 0.1.0 created some tables only when a command first used them, so a database of
    # that release may lack any of them: create what is missing, keep what is there.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'config_revisions' not in existing:
        op.create_table('config_revisions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('kiosk_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('merchant_id', 'kiosk_id', 'version')
        )
        op.create_index(op.f('ix_config_revisions_merchant_id'), 'config_revisions', ['merchant_id'], unique=False)
    if 'conflicts' not in existing:
        op.create_table('conflicts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('member_id', sa.String(length=32), nullable=False),
        sa.Column('balance', sa.Integer(), nullable=False),
        sa.Column('first_event_id', sa.String(length=36), nullable=False),
        sa.Column('event_ids', sa.JSON(), nullable=False),
        sa.Column('kiosks', sa.JSON(), nullable=False),
        sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('merchant_id', 'member_id', 'first_event_id')
        )
        op.create_index(op.f('ix_conflicts_merchant_id'), 'conflicts', ['merchant_id'], unique=False)
    if 'dead_letters' not in existing:
        op.create_table('dead_letters',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('topic', sa.String(length=300), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
    if 'hub_events' not in existing:
        op.create_table('hub_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('kiosk_id', sa.String(length=32), nullable=False),
        sa.Column('kiosk_seq', sa.BigInteger(), nullable=False),
        sa.Column('hub_seq', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('member_id', sa.String(length=32), nullable=True),
        sa.Column('delta', sa.Integer(), nullable=False),
        sa.Column('rule', sa.String(length=64), nullable=True),
        sa.Column('reward', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('mono_ns', sa.BigInteger(), nullable=False),
        sa.Column('boot_id', sa.String(length=64), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id'),
        sa.UniqueConstraint('merchant_id', 'hub_seq'),
        sa.UniqueConstraint('merchant_id', 'kiosk_id', 'kiosk_seq')
        )
        op.create_index('hub_events_member', 'hub_events', ['merchant_id', 'member_id'], unique=False)
    if 'keys_revisions' not in existing:
        op.create_table('keys_revisions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('merchant_id', 'version')
        )
        op.create_index(op.f('ix_keys_revisions_merchant_id'), 'keys_revisions', ['merchant_id'], unique=False)
    if 'kiosk_progress' not in existing:
        op.create_table('kiosk_progress',
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('kiosk_id', sa.String(length=32), nullable=False),
        sa.Column('acked_through_seq', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('merchant_id', 'kiosk_id')
        )
    if 'ledger_streams' not in existing:
        op.create_table('ledger_streams',
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('last_hub_seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('merchant_id')
        )
    if 'merchants' not in existing:
        op.create_table('merchants',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('base_url', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
    if 'broker_accounts' not in existing:
        op.create_table('broker_accounts',
        sa.Column('username', sa.String(length=80), nullable=False),
        sa.Column('role', sa.String(length=8), nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=True),
        sa.Column('kiosk_id', sa.String(length=32), nullable=True),
        sa.Column('password_hash', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
        sa.PrimaryKeyConstraint('username'),
        sa.UniqueConstraint('merchant_id', 'kiosk_id')
        )
    if 'ledger_outbox' not in existing:
        op.create_table('ledger_outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('event_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claimed_by', sa.String(length=80), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['event_pk'], ['hub_events.id'], ),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_ledger_outbox_published_at'), 'ledger_outbox', ['published_at'], unique=False)
    if 'members' not in existing:
        op.create_table('members',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_members_merchant_id'), 'members', ['merchant_id'], unique=False)
    if 'signing_keys' not in existing:
        op.create_table('signing_keys',
        sa.Column('kid', sa.String(length=16), nullable=False),
        sa.Column('merchant_id', sa.String(length=32), nullable=False),
        sa.Column('public_key', sa.String(length=64), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
        sa.PrimaryKeyConstraint('kid')
        )

def downgrade() -> None:
    op.drop_table('signing_keys')
    op.drop_index(op.f('ix_members_merchant_id'), table_name='members')
    op.drop_table('members')
    op.drop_index(op.f('ix_ledger_outbox_published_at'), table_name='ledger_outbox')
    op.drop_table('ledger_outbox')
    op.drop_table('broker_accounts')
    op.drop_table('merchants')
    op.drop_table('ledger_streams')
    op.drop_table('kiosk_progress')
    op.drop_index(op.f('ix_keys_revisions_merchant_id'), table_name='keys_revisions')
    op.drop_table('keys_revisions')
    op.drop_index('hub_events_member', table_name='hub_events')
    op.drop_table('hub_events')
    op.drop_table('dead_letters')
    op.drop_index(op.f('ix_conflicts_merchant_id'), table_name='conflicts')
    op.drop_table('conflicts')
    op.drop_index(op.f('ix_config_revisions_merchant_id'), table_name='config_revisions')
    op.drop_table('config_revisions')
