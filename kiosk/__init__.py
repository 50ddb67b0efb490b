"""Stempel kiosk: the countertop device that turns a scanned pass into a stamp.

Where does a scan become a stamp? ``kiosk.app.Kiosk.handle_frame`` calls each
stage in order: camera frame → decoder → pass verifier → rules → ledger → feedback.
"""

__version__ = "0.1.0"
