"""Mosquitto for a Stempel fleet: account names, password hashes, the ACL and the config snippet.

Pure rendering lives here; cloud/provision.py decides what to render and writes bundles.
"""
