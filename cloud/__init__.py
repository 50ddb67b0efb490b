"""Stempel hub: keys and passes, ledger, fleet, dashboard. Imports kiosk.protocol, never the reverse."""
