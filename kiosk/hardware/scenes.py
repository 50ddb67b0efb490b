"""Synthetic camera scenes: a pass on a phone screen, held up to the kiosk camera.

The simulated camera's stand-in for the world. A pass QR is drawn on a phone (bezel,
status bar, card text), put in a hand over a counter, then seen through a cheap camera:
perspective and rotation, blur, sensor noise, a glare spot and low contrast. Every
random choice comes from the ``rng`` passed in, so a seed gives the same frame anywhere.

``Look.random`` is the everyday mix, which every decoder reads nearly always; the harder
kinds (``KINDS``: small codes, motion blur, screen moiré, glare on the code) exist so a
benchmark's read rate still tells decoders apart. Their extra effects are off by default
and draw nothing from the ``rng`` when off, so frames rendered before they existed are
unchanged, pixel for pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kiosk.protocol import qr

WIDTH, HEIGHT = 640, 480


@dataclass(frozen=True)
class Look:
    """How hard the frame is; ``Look.random(rng)`` draws a realistic mix."""

    rotation_deg: float = 0.0      # in-plane rotation of the phone
    tilt: float = 0.0              # perspective: 0 = flat on, 0.15 = strongly tilted
    qr_px: int = 200               # width of the code in the frame, in pixels
    blur: float = 0.0              # Gaussian radius in pixels (focus, hand shake)
    noise: float = 0.0             # sensor noise, standard deviation in grey levels
    glare: float = 0.0             # peak brightness added by a reflection, grey levels
    contrast: float = 1.0          # 1 = full, 0.4 = washed out
    center: tuple[float, float] = (0.5, 0.5)
    motion_px: float = 0.0         # length of a straight motion blur (the phone moving), pixels
    motion_deg: float = 0.0        # its direction
    moire: float = 0.0             # depth of the screen's moiré bands, 0..1 of the screen's brightness
    moire_period: float = 12.0     # width of one moiré band, pixels
    glare_on_code: bool = False    # the glare spot sits on the code itself (a shop light on the glass)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Look":
        return cls(
            rotation_deg=float(rng.uniform(-30, 30)),
            tilt=float(rng.uniform(0, 0.12)),
            qr_px=int(rng.integers(170, 260)),
            blur=float(rng.uniform(0, 1.2)),
            noise=float(rng.uniform(2, 9)),
            glare=float(rng.uniform(0, 90)),
            contrast=float(rng.uniform(0.45, 1.0)),
            center=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
        )

    @classmethod
    def hardest(cls) -> "Look":
        """The worst case the kiosk promises to read first try."""
        return cls(rotation_deg=30, tilt=0.1, qr_px=200, blur=0.8, noise=6, glare=60, contrast=0.5)

    @classmethod
    def small(cls, rng: np.random.Generator, modules: int) -> "Look":
        """Held far away: 2.5-4 camera pixels per module of a code *modules* wide (quiet zone included)."""
        return replace(cls.random(rng), qr_px=int(round(modules * rng.uniform(2.5, 4.0))),
                       blur=float(rng.uniform(0.4, 1.1)))

    @classmethod
    def moving(cls, rng: np.random.Generator, modules: int) -> "Look":
        """Shown while still moving: a 2-6 pixel streak in any direction."""
        return replace(cls.random(rng), motion_px=float(rng.uniform(2, 6)), motion_deg=float(rng.uniform(0, 180)),
                       blur=float(rng.uniform(0, 0.6)))

    @classmethod
    def screen_moire(cls, rng: np.random.Generator, modules: int) -> "Look":
        """The screen's pixel grid beating with the sensor's: bands across the code."""
        return replace(cls.random(rng), moire=float(rng.uniform(0.2, 0.5)), moire_period=float(rng.uniform(5, 20)))

    @classmethod
    def glared(cls, rng: np.random.Generator, modules: int) -> "Look":
        """A shop light reflected on the glass right over the code, washing part of it out."""
        return replace(cls.random(rng), glare=float(rng.uniform(180, 300)), glare_on_code=True)


KINDS: dict[str, Callable[[np.random.Generator, int], Look]] = {
    "phone": lambda rng, modules: Look.random(rng),
    "small": Look.small,
    "motion": Look.moving,
    "moire": Look.screen_moire,
    "glare": Look.glared,
}
"""Scene kinds by name: each draws a Look from an rng and the code's width in modules."""


def width_in_modules(text: str) -> int:
    """Width of *text*'s pass QR in modules, quiet zone included (53 for a version-7 pass)."""
    return qr.make_qr(text, warn=False).symbol_size(border=4)[0]


def phone_image(text: str, qr_px: int) -> Image.Image:
    """A phone showing the pass: dark bezel, status bar, shop line, the QR, a caption."""
    code = qr.to_image(text, scale=4)
    code = code.resize((qr_px, qr_px), Image.Resampling.NEAREST)
    pad = qr_px // 10
    width, height = qr_px + 2 * pad, int(qr_px * 1.9)
    phone = Image.new("L", (width, height), 30)  # bezel
    screen = (pad // 2, pad * 2, width - pad // 2, height - pad * 2)
    draw = ImageDraw.Draw(phone)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=pad * 2, fill=25, outline=60)
    draw.rectangle(screen, fill=235)
    draw.rectangle((screen[0], screen[1], screen[2], screen[1] + pad), fill=200)  # status bar
    top = screen[1] + pad * 2
    draw.rectangle((pad * 2, top, width - pad * 3, top + pad // 2), fill=120)  # shop name
    draw.rectangle((pad * 2, top + pad, width - pad * 5, top + pad + pad // 3), fill=160)
    qr_top = top + pad * 2
    phone.paste(code, (pad, qr_top))
    draw.rectangle((pad * 3, qr_top + qr_px + pad, width - pad * 3, qr_top + qr_px + pad + pad // 3), fill=150)
    return phone


def _background(rng: np.random.Generator) -> np.ndarray:
    """A counter with a soft light gradient and a skin-toned hand region."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    base = rng.uniform(70, 150) + 40 * ((x / WIDTH) * math.cos(angle) + (y / HEIGHT) * math.sin(angle))
    coarse = rng.normal(0, 12, (HEIGHT // 32 + 1, WIDTH // 32 + 1)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, mode="F").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC))
    hand_x, hand_y = rng.uniform(0.35, 0.65) * WIDTH, rng.uniform(0.6, 0.9) * HEIGHT
    hand = ((x - hand_x) / 140) ** 2 + ((y - hand_y) / 110) ** 2 < 1
    img = base + texture
    img[hand] = img[hand] * 0.3 + 0.7 * rng.uniform(150, 190)
    return img


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """PIL's PERSPECTIVE coefficients mapping output (dst) points back to input (src) points."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, dtype=float), np.array([c for p in src for c in p], dtype=float))
    return solution.tolist()


def _place(frame: np.ndarray, phone: Image.Image, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Warp the phone into the frame with rotation and perspective, in place; returns where it
    landed (0..1 per pixel)."""
    w, h = phone.size
    cx, cy = look.center[0] * WIDTH, look.center[1] * HEIGHT
    theta = math.radians(look.rotation_deg)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    dst = []
    for i, (px, py) in enumerate(corners):
        # tilt: one side of the phone further from the camera looks smaller
        shrink = 1 - look.tilt * (1 if i in (0, 1) else -0.3) * rng.uniform(0.7, 1.0)
        px, py = px * shrink, py * shrink
        dst.append((cx + px * math.cos(theta) - py * math.sin(theta), cy + px * math.sin(theta) + py * math.cos(theta)))
    coeffs = _perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)], dst)
    warped = phone.transform((WIDTH, HEIGHT), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    mask = Image.new("L", phone.size, 255).transform((WIDTH, HEIGHT), Image.Transform.PERSPECTIVE, coeffs,
                                                     Image.Resampling.BILINEAR)
    alpha = np.asarray(mask, dtype=np.float32) / 255
    frame *= 1 - alpha
    frame += alpha * np.asarray(warped, dtype=np.float32)
    return alpha


def render(texts: str | list[str], rng: np.random.Generator, look: Look | None = None) -> np.ndarray:
    """A 640x480 grayscale frame with one phone per text (two sit side by side; none: an empty counter)."""
    texts = [texts] if isinstance(texts, str) else texts
    look = look or Look.random(rng)
    frame = _background(rng)
    screen = np.zeros_like(frame)
    for i, text in enumerate(texts):
        center = look.center if len(texts) == 1 else ((i + 0.5) / len(texts), 0.5)
        size = look.qr_px if len(texts) == 1 else min(look.qr_px, 170)
        placed = replace(look, qr_px=size, center=center)
        screen = np.maximum(screen, _place(frame, phone_image(text, size), placed, rng))
    return _camera(frame, look, rng, screen)


def _camera(frame: np.ndarray, look: Look, rng: np.random.Generator, screen: np.ndarray) -> np.ndarray:
    """What a cheap sensor does to the scene: moiré on the *screen* area, glare, contrast loss,
    blur, motion, noise."""
    if look.moire > 0:
        frame *= 1 - look.moire * screen * _moire_bands(look.moire_period, rng)
    if look.glare > 0:
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        if look.glare_on_code:  # a reflection: flat-topped, so its core saturates to white
            gx, gy, radius = _glare_on_code(look, rng)
            frame += look.glare * np.exp(-((((x - gx) ** 2 + (y - gy) ** 2) / (2 * radius**2)) ** 2))
        else:
            gx, gy = look.center[0] * WIDTH + rng.uniform(-80, 80), look.center[1] * HEIGHT + rng.uniform(-80, 80)
            radius = rng.uniform(30, 70)
            frame += look.glare * np.exp(-(((x - gx) ** 2 + (y - gy) ** 2) / (2 * radius**2)))
    mean = float(frame.mean())
    frame = mean + (frame - mean) * look.contrast
    image = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    if look.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(look.blur))
    pixels = np.asarray(image, dtype=np.float32)
    if look.motion_px > 0:
        pixels = _motion_blur(pixels, look.motion_px, look.motion_deg)
    noisy = pixels + rng.normal(0, look.noise, (HEIGHT, WIDTH))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _moire_bands(period: float, rng: np.random.Generator) -> np.ndarray:
    """0..1 bands of about *period* pixels at a random angle, slightly bent, with a faint fine
    grid on top: the beat between a screen's pixel grid and the sensor's."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle, phase, bend = rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1) * 4e-5
    across = x * math.cos(angle) + y * math.sin(angle)
    along = -x * math.sin(angle) + y * math.cos(angle)
    beat = 0.5 + 0.5 * np.cos(2 * math.pi * across / period + bend * along**2 + phase)
    fine = 0.5 + 0.5 * np.cos(2 * math.pi * (x + y) / rng.uniform(2.2, 3.2))
    return 0.8 * beat + 0.2 * fine


def _glare_on_code(look: Look, rng: np.random.Generator) -> tuple[float, float, float]:
    """Centre and radius of a reflection somewhere on the code (the code sits 0.15 of its width
    below the phone's centre, along the phone's rotated axis)."""
    theta = math.radians(look.rotation_deg)
    below = 0.15 * look.qr_px
    gx = look.center[0] * WIDTH - below * math.sin(theta) + rng.uniform(-0.25, 0.25) * look.qr_px
    gy = look.center[1] * HEIGHT + below * math.cos(theta) + rng.uniform(-0.25, 0.25) * look.qr_px
    return gx, gy, rng.uniform(0.1, 0.2) * look.qr_px


def _motion_blur(pixels: np.ndarray, length: float, degrees: float) -> np.ndarray:
    """A straight streak *length* pixels long: the mean of the frame shifted along it."""
    pad = int(math.ceil(length))
    padded = Image.fromarray(np.pad(pixels, pad, mode="edge"))
    steps = pad + 1
    dx, dy = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    total = np.zeros_like(pixels)
    for t in np.linspace(-length / 2, length / 2, steps):
        shifted = padded.transform(padded.size, Image.Transform.AFFINE, (1, 0, t * dx, 0, 1, t * dy),
                                   Image.Resampling.BILINEAR)
        total += np.asarray(shifted)[pad:pad + HEIGHT, pad:pad + WIDTH]
    return total / steps
