"""Kiosk ledger incarnations and events refused for good (issue 7, item 5 and item 2).

A wiped and reinstalled kiosk numbers its events from 1 again under a new ``ledger_id``:
``hub_events`` and ``kiosk_progress`` key a kiosk's numbers by ledger, so the old ledger's
retained ack can't release the new one's events. ``refused_events`` lets a kiosk's ack move
past an event the hub refused for good. Rows from before keep ``ledger_id`` "".

Revision ID: 0003_kiosk_ledgers
Revises: 0002_passes
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_kiosk_ledgers"
down_revision = "0002_passes"
branch_labels = None
depends_on = None

_OLD_UNIQUE = ["merchant_id", "kiosk_id", "kiosk_seq"]
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s", "pk": "pk_%(table_name)s"}


def _unique_named(table: str, columns: list[str]) -> str | None:
    """The database's name of the unique constraint on *columns* (PostgreSQL names it itself)."""
    for uc in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if uc["column_names"] == columns:
            return uc["name"]
    return None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    old_unique = "uq_hub_events_merchant_id_kiosk_id_kiosk_seq" if sqlite else _unique_named("hub_events", _OLD_UNIQUE)
    with op.batch_alter_table("hub_events", naming_convention=_NAMING) as batch:
        batch.add_column(sa.Column("ledger_id", sa.String(length=32), server_default="", nullable=False))
        if old_unique:
            batch.drop_constraint(old_unique, type_="unique")
        batch.create_unique_constraint("uq_hub_events_kiosk_seq", ["merchant_id", "kiosk_id", "ledger_id", "kiosk_seq"])

    old_pk = "pk_kiosk_progress" if sqlite else sa.inspect(op.get_bind()).get_pk_constraint("kiosk_progress")["name"]
    with op.batch_alter_table("kiosk_progress", naming_convention=_NAMING, recreate="always" if sqlite else "auto") as batch:
        batch.add_column(sa.Column("ledger_id", sa.String(length=32), server_default="", nullable=False))
        batch.add_column(sa.Column("first_seen", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(old_pk, type_="primary")
        batch.create_primary_key("pk_kiosk_progress", ["merchant_id", "kiosk_id", "ledger_id"])

    op.create_table(
        "refused_events",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("kiosk_id", sa.String(length=32), nullable=False),
        sa.Column("ledger_id", sa.String(length=32), nullable=False),
        sa.Column("kiosk_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "kiosk_id", "ledger_id", "kiosk_seq"),
    )


def downgrade() -> None:
    op.drop_table("refused_events")
    with op.batch_alter_table("kiosk_progress", naming_convention=_NAMING) as batch:
        batch.drop_constraint("pk_kiosk_progress", type_="primary")
        batch.create_primary_key("pk_kiosk_progress", ["merchant_id", "kiosk_id"])
        batch.drop_column("first_seen")
        batch.drop_column("ledger_id")
    with op.batch_alter_table("hub_events") as batch:
        batch.drop_constraint("uq_hub_events_kiosk_seq", type_="unique")
        batch.create_unique_constraint("uq_hub_events_merchant_id_kiosk_id_kiosk_seq", _OLD_UNIQUE)
        batch.drop_column("ledger_id")
