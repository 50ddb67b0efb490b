"""The kiosk's link to its hub: everything that talks to the hub, with one owner.

``hub_link.HubLink`` owns the one bus connection and starts and stops the parts, each named
after its counterpart in the hub's ``cloud/link/``:

- ``events``: the outbox sender (ledger events out, the hub's acks in);
- ``ledger``: the merchant's ledger stream in, and the catch-up requests;
- ``documents``: every signed document the hub pushes (programme, kiosk config, keys),
  verified one way, and ``config/reported`` out;
- ``state``: what the kiosk says about itself (retained ``state``, last will ``lost``);
- ``updates``: changes for the scan loop, applied between frames.
"""
