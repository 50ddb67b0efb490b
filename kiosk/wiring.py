"""Build a Kiosk from configuration: keys, ledger, the documents the hub pushed, and the four
devices the hardware factory (``kiosk/hardware/factory.py``) gives; and tie its screens to the
hub link (the offline marker)."""

from __future__ import annotations

from contextlib import ExitStack, closing
from typing import TYPE_CHECKING

from kiosk.app import Kiosk
from kiosk.clock import Clock, SystemClock, boot_id
from kiosk.config import KioskConfig
from kiosk.common.errors import ConfigError
from kiosk.hardware.factory import HardwareFactory, hardware_factory
from kiosk.ledger import Ledger
from kiosk.link.documents import DocumentFollower
from kiosk.link.offline import GRACE, OfflineWatch
from kiosk.protocol.passes import KeyRing, PassVerifier
from kiosk.session import CounterSession

if TYPE_CHECKING:
    from kiosk.link.hub_link import HubLink


def load_keyring(config: KioskConfig) -> KeyRing:
    return KeyRing.from_json(_keys_text(config))


def _keys_text(config: KioskConfig) -> str:
    """The keys file's text; a missing one is a ConfigError with the fix, whoever asks first."""
    path = config.keys_path()
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no keys file; copy the output of `stempel-hub export-keys` there "
            "or set [kiosk] keys_file"
        ) from None


def load_hub_keys(config: KioskConfig) -> dict:
    """The hub public keys this kiosk trusts for signed documents (kid -> Ed25519PublicKey).

    Read from ``hub_keys_file`` (default ``<data_dir>/hub-keys.json``, part of the
    ``stempel-hub add-kiosk`` bundle). Without it the kiosk trusts no remote document.
    """
    import json

    from kiosk.protocol.signed import public_key_from_b64

    path = config.hub_keys_path()
    try:
        doc = json.loads(path.read_text())
        return {k["kid"]: public_key_from_b64(k["public_key"]) for k in doc["keys"]}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a hub keys document ({exc}); copy it again from the kiosk bundle") from exc


def merchant_of(config: KioskConfig, keys_text: str | None = None) -> str:
    """The configured merchant, else the one named by the keys file."""
    if config.kiosk.merchant:
        return config.kiosk.merchant
    from kiosk.protocol.passes import KeysDocument

    return KeysDocument.model_validate_json(keys_text or _keys_text(config)).merchant


def ledger_path(config: KioskConfig):
    return config.kiosk.data_dir / "ledger.sqlite3"


def open_documents(config: KioskConfig) -> DocumentFollower:
    """The documents the hub pushed before (programme, kiosk config, keys), loaded from the data
    folder and verified once; the kiosk is built from them and its hub link follows them on.

    Their programme takes precedence over the file's, and the kiosk document's hardware
    settings and join URL over ``[hardware]`` and ``[kiosk] join_url``, so what the owner
    pushed survives a restart.
    """
    return DocumentFollower(merchant_of(config), config.kiosk.id, load_hub_keys(config), config.kiosk.data_dir,
                            base_program=config.program, base_hardware=config.hardware,
                            base_join_url=config.kiosk.join_url, keys_file=config.keys_path()).restore()


def effective_config(config: KioskConfig, documents: DocumentFollower | None = None) -> KioskConfig:
    """*config* with the pushed programme, hardware and join URL in force (what this start will run)."""
    documents = documents if documents is not None else open_documents(config)
    kiosk = config.kiosk.model_copy(update={"join_url": documents.join_url()})
    return config.model_copy(update={"program": documents.program(), "hardware": documents.hardware(),
                                     "kiosk": kiosk})


def build_kiosk(config: KioskConfig, *, clock: Clock | None = None, hardware: HardwareFactory | None = None,
                live: bool = True, documents: DocumentFollower | None = None) -> Kiosk:
    """Open every stage the config (and the documents the hub pushed) names; raises ConfigError /
    HardwareError with a fix.

    *documents* (``open_documents``) are opened here if not given: ``stempel-kiosk run`` opens
    them once and hands the same ones to the hub link. *hardware* defaults to the factory
    ``[hardware]`` chooses. ``live=False`` (the one-shot commands ``scan-image`` and ``redeem``)
    opens neither the camera nor the front panel, which the running kiosk holds.
    """
    clock = clock or SystemClock()
    documents = documents if documents is not None else open_documents(config)
    keyring = documents.keyring()
    with ExitStack() as opened:  # what was opened is closed again if a later stage fails
        ledger = Ledger(ledger_path(config))
        opened.callback(ledger.close)
        config = effective_config(config, documents)
        hardware = hardware or hardware_factory(config.hardware)
        decoder, display = hardware.decoder(), hardware.display()
        camera = opened.enter_context(closing(hardware.camera())) if live else None
        panel = opened.enter_context(closing(hardware.panel())) if live else None
        boot = boot_id()
        kiosk = Kiosk(
            shop_name=config.kiosk.shop_name,
            decoder=decoder,
            verifier=PassVerifier(documents.merchant, keyring),
            program=config.program,
            ledger=ledger,
            session=CounterSession(ledger, clock, config.kiosk.counter_seconds, boot),
            clock=clock,
            boot=boot,
            display=display,
            panel=panel,
            camera=camera,
        )
        kiosk.join_url = config.kiosk.join_url
        opened.pop_all()
    return kiosk


def watch_offline(link: HubLink, grace: float = GRACE) -> OfflineWatch:
    """Mark the kiosk's screens "offline" while *link* has been without the broker for *grace*
    seconds (started; ``stop()`` it before the link). The marks reach the kiosk through the
    link's ``updates``, which the scan loop applies, so pass those to ``kiosk.loop.run``."""
    return OfflineWatch(lambda: link.bus.connected, link.updates, grace=grace).start()
