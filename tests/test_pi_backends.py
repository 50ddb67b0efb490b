"""The real Pi backends against each library's documented API.

Where the library installs here it is the real one: gpiozero's real pin factories, luma.oled's
real SSD1306/SH1106/SSD1351 drivers, OpenCV's real VideoCapture. Below them, where a library
needs a Raspberry Pi (lgpio, RPi.GPIO, spidev, an I2C bus, picamera2/libcamera), a stand-in
from ``tests/standins/`` with the library's call signatures takes its place, so each case
reads as the scene at the counter: a Pi 5 with a button pressed, an OLED that does not
answer, a Camera Module 3 focusing. The ``pi``-marked cases run the same checks on a real
Raspberry Pi with its devices attached (skipped elsewhere).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

import standins
from kiosk.common.errors import BackendUnavailable, CameraError, HardwareError
from kiosk.config import HardwareSection
from kiosk.display import screens
from kiosk.display.device import HEIGHT, WIDTH, letterbox, open_oled, open_ssd1351
from kiosk.hardware.camera import OpenCVCamera, PiCamera
from kiosk.hardware.factory import PiHardware
from kiosk.hardware.grabber import FrameGrabber
from kiosk.hardware.panel import Signal
from kiosk.hardware.pins import open_pin_factory
from kiosk.rules.program import Cue, Pulses

PI_5, PI_4 = 0xD04170, 0xC03114  # board revision codes (gpiozero reads them from the device tree)
IDLE = screens.Idle("Cafe Rosa")
CUE = Cue(led=Pulses(on=0.01, off=0.01, n=2), buzzer=Pulses(on=0.01, off=0.01, n=3))
luma_on_new_pillow = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")
"""luma.oled's drivers still call Image.getdata, which Pillow now deprecates: theirs to change, not a
fault of ours (a DeprecationWarning is silent in the running kiosk)."""


def missing(monkeypatch, *modules: str) -> None:
    """Make *modules* unimportable for one test (``import`` raises ModuleNotFoundError)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def on_board(monkeypatch, revision: int) -> None:
    """gpiozero believes it runs on the board with *revision* (it reads /proc/device-tree)."""
    monkeypatch.setattr("gpiozero.pins.local.get_pi_revision", lambda: revision)


# --- GPIO: gpiozero's pin factories ---------------------------------------------------------------

@pytest.fixture
def lgpio_pi5(monkeypatch):
    """A Pi 5 with lgpio (python3-lgpio): gpiozero's real LGPIOFactory over the stand-in lgpio."""
    standins.forget(monkeypatch, "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio")
    missing(monkeypatch, "RPi", "RPi.GPIO")
    on_board(monkeypatch, PI_5)
    return standins.install(monkeypatch, "lgpio")


@pytest.fixture
def rpigpio_pi4(monkeypatch):
    """A Pi 4 with only RPi.GPIO: gpiozero's real RPiGPIOFactory over the stand-in RPi.GPIO."""
    standins.forget(monkeypatch, "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio")
    missing(monkeypatch, "lgpio")
    on_board(monkeypatch, PI_4)
    return standins.install(monkeypatch, "RPi.GPIO")


@pytest.fixture(params=["lgpio", "rpigpio"])
def gpio(request):
    """(pin_factory setting, the stand-in library) for each pin library."""
    library = request.getfixturevalue({"lgpio": "lgpio_pi5", "rpigpio": "rpigpio_pi4"}[request.param])
    return request.param, library


def levels(writes, pin: int) -> list[int]:
    return [level for number, level in writes if number == pin]


@pytest.mark.parametrize("setting", ["auto", "named"])
def test_the_panel_plays_a_cue_on_the_chosen_pin_library(gpio, setting):
    kind, library = gpio
    hardware = PiHardware(HardwareSection(backend="pi", pin_factory="auto" if setting == "auto" else kind))
    panel = hardware.panel()
    try:
        factory = {"lgpio": "LGPIOFactory", "rpigpio": "RPiGPIOFactory"}[kind]
        assert {type(d.pin_factory).__name__ for d in (panel.led, panel.buzzer, panel.button)} == {factory}
        library.writes.clear()
        panel.signal(Signal.STAMPED, CUE, wait=True)
        assert levels(library.writes, 17) == [1, 0, 1, 0]  # LED: two blinks
        assert levels(library.writes, 27) == [1, 0, 1, 0, 1, 0]  # buzzer: three beeps
    finally:
        panel.close()


def test_staff_press_the_button_on_a_pi_5(lgpio_pi5):
    panel = PiHardware(HardwareSection(backend="pi", pin_factory="lgpio")).panel()
    presses = []
    try:
        panel.on_press(lambda: presses.append("press"))
        assert lgpio_pi5.line(22).flags & lgpio_pi5.SET_BIAS_PULL_UP  # the button needs no resistor
        lgpio_pi5.drive(22, 0)  # pressed: the button shorts GPIO22 to ground
        lgpio_pi5.drive(22, 1)
        assert presses == ["press"]
    finally:
        panel.close()


def test_staff_press_the_button_on_an_older_pi(rpigpio_pi4):
    panel = PiHardware(HardwareSection(backend="pi", pin_factory="rpigpio")).panel()
    presses = []
    try:
        panel.on_press(lambda: presses.append("press"))
        assert rpigpio_pi4.channels[22].pull == rpigpio_pi4.PUD_UP
        rpigpio_pi4.drive(22, 0)
        assert presses == ["press"]
    finally:
        panel.close()


def test_closing_the_panel_releases_the_pins_and_the_library(gpio):
    kind, library = gpio
    panel = PiHardware(HardwareSection(backend="pi", pin_factory=kind)).panel()
    panel.close()
    panel.close()  # twice is fine
    if kind == "lgpio":
        assert library._open == {}  # gpiochip_close was called
        assert {library.line(pin).claimed for pin in (17, 22, 27)} <= {"input"}  # back to inputs
    else:
        assert library.channels == {}  # GPIO.cleanup()


@pytest.mark.parametrize("kind, package", [
    ("lgpio", "sudo apt install python3-lgpio"),
    ("rpigpio", "sudo apt install python3-rpi.gpio"),
    ("auto", "sudo apt install python3-lgpio"),
])
def test_a_missing_pin_library_names_the_package_and_is_never_a_mock(monkeypatch, kind, package):
    missing(monkeypatch, "lgpio", "RPi", "RPi.GPIO")
    standins.forget(monkeypatch, "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio")
    with pytest.raises(BackendUnavailable, match=package.replace(".", r"\.")):
        PiHardware(HardwareSection(backend="pi", pin_factory=kind)).panel()


def test_auto_reports_an_lgpio_that_fails_instead_of_trying_rpigpio(lgpio_pi5):
    lgpio_pi5.CHIPS.clear()  # /dev/gpiochip0 cannot be opened (no permission, another owner)
    with pytest.raises(HardwareError, match="group 'gpio'") as info:
        open_pin_factory("auto")
    assert not isinstance(info.value, BackendUnavailable)


def test_rpigpio_on_a_pi_5_says_to_use_lgpio(rpigpio_pi4, monkeypatch):
    def no_soc(mode):
        raise RuntimeError("Cannot determine SOC peripheral base address")

    monkeypatch.setattr(rpigpio_pi4, "setmode", no_soc)
    with pytest.raises(HardwareError, match='pin_factory = "lgpio"'):
        open_pin_factory("rpigpio")


def test_a_pin_held_elsewhere_fails_with_the_pins_and_frees_the_others(lgpio_pi5, monkeypatch):
    claim = lgpio_pi5.gpio_claim_input

    def busy_button(handle, gpio, lFlags=0):
        if gpio == 22:
            raise lgpio_pi5.error("GPIO busy")
        return claim(handle, gpio, lFlags)

    monkeypatch.setattr(lgpio_pi5, "gpio_claim_input", busy_button)
    with pytest.raises(HardwareError, match="button GPIO22.*GPIO busy"):
        PiHardware(HardwareSection(backend="pi", pin_factory="lgpio")).panel()
    assert lgpio_pi5._open == {}  # the factory opened for the panel is closed again


@pytest.mark.pi
def test_the_panel_on_this_pi_plays_a_cue():
    panel = PiHardware(HardwareSection(backend="pi")).panel()
    try:
        panel.signal(Signal.STAMPED, CUE, wait=True)
        assert [p.signal for p in panel.history] == [Signal.STAMPED]
        assert not panel.led.is_lit and not panel.buzzer.is_active
    finally:
        panel.close()


# --- Displays: luma.oled over a stand-in bus ------------------------------------------------------

@pytest.fixture
def i2c(monkeypatch):
    """The I2C bus as smbus2 sees it: bus 1 with an OLED answering at 0x3C."""
    return standins.install(monkeypatch, "smbus2")


def oled_ram(kind: str, traffic) -> np.ndarray:
    """The 128x64 pixels the controller's RAM holds after *traffic* (commands and data as
    written to I2C): SSD1306 in horizontal addressing with a column/page window, SH1106 page
    by page from column 2."""
    ram = np.zeros((8, 132), np.uint8)  # pages x columns
    column, page, window = 0, 0, (0, 127, 0, 7)
    for _, register, payload in traffic:
        if register == 0x00:  # commands
            if kind == "ssd1306" and payload[:1] == b"\x21":
                window = (payload[1], payload[2], payload[4], payload[5])
                column, page = window[0], window[2]
            elif kind == "sh1106":
                page, column = payload[0] & 0x07, ((payload[2] & 0x0F) << 4 | (payload[1] & 0x0F))
            continue
        data = payload[1:] if register is None else payload  # i2c_rdwr carries the 0x40 control byte
        for byte in data:
            ram[page, column] = byte
            column += 1
            if kind == "ssd1306" and column > window[1]:
                column, page = window[0], page + 1
    ram = ram[:, 2:130] if kind == "sh1106" else ram[:, :128]
    bits = np.unpackbits(ram[:, :, None], axis=2, bitorder="little")  # page, column, bit
    return bits.transpose(0, 2, 1).reshape(HEIGHT, WIDTH)


@luma_on_new_pillow
@pytest.mark.parametrize("kind", ["ssd1306", "sh1106"])
@pytest.mark.parametrize("rotate", [0, 2])
def test_a_screen_reaches_the_oled_pixel_for_pixel(i2c, kind, rotate):
    display = open_oled(kind, 1, 0x3C, rotate)
    opened = len(i2c.traffic)
    display.show(IDLE)
    expected = screens.render(IDLE).rotate(180 * (rotate // 2))
    assert {address for address, _, _ in i2c.traffic} == {0x3C}
    assert (oled_ram(kind, i2c.traffic[opened:]) == np.asarray(expected, np.uint8)).all()
    assert list(display.shown) == [IDLE]


@pytest.mark.parametrize("change, message", [
    ({"BUSES": {}}, r"no OLED on I2C port 1: .*enable I2C with `sudo raspi-config nonint do_i2c 0`"),
    ({"DENIED": {1}}, r"no permission for I2C bus 1 .*group 'i2c'"),
    ({"BUSES": {1: set()}}, r"no display at I2C 0x3c on bus 1: check the wiring .*i2cdetect -y 1"),
])
def test_luma_errors_become_ours_with_the_fix(i2c, monkeypatch, change, message):
    for name, value in change.items():
        monkeypatch.setattr(i2c, name, value)
    with pytest.raises(HardwareError, match=message):
        PiHardware(HardwareSection(backend="pi")).display()


@pytest.fixture
def spi(monkeypatch):
    """SPI bus 0 (spidev) and RPi.GPIO for the display's D/C and reset lines."""
    standins.install(monkeypatch, "RPi.GPIO")
    return standins.install(monkeypatch, "spidev")


@luma_on_new_pillow
def test_the_colour_oled_shows_the_same_screen_centred(spi, monkeypatch):
    display = PiHardware(HardwareSection(backend="pi", display="ssd1351")).display()
    device = display.device
    assert (device.mode, device.size) == ("RGB", (128, 128))
    gpio = sys.modules["RPi.GPIO"]
    assert gpio.channels[24].function == gpio.OUT and levels(gpio.writes, 25)[-2:] == [0, 1]  # D/C; reset pulsed
    shown = []
    real_display = device.display
    monkeypatch.setattr(device, "display", lambda image: (shown.append(image.copy()), real_display(image)))
    spi.written.clear()
    display.show(IDLE)
    assert sum(map(len, spi.written)) > 0
    (image,) = shown
    assert (image.mode, image.size) == ("RGB", (128, 128))
    assert image.crop((0, 32, 128, 96)).tobytes() == screens.render(IDLE).convert("RGB").tobytes()
    assert image.crop((0, 0, 128, 32)).getbbox() is None and image.crop((0, 96, 128, 128)).getbbox() is None


def test_letterbox_keeps_a_monochrome_screen_as_it_is():
    class Square:
        mode, size, width, height = "1", (128, 128), 128, 128

    boxed = letterbox(screens.render(IDLE), Square())
    assert boxed.crop((0, 32, 128, 96)).tobytes() == screens.render(IDLE).tobytes()


@pytest.mark.parametrize("absent, package", [("spidev", "python3-spidev"), ("RPi.GPIO", "python3-rpi-lgpio")])
def test_the_colour_oled_names_what_is_missing(spi, monkeypatch, absent, package):
    missing(monkeypatch, absent)
    with pytest.raises(BackendUnavailable, match=package):
        open_ssd1351()


def test_the_colour_oled_without_spi_says_to_enable_it(spi, monkeypatch):
    monkeypatch.setattr(spi, "DEVICES", set())
    with pytest.raises(HardwareError, match="do_spi 0"):
        open_ssd1351()


@luma_on_new_pillow
@pytest.mark.pi
def test_the_oled_on_this_pi_shows_a_screen():
    display = PiHardware(HardwareSection(backend="pi")).display()
    display.show(IDLE)
    assert list(display.shown) == [IDLE]


# --- Cameras: picamera2 (stand-in) and OpenCV (real) ------------------------------------------------

@pytest.fixture
def camera_module(monkeypatch):
    """A Pi with Camera Module 3 (imx708) on picamera2 and libcamera's Python bindings."""
    standins.install(monkeypatch, "libcamera")
    return standins.install(monkeypatch, "picamera2")


def test_frames_are_the_y_plane_of_a_yuv420_stream(camera_module, rng):
    seen = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    camera_module.scene.append(seen)
    camera = PiCamera(0, 640, 480, fps=15)
    try:
        (cam,) = camera_module.opened
        main = cam.camera_config["main"]
        assert main == {"format": "YUV420", "size": (640, 480)}  # no RGB stream: no colour conversion
        assert cam.camera_config["controls"]["FrameDurationLimits"] == (66666, 66666)  # 15 frames/s
        frame = camera.capture()
        assert frame.pixels.shape == (480, 640) and frame.pixels.flags.c_contiguous
        assert np.array_equal(frame.pixels, seen)  # no chroma rows, no row padding
    finally:
        camera.close()
    assert not cam.is_open


@pytest.mark.parametrize("model, autofocus, controls", [
    ("imx708", True, {"AfMode": 2, "AfSpeed": 1}),  # Camera Module 3: continuous, fast
    ("imx708", False, {}),  # switched off in [hardware]
    ("imx219", True, {}),  # Camera Module 2 has no focus motor
])
def test_continuous_autofocus_only_where_the_camera_has_it(camera_module, model, autofocus, controls):
    camera_module.CAMERAS[:] = [model]
    camera = PiCamera(autofocus=autofocus)
    try:
        assert camera_module.opened[0].controls_set == controls
        assert camera.autofocus is bool(controls)
    finally:
        camera.close()


def test_no_pi_camera_says_what_to_check(camera_module):
    camera_module.CAMERAS.clear()
    with pytest.raises(CameraError, match="rpicam-hello --list-cameras"):
        PiCamera()


def test_a_pi_camera_in_use_elsewhere_is_a_camera_error(camera_module, monkeypatch):
    def busy(self, camera_num=0, verbose_console=None, tuning=None):
        raise RuntimeError("Camera __init__ sequence did not complete.")

    monkeypatch.setattr(camera_module.Picamera2, "__init__", busy)
    with pytest.raises(CameraError, match="another program"):
        PiCamera()


def test_without_picamera2_the_package_is_named(monkeypatch):
    missing(monkeypatch, "picamera2")
    with pytest.raises(BackendUnavailable, match="sudo apt install python3-picamera2"):
        PiHardware(HardwareSection(backend="pi")).camera()


def test_the_factory_reads_the_pi_camera_through_a_grabber(camera_module, rng):
    picture = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    camera_module.scene.append(picture)
    settings = HardwareSection(backend="pi", camera_width=320, camera_height=240, camera_fps=30)
    camera = PiHardware(settings).camera()
    try:
        assert isinstance(camera, FrameGrabber) and isinstance(camera.camera, PiCamera)
        frame = camera.capture(timeout=5)
        assert np.array_equal(frame.pixels, picture)
        assert camera.capture(timeout=0.2) is None  # the same picture again is not decoded again
        assert camera.stats().duplicates >= 1
    finally:
        camera.close()
    assert not camera_module.opened[0].is_open


def test_a_webcam_frame_is_converted_to_grayscale_by_opencv(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    pictures = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    for n, picture in enumerate(pictures):
        cv2.imwrite(str(tmp_path / f"frame{n:03d}.png"), picture)
    camera = OpenCVCamera(str(tmp_path / "frame%03d.png"), width=64, height=48)
    try:
        for picture in pictures:
            frame = camera.capture()
            assert frame.pixels.shape == (48, 64) and frame.pixels.dtype == np.uint8
            assert np.array_equal(frame.pixels, cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))
        with pytest.raises(CameraError, match="stopped delivering"):
            camera.capture()
    finally:
        camera.close()


def test_no_webcam_says_what_to_check():
    pytest.importorskip("cv2")
    if Path("/dev/video63").exists():
        pytest.skip("this machine has a /dev/video63")
    with pytest.raises(CameraError, match="no webcam at /dev/video63"):
        OpenCVCamera(63)


def test_without_opencv_the_package_is_named(monkeypatch):
    missing(monkeypatch, "cv2")
    with pytest.raises(BackendUnavailable, match="opencv-python-headless"):
        PiHardware(HardwareSection(backend="pi", camera="opencv")).camera()


@pytest.mark.pi
def test_the_camera_on_this_pi_delivers_y_frames():
    settings = HardwareSection(backend="pi")
    camera = PiHardware(settings).camera()
    try:
        deadline = time.monotonic() + 10
        frame = None
        while frame is None and time.monotonic() < deadline:
            frame = camera.capture(timeout=0.5)
        assert frame is not None and frame.pixels.shape == (settings.camera_height, settings.camera_width)
        assert camera.stats().captured >= 1
    finally:
        camera.close()


def test_the_decoder_reads_a_pass_from_the_y_plane(camera_module, rng):
    """What the decoder gets from the Pi camera is enough: a pass held up to it is read."""
    from kiosk.hardware import scenes
    from kiosk.hardware.decoder import open_decoder

    camera_module.scene.append(scenes.render("HTTPS://X/P/1", rng, scenes.Look()))
    camera = PiCamera()
    try:
        assert open_decoder("pyzbar").decode(camera.capture().pixels) == [b"HTTPS://X/P/1"]
    finally:
        camera.close()
