"""Build a Kiosk from configuration: the one place that chooses backends."""

from __future__ import annotations

from kiosk.app import Kiosk
from kiosk.clock import Clock, SystemClock, boot_id
from kiosk.config import KioskConfig
from kiosk.display.device import open_display
from kiosk.errors import ConfigError
from kiosk.hardware.decoder import open_decoder
from kiosk.hardware.panel import FrontPanel, make_pin_factory
from kiosk.ledger import Ledger
from kiosk.protocol.passes import KeyRing, PassVerifier
from kiosk.session import CounterSession


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


def open_fleet_config(config: KioskConfig):
    """The config documents the hub pushed before, restored (checked again) from the data folder.

    Their programme takes precedence over the file's, and the kiosk document's hardware
    settings over ``[hardware]``, so what the owner pushed survives a restart.
    """
    from kiosk.config_sync import FleetConfig

    fleet = FleetConfig(merchant_of(config), config.kiosk.id, load_hub_keys(config), config.kiosk.data_dir,
                        config.program, config.hardware)
    fleet.restore()
    return fleet


def effective_config(config: KioskConfig) -> KioskConfig:
    """*config* with the pushed programme and hardware in force (what this start will run)."""
    fleet = open_fleet_config(config)
    return config.model_copy(update={"program": fleet.program(), "hardware": fleet.hardware()})


def build_kiosk(config: KioskConfig, *, clock: Clock | None = None, with_panel: bool = True) -> Kiosk:
    """Open every stage the config (and the config the hub pushed) names; raises ConfigError /
    HardwareError with a fix."""
    clock = clock or SystemClock()
    keyring = load_keyring(config)
    ledger = Ledger(ledger_path(config))
    config = effective_config(config)
    hw = config.hardware
    boot = boot_id()
    panel = None
    if with_panel:
        panel = FrontPanel(hw.led_pin, hw.buzzer_pin, hw.button_pin, pin_factory=make_pin_factory(hw.backend))
    return Kiosk(
        shop_name=config.kiosk.shop_name,
        decoder=open_decoder(hw.decoder),
        verifier=PassVerifier(merchant_of(config), keyring),
        program=config.program,
        ledger=ledger,
        session=CounterSession(ledger, clock, config.kiosk.counter_seconds, boot),
        clock=clock,
        boot=boot,
        display=open_display(hw.display_kind(), hw.i2c_port, hw.i2c_address),
        panel=panel,
    )
