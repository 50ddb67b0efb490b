"""Wire formats owned by the device side and imported by the hub: ids, pass tokens, QR."""
