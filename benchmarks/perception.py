"""Per-frame cost of plain ``YOLO.predict`` vs our one pass (detections + pooled features + tracking).

Both run on the same frames, in the same process, interleaved round by round so that machine
noise hits both alike. Prints ms/frame (median of rounds) and the ratio; also checks that the
detections are identical.

    python benchmarks/perception.py [--video PATH] [--frames 40] [--rounds 5] [--imgsz 640 320]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioner.perception import Perception  # noqa: E402
from captioner.training.synthetic import make_clip  # noqa: E402
from captioner.video import sample_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=None, help="clip to read frames from (default: a generated one)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()

    from ultralytics import YOLO

    video = args.video or str(make_clip(Path(tempfile.mkdtemp()) / "bench.mp4", duration_sec=12, fps=10))
    frames = [f.image_bgr for f in sample_frames(video, 4.0)][: args.frames]
    print(f"video={video} frames={len(frames)} size={frames[0].shape[1]}x{frames[0].shape[0]} rounds={args.rounds}")
    for imgsz in args.imgsz:
        ours = Perception(args.weights, imgsz=imgsz)
        plain = YOLO(ours.weights_path)  # separate model: no hooks at all

        def run_plain():
            return [plain.predict(f, imgsz=imgsz, conf=ours.conf, iou=ours.iou, device=ours.device, verbose=False)[0]
                    for f in frames]

        def run_ours():
            tracker = ours.new_tracker(4.0)
            return [ours.detect([f], tracker)[0].detections for f in frames]

        run_plain(), run_ours()  # warm-up: model fuse, allocator, first-call setup
        plain_ms, ours_ms = [], []
        for _ in range(args.rounds):
            for label, fn, sink in (("plain", run_plain, plain_ms), ("ours", run_ours, ours_ms)):
                start = time.perf_counter()
                out = fn()
                sink.append((time.perf_counter() - start) * 1000 / len(frames))
                if label == "plain":
                    plain_out = out
                else:
                    ours_out = out
        identical = all(
            np.array_equal(p.boxes.xyxy.cpu().numpy(), d.box_xyxy) and np.array_equal(p.boxes.cls.cpu().numpy().astype(np.int32), d.class_id)
            and np.array_equal(p.boxes.conf.cpu().numpy(), d.confidence)
            for p, d in zip(plain_out, ours_out)
        )
        p_med, o_med = statistics.median(plain_ms), statistics.median(ours_ms)
        print(f"imgsz={imgsz}: YOLO.predict {p_med:.1f} ms/frame | one-pass detections+features+tracking "
              f"{o_med:.1f} ms/frame | ratio {o_med / p_med:.3f} | identical detections: {identical}")
        ours.close()


if __name__ == "__main__":
    main()
