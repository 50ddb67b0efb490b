"""Stand-in for smbus2 (https://smbus2.readthedocs.io): ``SMBus(bus)`` opening /dev/i2c-N
(FileNotFoundError / PermissionError as the real open raises them),
``write_i2c_block_data(i2c_addr, register, data, force=None)``, ``i2c_rdwr(*i2c_msgs)``,
``close()``, and ``i2c_msg.write(address, buf)``; a write to an address nothing answers on
fails with EREMOTEIO, as on a Raspberry Pi's I2C controller.

Test hooks: ``BUSES`` (bus number -> the addresses that answer), ``DENIED`` (buses the user
may not open), ``traffic`` ((address, register or None, bytes) per write, in order).
"""

from __future__ import annotations

import errno

BUSES: dict[int, set[int]] = {1: {0x3C}}
DENIED: set[int] = set()
traffic: list[tuple[int, int | None, bytes]] = []


class i2c_msg:
    """One message of a combined transaction."""

    def __init__(self, addr: int, flags: int, buf: bytes) -> None:
        self.addr, self.flags, self.buf = addr, flags, bytes(buf)
        self.len = len(self.buf)

    @staticmethod
    def write(address: int, buf) -> "i2c_msg":
        return i2c_msg(address, 0, bytes(buf))

    def __iter__(self):
        return iter(self.buf)

    def __len__(self) -> int:
        return self.len


class SMBus:
    def __init__(self, bus: int | None = None, force: bool = False) -> None:
        self.fd = None
        if bus is not None:
            self.open(bus)

    def open(self, bus: int) -> None:
        path = f"/dev/i2c-{bus}"
        if bus not in BUSES:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if bus in DENIED:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        self.bus, self.fd = bus, 3

    def _answer(self, address: int) -> None:
        if self.fd is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if address not in BUSES[self.bus]:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")

    def write_i2c_block_data(self, i2c_addr: int, register: int, data, force=None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._answer(i2c_addr)
        traffic.append((i2c_addr, register, bytes(data)))

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        for msg in i2c_msgs:
            self._answer(msg.addr)
            traffic.append((msg.addr, None, msg.buf))

    def close(self) -> None:
        self.fd = None
