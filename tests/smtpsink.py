"""A real SMTP server for tests: aiosmtpd in its own process on a free port, keeping every
message it accepts in a Maildir (its ``Mailbox`` handler). Adopt with
``from smtpsink import smtp_sink  # noqa: F401``."""

from __future__ import annotations

import email.policy
import mailbox
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from cloud.devbroker import free_port


class SmtpSink:
    def __init__(self, port: int, maildir: Path) -> None:
        self.host, self.port, self.maildir = "127.0.0.1", port, maildir

    def messages(self) -> list[EmailMessage]:
        """Every message received, oldest first (Maildir keys are not ordered: sorted by Message-ID)."""
        box = mailbox.Maildir(self.maildir, factory=None, create=False)
        parsed = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]
        return sorted(parsed, key=lambda m: int(m["Message-ID"].split("-")[1].split(".")[0]))

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if m["To"] == address]


def _wait_listening(port: int, proc: subprocess.Popen, patience: float = 20.0) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aiosmtpd exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # start-up of the server process, not a test's clock
    raise RuntimeError(f"aiosmtpd did not listen on port {port} within {patience} s")


@pytest.fixture
def smtp_sink(tmp_path):
    """An aiosmtpd process (plain SMTP on 127.0.0.1) writing each message to a Maildir."""
    maildir = tmp_path / "maildir"
    mailbox.Maildir(maildir, create=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        yield SmtpSink(port, maildir)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
