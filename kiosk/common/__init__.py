"""Plumbing both programs share: the message bus (paho wrapped once, and in memory), atomic
files, structured logging, TOML loading and the error tree.

The hub may import this package, ``kiosk.protocol`` and ``kiosk.rules``, nothing else under
``kiosk/``; nothing under ``kiosk/`` imports ``cloud`` (tests/test_import_rules.py checks it).
"""
