"""Pass tokens: what a kiosk accepts, and the specific reason for everything it refuses."""

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.common.errors import ConfigError
from kiosk.protocol import qr
from kiosk.protocol.passes import (KeyRing, KeysDocument, PassRejected, PassSigner, PassVerifier, Reason,
                                   check_base_url, public_key_entry, serial_text)

BASE = "https://stempel.example"


@pytest.fixture
def signer() -> PassSigner:
    return PassSigner("cafe-rosa", Ed25519PrivateKey.generate())


def ring_for(*signers: PassSigner, revoked=(), revoked_passes=(), base_url=None) -> KeyRing:
    doc = KeysDocument(merchant="cafe-rosa", keys=[public_key_entry(s.merchant, s._key.public_key()) for s in signers],
                       revoked_members=list(revoked), revoked_passes=list(revoked_passes), base_url=base_url)
    return KeyRing.from_json(doc.to_json())


def test_a_signed_pass_verifies_and_names_its_member_and_serial(signer):
    url = signer.url(BASE, "m123abc", "b")
    claims = PassVerifier("cafe-rosa", ring_for(signer)).verify(url)
    assert (claims.merchant, claims.member, claims.kid, claims.serial) == ("cafe-rosa", "m123abc", signer.kid, "b")


@pytest.mark.parametrize("merchant, serial", [("cafe-rosa", "b"), ("cafe-rosa", serial_text(2**20 - 1)),
                                              ("a" * 29, serial_text(2**20 - 1))])
def test_pass_url_fits_qr_version_7_at_level_m_with_the_longest_ids(merchant, serial):
    """The longest member id the hub makes, the longest serial of a merchant's first million
    passes, and the longest merchant id `init` accepts at this base URL (29 characters)."""
    url = PassSigner(merchant, Ed25519PrivateKey.generate()).url(BASE, "mabcdefghi", serial)
    head, digits = qr.segments(url)  # alphanumeric, then the signature's digits in a numeric segment
    assert re.fullmatch(r"[0-9A-Z.:/-]+", head) and re.fullmatch(r"[0-9]{155}", digits)
    code = qr.make_qr(url)
    assert code.version <= 7 and code.error == "M"
    legacy = qr.make_qr(PassSigner(merchant, Ed25519PrivateKey.generate()).legacy_url(BASE, "mabcdefghi"))
    assert code.version <= legacy.version  # a pass with a serial is no bigger than one without


def _reason(verifier: PassVerifier, text) -> str:
    with pytest.raises(PassRejected) as info:
        verifier.verify(text)
    return info.value.reason


def test_forged_signature_is_rejected(signer):
    url = signer.url(BASE, "m123abc", "b")
    head, sig = url.rsplit(".", 1)
    flipped = sig[:-20] + ("2" if sig[-20] == "1" else "1") + sig[-19:]
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), f"{head}.{flipped}") == Reason.FORGED


def test_member_or_serial_swapped_into_a_valid_signature_is_forged(signer):
    url = signer.url(BASE, "m123abc", "b")
    verifier = PassVerifier("cafe-rosa", ring_for(signer))
    assert _reason(verifier, url.replace("M123ABC", "M999ZZZ")) == Reason.FORGED
    assert _reason(verifier, url.replace(".M123ABC.B.", ".M123ABC.C.")) == Reason.FORGED


def test_pass_of_another_merchant_is_wrong_merchant(signer):
    other = PassSigner("baeckerei-kurz", Ed25519PrivateKey.generate())
    url = other.url(BASE, "m123abc", "b")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url) == Reason.WRONG_MERCHANT


def test_key_not_in_the_ring_is_unknown_key(signer):
    stranger = PassSigner("cafe-rosa", Ed25519PrivateKey.generate())
    url = stranger.url(BASE, "m123abc", "b")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url) == Reason.UNKNOWN_KEY


@pytest.mark.parametrize("cut", [1, 20, 60])
def test_truncated_token_is_truncated(signer, cut):
    url = signer.url(BASE, "m123abc", "b")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url[:-cut]) == Reason.TRUNCATED
    legacy = signer.legacy_url(BASE, "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), legacy[:-cut]) == Reason.TRUNCATED


def test_token_missing_fields_is_truncated(signer):
    url = signer.url(BASE, "m123abc", "b")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url.rsplit(".", 2)[0]) == Reason.TRUNCATED


SIG = "1" * 155


@pytest.mark.parametrize("text, reason", [
    ("https://example.com/menu", Reason.NOT_A_PASS),
    ("hello", Reason.NOT_A_PASS),
    (bytes(range(256)) * 8, Reason.NOT_A_PASS),
    ("HTTPS://STEMPEL.EXAMPLE/P/9.AAAA.CAFE-ROSA.M1.AAAA", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.K!!.CAFE-ROSA.M1.AAAA", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.KID.CAFE-ROSA.M1.AB0189", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.KID.CAFE-ROSA.M1.AA.BB", Reason.GARBLED),
    (f"HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1.B.{SIG[:-1]}A", Reason.GARBLED),
    (f"HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1.B1.{SIG}", Reason.GARBLED),  # 1 is not in a serial
    (f"HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1.B.{SIG}1", Reason.GARBLED),
    (f"HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1.B.{'9' * 155}", Reason.GARBLED),  # above 2**512
    (f"HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1.B.B.{SIG}", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/2.KID.CAFE-ROSA.M1-\n.B.1", Reason.NOT_A_PASS),
])
def test_garbled_and_foreign_content_gets_a_specific_reason(signer, text, reason):
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), text) == reason


def test_a_revoked_serial_refuses_that_pass_only(signer):
    verifier = PassVerifier("cafe-rosa", ring_for(signer, revoked_passes=["b"]))
    assert _reason(verifier, signer.url(BASE, "m123abc", "b")) == Reason.REVOKED
    assert verifier.verify(signer.url(BASE, "m123abc", "c")).member == "m123abc"  # the member's next pass


def test_version_1_passes_stay_valid_and_are_revoked_per_member(signer):
    legacy = signer.legacy_url(BASE, "m123abc")
    claims = PassVerifier("cafe-rosa", ring_for(signer)).verify(legacy)
    assert (claims.member, claims.serial, claims.version) == ("m123abc", None, 1)
    verifier = PassVerifier("cafe-rosa", ring_for(signer, revoked=["m123abc"]))
    assert _reason(verifier, legacy) == Reason.REVOKED
    assert verifier.verify(signer.url(BASE, "m123abc", "b")).member == "m123abc"  # re-issued with a serial


def test_a_version_1_signature_does_not_verify_as_version_2(signer):
    """The two versions sign under different domains: one cannot be re-dressed as the other."""
    legacy = signer.legacy_url(BASE, "m123abc")
    b32 = legacy.rsplit(".", 1)[1]
    sig = int.from_bytes(base64.b32decode(b32 + "=" * (-len(b32) % 8)), "big")
    dressed = f"{BASE.upper()}/P/2.{signer.kid.upper()}.CAFE-ROSA.M123ABC.B.{str(sig).zfill(155)}"
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), dressed) == Reason.FORGED


def test_rotated_keys_both_verify_during_rotation(signer):
    new = PassSigner("cafe-rosa", Ed25519PrivateKey.generate())
    verifier = PassVerifier("cafe-rosa", ring_for(signer, new))
    assert verifier.verify(signer.url("https://h", "m1", "b")).member == "m1"
    assert verifier.verify(new.url("https://h", "m2", "c")).member == "m2"


# -- the canonical form: any letter case (deliberate), http(s) only, the merchant's own host ---------

def test_the_same_pass_in_any_letter_case_is_the_same_pass(signer):
    verifier = PassVerifier("cafe-rosa", ring_for(signer, base_url=BASE))
    url = signer.url(BASE, "m123abc", "b")
    variants = [url, url.lower(), url.replace("HTTPS://STEMPEL", "https://Stempel"), url.replace("HTTPS", "HTTP")]
    assert {verifier.verify(v) for v in variants} == {verifier.verify(url)}
    revoked = PassVerifier("cafe-rosa", ring_for(signer, revoked_passes=["b"], base_url=BASE))
    assert {_reason(revoked, v) for v in variants} == {Reason.REVOKED}  # no re-cased copy escapes a revocation


@pytest.mark.parametrize("prefix, reason", [
    ("FTP://STEMPEL.EXAMPLE", Reason.NOT_A_PASS),
    ("JAVASCRIPT://STEMPEL.EXAMPLE", Reason.NOT_A_PASS),
    ("STEMPEL.EXAMPLE", Reason.NOT_A_PASS),
    ("HTTPS://EVIL.EXAMPLE", Reason.WRONG_MERCHANT),
    ("HTTPS://STEMPEL.EXAMPLE.EVIL.EXAMPLE", Reason.WRONG_MERCHANT),
    ("HTTPS://STEMPEL.EXAMPLE:8443", Reason.WRONG_MERCHANT),
    ("HTTPS://STEMPEL.EXAMPLE/X", Reason.WRONG_MERCHANT),
])
def test_another_scheme_or_host_is_refused(signer, prefix, reason):
    token = signer.url(BASE, "m123abc", "b").split("/P/", 1)[1]
    verifier = PassVerifier("cafe-rosa", ring_for(signer, base_url=BASE))
    assert _reason(verifier, f"{prefix}/P/{token}") == reason
    assert _reason(verifier, token) == Reason.NOT_A_PASS  # a bare token is not a pass


def test_a_base_url_with_a_path_is_matched_whole(signer):
    base = "https://hub.example:8443/stempel"
    verifier = PassVerifier("cafe-rosa", ring_for(signer, base_url=base))
    url = signer.url(base, "m123abc", "b")
    assert url.startswith("HTTPS://HUB.EXAMPLE:8443/STEMPEL/P/2.")
    assert verifier.verify(url).member == "m123abc"
    assert _reason(verifier, url.replace("/STEMPEL/", "/")) == Reason.WRONG_MERCHANT


def test_without_a_base_url_in_the_keys_any_https_host_is_accepted(signer):
    """Keys documents from before base URLs were sent: the kiosk cannot tell the host, so it
    checks the scheme and the signature only."""
    token = signer.url(BASE, "m123abc", "b").split("/P/", 1)[1]
    assert PassVerifier("cafe-rosa", ring_for(signer)).verify(f"https://other.example/P/{token}").member == "m123abc"


@pytest.mark.parametrize("value, canonical", [
    ("https://stempel.example", "https://stempel.example"),
    ("HTTPS://Stempel.Example/", "https://stempel.example"),
    ("http://hub.example:8080/loyalty/cards", "http://hub.example:8080/loyalty/cards"),
])
def test_base_urls_have_one_canonical_form(value, canonical):
    assert check_base_url(value) == canonical


@pytest.mark.parametrize("value", ["ftp://x.example", "https://", "https://user@x.example", "https://x.example/?a=1",
                                   "https://x.example/a_b", "https://x.example#top", "https://x.example:99999",
                                   "https://x.example\n", "stempel.example", "https://" + "a" * 120])
def test_base_urls_that_cannot_be_a_pass_prefix_are_refused(value):
    with pytest.raises(ConfigError, match="base URL"):
        check_base_url(value)


def test_malformed_keys_document_names_the_field():
    with pytest.raises(ConfigError, match="keys"):
        KeyRing.from_json('{"merchant": "cafe-rosa", "keys": [{"kid": "x"}]}')
    with pytest.raises(ConfigError, match="public_key"):
        KeyRing.from_json('{"merchant": "m", "keys": [{"kid": "x", "merchant": "m", "public_key": "bm9wZQ=="}]}')
    with pytest.raises(ConfigError, match="base URL"):
        KeyRing.from_json('{"merchant": "m", "keys": [], "base_url": "ftp://x"}')
