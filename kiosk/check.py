"""``stempel-kiosk check``: what works on this kiosk, in words, and the fix for what does not.

The installer runs it last (scripts/install-kiosk.sh), as the ``stempel`` user, so a missing
group or an unreadable secret shows up as the service meets it. It takes nothing from a
running kiosk: the camera is listed, not opened; the display is only addressed on the I2C
bus (an SMBus quick write, as ``i2cdetect`` does); the broker gets a TCP (and TLS) handshake
but no login, because logging in as this kiosk would take the running kiosk's session over.

Every look at the machine goes through ``Probes``; tests pass their own, as gpiozero's
tests pass mock pins.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import importlib
import json
import os
import pwd
import socket
import ssl
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from kiosk.common.errors import BackendUnavailable, LedgerError, StempelError
from kiosk.config import DEFAULT_PATH, KioskConfig, MqttSection, load_config
from kiosk.ledger_schema import LEDGER_SCHEMA, read_version

CAMERA_MODULE_3 = "imx708"
I2C_SLAVE = 0x0703  # <linux/i2c-dev.h>
I2C_SMBUS = 0x0720
SMBUS_WRITE = SMBUS_QUICK = 0
NO_ANSWER = {errno.ENXIO, errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT}
REINSTALL = "run sudo scripts/install-kiosk.sh again: it installs what is missing"


@dataclass(frozen=True)
class Finding:
    """One part of the kiosk: whether it works, what was seen, and the fix when it does not."""

    part: str
    ok: bool
    text: str
    fix: str = ""

    def lines(self) -> str:
        return f"{self.part}: {self.text}" + (f"\n    fix: {self.fix}" if self.fix else "")


# --- probes: the only functions that look at the machine -------------------------------------

def picamera2_models() -> list[str]:
    """The sensor of each camera libcamera sees (``imx708`` is Camera Module 3); none is opened.
    Raises ImportError (or ValueError, for a numpy it was not built against) from picamera2."""
    os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:ERROR")  # its INFO lines would drown the report
    from picamera2 import Picamera2

    return [str(info.get("Model", "unknown")) for info in Picamera2.global_camera_info()]


def probe_i2c(port: int, address: int) -> None:
    """Address *address* on ``/dev/i2c-<port>`` with an SMBus quick write, as ``i2cdetect`` does
    for 0x3c; raises OSError (ENOENT: no bus; EACCES; EBUSY: a kernel driver owns it; ENXIO,
    EREMOTEIO, EIO: nothing answers)."""
    fd = os.open(f"/dev/i2c-{port}", os.O_RDWR)
    try:
        fcntl.ioctl(fd, I2C_SLAVE, address)
        fcntl.ioctl(fd, I2C_SMBUS, struct.pack("@BBIP", SMBUS_WRITE, 0, SMBUS_QUICK, 0))  # data: NULL
    finally:
        os.close(fd)


def import_luma() -> None:
    importlib.import_module("luma.oled.device")


def gpio_library() -> str:
    """The pin library gpiozero will use: lgpio (every Pi, the only one on a Pi 5), else RPi.GPIO.
    Raises BackendUnavailable."""
    for module in ("lgpio", "RPi.GPIO"):
        try:
            importlib.import_module(module)
        except (ImportError, RuntimeError):  # RPi.GPIO raises RuntimeError off a Pi
            continue
        return module
    raise BackendUnavailable("neither lgpio nor RPi.GPIO can be imported")


def connect_broker(host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> str:
    """Open a TCP connection (and the TLS handshake with *context*); no MQTT login. Raises OSError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if context is None:
            return "plain MQTT"
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return f"{tls.version()}, certificate verified"


def video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


def gpio_chips() -> list[str]:
    return sorted(glob.glob("/dev/gpiochip*"))


def user_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _open_decoder(kind: str) -> object:
    from kiosk.hardware.decoder import open_decoder

    return open_decoder(kind)


@dataclass(frozen=True)
class Probes:
    """How the check looks at the machine; each field a plain function a test can replace."""

    cameras: Callable[[], list[str]] = picamera2_models
    video_devices: Callable[[], list[str]] = video_devices
    i2c: Callable[[int, int], None] = probe_i2c
    luma: Callable[[], None] = import_luma
    gpio: Callable[[], str] = gpio_library
    gpio_chips: Callable[[], list[str]] = gpio_chips
    decoder: Callable[[str], object] = _open_decoder
    connect: Callable[[str, int, ssl.SSLContext | None, float], str] = connect_broker
    access: Callable[[str, int], bool] = os.access
    user: Callable[[], str] = user_name


# --- the checks ------------------------------------------------------------------------------

def check_kiosk(path: Path | str | None = None, probes: Probes | None = None, timeout: float = 5.0,
                env: dict[str, str] | None = None) -> list[Finding]:
    """Every part, in the order a person would look; only the config stops the rest."""
    probes = probes or Probes()
    chosen = path or (env if env is not None else os.environ).get("STEMPEL_CONFIG") or DEFAULT_PATH
    if not Path(chosen).exists():
        return [Finding("config", False, f"{chosen} does not exist",
                        "install the kiosk's bundle: sudo scripts/install-kiosk.sh BUNDLE (from `stempel-hub add-kiosk`)")]
    try:
        config = load_config(chosen, env=env)
    except (StempelError, OSError) as exc:
        return [Finding("config", False, str(exc), "fix the file, or make the bundle again with `stempel-hub add-kiosk`")]
    k = config.kiosk
    first = Finding("config", True, f"{chosen} (kiosk {k.id}{f' of {k.merchant}' if k.merchant else ''}, "
                                    f"hardware {config.hardware.backend})")
    checks = (check_keys, check_ledger, check_camera, check_decoder, check_display, check_panel)
    return [first, *(c(config, probes) for c in checks), check_broker(config, probes, timeout)]


def check_keys(config: KioskConfig, probes: Probes) -> Finding:
    from kiosk.wiring import load_hub_keys, load_keyring, merchant_of

    try:
        ring, hub_keys, merchant = load_keyring(config), load_hub_keys(config), merchant_of(config)
    except PermissionError as exc:
        return Finding("keys", False, f"cannot read {exc.filename} as {probes.user()}",
                       f"the file must be readable by group stempel: {REINSTALL}")
    except (StempelError, OSError) as exc:
        return Finding("keys", False, str(exc), "copy keys.json and hub-keys.json from the kiosk's bundle to /etc/stempel/")
    text = f"{len(ring.keys)} pass key(s) of {merchant}, {len(hub_keys)} hub key(s) for pushed programmes"
    if not hub_keys and config.mqtt is not None:
        return Finding("keys", False, text + ": pushed programmes and keys would all be refused",
                       f"copy hub-keys.json from the kiosk's bundle to {config.hub_keys_path()}")
    return Finding("keys", True, text)


def check_ledger(config: KioskConfig, probes: Probes) -> Finding:
    data = config.kiosk.data_dir
    if not data.is_dir():
        return Finding("ledger", False, f"{data} does not exist",
                       f"sudo install -d -m 0700 -o stempel -g stempel {data} ({REINSTALL})")
    if not probes.access(str(data), os.W_OK | os.X_OK):
        return Finding("ledger", False, f"{data} is not writable by {probes.user()}",
                       f"sudo chown -R stempel:stempel {data}")
    ledger = data / "ledger.sqlite3"
    if ledger.exists():
        return _ledger_schema(ledger)
    return Finding("ledger", True, f"{data} is writable; the ledger is made at the first start "
                                   f"(schema version {LEDGER_SCHEMA})")


def _ledger_schema(ledger: Path) -> Finding:
    """The ledger's size and schema version, read through a read-only connection (the running
    kiosk holds it open), and whether this release can use it."""
    try:
        found = read_version(ledger)
    except LedgerError as exc:
        return Finding("ledger", False, str(exc), f"if {ledger} is not readable by stempel: sudo chown stempel:stempel "
                                                  f"{ledger}*; if it is damaged: restore a backup of it")
    head = f"{ledger} ({ledger.stat().st_size // 1024} KiB, "
    if found is None or found.version == LEDGER_SCHEMA:
        return Finding("ledger", True, head + f"schema version {LEDGER_SCHEMA}, this release's)")
    if found.version == 0:
        return Finding("ledger", True, head + "no schema version: made before ledger versions; the kiosk marks it "
                                              f"version {LEDGER_SCHEMA} when it next starts)")
    if found.version < LEDGER_SCHEMA:
        return Finding("ledger", True, head + f"schema version {found.version}; the kiosk migrates it to "
                                              f"{LEDGER_SCHEMA} when it next starts)")
    if found.readable_from <= LEDGER_SCHEMA:
        return Finding("ledger", True, head + f"{found.words()}, from a newer release; this release "
                                              f"(version {LEDGER_SCHEMA}) can still use it)")
    return Finding("ledger", False, head + f"{found.words()}): written by a newer release; this release knows "
                                           f"ledger versions up to {LEDGER_SCHEMA} and will not open it",
                   "update or restore: switch to a release that reads it (stempel-kiosk update --list, then "
                   "--to VERSION), or restore a backup of the ledger made by this release")


def _backend(config: KioskConfig):
    from kiosk.hardware.factory import hardware_factory

    return hardware_factory(config.hardware)


def check_camera(config: KioskConfig, probes: Probes) -> Finding:
    kind = _backend(config).camera_kind
    if kind == "virtual":
        return Finding("camera", True, 'simulated (the virtual camera: [hardware] backend = "sim")')
    if kind == "replay":
        frames = sorted(Path(config.hardware.replay_dir or ".").glob("*.png"))
        return Finding("camera", bool(frames), f"replays {len(frames)} PNG frame(s) from {config.hardware.replay_dir}",
                       "" if frames else "put PNG frames in [hardware] replay_dir")
    if kind == "opencv":
        devices = probes.video_devices()
        if devices:
            return Finding("camera", True, f"USB camera at {devices[0]} (opencv)")
        return Finding("camera", False, "no /dev/video* device", "plug the USB camera in; `ls /dev/video*` lists it")
    return _check_picamera2(probes)


def _check_picamera2(probes: Probes) -> Finding:
    try:
        models = probes.cameras()
    except ImportError:
        return Finding("camera", False, "picamera2 cannot be imported",
                       "sudo apt install python3-picamera2; the release's venv must see it (--system-site-packages): "
                       + REINSTALL)
    except ValueError as exc:
        return Finding("camera", False, f"picamera2 fails to import ({exc})",
                       "the venv holds a numpy that Debian's picamera2 was not built for (numpy 2): " + REINSTALL
                       + " with a new release (it installs numpy<2)")
    except (RuntimeError, OSError) as exc:
        return Finding("camera", False, f"libcamera failed: {exc}", "sudo apt full-upgrade, then reboot")
    if not models:
        return Finding("camera", False, "none seen",
                       "power off, reseat the ribbon cable at both ends (latches closed); on a Pi 5 the camera "
                       "needs the 22-to-15-pin cable; `rpicam-hello --list-cameras` lists what is seen")
    text = f"seen ({', '.join(models)})" + ("; the first is used" if len(models) > 1 else "")
    if models[0] != CAMERA_MODULE_3:
        text += f"; autofocus needs Camera Module 3 ({CAMERA_MODULE_3})"
    return Finding("camera", True, text)


def check_decoder(config: KioskConfig, probes: Probes) -> Finding:
    kind = config.hardware.decoder
    try:
        decoder = probes.decoder(kind)
    except StempelError as exc:
        apt = "libzbar0" in str(exc)  # ZBar is a Debian package; zxing-cpp comes with the release
        return Finding("decoder", False, str(exc), "sudo apt install libzbar0" if apt else REINSTALL)
    return Finding("decoder", True, f"{kind} ready ({type(decoder).__name__})")


def check_display(config: KioskConfig, probes: Probes) -> Finding:
    kind = _backend(config).display_kind
    if kind == "dummy":
        return Finding("display", True, 'simulated (luma\'s dummy device: [hardware] backend = "sim")')
    try:
        probes.luma()
    except ImportError:
        return Finding("display", False, "luma.oled cannot be imported", REINSTALL)
    port, address = config.hardware.i2c_port, config.hardware.i2c_address
    where = f"{kind.upper()} at {address:#04x}"
    try:
        probes.i2c(port, address)
    except FileNotFoundError:
        return Finding("display", False, f"no I2C bus /dev/i2c-{port}",
                       "switch I2C on: sudo raspi-config nonint do_i2c 0, then reboot")
    except PermissionError:
        return Finding("display", False, f"/dev/i2c-{port} is not open to {probes.user()}",
                       "sudo usermod -aG i2c stempel, then sudo systemctl restart stempel-kiosk")
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return Finding("display", False, f"{address:#04x} on I2C bus {port} is held by a kernel driver",
                           "remove the display's dtoverlay line from /boot/firmware/config.txt (Stempel drives "
                           "the OLED itself), then reboot")
        if exc.errno in NO_ANSWER:
            return Finding("display", False, f"nothing answers at {address:#04x} on I2C bus {port}",
                           "check the wiring: SDA to GPIO2 (pin 3), SCL to GPIO3 (pin 5), VCC to 3.3 V (pin 1), "
                           f"GND to pin 9; `i2cdetect -y {port}` lists the addresses that answer (some modules "
                           "use 0x3d: then set [hardware] i2c_address = 0x3D)")
        return Finding("display", False, f"I2C bus {port}: {exc.strerror or exc}", "reboot; if it stays, check the wiring")
    return Finding("display", True, f"{where} (I2C bus {port})")


def check_panel(config: KioskConfig, probes: Probes) -> Finding:
    hw = config.hardware
    pins = f"LED GPIO{hw.led_pin}, buzzer GPIO{hw.buzzer_pin}, button GPIO{hw.button_pin}"
    if hw.backend == "sim":
        return Finding("panel", True, f"simulated (gpiozero mock pins: {pins})")
    try:
        library = probes.gpio()
    except BackendUnavailable:
        return Finding("panel", False, "no GPIO library for gpiozero", "sudo apt install python3-lgpio")
    chips = probes.gpio_chips()
    if not chips:
        return Finding("panel", False, "no /dev/gpiochip* device", "this is not a Raspberry Pi, or its kernel has no GPIO")
    if not any(probes.access(chip, os.R_OK | os.W_OK) for chip in chips):
        return Finding("panel", False, f"{chips[0]} is not open to {probes.user()}",
                       "sudo usermod -aG gpio stempel, then sudo systemctl restart stempel-kiosk")
    return Finding("panel", True, f"{pins} through {library} (the check does not switch them)")


def tls_context(mqtt: MqttSection) -> ssl.SSLContext | None:
    """The TLS the kiosk's bus uses: the bundle's CA (else the system's), the client certificate."""
    if not mqtt.uses_tls():
        return None
    context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
    if mqtt.cert_file is not None:
        context.load_cert_chain(mqtt.cert_file, mqtt.key_file)
    return context


def check_broker(config: KioskConfig, probes: Probes, timeout: float) -> Finding:
    mqtt = config.mqtt
    if mqtt is None:
        return Finding("broker", True, "none configured: the kiosk runs standalone (stamps stay in its ledger)")
    where = f"{mqtt.host}:{mqtt.port}"
    if mqtt.password_file is not None and not probes.access(str(mqtt.password_file), os.R_OK):
        return Finding("broker", False, f"cannot read {mqtt.password_file} as {probes.user()}",
                       "copy mqtt.password from the kiosk's bundle; it must be readable by group stempel: " + REINSTALL)
    try:
        how = probes.connect(mqtt.host, mqtt.port, tls_context(mqtt), timeout)
    except socket.gaierror:
        return Finding("broker", False, f"cannot resolve {mqtt.host}",
                       f"check [mqtt] host in kiosk.toml and the network's DNS (`getent hosts {mqtt.host}`)")
    except ssl.SSLCertVerificationError as exc:
        return Finding("broker", False, f"{where} answers, but its certificate is not trusted ({exc.verify_message})",
                       f"the bundle's ca.crt must be the CA that signed the broker's certificate, issued for "
                       f"{mqtt.host}: make the bundle again (stempel-hub add-kiosk --rotate-password --ca-file ...)")
    except ssl.SSLError as exc:
        return Finding("broker", False, f"{where}: TLS failed ({exc.reason or exc})",
                       f"is {mqtt.port} the broker's TLS port (8883 by default), and are the client files right?")
    except ConnectionRefusedError:
        return Finding("broker", False, f"{where} refuses connections",
                       f"is Mosquitto running there and listening on {mqtt.port}? On the hub: systemctl status mosquitto")
    except TimeoutError:
        return Finding("broker", False, f"no answer from {where} within {timeout:g} s",
                       f"a firewall, or the wrong address: check [mqtt] host and that port {mqtt.port} is open on the hub")
    except OSError as exc:
        return Finding("broker", False, f"{where}: {exc.strerror or exc}", f"check the network (ip route; ping {mqtt.host})")
    return Finding("broker", True, f"reachable at {where} ({how}; login not tried: the running kiosk holds the session)")


def summary(findings: list[Finding]) -> str:
    bad = [f.part for f in findings if not f.ok]
    if not bad:
        return f"all {len(findings)} parts work"
    return f"{len(bad)} of {len(findings)} need attention: {', '.join(bad)}"


@click.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="STEMPEL_CONFIG",
              help="kiosk.toml [/etc/stempel/kiosk.toml]")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the broker.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per part.")
def check(config_path: str | None, timeout: float, as_json: bool) -> None:
    """Say what works on this kiosk (camera, display, panel, broker...) and how to fix what does not.

    Exit status 1 when a part needs attention. Run it as the kiosk's user:
    sudo -u stempel stempel-kiosk check
    """
    findings = check_kiosk(config_path, timeout=timeout)
    for finding in findings:
        click.echo(json.dumps(asdict(finding)) if as_json else finding.lines())
    if not as_json:
        click.echo(summary(findings))
    sys.exit(0 if all(f.ok for f in findings) else 1)


if __name__ == "__main__":  # the installer runs `python -m kiosk.check`, whatever stempel-kiosk's commands are
    check()
