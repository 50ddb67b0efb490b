"""Stand-in for py-spidev (https://github.com/doceme/py-spidev): ``SpiDev()``, ``open(bus, device)``
(FileNotFoundError when /dev/spidevB.D does not exist, as the real one raises), the settable
``max_speed_hz``/``mode``, ``writebytes``/``writebytes2``/``xfer2`` and ``close``.

Test hooks: ``DEVICES`` (the (bus, device) pairs that exist), ``written`` (each transfer's bytes).
"""

from __future__ import annotations

import errno

DEVICES: set[tuple[int, int]] = {(0, 0), (0, 1)}
written: list[bytes] = []


class SpiDev:
    def __init__(self, bus: int | None = None, device: int | None = None) -> None:
        self.max_speed_hz = 500000
        self.mode = 0
        self.bits_per_word = 8
        self._open: tuple[int, int] | None = None
        if bus is not None:
            self.open(bus, device)

    def open(self, bus: int, device: int) -> None:
        if (bus, device) not in DEVICES:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/dev/spidev{bus}.{device}")
        self._open = (bus, device)

    def _check(self) -> None:
        if self._open is None:
            raise OSError(errno.EBADF, "Bad file descriptor")

    def writebytes(self, values) -> None:
        self._check()
        if len(values) > 4096:
            raise OverflowError("Argument list size exceeds 4096 bytes.")
        written.append(bytes(values))

    def writebytes2(self, values) -> None:
        self._check()
        written.append(bytes(values))

    def xfer2(self, values, speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0) -> list[int]:
        self._check()
        written.append(bytes(values))
        return [0] * len(values)

    def close(self) -> None:
        self._open = None
