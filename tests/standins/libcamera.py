"""Stand-in for libcamera's Python bindings, the part picamera2 users touch: ``controls`` with
the autofocus enums (``from libcamera import controls``; ``controls.AfModeEnum.Continuous``),
and ``Transform``/``ColorSpace`` for configurations. Values are libcamera's (control_ids.yaml):
AfModeManual 0, AfModeAuto 1, AfModeContinuous 2; AfSpeedNormal 0, AfSpeedFast 1."""

from __future__ import annotations

from enum import IntEnum
from types import SimpleNamespace


class AfModeEnum(IntEnum):
    Manual = 0
    Auto = 1
    Continuous = 2


class AfSpeedEnum(IntEnum):
    Normal = 0
    Fast = 1


class AfRangeEnum(IntEnum):
    Normal = 0
    Macro = 1
    Full = 2


controls = SimpleNamespace(AfModeEnum=AfModeEnum, AfSpeedEnum=AfSpeedEnum, AfRangeEnum=AfRangeEnum)


class Transform:
    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose


class ColorSpace:
    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def Sycc() -> "ColorSpace":
        return ColorSpace("sYCC")

    @staticmethod
    def Smpte170m() -> "ColorSpace":
        return ColorSpace("SMPTE170M")

    @staticmethod
    def Rec709() -> "ColorSpace":
        return ColorSpace("Rec709")
