"""The hardware factory: which backend `[hardware]` chooses, what each offers, and how it fails.

On this machine the `pi` backend has no camera, GPIO or OLED: it must say what to install
or check, and never hand back a fake. On a Raspberry Pi those tests are skipped (they would
open the real devices); the scenario tests run there instead (``pi`` marker).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gpiozero import Device
from PIL import Image

from kiosk.config import HardwareSection, load_config
from kiosk.display import screens
from kiosk.display.device import DummyDisplay
from kiosk.common.errors import BackendUnavailable, CameraExhausted, ConfigError, HardwareError
from kiosk.hardware import scenes
from kiosk.hardware.camera import ReplayCamera, VirtualCamera
from kiosk.hardware.factory import PiHardware, SimHardware, hardware_factory
from kiosk.wiring import build_kiosk
from pihost import on_a_pi

KIOSK = str(Path(sys.executable).parent / "stempel-kiosk")
not_on_a_pi = pytest.mark.skipif(on_a_pi(), reason="a Pi has the devices these tests expect to be missing")


@pytest.mark.parametrize("env, overrides, backend, camera, display", [
    ({}, {}, SimHardware, "virtual", "dummy"),
    ({"STEMPEL_HARDWARE": "pi"}, {}, PiHardware, "picamera2", "ssd1306"),
    ({"STEMPEL_HARDWARE": "pi"}, {"hardware__backend": "sim"}, SimHardware, "virtual", "dummy"),  # --simulate
    ({}, {"hardware__replay_dir": "frames"}, SimHardware, "replay", "dummy"),  # --replay
    ({"STEMPEL_HARDWARE": "pi"}, {"hardware__camera": "opencv", "hardware__display": "sh1106"},
     PiHardware, "opencv", "sh1106"),
    ({"STEMPEL_HARDWARE": "pi"}, {"hardware__display": "ssd1351"}, PiHardware, "picamera2", "ssd1351"),
])
def test_the_backend_and_its_devices_come_from_config_env_and_flags(env, overrides, backend, camera, display):
    hardware = hardware_factory(load_config(None, env=env, **overrides).hardware)
    assert (type(hardware), hardware.camera_kind, hardware.display_kind) == (backend, camera, display)


@pytest.mark.slow  # the stempel-kiosk CLI
@pytest.mark.parametrize("toml, field, fix", [
    ('backend = "sim"\ncamera = "picamera2"\n', "[hardware.camera]", 'of backend "pi"'),
    ('backend = "pi"\ncamera = "virtual"\n', "[hardware.camera]", "offers picamera2, opencv, replay"),
    ('backend = "sim"\ndisplay = "ssd1306"\n', "[hardware.display]", 'backend "sim" offers dummy'),
    ('backend = "pi"\ndisplay = "dummy"\n', "[hardware.display]", "offers ssd1306, sh1106, ssd1351"),
    ('camera = "replay"\n', "[hardware.replay_dir]", "--replay DIR"),
    ('decoder = "zbar"\n', "[hardware.decoder]", "'pyzbar' or 'zxing'"),
])
def test_an_option_the_backend_does_not_offer_is_refused_naming_the_field(tmp_path, kiosk_dir, toml, field, fix):
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\ndata_dir = "{kiosk_dir}"\n[hardware]\n{toml}')
    result = subprocess.run([KIOSK, "redeem", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert field in result.stderr and fix in result.stderr


@pytest.mark.parametrize("fields, field, fix", [
    ({"backend": "pi", "pin_factory": "mock"}, "[hardware.pin_factory]", 'backend "pi" offers lgpio, rpigpio'),
    ({"backend": "sim", "pin_factory": "lgpio"}, "[hardware.pin_factory]", 'of backend "pi"'),
    ({"backend": "sim", "display": "ssd1351"}, "[hardware.display]", 'of backend "pi"'),
])
def test_pin_factory_and_display_belong_to_a_backend(fields, field, fix):
    with pytest.raises(ConfigError) as info:
        hardware_factory(HardwareSection(**fields))
    assert field in str(info.value) and fix in str(info.value)


@pytest.mark.parametrize("overrides, field", [
    ({"hardware__camera_width": 641}, "camera_width"),  # picamera2 wants even sizes
    ({"hardware__display_rotate": 1}, "display_rotate"),  # the 128x64 screens turn upside down only
    ({"hardware__pin_factory": "pigpio"}, "pin_factory"),
])
def test_camera_display_and_pin_settings_are_checked_when_loaded(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config(None, env={"STEMPEL_HARDWARE": "pi"}, **overrides)


def test_hub_pushed_hardware_is_checked_when_the_factory_is_built():
    """A kiosk document may set one field; the whole section is judged when the kiosk starts."""
    merged = HardwareSection.model_validate({**HardwareSection(backend="pi").model_dump(), "display": "dummy"})
    with pytest.raises(ConfigError, match=r"\[hardware.display\]"):
        hardware_factory(merged)


def test_a_simulated_kiosk_gets_all_four_devices_from_the_factory(kiosk_dir):
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir))
    kiosk = build_kiosk(config)
    try:
        assert isinstance(kiosk.camera, VirtualCamera) and isinstance(kiosk.display, DummyDisplay)
        assert kiosk.decoder.name == "auto" and type(kiosk.panel.led.pin_factory).__name__ == "MockFactory"
        kiosk.show_idle()
        assert list(kiosk.display.shown) == [screens.Idle("Stempel")]
        assert kiosk.display.image.tobytes() == screens.render(screens.Idle("Stempel")).tobytes()
    finally:
        kiosk.close()
    one_shot = build_kiosk(config, live=False)  # scan-image, redeem: the running kiosk holds camera and pins
    assert (one_shot.camera, one_shot.panel) == (None, None)
    one_shot.close()


def test_a_device_that_fails_to_open_closes_the_ones_opened_before(kiosk_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("L", (64, 48), 128).save(frames / "01.png")
    opened: list[ReplayCamera] = []

    class NoPins(SimHardware):
        def camera(self):
            opened.append(super().camera())
            return opened[-1]

        def panel(self):
            raise HardwareError("the GPIO chip is busy")

    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), hardware__replay_dir=str(frames))
    with pytest.raises(HardwareError, match="busy"):
        build_kiosk(config, hardware=NoPins(config.hardware))
    with pytest.raises(CameraExhausted):  # closed: nothing left to replay
        opened[0].capture()


def test_a_finished_replay_is_an_eoferror_even_inside_a_generator(tmp_path):
    """A StopIteration raised in a generator becomes RuntimeError (PEP 479): the end of a replay
    must stay "the replay is over", wherever it is read."""
    camera = ReplayCamera([np.zeros((4, 4), np.uint8)])

    def frames():
        while True:
            yield camera.capture()

    stream = frames()
    assert next(stream).pixels.shape == (4, 4)
    with pytest.raises(CameraExhausted) as info:
        next(stream)
    assert isinstance(info.value, EOFError) and not isinstance(info.value, StopIteration)


def test_the_virtual_camera_records_the_frames_shown(rng):
    camera = VirtualCamera()
    for name in ("anna", "empty"):
        camera.present(scenes.render("HTTPS://X/P/1", rng), source=name)
    assert [f.source for f in camera.frames_shown] == ["anna", "empty"]
    assert [camera.capture().source, camera.capture().source, camera.capture()] == ["anna", "empty", None]


@not_on_a_pi
@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_pi_camera_without_picamera2_names_the_package():
    with pytest.raises(BackendUnavailable, match="python3-picamera2"):
        PiHardware(HardwareSection(backend="pi")).camera()


@not_on_a_pi
def test_pi_panel_without_a_gpio_library_names_the_package_and_is_never_a_fake():
    """We choose the pin factory ourselves: gpiozero's fallback chain (and its warnings, and its
    process-wide default factory) is never reached."""
    with pytest.raises(BackendUnavailable, match="python3-lgpio"):
        PiHardware(HardwareSection(backend="pi")).panel()
    assert Device.pin_factory is None or type(Device.pin_factory).__name__ == "MockFactory"


@not_on_a_pi
def test_pi_display_without_an_oled_says_what_to_check():
    with pytest.raises(HardwareError, match="enable I2C"):
        PiHardware(HardwareSection(backend="pi", i2c_port=97)).display()


@pytest.mark.slow  # the stempel-kiosk CLI
@not_on_a_pi
def test_run_on_pi_hardware_without_the_devices_exits_2_with_the_fix(kiosk_dir):
    result = subprocess.run([KIOSK, "run", "--data-dir", str(kiosk_dir), "--json"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "STEMPEL_HARDWARE": "pi"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: no OLED on I2C port 1" in result.stderr  # the first device opened; never a fake instead
