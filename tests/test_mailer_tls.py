"""E-mail over TLS to a real aiosmtpd (tests/smtpsink.py), on certificates from a CA made here.

STARTTLS and SMTPS with the private CA in ``[smtp] ca_file`` deliver, and the sink saw the
message over TLS (and under the login, with AUTH). A wrong password, a certificate for another
host or from a CA the hub does not trust, TLS against a STARTTLS port, and STARTTLS asked of a
server that does not offer it all get nothing through — no message, no login, no fallback to
plain text — and the message row stays unsent. The hub is SQLite: TLS is between the worker
and the SMTP server, the database backends have their own tests (test_automations.py).
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from smtpsink import SmtpSink, smtp_sink, smtp_tls_sink  # noqa: F401  (fixtures)
from testca import Authority
from test_automations import NOW, Shop

from cloud.automations.mailer import NotSent, SmtpChannel
from cloud.config import SmtpSection, load_hub_config
from kiosk.common.errors import ConfigError

USER, PASSWORD = "stempel@hub.example", "correct horse battery staple"
ANNA = "anna@example.org"
TLS_VERSIONS = {"TLSv1.2", "TLSv1.3"}


@dataclass(frozen=True)
class Pki:
    ca: Authority            # the private CA the hub is told to trust
    good: tuple[Path, Path]  # the sink's certificate and key: 127.0.0.1 and localhost, from ca
    other_host: tuple[Path, Path]  # from ca, but for mail.other.example only
    unknown_ca: tuple[Path, Path]  # for 127.0.0.1, from a CA the hub does not know


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("smtp-pki")
    ca, rogue = Authority(folder, "stempel-ca"), Authority(folder, "rogue-ca")
    return Pki(ca, ca.server("sink"), ca.server("other", ["mail.other.example"]), rogue.server("sink"))


@pytest.fixture
def shop(tmp_path):
    made = Shop(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite3'}", None)
    made.member("Anna", ANNA, joined=NOW - timedelta(days=1))  # a welcome is due
    yield made
    made.hub.close()


def settings(sink: SmtpSink, folder: Path, ca_file: Path | None, login: tuple[str, str] | None = None,
             **more) -> SmtpSection:
    """``[smtp]`` for *sink*: SMTPS if it speaks TLS from the first byte, else STARTTLS (the default)."""
    password_file = None
    if login is not None:
        password_file = folder / "smtp-password"
        password_file.write_text(login[1] + "\n")
    return SmtpSection(host=sink.host, port=sink.port, tls=sink.tls == "smtps", ca_file=ca_file,
                       username=login[0] if login else None, password_file=password_file,
                       sender="Stempel <stempel@hub.example>", timeout=10, **more)


def sweep(shop: Shop, smtp: SmtpSection):
    return shop.worker(channel=SmtpChannel.from_config(smtp)).sweep()


@pytest.mark.parametrize("login", [None, (USER, PASSWORD)], ids=["no-auth", "auth"])
@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_mail_goes_over_tls_verified_against_the_private_ca(shop, pki, smtp_tls_sink, tmp_path, tls, login):
    sink = smtp_tls_sink(*pki.good, tls=tls, login=login)
    done = sweep(shop, settings(sink, tmp_path, pki.ca.ca_file, login))
    assert done["sent"] == 1
    [mail] = sink.messages()
    assert mail["To"] == ANNA
    assert mail["X-Sink-TLS"] in TLS_VERSIONS  # the session that carried it was TLS
    assert mail["X-Sink-Auth"] == (USER if login else "none")
    [row] = shop.rows()
    assert (row.status, row.attempts) == ("sent", 1)


def test_the_starttls_sink_takes_no_mail_and_offers_no_login_before_tls(pki, smtp_tls_sink):
    """The harness itself: a message the STARTTLS sink kept cannot have come in plain text."""
    sink = smtp_tls_sink(*pki.good, tls="starttls", login=(USER, PASSWORD))
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as plain:
        plain.ehlo()
        assert plain.has_extn("starttls") and not plain.has_extn("auth")
        assert plain.mail("x@example.org")[0] == 530  # "Must issue a STARTTLS command first"


@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_a_wrong_password_stops_the_worker_and_the_message_stays_unsent(shop, pki, smtp_tls_sink, tmp_path, tls):
    sink = smtp_tls_sink(*pki.good, tls=tls, login=(USER, PASSWORD))
    with pytest.raises(ConfigError, match=r"refused the login of 'stempel@hub\.example' \(535\); "
                                          r"check \[smtp\] username and password_file"):
        sweep(shop, settings(sink, tmp_path, pki.ca.ca_file, (USER, "wrong")))
    [row] = shop.rows()
    assert (row.status, row.attempts, row.sent_at, row.claimed_by) == ("pending", 0, None, None)  # given back
    assert sink.messages() == []
    shop.advance(seconds=1)  # the password is fixed: the next sweep sends at once, no lease to wait out
    assert sweep(shop, settings(sink, tmp_path, pki.ca.ca_file, (USER, PASSWORD)))["sent"] == 1
    assert [m["To"] for m in sink.messages()] == [ANNA]


CERTIFICATE_PROBLEMS = {  # what the sink shows, what the hub trusts, what the error says
    "another-host": ("other_host", True, "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    "unknown-ca": ("unknown_ca", True, "unable to get local issuer certificate"),
    "private-ca-not-configured": ("good", False, "unable to get local issuer certificate"),
}


@pytest.mark.parametrize("tls", ["starttls", "smtps"])
@pytest.mark.parametrize("problem", CERTIFICATE_PROBLEMS)
def test_an_untrusted_certificate_gets_nothing(shop, pki, smtp_tls_sink, tmp_path, tls, problem):
    shown, trust_ca, why = CERTIFICATE_PROBLEMS[problem]
    sink = smtp_tls_sink(*getattr(pki, shown), tls=tls, login=(USER, PASSWORD))
    smtp = settings(sink, tmp_path, pki.ca.ca_file if trust_ca else None, (USER, PASSWORD))
    with pytest.raises(NotSent) as refused:
        SmtpChannel.from_config(smtp).connect()
    assert f"the certificate of the SMTP server 127.0.0.1:{sink.port} is not trusted ({why}" in str(refused.value)
    assert "[smtp] ca_file" in str(refused.value)
    done = sweep(shop, smtp)
    assert (done["sent"], done["deferred"]) == (0, 1)
    [row] = shop.rows()
    assert (row.status, row.attempts, row.claimed_by) == ("pending", 0, None)
    assert sink.messages() == []


def test_starttls_asked_of_a_server_without_it_sends_nothing_in_plain_text(shop, smtp_sink, tmp_path, pki):
    smtp = settings(smtp_sink, tmp_path, pki.ca.ca_file, (USER, PASSWORD), starttls=True)
    with pytest.raises(NotSent, match=rf"the SMTP server 127\.0\.0\.1:{smtp_sink.port} does not offer STARTTLS: "
                                      "nothing sent in plain text"):
        SmtpChannel.from_config(smtp).connect()
    done = sweep(shop, smtp)
    assert (done["sent"], done["deferred"]) == (0, 1)
    [row] = shop.rows()
    assert (row.status, row.attempts) == ("pending", 0)
    assert smtp_sink.messages() == []


def test_smtps_against_a_starttls_port_fails_the_handshake(pki, smtp_tls_sink, tmp_path):
    sink = smtp_tls_sink(*pki.good, tls="starttls")
    smtp = settings(sink, tmp_path, pki.ca.ca_file).model_copy(update={"tls": True})
    with pytest.raises(NotSent, match=r"TLS with the SMTP server .* failed .*check \[smtp\] tls"):
        SmtpChannel.from_config(smtp).connect()
    assert sink.messages() == []


def test_ca_file_is_relative_to_hub_toml_and_must_be_a_readable_pem_file(tmp_path, pki):
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "hub.toml"

    def load(ca_file: str):
        config.write_text(f'[smtp]\nhost = "smtp.example.net"\nsender = "s@example.net"\nca_file = "{ca_file}"\n')
        return load_hub_config(config, env={}, hub__data_dir=tmp_path / "hub")

    (folder / "smtp-ca.crt").write_bytes(pki.ca.ca_file.read_bytes())
    loaded = load("smtp-ca.crt")
    assert loaded.smtp.ca_file == folder / "smtp-ca.crt"
    SmtpChannel.from_config(loaded.smtp)

    with pytest.raises(ConfigError, match=rf"^{config}: \[smtp\] ca_file {folder}/missing\.crt: "
                                          "No such file or directory; give a readable PEM file"):
        load("missing.crt")
    (folder / "notes.txt").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"\[smtp\] ca_file .*notes\.txt: no CA certificate in it"):
        load("notes.txt")
    with pytest.raises(ConfigError, match=rf"\[smtp\] ca_file {folder}: "):
        load(".")


def test_a_channel_made_without_the_config_file_checks_ca_file_too(tmp_path):
    smtp = SmtpSection(host="smtp.example.net", sender="s@example.net", ca_file=tmp_path / "missing.crt")
    with pytest.raises(ConfigError, match=r"\[smtp\] ca_file .*missing\.crt: No such file or directory"):
        SmtpChannel.from_config(smtp)
