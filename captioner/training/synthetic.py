"""Clips whose truth is known, made from Ultralytics' bundled ``bus.jpg`` and ``zidane.jpg``.

Used by the tests (no ../shared needed), by ``samples/make_sample.py`` and by the benchmarks:
a picture of a bus moves left to right and a picture of people moves right to left across a
plain background, so detections, tracks and motion directions are known in advance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


def asset(name: str) -> np.ndarray:
    from ultralytics.utils import ASSETS

    image = cv2.imread(str(Path(ASSETS) / name))
    if image is None:
        raise FileNotFoundError(f"Ultralytics asset {name} not found in {ASSETS}")
    return image


@dataclass(frozen=True)
class Sprite:
    """An image pasted at a position that moves linearly with time (pixels, seconds)."""

    image: np.ndarray
    x0: float
    y0: float
    vx_px_per_sec: float
    vy_px_per_sec: float = 0.0
    t_start: float = 0.0
    t_end: float = float("inf")

    def box_xyxy(self, t_sec: float) -> tuple[float, float, float, float] | None:
        if not (self.t_start <= t_sec <= self.t_end):
            return None
        dt = t_sec - self.t_start
        x, y = self.x0 + self.vx_px_per_sec * dt, self.y0 + self.vy_px_per_sec * dt
        h, w = self.image.shape[:2]
        return (x, y, x + w, y + h)


def default_sprites(width: int = 640, height: int = 360, duration_sec: float = 6.0) -> list[Sprite]:
    """A bus photo moving right and a people photo moving left, both fully in view throughout."""
    bus = asset("bus.jpg")  # 810x1080: a bus with people in front
    people = asset("zidane.jpg")  # 1280x720: two men
    bus_h = int(height * 0.8)
    bus = cv2.resize(bus, (int(bus.shape[1] * bus_h / bus.shape[0]), bus_h), interpolation=cv2.INTER_AREA)
    people_w = int(width * 0.4)
    people = cv2.resize(people, (people_w, int(people.shape[0] * people_w / people.shape[1])), interpolation=cv2.INTER_AREA)
    travel = width * 0.25
    return [
        Sprite(bus, x0=width * 0.02, y0=height * 0.1, vx_px_per_sec=travel / duration_sec),
        Sprite(people, x0=width - people_w - width * 0.02, y0=height - people.shape[0] - height * 0.05,
               vx_px_per_sec=-travel / duration_sec),
    ]


def render_frame(sprites: list[Sprite], t_sec: float, width: int, height: int) -> np.ndarray:
    frame = np.full((height, width, 3), 114, np.uint8)  # YOLO's own letterbox grey
    for sprite in sprites:
        box = sprite.box_xyxy(t_sec)
        if box is None:
            continue
        x1, y1 = int(round(box[0])), int(round(box[1]))
        h, w = sprite.image.shape[:2]
        # clip the sprite to the frame so objects can enter and leave
        fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x1 + w, width), min(y1 + h, height)
        if fx1 >= fx2 or fy1 >= fy2:
            continue
        frame[fy1:fy2, fx1:fx2] = sprite.image[fy1 - y1:fy2 - y1, fx1 - x1:fx2 - x1]
    return frame


def make_clip(
    path: str | os.PathLike,
    *,
    duration_sec: float = 6.0,
    fps: float = 10.0,
    width: int = 640,
    height: int = 360,
    sprites: list[Sprite] | None = None,
    fourcc: str = "mp4v",
) -> Path:
    """Write a clip with OpenCV; returns its path. Frame i is at t = i / fps."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sprites = sprites if sprites is not None else default_sprites(width, height, duration_sec)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with codec {fourcc}")
    try:
        for i in range(int(round(duration_sec * fps))):
            writer.write(render_frame(sprites, i / fps, width, height))
    finally:
        writer.release()
    return path
