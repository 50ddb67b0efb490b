"""A real SMTP server for tests: aiosmtpd in its own process on a free port, keeping every
message it accepts in a Maildir (its ``Mailbox`` handler). Adopt with
``from smtpsink import smtp_sink  # noqa: F401``.

``smtp_sink`` speaks plain SMTP. ``smtp_tls_sink`` starts sinks with TLS (smtpsink_server.py):
STARTTLS required before MAIL, or SMTPS (TLS from the first byte), optionally with AUTH (only
over TLS), each on a certificate from tests/testca.py's ``Authority`` — a CA made at run time, so
nothing secret is committed. Their messages carry ``X-Sink-TLS`` / ``X-Sink-Auth``: how the
session that delivered them was secured.
"""

from __future__ import annotations

import email.policy
import mailbox
import select
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import pytest

from cloud.devbroker import free_port

SERVER = Path(__file__).with_name("smtpsink_server.py")


class SmtpSink:
    def __init__(self, port: int, maildir: Path, tls: Literal["starttls", "smtps"] | None = None) -> None:
        """*tls*: how the sink secures its sessions (None: plain text, as ``smtp_sink``)."""
        self.host, self.port, self.maildir, self.tls = "127.0.0.1", port, maildir, tls

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


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


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
        _stop(proc)


def _started(proc: subprocess.Popen, log: Path, patience: float = 20.0) -> int:
    """The port the sink process reports once it listens; raises RuntimeError with its log if it does not."""
    ready, _, _ = select.select([proc.stdout], [], [], patience)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening "):
        _stop(proc)
        raise RuntimeError(f"the SMTP sink did not start within {patience} s: {log.read_text()[-2000:]}")
    return int(line.split()[1])


@pytest.fixture
def smtp_tls_sink(tmp_path):
    """Start aiosmtpd processes with TLS, stopped after the test:
    ``smtp_tls_sink(cert, key, tls="starttls"|"smtps", login=None)`` -> SmtpSink.

    *cert*, *key*: the server's files (``Authority.server()``). ``starttls`` offers STARTTLS and
    refuses MAIL before it; ``smtps`` is TLS from the first byte. *login* = (user, password) makes
    AUTH required (offered only over TLS) and admits that login alone."""
    procs: list[subprocess.Popen] = []

    def start(cert: Path, key: Path, tls: Literal["starttls", "smtps"] = "starttls",
              login: tuple[str, str] | None = None) -> SmtpSink:
        folder = tmp_path / f"sink-{len(procs)}"
        folder.mkdir()
        maildir = folder / "maildir"
        mailbox.Maildir(maildir, create=True)
        args = [sys.executable, str(SERVER), str(maildir), "--cert", str(cert), "--key", str(key)]
        args += ["--smtps"] if tls == "smtps" else []
        if login is not None:
            password_file = folder / "password"
            password_file.write_text(login[1])
            args += ["--login", login[0], "--password-file", str(password_file)]
        log = folder / "server.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        procs.append(proc)
        return SmtpSink(_started(proc, log), maildir, tls)

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)
