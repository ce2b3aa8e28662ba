"""Batch throughput: ``captioner batch`` with --workers 1, --workers 2 and --engine ray on the
same clips, in one run. Prints one table: videos per minute and video seconds per second, over
the whole command (start-up included: Python, models, worker processes, Ray) and in steady
state (from the first input finished to the last, by the run's manifest: the inputs after the
first over that time; every worker has its models loaded by then), and whether every
configuration wrote the same captions.

The clips are the shortest real ones in ../shared/data/videos when present (``--clips N``),
else generated ones. Each configuration runs as its own ``python -m captioner batch`` into a
fresh folder; nothing else should be running on the machine.

    python benchmarks/batch.py [--clips 8] [--imgsz 320] [--ray-workers 2] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_VIDEOS = Path(os.environ.get("CAPTIONER_SHARED", REPO.parent / "shared")) / "data" / "videos"


def pick_clips(n: int, folder: Path) -> tuple[list[Path], str]:
    from captioner.video import probe

    if SHARED_VIDEOS.is_dir():
        found = sorted((probe(p).duration_sec, p) for p in SHARED_VIDEOS.glob("*.mp4"))
        return [p for _, p in found[:n]], f"the {n} shortest real clips in {SHARED_VIDEOS}"
    from captioner.training.synthetic import make_clip

    return ([make_clip(folder / f"clip{i:02d}.mp4", duration_sec=6.0 + i, fps=25.0, width=640, height=360)
             for i in range(n)], f"{n} generated clips (no {SHARED_VIDEOS})")


def run(label: str, clips: list[Path], out: Path, imgsz: int, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "captioner", "batch", *map(str, clips), "-o", str(out), "-f", "json",
               "--imgsz", str(imgsz), "--quiet", *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    db = sqlite3.connect(out / "manifest.sqlite")
    rows = db.execute("SELECT status, duration_sec, finished_at FROM inputs ORDER BY finished_at").fetchall()
    db.close()
    assert all(r[0] == "done" for r in rows), rows
    video_sec = sum(r[1] for r in rows)
    steady_sec = rows[-1][2] - rows[0][2]  # first finished -> last finished: the inputs after the first
    steady_videos, steady_video_sec = len(rows) - 1, video_sec - rows[0][1]
    captions = {p.stem: [(s["start"], s["end"], s["caption"]) for s in json.loads(p.read_text())["segments"]]
                for p in sorted(out.glob("*.json"))}
    return {"label": label, "videos": len(rows), "video_sec": video_sec, "wall": wall, "steady_sec": steady_sec,
            "steady_videos": steady_videos, "steady_video_sec": steady_video_sec, "captions": captions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="how many clips (default %(default)s)")
    parser.add_argument("--imgsz", type=int, default=320, help="YOLO input size (default %(default)s)")
    parser.add_argument("--ray-workers", type=int, default=2, help="Ray actors (default %(default)s)")
    parser.add_argument("--skip-ray", action="store_true", help="only the local engine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="captioner-bench-batch-") as tmp:
        tmp = Path(tmp)
        clips, where = pick_clips(args.clips, tmp / "clips")
        configs = [("local, --workers 1", ["--workers", "1"]), ("local, --workers 2", ["--workers", "2"])]
        if not args.skip_ray:
            configs.append((f"--engine ray, {args.ray_workers} actors", ["--engine", "ray", "--workers",
                                                                          str(args.ray_workers)]))
        results = [run(label, clips, tmp / f"out{i}", args.imgsz, extra) for i, (label, extra) in enumerate(configs)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total = results[0]["video_sec"]
    print(f"batch throughput: {where}: {len(clips)} videos, {total:.1f} s of video; imgsz {args.imgsz}, "
          f"{cores} CPU cores, -f json")
    print(f"{'configuration':<28} {'wall s':>7} {'videos/min':>11} {'video-s/s':>10} | {'steady s':>9} "
          f"{'videos/min':>11} {'video-s/s':>10}")
    for r in results:
        steady = max(r["steady_sec"], 1e-9)
        print(f"{r['label']:<28} {r['wall']:7.1f} {60 * r['videos'] / r['wall']:11.1f} {r['video_sec'] / r['wall']:10.2f} | "
              f"{r['steady_sec']:9.1f} {60 * r['steady_videos'] / steady:11.1f} {r['steady_video_sec'] / steady:10.2f}")
    same = all(r["captions"] == results[0]["captions"] for r in results[1:])
    print("left: the whole command, start-up included; right: steady state, from the first input finished to the "
          f"last (the other inputs over that time). Captions identical in every configuration: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
