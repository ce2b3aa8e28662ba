"""The CUDA path on a real GPU, against the CPU path on the same machine (CI has no GPU).

    python benchmarks/gpu_check.py            # prints the figures; $OUT/gpu_check.json (or /tmp) keeps them

The repo's two sample clips, each captioned once to warm up and once timed, on the CPU (fp32) and
on CUDA (fp16, 8 frames per YOLO call), at imgsz 640 and 320: the captions, whether they are the
same, how many analysed frames have the same number of boxes and the largest confidence
difference, and the CPU/CUDA time ratio. Then the live path on CUDA: 200 frames of a sample clip
pushed one by one (as a webcam's), latency per frame p50 / p95 / max after 20 warm-up frames.
Run once on an NVIDIA H200 (README, Performance).
"""
import json, os, sys, time
from pathlib import Path
import numpy as np, torch
from captioner.options import CaptionOptions
from captioner.pipeline import load_model

out = os.environ.get("OUT", "/tmp")
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False)")
print(torch.__version__, torch.cuda.get_device_name(0), "cpu threads", torch.get_num_threads(), flush=True)
REPO = os.environ.get("REPO", str(Path(__file__).resolve().parents[1]))
clips = [f"{REPO}/samples/bus_people.mp4", f"{REPO}/samples/person_enters_room.mp4"]
report = {}
for dev in ("cpu", "cuda"):
    for imgsz in (640, 320):
        model = load_model(CaptionOptions(device=dev, imgsz=imgsz))
        for clip in clips:
            model.caption(clip)  # warm-up (cudnn autotune, allocator)
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            r = model.caption(clip, keep_detections=True)
            dt = time.perf_counter() - t
            boxes = [(round(ts, 2), d.class_id.tolist(), np.round(d.confidence, 3).tolist(), np.round(d.box_xyxy, 1).tolist())
                     for ts, d in r.frame_detections]
            report[f"{dev} {imgsz} {clip}"] = {"sec": dt, "duration": r.video.duration_sec,
                                              "captions": [s.caption for s in r.segments], "boxes": boxes}
            print(dev, imgsz, clip, f"{dt:.2f}s for {r.video.duration_sec:.1f}s", [s.caption for s in r.segments], flush=True)
# agreement: captions identical, detections matched per frame
for imgsz in (640, 320):
    for clip in clips:
        a, b = report[f"cpu {imgsz} {clip}"], report[f"cuda {imgsz} {clip}"]
        same = sum(x == y for x, y in zip(a["captions"], b["captions"]))
        counts = [(len(x[1]), len(y[1])) for x, y in zip(a["boxes"], b["boxes"])]
        dconf = [abs(p - q) for x, y in zip(a["boxes"], b["boxes"]) if x[1] == y[1] for p, q in zip(x[2], y[2])]
        print(f"AGREE {imgsz} {clip}: captions {same}/{len(a['captions'])}, frames with equal box count "
              f"{sum(p == q for p, q in counts)}/{len(counts)}, max |conf diff| {max(dconf, default=0):.3f}, "
              f"speed cpu/cuda {a['sec'] / b['sec']:.2f}x", flush=True)
# live: frames pushed one by one through the same code path as the webcam
import cv2
cap = cv2.VideoCapture(clips[0]); frames = []
while len(frames) < 200:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(f)
for imgsz in (320, 640):
    model = load_model(CaptionOptions(device="cuda", imgsz=imgsz))
    lat = []
    stream = model.new_live_stream((frames[0].shape[1], frames[0].shape[0]), model.options)
    for i, f in enumerate(frames):
        t = time.perf_counter(); stream.push(f, i / 15.0); torch.cuda.synchronize(); lat.append((time.perf_counter() - t) * 1000)
    lat = np.array(lat[20:])
    print(f"LIVE cuda {imgsz}: {len(lat)} frames, p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, max {lat.max():.1f}", flush=True)
json.dump(report, open(f"{out}/gpu_check.json", "w"))
