"""The idle screen that recruits, end to end: the join URL from the bundle (``stempel-hub add-kiosk``),
the config file or the kiosk's own config document, checked to fit a QR the OLED can show; the
idle screen showing it; the hub serving the URL a phone reads off the screen; and the offline
marker following the hub link's connection."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hubdb import hub_url, pg_database  # noqa: F401
from PIL import Image, ImageFilter
from webapp import BASE, _quick_password_hashes, broker, web  # noqa: F401

from cloud.hubkey import hub_keys_json, hub_signing_key
from cloud.provision import Endpoint, add_kiosk, kiosk_join_url
from kiosk.common.errors import ConfigError
from kiosk.config import load_config
from kiosk.display import joinqr, screens
from kiosk.link.documents import KIOSK, KIOSK_FILE, MERCHANT, DocumentFollower
from kiosk.link.offline import OfflineWatch
from kiosk.link.updates import Updates
from kiosk.protocol.passes import key_id
from kiosk.protocol.signed import sign
from kiosk.wiring import build_kiosk, effective_config

JOIN = "https://stempel.example/j/cafe-rosa.counter-1"  # what add-kiosk writes for the conftest hub


# -- which URLs a join QR may carry -----------------------------------------------------------------
@pytest.mark.parametrize("value, error", [
    ("ftp://hub.example/j/cafe", "not a join URL"),
    ("hub.example/j/cafe", "not a join URL"),
    ("https://hub.example/j/café", "not a join URL"),            # printable ASCII only
    ("https://hub.example/j/cafe rosa", "not a join URL"),
    ("https://hub.example/j/cafe\n", "not a join URL"),
    ("https://user@hub.example/j/cafe", "not a join URL"),       # nothing between scheme and host
    ("", "not a join URL"),
    ("https://hub.example/j/" + "x" * 300, "not a join URL"),   # bounded before anything else
    ("https://hub.example/j/" + "x" * 60, "needs a version 4 QR code"),
])
def test_a_join_url_the_screen_cannot_show_is_refused_with_the_fix(value, error):
    with pytest.raises(ConfigError, match=error):
        joinqr.check_join_url(value)


@pytest.mark.parametrize("url, text", [
    ("https://hub.example/j/cafe-rosa.counter-1", "HTTPS://HUB.EXAMPLE/j/cafe-rosa.counter-1"),
    ("http://Hub.Example:8080/j/cafe", "HTTP://HUB.EXAMPLE:8080/j/cafe"),
    ("https://hub.example", "HTTPS://HUB.EXAMPLE"),
])
def test_the_qr_carries_scheme_and_host_in_capitals_and_the_path_as_it_is(url, text):
    assert joinqr.check_join_url(url) == url and joinqr.qr_text(url) == text


def test_capitals_save_room_and_an_all_capital_url_is_one_alphanumeric_segment():
    lower = "https://stempel.example/j/cafe-rosa.counter-1"
    assert joinqr.join_qr(lower).designator == "3-M"  # byte mode alone would need version 4 at M
    upper = joinqr.join_qr("HTTPS://STEMPEL.EXAMPLE/J/CAFE-ROSA.COUNTER-1")  # a hub that took /J/...
    assert upper.version < 3 or upper.error in ("Q", "H")
    assert joinqr.dark_modules(lower).size == (2 * 29, 2 * 29)


# -- where the URL comes from -------------------------------------------------------------------------
def test_the_config_field_is_checked_and_named(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[kiosk]\njoin_url = "{JOIN}"\n')
    assert load_config(path, env={}).kiosk.join_url == JOIN
    path.write_text('[kiosk]\njoin_url = "ftp://nowhere"\n')
    with pytest.raises(ConfigError, match=r"kiosk.toml: \[kiosk.join_url\] 'ftp://nowhere' is not a join URL"):
        load_config(path, env={})
    assert load_config(None, env={}).kiosk.join_url is None


def test_add_kiosk_writes_the_kiosk_s_join_page_into_the_bundle(hub):
    done = add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", Endpoint("broker.lan", 1883))
    assert done.join_url == JOIN
    assert load_config(done.bundle / "kiosk.toml", env={}).kiosk.join_url == JOIN


def test_a_join_url_too_long_for_the_screen_falls_back_to_the_shop_s_page_then_to_none():
    assert kiosk_join_url("https://hub.example/", "cafe-rosa", "k1") == "https://hub.example/j/cafe-rosa.k1"
    long_kiosk = "a-very-long-kiosk-id-at-the-back"
    assert kiosk_join_url("https://stempel.example", "cafe-rosa", long_kiosk) == "https://stempel.example/j/cafe-rosa"
    assert kiosk_join_url("https://" + "h" * 60 + ".example", "cafe-rosa", "k1") is None


HUB_KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(HUB_KEY.public_key()): HUB_KEY.public_key()}


def kiosk_doc(version: int, kiosk: str | None = "counter-1", **body) -> bytes:
    return json.dumps(sign({"schema": "stempel.config.v1", "merchant": "cafe-rosa", "kiosk": kiosk,
                            "version": version, **body}, HUB_KEY)).encode()


def test_the_kiosk_document_sets_the_join_url_for_the_next_start(tmp_path):
    follower = DocumentFollower("cafe-rosa", "counter-1", TRUSTED, tmp_path, base_join_url=JOIN).restore()
    assert follower.join_url() == JOIN and not follower.restart_required()
    pushed = "https://hub.example/j/cafe-rosa.counter-1"
    outcome = follower.handle(KIOSK, kiosk_doc(1, join_url=pushed))
    assert outcome.report.status == "applied" and outcome.report.restart_required
    assert follower.join_url() == pushed
    after = DocumentFollower("cafe-rosa", "counter-1", TRUSTED, tmp_path, base_join_url=JOIN).restore()
    assert after.join_url() == pushed and not after.restart_required()
    assert after.handle(KIOSK, kiosk_doc(2)).report.restart_required  # dropped again: the file's, at a restart
    assert after.join_url() == JOIN


@pytest.mark.parametrize("scope, document, error", [
    (KIOSK, kiosk_doc(1, join_url="ftp://hub.example/j/x"), "join_url: 'ftp://hub.example/j/x' is not a join URL"),
    (KIOSK, kiosk_doc(1, join_url="https://hub.example/j/" + "x" * 60), "join_url: 'https://hub.example/j/xxx"),
    (KIOSK, kiosk_doc(1, join_url="x" * 201), "[join_url] String should have at most 200 characters"),
    (MERCHANT, kiosk_doc(1, kiosk=None, program={}, join_url=JOIN), "only a kiosk's own document"),
])
def test_a_join_url_the_kiosk_cannot_show_or_not_for_it_is_refused(tmp_path, scope, document, error):
    follower = DocumentFollower("cafe-rosa", "counter-1", TRUSTED, tmp_path).restore()
    report = follower.handle(scope, document).report
    assert report.status == "rejected" and any(error in e for e in report.errors), report.errors
    assert follower.join_url() is None and not follower.restart_required()


# -- the idle screen ------------------------------------------------------------------------------------
def _kiosk(kiosk_dir, clock, **overrides):
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), kiosk__shop_name="Cafe Rosa", **overrides)
    return build_kiosk(config, clock=clock)


def test_the_idle_screen_shows_the_join_qr_and_without_a_url_the_shop_s_name(kiosk_dir, clock):
    with_url = _kiosk(kiosk_dir, clock, kiosk__join_url=JOIN)
    try:
        with_url.show_idle()
        assert with_url.display.shown[-1] == screens.Idle("Cafe Rosa", "en", JOIN)
    finally:
        with_url.close()
    plain = _kiosk(kiosk_dir, clock)
    try:
        plain.show_idle()
        assert plain.display.shown[-1] == screens.Idle("Cafe Rosa", "en")
    finally:
        plain.close()


def test_the_pushed_join_url_is_the_one_the_kiosk_starts_with(hub, kiosk_dir, clock):
    """The kiosk document the link saved before the restart wins over the file's join_url."""
    (kiosk_dir / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))
    pushed = "https://hub.example/j/cafe-rosa"
    document = sign({"schema": "stempel.config.v1", "merchant": "cafe-rosa", "kiosk": "kiosk-1", "version": 1,
                     "join_url": pushed}, hub_signing_key(hub.data_dir))
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), kiosk__join_url=JOIN)
    assert effective_config(config).kiosk.join_url == JOIN
    (kiosk_dir / KIOSK_FILE).write_text(json.dumps(document))
    assert effective_config(config).kiosk.join_url == pushed
    kiosk = build_kiosk(config, clock=clock)
    try:
        kiosk.show_idle()
        assert kiosk.display.shown[-1].join_url == pushed
    finally:
        kiosk.close()


def test_the_hub_serves_the_url_a_phone_reads_off_the_idle_screen(web):
    """The URL ``add-kiosk`` writes for kiosk counter-1 of the site's shop "cafe", drawn on the
    idle screen, photographed and decoded: the path a phone then asks for is the join page."""
    url = kiosk_join_url(BASE, "cafe", "counter-1")
    image = screens.render(screens.Idle("Cafe Rosa", join_url=url)).convert("L")
    photo = image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)
    photo = photo.filter(ImageFilter.GaussianBlur(1.5))
    (read,) = [r.text for r in zxingcpp.read_barcodes(np.asarray(photo))]
    scheme, _, host, path = read.split("/", 3)
    assert f"{scheme.lower()}//{host.lower()}" == BASE and "/" + path == "/j/cafe.counter-1"
    page = web.client().get("/" + path)
    assert page.status_code == 200 and "Cafe Rosa" in page.get_data(as_text=True)


# -- the offline marker ---------------------------------------------------------------------------------
class Link:
    """What the watch needs of a hub link: is the bus connected, and a clock to time the outage."""

    def __init__(self) -> None:
        self.connected, self.now = True, 0.0


def test_the_marker_appears_after_the_grace_period_and_goes_when_the_hub_is_back(kiosk_dir, clock):
    link, updates = Link(), Updates()
    watch = OfflineWatch(lambda: link.connected, updates, grace=10, monotonic=lambda: link.now)
    kiosk = _kiosk(kiosk_dir, clock, kiosk__join_url=JOIN)
    try:
        kiosk.show_idle()
        link.connected = False
        for link.now in (1.0, 9.9):
            assert not watch.poll() and updates.apply_pending(kiosk) == 0  # a hiccup is not worth a marker
        link.now = 11.0
        assert watch.poll() and updates.apply_pending(kiosk) == 1
        assert kiosk.offline and kiosk.display.shown[-1] == screens.Idle("Cafe Rosa", "en", JOIN, offline=True)
        kiosk.press_button()  # every screen carries it now
        assert kiosk.display.shown[-1] == screens.NothingToRedeem(offline=True)
        assert watch.poll() and updates.apply_pending(kiosk) == 0  # no news: nothing queued
        link.connected = True
        assert not watch.poll() and updates.apply_pending(kiosk) == 1
        assert not kiosk.offline and kiosk.display.shown[-1] == screens.NothingToRedeem()
        link.connected, link.now = False, 20.0
        assert not watch.poll()  # the grace period starts again
    finally:
        kiosk.close()


def test_a_kiosk_that_never_reaches_the_hub_is_marked_and_the_watch_stops(kiosk_dir, clock):
    updates, queued = Updates(), threading.Event()
    put = updates.put
    updates.put = lambda what, change: (put(what, change), queued.set())  # type: ignore[method-assign]
    watch = OfflineWatch(lambda: False, updates, grace=0, period=0.01).start()
    try:
        assert queued.wait(5)
    finally:
        watch.stop()
    kiosk = _kiosk(kiosk_dir, clock)
    try:
        kiosk.show_idle()
        updates.apply_pending(kiosk)
        assert kiosk.display.shown[-1] == screens.Idle("Cafe Rosa", offline=True)
    finally:
        kiosk.close()
