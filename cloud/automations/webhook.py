"""The signed webhook channel: one HTTPS POST per message, for shops with their own messenger or CRM.

The body is JSON, schema ``stempel.message.v1``::

    {"schema": "stempel.message.v1", "id": "stempel-42", "merchant": "cafe", "shop": "Cafe Rosa",
     "member_id": "...", "first_name": "Anna", "language": "de", "trigger": "almost_there",
     "occasion": "cycle-0", "subject": "...", "text": "...", "card_url": "https://...",
     "unsubscribe_url": "https://..."}

``text`` is the plain-text message with its unsubscribe footer, ready to forward; ``id`` is the
same on every attempt of one message. ``nps_url`` (the card's NPS question) is there only when
the text asks it (compose.nps_values).

Each request carries ``X-Stempel-Timestamp`` (Unix seconds) and
``X-Stempel-Signature: sha256=<hex>``, the HMAC-SHA256 under the shared secret (the content of
``[webhook] secret_file`` without surrounding whitespace, UTF-8) of ``<timestamp>.<body>``. A
receiver verifies a request like this:

1. take the **raw** body bytes, before any JSON parsing (re-serialised JSON will not match);
2. reject it (400/401) if the timestamp is more than 5 minutes away from its own clock — a
   recorded request replayed later then fails even though its signature is genuine;
3. compute ``"sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))`` and compare it with
   the header in constant time; reject on a mismatch;
4. drop a message whose ``id`` it has seen (an answer lost on the way back makes the hub retry).

In Python::

    ts = request.headers["X-Stempel-Timestamp"]
    if abs(time.time() - int(ts)) > 300:
        abort(401)
    mac = hmac.new(secret, ts.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest("sha256=" + mac, request.headers["X-Stempel-Signature"]):
        abort(401)

What the answer means for the hub (the outbox's retry path, cloud/automations/outbox.py):
2xx — sent; 429, 5xx or no answer (connection refused, timeout, reset) — ``NotSent``: tried
again after a doubling backoff, ``failed`` after ``outbox.MAX_ATTEMPTS``; any other 4xx or a
redirect — ``Refused``: failed at once, with the status and reason in ``last_error``. Unlike an
e-mail, a webhook whose answer was lost is tried again, so the receiver must dedupe by ``id``:
it is told so above, and nobody else sees a second copy. Uses only ``urllib`` of the stdlib.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cloud.automations import templates
from cloud.automations.mailer import NotSent, Refused
from cloud.automations.outbox import occasion_of
from cloud.config import WebhookSection
from cloud.models import Message, utcnow
from kiosk.common.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA = "stempel.message.v1"
TIMESTAMP, SIGNATURE = "X-Stempel-Timestamp", "X-Stempel-Signature"
MIN_SECRET = 32  # characters: 128 bits and more as hex or base64


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Stempel-Signature`` value of *body* sent at *timestamp*."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(message: Message, merchant: str, filled: dict[str, str], language: str,
            text: templates.Text | None = None) -> bytes:
    """The JSON body of *message* (a row with id, member_id, trigger and occasion), filled with the
    member's values (compose.values), in *text*'s words if given (a campaign's); raises KeyError
    like templates.render."""
    rendered = templates.render(message.trigger, language, filled, text)
    document = {"schema": SCHEMA, "id": f"stempel-{message.id}", "merchant": merchant, "shop": filled["shop"],
                "member_id": message.member_id, "first_name": filled["first_name"], "language": language,
                "trigger": message.trigger, "occasion": occasion_of(message.occasion),
                "subject": rendered.subject, "text": rendered.text, "card_url": filled["card_url"],
                "unsubscribe_url": filled["unsubscribe_url"]}
    if filled.get("nps_url") and filled["nps_url"] in rendered.text:  # not in a service message's
        document["nps_url"] = filled["nps_url"]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would turn the POST into a GET without the body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        return None


class WebhookChannel:
    """POSTs each message to ``[webhook] url``, signed with the shared secret."""

    def __init__(self, settings: WebhookSection, secret: bytes, *, clock: Callable[[], datetime] = utcnow) -> None:
        if not settings.url:
            raise ConfigError("no webhook: set [webhook] url in hub.toml")
        self.settings, self._secret, self.clock = settings, secret, clock
        self.host = urlsplit(settings.url).hostname or ""
        proxies = urllib.request.ProxyHandler({} if self.host == "127.0.0.1" else None)
        self._opener = urllib.request.build_opener(proxies, _NoRedirect())

    @classmethod
    def from_config(cls, settings: WebhookSection, *, clock: Callable[[], datetime] = utcnow) -> "WebhookChannel":
        """The channel for *settings*; raises ConfigError naming what to set."""
        if not settings.url:
            raise ConfigError("no webhook: set [webhook] url (and secret_file) in hub.toml")
        if settings.secret_file is None:
            raise ConfigError("set [webhook] secret_file in hub.toml: a 0600 file with the secret the receiver "
                              "checks signatures with (e.g. `openssl rand -hex 32`)")
        try:
            secret = Path(settings.secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[webhook] secret_file {settings.secret_file}: {exc.strerror}; write the shared "
                              "secret there (mode 0600)") from None
        if len(secret) < MIN_SECRET:
            raise ConfigError(f"[webhook] secret_file {settings.secret_file} holds {len(secret)} characters; "
                              f"use at least {MIN_SECRET} (e.g. `openssl rand -hex 32`)")
        return cls(settings, secret.encode(), clock=clock)

    def connect(self) -> None:
        """Nothing to open: one request per message."""

    def close(self) -> None:
        """Nothing to close."""

    def send(self, body: bytes) -> None:
        """POST *body*, signed now; raises NotSent (try again) or Refused (do not)."""
        timestamp = str(int(self.clock().timestamp()))
        request = urllib.request.Request(self.settings.url or "", data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "stempel-hub",
            TIMESTAMP: timestamp, SIGNATURE: signature(self._secret, timestamp, body)})
        try:
            with self._opener.open(request, timeout=self.settings.timeout) as response:
                response.read(4096)  # the answer is not used; read so the connection ends cleanly
        except urllib.error.HTTPError as exc:
            raise _by_status(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotSent(f"cannot reach the webhook at {self.host}: {reason}; will try again") from None


def _by_status(exc: urllib.error.HTTPError) -> NotSent | Refused:
    """The error for the receiver's non-2xx answer, with its status, reason and the start of its body."""
    try:
        said = exc.read(200).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        said = ""
    finally:
        exc.close()
    what = f"the webhook answered {exc.code} {exc.reason}" + (f": {said}" if said else "")
    if exc.code == 429 or exc.code >= 500:
        return NotSent(f"{what}; will try again")
    if 300 <= exc.code < 400:
        return Refused(f"{what} (a redirect to {exc.headers.get('Location')}); set [webhook] url to the final "
                       "address")
    return Refused(what)
