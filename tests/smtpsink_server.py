"""The process behind smtpsink.py's TLS sinks: aiosmtpd on 127.0.0.1 with STARTTLS (required
before MAIL) or TLS from the first byte (SMTPS), and AUTH if a login is given, keeping each
message in a Maildir.

Each kept message carries two trace headers, as a real MTA's ``Received:`` line would:
``X-Sink-TLS`` (the TLS version it came over, ``none`` for plain text) and ``X-Sink-Auth``
(the login it was sent under, ``none`` without). The server binds the port it is given (0: a
free one chosen by the kernel) and prints ``listening <port>`` once it accepts connections:
the parent waits for that line, not for a clock.

    python smtpsink_server.py MAILDIR --cert CERT --key KEY [--smtps] [--login USER --password-file FILE]

AUTH is offered only over TLS: after STARTTLS, or on the SMTPS connection (aiosmtpd does not
see TLS it did not start itself, so ``auth_require_tls`` is off there: the whole connection is TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from pathlib import Path

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class TracingMailbox(Mailbox):
    """aiosmtpd's Maildir handler, noting on each message how its session was secured."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = self.prepare_message(session, envelope)
        tls = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
        message["X-Sink-TLS"] = tls.version() if tls is not None else "none"
        message["X-Sink-Auth"] = str(session.auth_data) if session.authenticated else "none"
        self.handle_message(message)
        return "250 OK"


def authenticator(login: str, password: str):
    """aiosmtpd's authenticator admitting *login* with *password* only (PLAIN and LOGIN)."""

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == login.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    return check


async def serve(args: argparse.Namespace) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    handler = TracingMailbox(args.maildir)
    check = authenticator(args.login, Path(args.password_file).read_text().strip()) if args.login else None

    def protocol() -> SMTP:
        return SMTP(handler, hostname="sink.test", tls_context=None if args.smtps else context,
                    require_starttls=not args.smtps, authenticator=check, auth_required=check is not None,
                    auth_require_tls=not args.smtps)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", args.port, ssl=context if args.smtps else None)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("maildir")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--smtps", action="store_true", help="TLS from the first byte instead of STARTTLS")
    parser.add_argument("--login")
    parser.add_argument("--password-file")
    args = parser.parse_args()
    if bool(args.login) != bool(args.password_file):
        parser.error("--login and --password-file go together")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
