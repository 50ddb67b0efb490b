"""Kiosk configuration: one typed document, loaded from TOML plus ``STEMPEL_*`` variables.

Nothing is read at import time; ``load_config`` is the only door. Errors name the field
and the fix. The same schema will arrive over MQTT as ``config/desired``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import check_id
from kiosk.rules.program import Program, load_program
from kiosk.common.tomlfile import explain, read_toml

DEFAULT_PATH = Path("/etc/stempel/kiosk.toml")
DEFAULT_DATA_DIR = Path("/var/lib/stempel")


class KioskSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = "kiosk-1"
    merchant: str | None = Field(None, description="defaults to the merchant of the keys file")
    shop_name: str = "Stempel"
    data_dir: Path = DEFAULT_DATA_DIR
    keys_file: Path | None = Field(None, description="defaults to <data_dir>/keys.json")
    counter_seconds: float = Field(30, gt=0, le=600)
    program_file: Path | None = Field(None, description="a programme TOML (see examples/); else [program]")
    hub_keys_file: Path | None = Field(None, description="hub public keys; defaults to <data_dir>/hub-keys.json")
    join_url: str | None = Field(None, description="the hub's join page for this kiosk, shown as a QR when idle")

    @field_validator("id", "merchant")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "id")

    @field_validator("join_url")
    @classmethod
    def _join_url(cls, value: str | None) -> str | None:
        from kiosk.protocol.joinurl import check_join_url  # segno, only for a kiosk that shows a code

        return None if value is None else check_join_url(value)


class HardwareSection(BaseModel):
    """``[hardware]``: which backend, and the options it offers (``kiosk/hardware/factory.py``).

    Flat on purpose: the hub pushes a kiosk's hardware settings as a partial table of these
    fields. Whether the backend offers a camera, display or pin factory is checked where the
    whole table is known: ``load_config`` and the factory.
    """

    model_config = ConfigDict(extra="forbid")
    backend: Literal["pi", "sim"] = Field("sim", description="STEMPEL_HARDWARE and --simulate override it")
    camera: Literal["auto", "picamera2", "opencv", "replay", "virtual"] = Field(
        "auto", description="auto: the backend's own (pi: picamera2; sim: replay with replay_dir, else virtual)")
    camera_index: int = Field(0, ge=0, le=63, description="picamera2's camera number, or N of /dev/videoN (opencv)")
    camera_width: int = Field(640, ge=160, le=1920, multiple_of=2, description="frame width the decoder sees")
    camera_height: int = Field(480, ge=120, le=1080, multiple_of=2, description="frame height the decoder sees")
    camera_fps: float = Field(15, gt=0, le=60, description="frames per second asked of the camera")
    autofocus: bool = Field(True, description="continuous autofocus where the camera has it (Camera Module 3)")
    decoder: Literal["auto", "pyzbar", "zxing"] = "auto"
    display: Literal["auto", "ssd1306", "sh1106", "ssd1351", "dummy"] = Field(
        "auto", description="auto: the backend's own (pi: ssd1306; sim: dummy); ssd1351: 128x128 colour, on SPI")
    display_rotate: Literal[0, 2] = Field(0, description="2: the display is mounted upside down")
    replay_dir: Path | None = Field(None, description="a folder of PNG frames for camera \"replay\"")
    pin_factory: Literal["auto", "lgpio", "rpigpio", "mock"] = Field(
        "auto", description="gpiozero's pin library; auto: lgpio (every Pi, the only one on a Pi 5), else RPi.GPIO")
    led_pin: int = Field(17, ge=0, le=27)
    buzzer_pin: int = Field(27, ge=0, le=27)
    button_pin: int = Field(22, ge=0, le=27)
    i2c_port: int = Field(1, ge=0)
    i2c_address: int = Field(0x3C, ge=0x03, le=0x77)
    spi_port: int = Field(0, ge=0, le=6, description="ssd1351 only: SPI bus (/dev/spidevP.D)")
    spi_device: int = Field(0, ge=0, le=3, description="ssd1351 only: chip select on that bus")
    display_dc_pin: int = Field(24, ge=0, le=27, description="ssd1351 only: the data/command GPIO")
    display_reset_pin: int = Field(25, ge=0, le=27, description="ssd1351 only: the reset GPIO")


class MqttSection(BaseModel):
    """The broker this kiosk syncs through; absent means the kiosk runs standalone (offline)."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = Field(None, description="defaults to the kiosk id when password_file is set")
    password_file: Path | None = Field(None, description="a 0600 file holding the broker password")
    tls: bool = Field(False, description="implied by ca_file / cert_file")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    outbox_warn_depth: int = Field(10_000, ge=1, description="log a warning when this many events await the hub's ack")
    batch_size: int = Field(100, ge=1, le=1000)
    ack_timeout_seconds: float = Field(10.0, gt=0, le=3600)

    @field_validator("key_file")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info) -> Path | None:
        if value is not None and info.data.get("cert_file") is None:
            raise ValueError("key_file needs cert_file (the client certificate) as well")
        return value

    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None


ARGON2_HASH = r"^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"


class StaffSection(BaseModel):
    """``[staff]``: the staff screen the kiosk serves beside the till (kiosk/web/); absent: none.

    Secrets are kept as hashes, so kiosk.toml may be read by anyone on the Pi: the PIN as an
    argon2 hash and the till's (POS) bearer token as SHA-256, both made at install
    (``kiosk.web.auth.hash_pin`` and ``new_pos_token``).
    """

    model_config = ConfigDict(extra="forbid")
    bind: str = Field("0.0.0.0", min_length=1, description="the address to listen on (the shop's LAN); "
                                                             "127.0.0.1 for this machine only")
    port: int = Field(8080, ge=1, le=65535)
    pin_hash: str = Field(pattern=ARGON2_HASH, description="argon2 hash of the staff PIN, made at install")
    pos_token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                         description="SHA-256 (hex) of the till's bearer token; no POS API without it")
    lockout_after: int = Field(5, ge=1, le=100, description="wrong PINs in a row before the screen locks")
    lockout_seconds: float = Field(300, gt=0, le=86400, description="how long it stays locked")
    undo_seconds: float = Field(60, gt=0, le=600, description="how long a stamp or redemption can be undone")


class KioskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kiosk: KioskSection = KioskSection()
    hardware: HardwareSection = HardwareSection()
    program: Program = Program()
    mqtt: MqttSection | None = None
    staff: StaffSection | None = None

    def keys_path(self) -> Path:
        return self.kiosk.keys_file or self.kiosk.data_dir / "keys.json"

    def hub_keys_path(self) -> Path:
        return self.kiosk.hub_keys_file or self.kiosk.data_dir / "hub-keys.json"


def load_config(path: Path | str | None = None, env: dict[str, str] | None = None, **overrides) -> KioskConfig:
    """Load the kiosk config from *path* (or ``STEMPEL_CONFIG``, or the default if present).

    ``STEMPEL_HARDWARE`` (pi|sim) and ``STEMPEL_DATA_DIR`` override the file; keyword
    *overrides* (from the command line) override both. Raises ConfigError.
    """
    env = os.environ if env is None else env
    chosen = Path(path) if path else Path(env["STEMPEL_CONFIG"]) if env.get("STEMPEL_CONFIG") else None
    raw: dict = {}
    source = "defaults"
    if chosen is None and DEFAULT_PATH.exists():
        chosen = DEFAULT_PATH
    if chosen is not None:
        source = str(chosen)
        raw = read_toml(chosen, "pass --config or set STEMPEL_CONFIG")
    if env.get("STEMPEL_HARDWARE"):
        raw.setdefault("hardware", {})["backend"] = env["STEMPEL_HARDWARE"]
    if env.get("STEMPEL_DATA_DIR"):
        raw.setdefault("kiosk", {})["data_dir"] = env["STEMPEL_DATA_DIR"]
    for dotted, value in overrides.items():
        if value is not None:
            section, key = dotted.split("__")
            raw.setdefault(section, {})[key] = value
    try:
        config = KioskConfig.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, source) from exc
    from kiosk.hardware.factory import check_hardware  # the backends know what they offer

    check_hardware(config.hardware, source)
    if chosen is not None:  # relative paths in a file are relative to that file, wherever we run from
        _resolve_paths(config, chosen.absolute().parent, {k for k, v in overrides.items() if v is not None})
    if config.kiosk.program_file:
        if "program" in raw:
            raise ConfigError(f"{source}: give either [kiosk] program_file or a [program] table, not both")
        config.program = load_program(config.kiosk.program_file)
    return config


def _resolve_paths(config: KioskConfig, base: Path, given: set[str]) -> None:
    """Paths written in a config file are relative to that file (a bundle works wherever it lands);
    those *given* on the command line (``section__field``) are relative to where we run."""
    fields = [(config.kiosk, "keys_file"), (config.kiosk, "hub_keys_file"), (config.kiosk, "program_file")]
    if "kiosk__data_dir" not in given:
        fields.append((config.kiosk, "data_dir"))
    if "hardware__replay_dir" not in given:
        fields.append((config.hardware, "replay_dir"))
    if config.mqtt is not None:
        fields += [(config.mqtt, name) for name in ("password_file", "ca_file", "cert_file", "key_file")]
    for section, name in fields:
        value = getattr(section, name)
        if value is not None and not value.is_absolute():
            setattr(section, name, base / value)
