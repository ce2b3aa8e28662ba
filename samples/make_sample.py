"""Make samples/bus_people.mp4 from Ultralytics' bundled bus.jpg and zidane.jpg.

A bus photo drives in from the left, crosses the frame and leaves on the right, while a photo
of two men moves slowly to the left: people and a bus moving, with entries and exits to
caption and forecast. H.264 so browsers (and the web app's examples) can play it.

    python samples/make_sample.py [--out samples/bus_people.mp4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioner.annotate import AnnotatedVideoWriter  # noqa: E402
from captioner.training.synthetic import Sprite, asset, render_frame  # noqa: E402

WIDTH, HEIGHT, FPS, DURATION_SEC = 640, 360, 25, 12.0


def sample_sprites() -> list[Sprite]:
    bus = asset("bus.jpg")
    bus_h = int(HEIGHT * 0.75)
    bus = cv2.resize(bus, (int(bus.shape[1] * bus_h / bus.shape[0]), bus_h), interpolation=cv2.INTER_AREA)
    people = asset("zidane.jpg")
    people_w = int(WIDTH * 0.42)
    people = cv2.resize(people, (people_w, int(people.shape[0] * people_w / people.shape[1])), interpolation=cv2.INTER_AREA)
    bus_travel = WIDTH + bus.shape[1]  # from just outside the left edge to just outside the right
    return [
        Sprite(people, x0=WIDTH - people_w - 10, y0=HEIGHT - people.shape[0] - 10, vx_px_per_sec=-12.0),
        Sprite(bus, x0=-bus.shape[1] * 0.6, y0=HEIGHT * 0.05, vx_px_per_sec=bus_travel / DURATION_SEC),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "bus_people.mp4")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    sprites = sample_sprites()
    with AnnotatedVideoWriter(args.out, FPS, (WIDTH, HEIGHT), overwrite=args.overwrite) as writer:
        for i in range(int(DURATION_SEC * FPS)):
            writer.write(render_frame(sprites, i / FPS, WIDTH, HEIGHT))
    print(f"wrote {args.out} ({DURATION_SEC:.0f} s, {FPS} fps, {WIDTH}x{HEIGHT})")


if __name__ == "__main__":
    main()
