"""The hub's Alembic migrations: every schema change after 0.1.0 is a revision in ``versions/``."""
