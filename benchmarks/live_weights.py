"""What a caption model costs live: the same real-time live run with two (or more) checkpoints.

    python benchmarks/live_weights.py OLD.pt NEW.pt                  # imgsz 320 and 640, 3 rounds
    python benchmarks/live_weights.py OLD.pt NEW.pt --imgsz 320 --rounds 5

Each run is ``benchmarks/run.py``'s live child (a real clip's frames pushed in real time at 15 fps
into ``Captioner.new_live_stream()``, newest frame wins when it falls behind) in a fresh process
with ``CAPTIONER_WEIGHTS`` set to one checkpoint; the checkpoints take turns, round by round, so
a slow spell of a noisy machine hits each alike. Per checkpoint and size: latency from a frame's
arrival to its update (p50/p95, median over rounds and every round's p95), sustained fps, and the
caption step alone: describing one 4 s window of analysed frames (the decoder, its search and
the rules; median of 20 calls after 3 untimed), i.e. the cost a caption adds to the analysed
frame that closes a window. Load average before and after: timings on a busy machine mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

USER_ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHILD_RUN = REPO / "benchmarks" / "run.py"


def caption_step_ms(spec: dict) -> float:
    """Median ms of one live caption (``windows.describe_window`` on the last 4 s of analysed frames,
    as a live stream's preview does) after 6 s of the clip."""
    import captioner
    from captioner.video import VideoSource
    from captioner.windows import describe_window

    model = captioner.load_model(imgsz=spec["imgsz"])
    stream, size = None, None
    with VideoSource(spec["clip"]) as video:
        for i, frame in enumerate(video.frames()):
            if stream is None:
                size = (frame.image_bgr.shape[1], frame.image_bgr.shape[0])
                stream = model.new_live_stream(size)
            stream.push(frame.image_bgr, i / spec["push_fps"])
            if i >= spec["push_fps"] * 6:
                break
    last = stream.recent[-1].t_sec
    window = [f for f in stream.recent if f.t_sec > last - model.options.window_sec]
    times = []
    for k in range(23):
        start = time.perf_counter()
        describe_window(model.trained, window, model.options, size)
        if k >= 3:
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run_child(kind: str, spec: dict, weights: str) -> dict:
    env = dict(USER_ENV, CAPTIONER_WEIGHTS=str(weights))
    if kind == "step":
        code = ("import json,sys;sys.path.insert(0,%r);from benchmarks.live_weights import caption_step_ms;"
                "print(json.dumps({'step_ms': caption_step_ms(json.loads(sys.argv[1]))}))") % str(REPO)
        cmd = [sys.executable, "-c", code, json.dumps(spec)]
    else:
        cmd = [sys.executable, str(CHILD_RUN), "--child", "live", json.dumps(spec)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed for {weights}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="caption checkpoints to compare")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clip", default=None, help="default: run.py's live clip (a real one where ../shared is there)")
    args = parser.parse_args()
    from benchmarks.run import LIVE_CLIP, SHARED_VIDEOS

    clip = args.clip or str(SHARED_VIDEOS / LIVE_CLIP)
    if not Path(clip).is_file():
        parser.error(f"{clip}: no such clip (pass --clip)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    results: dict = {}
    for imgsz in args.imgsz:
        spec = {"clip": clip, "imgsz": imgsz, "backend": "torch", "push_fps": 15.0, "seconds": args.seconds,
                "max_frames": 600}
        for _ in range(args.rounds):
            for weights in args.weights:
                row = run_child("live", spec, weights)
                results.setdefault((weights, imgsz), []).append(row)
                print(f"  {Path(weights).name} @{imgsz}: p50 {row['p50']:.1f} ms  p95 {row['p95']:.1f} ms  "
                      f"{row['fps']:.1f} fps", flush=True)
        for weights in args.weights:
            step = run_child("step", spec, weights)["step_ms"]
            results[(weights, imgsz)].append({"step_ms": step})
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| weights | imgsz | live p50 ms (median of rounds) | live p95 ms (each round) | fps | caption of a 4 s window, ms |")
    print("|---|---|---|---|---|---|")
    for (weights, imgsz), rows in results.items():
        live = [r for r in rows if "p95" in r]
        step = next(r["step_ms"] for r in rows if "step_ms" in r)
        print(f"| {Path(weights).name} | {imgsz} | {statistics.median(r['p50'] for r in live):.1f} | "
              f"{' / '.join('%.0f' % r['p95'] for r in live)} | {statistics.median(r['fps'] for r in live):.1f} | {step:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
