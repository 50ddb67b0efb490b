"""Synthetic camera scenes: a pass on a phone screen, held up to the kiosk camera.

The simulated camera's stand-in for the world. A pass QR is drawn on a phone (bezel,
status bar, card text), put in a hand over a counter, then seen through a cheap camera:
perspective and rotation, blur, sensor noise, a glare spot and low contrast. Every
random choice comes from the ``rng`` passed in, so a seed gives the same frame anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def _place(frame: np.ndarray, phone: Image.Image, look: Look, rng: np.random.Generator) -> None:
    """Warp the phone into the frame with rotation and perspective, in place."""
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


def render(texts: str | list[str], rng: np.random.Generator, look: Look | None = None) -> np.ndarray:
    """A 640x480 grayscale frame with one phone per text (two sit side by side)."""
    texts = [texts] if isinstance(texts, str) else texts
    look = look or Look.random(rng)
    frame = _background(rng)
    for i, text in enumerate(texts):
        center = look.center if len(texts) == 1 else ((i + 0.5) / len(texts), 0.5)
        size = look.qr_px if len(texts) == 1 else min(look.qr_px, 170)
        placed = Look(look.rotation_deg, look.tilt, size, look.blur, look.noise, look.glare, look.contrast, center)
        _place(frame, phone_image(text, size), placed, rng)
    return _camera(frame, look, rng)


def _camera(frame: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """What a cheap sensor does to the scene: glare, contrast loss, blur, noise."""
    if look.glare > 0:
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        gx, gy = look.center[0] * WIDTH + rng.uniform(-80, 80), look.center[1] * HEIGHT + rng.uniform(-80, 80)
        radius = rng.uniform(30, 70)
        frame += look.glare * np.exp(-(((x - gx) ** 2 + (y - gy) ** 2) / (2 * radius**2)))
    mean = float(frame.mean())
    frame = mean + (frame - mean) * look.contrast
    image = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    if look.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(look.blur))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, look.noise, (HEIGHT, WIDTH))
    return np.clip(noisy, 0, 255).astype(np.uint8)
