"""E-mail over SMTP (stdlib ``smtplib``), with its failures sorted by what they mean for a resend.

The worker must never send a message twice, so an error says whether the message may be out:

* ``NotSent`` — certainly not delivered (no connection, a 4xx before or at DATA): try later;
* ``Refused`` — the server refused it for good (5xx, a bad address): do not try again;
* ``Uncertain`` — the connection broke while the message was being handed over: it may have
  arrived, so it is not sent again.

A connection is opened once per sweep (``connect``) and reused; before each message a NOOP
checks it is still there, so a connection the server closed while idle is reopened instead
of losing a message half-way. TLS: ``tls`` for SMTPS from the first byte, else ``starttls``
(the default), the certificate and host name verified against the system's CAs or ``ca_file``.
A server that does not offer STARTTLS when it was asked for, or whose certificate does not
verify, gets nothing — no login, no message in plain text: NotSent, the messages wait.
The envelope sender is ``[smtp] return_path`` if set (where bounces go: bounces.py), else From.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from cloud.config import SmtpSection
from kiosk.common.errors import ConfigError, StempelError

log = logging.getLogger(__name__)


class DeliveryError(StempelError):
    """A message was not (or maybe not) delivered."""


class NotSent(DeliveryError, ConnectionError):
    """Certainly not delivered; safe to try again later."""


class Refused(DeliveryError, ValueError):
    """Refused for good by the server; trying again will not help."""


class Uncertain(DeliveryError, ConnectionError):
    """The connection failed while the message was handed over: it may have been delivered."""


class Channel(Protocol):
    """What the worker needs of a way to send e-mail."""

    def connect(self) -> None: ...

    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


def _by_code(code: int, what: str) -> DeliveryError:
    return NotSent(f"{what} ({code}); will try again") if 400 <= code < 500 else Refused(f"{what} ({code})")


class SmtpChannel:
    """E-mail through the ``[smtp]`` server of hub.toml."""

    def __init__(self, settings: SmtpSection, password: str | None) -> None:
        """Raises ConfigError if ``[smtp] ca_file`` is no readable PEM file."""
        self.settings = settings
        self._password = password
        self._context = settings.ssl_context()  # checks the server's certificate and name
        self._smtp: smtplib.SMTP | None = None

    @classmethod
    def from_config(cls, settings: SmtpSection) -> "SmtpChannel":
        """The channel for *settings*; raises ConfigError naming what to set."""
        if not settings.host:
            raise ConfigError("no e-mail server: set [smtp] host (and sender) in hub.toml")
        if not settings.sender:
            raise ConfigError("set [smtp] sender in hub.toml: the From address of the messages")
        password = None
        if settings.password_file is not None:
            try:
                password = Path(settings.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"[smtp] password_file {settings.password_file}: {exc.strerror}; "
                                  "write the SMTP password there (mode 0600)") from None
        if settings.username and password is None:
            raise ConfigError("[smtp] username is set but no password_file: add one with the SMTP password")
        return cls(settings, password)

    def connect(self) -> None:
        """Open the connection (TLS, login); raises NotSent, or ConfigError for a refused login."""
        if self._smtp is not None:
            return
        s = self.settings
        try:
            if s.tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.effective_port(), timeout=s.timeout,
                                                      context=self._context)
            else:
                smtp = smtplib.SMTP(s.host, s.effective_port(), timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise self._not_sent(exc) from None
        try:
            self._secure(smtp)
        except BaseException:
            smtp.close()  # a refused certificate or login: nothing more is said on this connection
            raise
        self._smtp = smtp

    def _secure(self, smtp: smtplib.SMTP) -> None:
        """STARTTLS (never plain text instead) and the login on a new connection; raises NotSent or ConfigError."""
        s = self.settings
        try:
            if s.starttls and not s.tls:
                smtp.ehlo_or_helo_if_needed()
                if not smtp.has_extn("starttls"):
                    raise NotSent(f"the SMTP server {s.host}:{s.effective_port()} does not offer STARTTLS: nothing "
                                  "sent in plain text; fix the server, or set [smtp] tls = true (and the port) if "
                                  "it speaks TLS from the first byte")
                smtp.starttls(context=self._context)
            if s.username:
                smtp.login(s.username, self._password or "")
        except NotSent:
            raise  # an OSError too: said already
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigError(f"the SMTP server {s.host} refused the login of {s.username!r} ({exc.smtp_code}); "
                              "check [smtp] username and password_file") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise self._not_sent(exc) from None

    def _not_sent(self, exc: Exception) -> NotSent:
        """*exc* of opening the connection, said so that the owner knows what to fix."""
        where = f"{self.settings.host}:{self.settings.effective_port()}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return NotSent(f"the certificate of the SMTP server {where} is not trusted ({exc.verify_message}): "
                           "nothing sent; set [smtp] host to a name the certificate is for, or [smtp] ca_file to "
                           "the CA (PEM) that signed it")
        if isinstance(exc, ssl.SSLError):
            return NotSent(f"TLS with the SMTP server {where} failed ({exc.reason or exc}): nothing sent; "
                           "check [smtp] tls (TLS from the first byte, port 465) against starttls (port 587)")
        return NotSent(f"cannot reach the SMTP server {where}: {exc}")

    def _alive(self) -> smtplib.SMTP:
        """The open connection, reopened if the server closed it while idle; raises NotSent."""
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (OSError, smtplib.SMTPException):
                pass  # the server hung up; nothing of the next message was sent: open a new one
            self._drop()
        self.connect()
        assert self._smtp is not None
        return self._smtp

    def send(self, message: EmailMessage) -> None:
        smtp = self._alive()
        try:
            smtp.send_message(message, from_addr=self.settings.return_path)  # None: the From address
        except smtplib.SMTPRecipientsRefused as exc:
            code = min(code for code, _ in exc.recipients.values())
            raise _by_code(code, f"recipient refused: {exc.recipients}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _by_code(exc.smtp_code, f"sender refused: {exc.smtp_error!r}") from None
        except smtplib.SMTPDataError as exc:
            raise _by_code(exc.smtp_code, f"message refused: {exc.smtp_error!r}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise Uncertain(f"the connection to {self.settings.host} failed during the message: {exc}") from None

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                log.debug("smtp.close_failed", exc_info=True)

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                log.debug("smtp.quit_failed", exc_info=True)
            self._drop()


def send_test(settings: SmtpSection, message: EmailMessage, address: str) -> None:
    """Send *message* to *address* (the owner trying a text) as a test: its own Message-ID and
    ``[Test]`` before the subject, one connection opened and closed. Raises ConfigError or
    DeliveryError."""
    del message["To"], message["Message-ID"]
    message["To"] = address
    message["Message-ID"] = f"<stempel-0.test-{secrets.token_hex(6)}@{address.partition('@')[2]}>"
    subject = message["Subject"]
    del message["Subject"]
    message["Subject"] = f"[Test] {subject}"
    channel = SmtpChannel.from_config(settings)
    try:
        channel.connect()
        channel.send(message)
    finally:
        channel.close()
