"""Pass tokens: what a kiosk accepts, and the specific reason for everything it refuses."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.protocol import qr
from kiosk.protocol.passes import KeyRing, PassRejected, PassSigner, PassVerifier, Reason, public_key_entry, KeysDocument


@pytest.fixture
def signer() -> PassSigner:
    return PassSigner("cafe-rosa", Ed25519PrivateKey.generate())


def ring_for(*signers: PassSigner, revoked=()) -> KeyRing:
    doc = KeysDocument(merchant="cafe-rosa", keys=[public_key_entry(s.merchant, s._key.public_key()) for s in signers],
                       revoked_members=list(revoked))
    return KeyRing.from_json(doc.to_json())


def test_a_signed_pass_verifies_and_names_its_member(signer):
    url = signer.url("https://stempel.example", "m123abc")
    claims = PassVerifier("cafe-rosa", ring_for(signer)).verify(url)
    assert (claims.merchant, claims.member, claims.kid) == ("cafe-rosa", "m123abc", signer.kid)


def test_pass_url_stays_in_qr_alphanumeric_mode_at_version_7_or_less(signer):
    url = signer.url("https://stempel.example", "mabcdefghi")
    code = qr.make_qr(url)
    assert code.mode == "alphanumeric"
    assert code.version <= 7


def _reason(verifier: PassVerifier, text) -> str:
    with pytest.raises(PassRejected) as info:
        verifier.verify(text)
    return info.value.reason


def test_forged_signature_is_rejected(signer):
    url = signer.url("https://stempel.example", "m123abc")
    head, sig = url.rsplit(".", 1)
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), f"{head}.{flipped}") == Reason.FORGED


def test_member_swapped_into_a_valid_signature_is_forged(signer):
    url = signer.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url.replace("M123ABC", "M999ZZZ")) == Reason.FORGED


def test_pass_of_another_merchant_is_wrong_merchant(signer):
    other = PassSigner("baeckerei-kurz", Ed25519PrivateKey.generate())
    url = other.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url) == Reason.WRONG_MERCHANT


def test_key_not_in_the_ring_is_unknown_key(signer):
    stranger = PassSigner("cafe-rosa", Ed25519PrivateKey.generate())
    url = stranger.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url) == Reason.UNKNOWN_KEY


@pytest.mark.parametrize("cut", [1, 20, 60])
def test_truncated_token_is_truncated(signer, cut):
    url = signer.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url[:-cut]) == Reason.TRUNCATED


def test_token_missing_fields_is_truncated(signer):
    url = signer.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), url.rsplit(".", 2)[0]) == Reason.TRUNCATED


@pytest.mark.parametrize("text, reason", [
    ("https://example.com/menu", Reason.NOT_A_PASS),
    ("hello", Reason.NOT_A_PASS),
    (bytes(range(256)) * 8, Reason.NOT_A_PASS),
    ("HTTPS://STEMPEL.EXAMPLE/P/9.AAAA.CAFE-ROSA.M1.AAAA", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.K!!.CAFE-ROSA.M1.AAAA", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.KID.CAFE-ROSA.M1.AB0189", Reason.GARBLED),
    ("HTTPS://STEMPEL.EXAMPLE/P/1.KID.CAFE-ROSA.M1.AA.BB", Reason.GARBLED),
])
def test_garbled_and_foreign_content_gets_a_specific_reason(signer, text, reason):
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer)), text) == reason


def test_revoked_member_is_rejected(signer):
    url = signer.url("https://stempel.example", "m123abc")
    assert _reason(PassVerifier("cafe-rosa", ring_for(signer, revoked=["m123abc"])), url) == Reason.REVOKED


def test_rotated_keys_both_verify_during_rotation(signer):
    new = PassSigner("cafe-rosa", Ed25519PrivateKey.generate())
    verifier = PassVerifier("cafe-rosa", ring_for(signer, new))
    assert verifier.verify(signer.url("https://h", "m1")).member == "m1"
    assert verifier.verify(new.url("https://h", "m2")).member == "m2"


def test_malformed_keys_document_names_the_field():
    from kiosk.errors import ConfigError

    with pytest.raises(ConfigError, match="keys"):
        KeyRing.from_json('{"merchant": "cafe-rosa", "keys": [{"kid": "x"}]}')
    with pytest.raises(ConfigError, match="public_key"):
        KeyRing.from_json('{"merchant": "m", "keys": [{"kid": "x", "merchant": "m", "public_key": "bm9wZQ=="}]}')
