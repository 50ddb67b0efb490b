"""The sd_notify protocol spoken to a real datagram socket, as systemd would hear it."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest
from notifysock import NotifySocket, parse

from kiosk.common.sdnotify import Notifier


class FakeMonotonic:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def systemd(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def test_outside_systemd_every_call_is_a_no_op():
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert [notifier.ready("up"), notifier.status("x"), notifier.watchdog(), notifier.stopping()] == [False] * 4
    notifier.close()


def test_ready_status_and_stopping_arrive_as_systemd_reads_them(systemd):
    with Notifier.from_environ(systemd.env()) as notifier:
        assert notifier.ready("online, 0 waiting, programme v3")
        assert systemd.next() == {"READY": "1", "STATUS": "online, 0 waiting, programme v3"}
        assert notifier.status("offline, 2 waiting,\nprogramme v3")  # a newline would end the assignment
        assert systemd.next() == {"STATUS": "offline, 2 waiting, programme v3"}
        assert not notifier.status("offline, 2 waiting, programme v3")  # unchanged: not sent again
        assert notifier.stopping("stopping")
        assert systemd.next() == {"STOPPING": "1", "STATUS": "stopping"}
    assert systemd.drain() == []


def test_the_abstract_namespace_is_spoken_too():
    name = f"stempel-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(20)
    try:
        with Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
        assert parse(listener.recv(4096)) == {"READY": "1"}
    finally:
        listener.close()


def test_the_watchdog_pings_at_half_the_period_by_the_injected_clock(systemd):
    clock = FakeMonotonic()
    notifier = Notifier.from_environ(systemd.env(watchdog_usec=2_000_000), monotonic=clock)
    try:
        assert notifier.watchdog_interval == 1.0
        sent = []
        for _ in range(9):  # 0.0, 0.25 ... 2.0 s
            sent.append(notifier.watchdog())
            clock.now += 0.25
        assert sent == [True, False, False, False, True, False, False, False, True]
        assert [systemd.next() for _ in range(3)] == [{"WATCHDOG": "1"}] * 3
    finally:
        notifier.close()


@pytest.mark.parametrize("env, why", [
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, "the watchdog is another process's"),
    ({"WATCHDOG_USEC": "soon"}, "not a number"),
    ({"WATCHDOG_USEC": "0"}, "zero: no watchdog"),
    ({}, "no WatchdogSec="),
])
def test_no_watchdog_unless_it_is_ours(systemd, env, why):
    with Notifier.from_environ({**systemd.env(), **env}) as notifier:
        assert notifier.watchdog_interval is None, why
        assert not notifier.watchdog()
    assert systemd.drain() == []


def test_our_own_watchdog_pid_counts(systemd):
    env = systemd.env(watchdog_usec=500_000, WATCHDOG_PID=str(os.getpid()))
    with Notifier.from_environ(env) as notifier:
        assert notifier.watchdog_interval == 0.25
        assert notifier.watchdog()
    assert systemd.next() == {"WATCHDOG": "1"}


def test_a_socket_that_is_not_there_is_logged_once_never_raised(tmp_path, caplog):
    address = tmp_path / "late.sock"
    with Notifier(str(address)) as notifier, caplog.at_level(logging.WARNING, "kiosk.common.sdnotify"):
        assert not notifier.ready("up")
        assert not notifier.status("still down")
        assert [r.getMessage() for r in caplog.records] == ["sdnotify.send_failed"]
        listener = NotifySocket(tmp_path, "late.sock")  # systemd is back (a daemon-reexec)
        try:
            assert notifier.status("back")
            assert listener.next() == {"STATUS": "back"}
        finally:
            listener.close()


def test_an_unsupported_socket_kind_disables_notifications(caplog):
    with caplog.at_level(logging.WARNING, "kiosk.common.sdnotify"):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled and notifier.watchdog_interval is None and not notifier.ready()
    assert [r.getMessage() for r in caplog.records] == ["sdnotify.unsupported_socket"]
