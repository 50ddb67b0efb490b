"""A kiosk process for the SIGKILL test: writes events and syncs them, printing each committed seq.

Usage: kiosk_sync_proc.py LEDGER PORT KIOSK BOOT COUNT INTERVAL
After COUNT events it waits for the hub to acknowledge them all, prints "drained" and exits.
"""

import sys
import time
from pathlib import Path

from syncrig import FAST, MERCHANT, append_events, kiosk_bus

from kiosk.ledger import Ledger
from kiosk.link.hub_link import HubLink


def main(ledger_path: str, port: str, kiosk: str, boot: str, count: str, interval: str) -> None:
    path = Path(ledger_path)
    ledger = Ledger(path)
    link = HubLink(kiosk_bus(int(port), kiosk, boot), merchant=MERCHANT, kiosk=kiosk, boot_id=boot, ledger_path=path,
                   software_version="test", settings=FAST).start()
    for _ in range(int(count)):
        append_events(ledger, 1, boot)
        print(ledger.last_seq(), flush=True)
        time.sleep(float(interval))
    link.stop(drain=20.0)
    print("drained" if link.sender.drained() else "not drained", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
