"""Peak memory captioning a 10-minute video vs a 1-minute one (goal: ratio <= 1.2).

Both videos are generated here (the sample's moving bus and people, looped), then each is
captioned in a fresh child process so its peak RSS (ru_maxrss) is its own. Prints both
figures and the ratio.

    python benchmarks/memory.py [--imgsz 320] [--minutes 1 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioner.training.synthetic import default_sprites, render_frame  # noqa: E402

CHILD = """
import json, sys, time
import captioner
model = captioner.load_model(imgsz=int(sys.argv[2]))
start = time.perf_counter()
result = model.caption(sys.argv[1])
print(json.dumps({"segments": len(result.segments), "seconds": time.perf_counter() - start,
                  "duration": result.video.duration_sec}))
"""


def make_long_clip(path: Path, minutes: float, fps: float = 10.0, size=(480, 270)) -> Path:
    import cv2

    width, height = size
    period_sec = 6.0  # the motion repeats every 6 s, so a long clip is a loop of a short one
    sprites = default_sprites(width, height, period_sec)
    loop = [render_frame(sprites, i / fps, width, height) for i in range(int(period_sec * fps))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(int(minutes * 60 * fps)):
        writer.write(loop[i % len(loop)])
    writer.release()
    return path


def peak_rss_mb(video: Path, imgsz: int) -> tuple[float, dict]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(video), str(imgsz)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise SystemExit(f"captioning {video} failed:\n{proc.stderr[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # max over children so far: run the short one first
    return usage.ru_maxrss / 1024.0, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--minutes", type=float, nargs=2, default=[1.0, 10.0])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="captioner-mem-"))
    results = []
    for minutes in sorted(args.minutes):  # shortest first: RUSAGE_CHILDREN keeps the max so far
        start = time.perf_counter()
        clip = make_long_clip(folder / f"clip_{minutes:g}min.mp4", minutes)
        made = time.perf_counter() - start
        rss, info = peak_rss_mb(clip, args.imgsz)
        results.append((minutes, rss))
        print(f"{minutes:g} min video ({clip.stat().st_size / 1e6:.1f} MB, made in {made:.0f}s): peak RSS {rss:.0f} MB, "
              f"{info['segments']} segments, captioned in {info['seconds']:.0f}s")
    (short, rss_short), (long, rss_long) = results[0], results[-1]
    print(f"peak RSS ratio {long:g} min / {short:g} min = {rss_long / rss_short:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
