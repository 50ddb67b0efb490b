"""bench/kiosk_footprint.py's own parts: its /proc readings, and the camera of named pipes that the
kiosk's replay camera reads frame by frame as this side feeds them."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from bench.kiosk_footprint import PipeCamera, cpu_seconds, memory, png
from kiosk.hardware.camera import ReplayCamera


def test_proc_readings_of_this_process():
    mem = memory(os.getpid())
    assert 0 < mem["RssAnon"] <= mem["VmRSS"] <= mem["VmHWM"]
    assert mem["Threads"] >= 1
    assert cpu_seconds(os.getpid()) > 0


# PIL reads a file it cannot seek (a pipe) into memory and drops the file object unclosed; CPython
# closes it at once (refcount), with a ResourceWarning that is silent outside tests.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_replay_camera_reads_the_pipes_in_order_as_they_are_fed(tmp_path):
    frames = [np.full((48, 64), level, np.uint8) for level in (0, 128, 255)]
    camera = PipeCamera(tmp_path / "camera", len(frames))
    replay = ReplayCamera.from_folder(camera.folder)  # as `stempel-kiosk run --replay DIR` opens it
    feeder = threading.Thread(target=lambda: [camera.show(png(f)) for f in frames], daemon=True)
    feeder.start()
    seen = [replay.capture().pixels for _ in frames]
    feeder.join(10)
    assert camera.fed == len(frames)
    for got, sent in zip(seen, frames):
        np.testing.assert_array_equal(got, sent)
