"""`stempel-kiosk check`: each part of a kiosk in words, with the fix for what does not work.

The machine is seen only through `Probes`; here each probe is a plain function that answers
as a Pi would (a camera seen, nothing on the I2C bus...). The broker probe also runs for real
against sockets on this machine: a plain listener, a closed port, and TLS with the right and
the wrong CA.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import struct
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud.hubkey import hub_keys_json
from kiosk.check import Probes, check, check_kiosk, connect_broker, probe_i2c, summary
from kiosk.common.errors import BackendUnavailable
from test_broker_tls import Authority

MERCHANT = "cafe-rosa"


class FakeDecoder:
    name = "pyzbar"


def raises(exc: BaseException):
    def probe(*_args):
        raise exc
    return probe


def working_pi(tmp_path: Path) -> Probes:
    """A Raspberry Pi where everything answers: Camera Module 3, an OLED at 0x3c, lgpio."""
    return Probes(cameras=lambda: ["imx708"], video_devices=lambda: [], i2c=lambda port, address: None,
                  luma=lambda: None, gpio=lambda: "lgpio", gpio_chips=lambda: ["/dev/gpiochip0"],
                  decoder=lambda kind: FakeDecoder(), connect=lambda host, port, context, timeout: "plain MQTT",
                  access=lambda path, mode: True, user=lambda: "stempel")


@pytest.fixture
def etc(hub, tmp_path: Path) -> Path:
    """/etc/stempel as install-kiosk.sh leaves it, for a Pi kiosk with a broker."""
    folder = tmp_path / "etc"
    hub.export(MERCHANT, folder / "keys.json")
    (folder / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))
    (folder / "mqtt.password").write_text("secret\n")
    (tmp_path / "state").mkdir()
    write_config(folder, mqtt='host = "hub.example"\nport = 1883\npassword_file = "mqtt.password"\n')
    return folder


def write_config(folder: Path, mqtt: str | None = None, hardware: str = 'backend = "pi"\n') -> Path:
    text = (f'[kiosk]\nid = "counter-1"\nmerchant = "{MERCHANT}"\nkeys_file = "keys.json"\n'
            f'hub_keys_file = "hub-keys.json"\ndata_dir = "../state"\n\n[hardware]\n{hardware}')
    if mqtt is not None:
        text += f"\n[mqtt]\n{mqtt}"
    (folder / "kiosk.toml").write_text(text)
    return folder / "kiosk.toml"


def lines(findings) -> dict[str, str]:
    return {f.part: f.lines() for f in findings}


def test_a_working_pi_reads_like_the_installer_promises(etc, tmp_path):
    findings = check_kiosk(etc / "kiosk.toml", working_pi(tmp_path), env={})
    said = lines(findings)
    assert [f.part for f in findings] == ["config", "keys", "ledger", "camera", "decoder", "display", "panel", "broker"]
    assert all(f.ok for f in findings), said
    assert said["camera"] == "camera: seen (imx708)"
    assert said["display"] == "display: SSD1306 at 0x3c (I2C bus 1)"
    assert said["broker"].startswith("broker: reachable at hub.example:1883 (plain MQTT")
    assert said["panel"].startswith("panel: LED GPIO17, buzzer GPIO27, button GPIO22 through lgpio")
    assert summary(findings) == "all 8 parts work"


@pytest.mark.parametrize("probe, part, text, fix", [
    ({"cameras": lambda: []}, "camera", "none seen", "ribbon cable"),
    ({"cameras": raises(ImportError("No module named 'picamera2'"))}, "camera", "cannot be imported",
     "sudo apt install python3-picamera2"),
    ({"cameras": raises(ValueError("numpy.dtype size changed"))}, "camera", "numpy.dtype size changed", "numpy<2"),
    ({"i2c": raises(FileNotFoundError(errno.ENOENT, "No such file"))}, "display", "no I2C bus /dev/i2c-1",
     "raspi-config nonint do_i2c 0"),
    ({"i2c": raises(PermissionError(errno.EACCES, "Permission denied"))}, "display", "not open to stempel",
     "usermod -aG i2c stempel"),
    ({"i2c": raises(OSError(errno.EREMOTEIO, "Remote I/O error"))}, "display", "nothing answers at 0x3c on I2C bus 1",
     "SDA to GPIO2 (pin 3)"),
    ({"i2c": raises(OSError(errno.EBUSY, "Device or resource busy"))}, "display", "held by a kernel driver", "dtoverlay"),
    ({"luma": raises(ImportError("luma"))}, "display", "luma.oled cannot be imported", "install-kiosk.sh"),
    ({"gpio": raises(BackendUnavailable("none"))}, "panel", "no GPIO library", "sudo apt install python3-lgpio"),
    ({"gpio_chips": lambda: []}, "panel", "no /dev/gpiochip*", "not a Raspberry Pi"),
    ({"decoder": raises(BackendUnavailable("pyzbar needs libzbar0"))}, "decoder", "libzbar0", "sudo apt install libzbar0"),
    ({"connect": raises(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))}, "broker",
     "hub.example:1883 refuses connections", "systemctl status mosquitto"),
    ({"connect": raises(socket.gaierror(-2, "Name or service not known"))}, "broker", "cannot resolve hub.example",
     "getent hosts hub.example"),
    ({"connect": raises(TimeoutError())}, "broker", "no answer from hub.example:1883 within 5 s", "firewall"),
])
def test_each_missing_part_is_named_with_its_fix(etc, tmp_path, probe, part, text, fix):
    findings = check_kiosk(etc / "kiosk.toml", replace(working_pi(tmp_path), **probe), env={})
    bad = [f for f in findings if not f.ok]
    assert [f.part for f in bad] == [part]
    assert text in bad[0].text and fix in bad[0].fix
    assert summary(findings) == f"1 of 8 need attention: {part}"


def test_a_camera_other_than_module_3_works_without_autofocus(etc, tmp_path):
    camera = check_kiosk(etc / "kiosk.toml", replace(working_pi(tmp_path), cameras=lambda: ["imx219"]), env={})[3]
    assert camera.ok and camera.text == "seen (imx219); autofocus needs Camera Module 3 (imx708)"


def test_the_display_kind_and_address_come_from_the_config(etc, tmp_path):
    write_config(etc, hardware='backend = "pi"\ndisplay = "sh1106"\ni2c_address = 0x3D\n')
    asked = []
    probes = replace(working_pi(tmp_path), i2c=lambda port, address: asked.append((port, address)))
    display = lines(check_kiosk(etc / "kiosk.toml", probes, env={}))["display"]
    assert display == "display: SH1106 at 0x3d (I2C bus 1)" and asked == [(1, 0x3D)]


def test_secrets_the_user_cannot_read_are_named(etc, tmp_path):
    unreadable = str(etc / "mqtt.password")
    probes = replace(working_pi(tmp_path), access=lambda path, mode: path != unreadable)
    broker = check_kiosk(etc / "kiosk.toml", probes, env={})[-1]
    assert not broker.ok and broker.text == f"cannot read {unreadable} as stempel"


def test_a_kiosk_with_a_broker_needs_the_hub_keys(etc, tmp_path):
    (etc / "hub-keys.json").unlink()
    keys = check_kiosk(etc / "kiosk.toml", working_pi(tmp_path), env={})[1]
    assert not keys.ok and "pushed programmes and keys would all be refused" in keys.text
    assert "hub-keys.json" in keys.fix


def test_a_standalone_simulated_kiosk_says_so(etc, tmp_path):
    write_config(etc, hardware='backend = "sim"\n')
    said = lines(check_kiosk(etc / "kiosk.toml", working_pi(tmp_path), env={}))
    assert said["camera"].startswith("camera: simulated") and said["display"].startswith("display: simulated")
    assert said["broker"] == "broker: none configured: the kiosk runs standalone (stamps stay in its ledger)"


def test_a_missing_or_broken_config_stops_the_check_with_the_fix(tmp_path):
    missing = check_kiosk(tmp_path / "kiosk.toml", working_pi(tmp_path), env={})
    assert [(f.part, f.ok) for f in missing] == [("config", False)]
    assert "install-kiosk.sh" in missing[0].fix
    (tmp_path / "kiosk.toml").write_text('[hardware]\nbackend = "pi"\ncamera = "virtual"\n')
    broken = check_kiosk(tmp_path / "kiosk.toml", working_pi(tmp_path), env={})
    assert [(f.part, f.ok) for f in broken] == [("config", False)] and "hardware.camera" in broken[0].text


def test_the_command_prints_words_and_exits_1_when_a_part_needs_attention(etc, tmp_path):
    result = CliRunner().invoke(check, ["--config", str(etc / "kiosk.toml"), "--timeout", "0.5"],
                                env={"STEMPEL_HARDWARE": "sim"})
    assert result.exit_code == 1  # hub.example does not resolve here
    assert "broker: cannot resolve hub.example" in result.output and "    fix: " in result.output
    assert result.output.splitlines()[-1] == "1 of 8 need attention: broker"


# --- the real probes, on this machine ---------------------------------------------------------

def test_the_i2c_probe_reports_a_missing_bus_as_file_not_found():
    with pytest.raises(FileNotFoundError):
        probe_i2c(99, 0x3C)
    assert struct.calcsize("@BBIP") in (12, 16)  # struct i2c_smbus_ioctl_data on armhf / arm64


def test_the_broker_probe_connects_over_plain_tcp_and_names_a_closed_port():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert connect_broker("127.0.0.1", port, None, 2) == "plain MQTT"
    with pytest.raises(ConnectionRefusedError):
        connect_broker("127.0.0.1", port, None, 2)


@contextlib.contextmanager
def tls_listener(cert: Path, key: Path):
    """A server that does one TLS handshake, on a free port of 127.0.0.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def handshake() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(ssl.SSLError, OSError):  # the client may refuse our certificate
            context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=handshake)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        thread.join(10)
        server.close()


def test_the_broker_probe_verifies_the_certificate_with_the_bundles_ca(etc, tmp_path):
    ca, stranger = Authority(tmp_path, "stempel-ca"), Authority(tmp_path, "other-ca")
    cert, key = ca.issue("localhost", server=True)
    for trusted, expect_ok in ((ca, True), (stranger, False)):
        with tls_listener(cert, key) as port:
            write_config(etc, mqtt=f'host = "localhost"\nport = {port}\nca_file = "{trusted.ca_file}"\n')
            probes = replace(working_pi(tmp_path), connect=connect_broker)
            broker = check_kiosk(etc / "kiosk.toml", probes, env={})[-1]
        assert broker.ok is expect_ok, broker.lines()
        if expect_ok:
            assert broker.text.startswith(f"reachable at localhost:{port} (TLS") and "certificate verified" in broker.text
        else:
            assert "certificate is not trusted" in broker.text and "ca.crt" in broker.fix
