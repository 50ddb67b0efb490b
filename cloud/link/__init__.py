"""The hub's side of the wire: one module per MQTT topic family, named as on the kiosk (kiosk/link/).

- ``events.py``: kiosks' ``events`` in, ``events/ack`` out (the ingest worker);
- ``ledger.py``: the ``ledger`` stream out (the outbox relay) and ``sync/request`` answered;
- ``documents.py``: signed documents out: ``config/desired`` (programmes) and ``keys``;
- ``state.py``: kiosks' ``state`` and ``config/reported`` in (``stempel-hub fleet status``).

The database side of events is cloud/events/; how the hub reaches the broker, cloud/mqtt.py.
"""
