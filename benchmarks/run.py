"""One table: captioner against Ultralytics' own tracking, the decode + predict floor, and live latency.

    python benchmarks/run.py                      # 8 real clips from ../shared/data/videos, imgsz 640
    python benchmarks/run.py --all                # every clip there
    python benchmarks/run.py --backends torch     # only the PyTorch backend
    python benchmarks/run.py --quick              # smoke test: 2 short clips, 3 s of live, small sizes

Every figure comes from the same run, on the same clips (generated ones when ../shared is
absent), each measurement in a fresh child process (so peak RSS is its own, and nothing one
measurement loaded helps the next), after one untimed warm-up pass in that process; the offline
ones in ``--repeats`` (3) interleaved rounds, each figure the median round:

- captioner offline: ``load_model(imgsz, backend).caption(clip)`` + writing json/srt/vtt/txt/tsv,
  at default settings; real-time factor = processing s / video s; per-stage seconds from
  ``time.perf_counter`` around each stage (wrapped here, the runtime is unchanged);
- anchor: ``YOLO.track(source=clip, vid_stride=k, stream=True, imgsz, conf, tracker="bytetrack.yaml")``
  with k = max(1, round(source_fps / 4)), i.e. what a user would run instead at the same
  analysis rate; for an export backend Ultralytics runs the same exported graph (an OpenVINO IR
  or an ONNX file with Ultralytics' metadata) through its own AutoBackend;
- floor: decoding (grab every frame, convert the sampled ones, as captioner's sampler picks them)
  plus ``YOLO.predict`` on each sampled frame, timed back to back, nothing else;
- live: a clip's frames pushed in real time at 15 and 30 fps into ``Captioner.new_live_stream()``
  (boxes for every frame, as the web page asks), newest frame wins when it falls behind (as
  ``captioner live`` does); latency = from a frame's arrival to its update; sustained fps =
  updates per second of wall time.

Timings on a busy machine are meaningless: the header prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# the environment a user's shell gives each child, taken before anything imports Ultralytics, whose
# import sets OMP_NUM_THREADS=1 (cpu_count - 1 on 2 cores) in os.environ: inherited, it ran every child's
# torch, and our export runtime's threads, on one core (the anchor's OpenVINO took both)
USER_ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_VIDEOS = Path(os.environ.get("CAPTIONER_SHARED", REPO.parent / "shared")) / "data" / "videos"
# diverse sizes and rates: 336p-730p, 2-60 fps, people, cars, animals
DEFAULT_CLIPS = ["visionet_alley_walkers.mp4", "asiya_queue_sidewalk.mp4", "diego_overhead_pedestrians.mp4",
                 "gutomadon_intersection_redlight.mp4", "msvd_778mkceE0UQ_40_46.avi", "opencv4nodejs_horses_beach.mp4",
                 "scailable_highway.mp4", "msrvtt_video24.mp4"]
LIVE_CLIP = "visionet_alley_walkers.mp4"
ANALYSIS_FPS = 4.0
STAGES = ["decode (reader thread)", "decode wait (main thread)", "YOLO (letterbox+network+NMS)", "feature pooling",
          "tracking", "tokens", "LSTM", "next-event head", "beam search", "writers"]


# ---- children: one measurement each ---------------------------------------------------------------

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _video_sec(clip: str) -> float:
    from captioner.video import VideoSource

    with VideoSource(clip) as video:
        for _ in video.frames(wants=lambda t: False):
            pass
        return video.end_sec


def child_ours(spec: dict) -> dict:
    """captioner at default settings, instrumented per stage."""
    import captioner
    from captioner import perception, stream, tokens, model as model_module, video, windows
    from captioner.writers import get_writer

    times = {name: 0.0 for name in STAGES}
    lock = threading.Lock()

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    times[name] += time.perf_counter() - start
        return wrapper

    def timed_generator(name, fn):
        def wrapper(*args, **kwargs):
            inner = fn(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    with lock:
                        times[name] += time.perf_counter() - start
                yield item
        return wrapper

    # decoding inline (read_ahead=0) needs reads without a time bound: a bound needs the reader thread
    model = captioner.load_model(imgsz=spec["imgsz"], backend=spec["backend"], read_ahead=spec["read_ahead"],
                                 frame_batch=spec.get("frame_batch", 0),
                                 **({"read_timeout_sec": None} if spec["read_ahead"] == 0 else {}))
    model.caption(spec["clips"][0])  # warm-up: set-up, first-call costs, the export backend's compile
    video.VideoSource.frames = timed_generator("decode (reader thread)", video.VideoSource.frames)
    video.ReadAhead.__next__ = timed("decode wait (main thread)", video.ReadAhead.__next__)
    perception.Perception._infer = timed("YOLO (letterbox+network+NMS)", perception.Perception._infer)
    perception.Perception._pool = timed("feature pooling", perception.Perception._pool)
    perception.StreamTracker.assign = timed("tracking", perception.StreamTracker.assign)
    tokens.FrameTokenizer.__call__ = timed("tokens", tokens.FrameTokenizer.__call__)
    model_module.CaptionModel.encode = timed("LSTM", model_module.CaptionModel.encode)
    stream.forecast_next = timed("next-event head", stream.forecast_next)
    windows.beam_search = timed("beam search", windows.beam_search)
    out_dir = Path(tempfile.mkdtemp(prefix="captioner-bench-"))
    writer = get_writer("all", out_dir, overwrite=True)
    total, video_sec, analysed = 0.0, 0.0, 0
    for clip in spec["clips"]:
        start = time.perf_counter()
        result = model.caption(clip)
        write_start = time.perf_counter()
        writer(result, clip)
        times["writers"] += time.perf_counter() - write_start
        total += time.perf_counter() - start
        video_sec += result.video.duration_sec
        analysed += sum(len(s.evidence.frame_times_sec) for s in result.segments)
    return {"seconds": total, "video_sec": video_sec, "analysed": analysed, "stages": times,
            "peak_rss_mb": _peak_rss_mb(), "frame_batch": model.frame_batch()}


def _ultralytics_model(spec: dict):
    from ultralytics import YOLO

    return YOLO(spec["anchor_model"], task="detect")


def child_anchor(spec: dict) -> dict:
    """Ultralytics' own tracking over the file at the same analysis rate."""
    import cv2

    yolo = _ultralytics_model(spec)

    def run(clip: str, limit: int | None = None) -> int:
        fps = cv2.VideoCapture(clip).get(cv2.CAP_PROP_FPS) or 25.0
        stride = max(1, round(fps / ANALYSIS_FPS))
        n = 0
        for _ in yolo.track(source=clip, vid_stride=stride, stream=True, imgsz=spec["imgsz"], conf=spec["conf"],
                            tracker="bytetrack.yaml", verbose=False):
            n += 1
            if limit and n >= limit:
                break
        return n

    run(spec["clips"][0], limit=3)  # warm-up
    start = time.perf_counter()
    frames = sum(run(clip) for clip in spec["clips"])
    return {"seconds": time.perf_counter() - start, "frames": frames, "peak_rss_mb": _peak_rss_mb()}


def child_floor(spec: dict) -> dict:
    """Decoding the sampled frames + YOLO.predict on each, back to back."""
    import numpy as np

    from captioner.video import FrameSampler, VideoSource

    yolo = _ultralytics_model(spec)
    args = dict(imgsz=spec["imgsz"], conf=spec["conf"], verbose=False)
    yolo.predict(np.zeros((360, 640, 3), np.uint8), **args)  # warm-up
    decode = predict = 0.0
    frames = 0
    for clip in spec["clips"]:
        with VideoSource(clip) as video:
            sampler = FrameSampler(ANALYSIS_FPS, video.info.fps)
            source = video.frames(wants=sampler.wants)
            while True:
                start = time.perf_counter()
                frame = next(source, None)
                decode += time.perf_counter() - start
                if frame is None:
                    break
                if sampler.take(frame.t_sec):
                    start = time.perf_counter()
                    yolo.predict(frame.image_bgr, **args)
                    predict += time.perf_counter() - start
                    frames += 1
    return {"seconds": decode + predict, "decode": decode, "predict": predict, "frames": frames,
            "peak_rss_mb": _peak_rss_mb()}


def child_live(spec: dict) -> dict:
    """Frames pushed in real time at spec["push_fps"] into a live session."""
    import numpy as np

    import captioner
    from captioner.live import LatestFrame, LiveFrame
    from captioner.video import VideoSource

    images = []
    with VideoSource(spec["clip"]) as video:
        for frame in video.frames():
            images.append(frame.image_bgr)
            if len(images) >= spec["max_frames"]:
                break
    model = captioner.load_model(imgsz=spec["imgsz"], backend=spec["backend"])
    size = (images[0].shape[1], images[0].shape[0])
    warm = model.new_live_stream(size)
    for i, image in enumerate(images[:12]):  # warm-up: set-up, first calls, the export backend's compile
        warm.push(image, i / spec["push_fps"])
    session = model.new_live_stream(size)
    mailbox, stop = LatestFrame(), threading.Event()
    n_frames = int(spec["seconds"] * spec["push_fps"])
    start = time.monotonic() + 0.05

    def camera() -> None:
        for i in range(n_frames):
            due = start + i / spec["push_fps"]
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            mailbox.put(LiveFrame(images[i % len(images)], i / spec["push_fps"], due))
        mailbox.close()

    producer = threading.Thread(target=camera, daemon=True)
    producer.start()
    latencies, service, analysed = [], [], 0
    try:
        while True:
            frame = mailbox.get(timeout=1.0)
            if frame is None:
                if mailbox.closed:
                    break
                continue
            update = session.push(frame.image_bgr, frame.t_sec)
            latencies.append((time.monotonic() - frame.due) * 1000.0)
            service.append(update.server_ms)
            analysed += update.analysed
    finally:
        stop.set()
        producer.join()
    wall = time.monotonic() - start

    def pct(values, q):
        return float(np.percentile(values, q)) if values else 0.0

    return {"p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99),
            "service_p95": pct(service, 95), "fps": len(latencies) / wall, "pushed": n_frames,
            "processed": len(latencies), "analysed": analysed, "dropped": mailbox.dropped,
            "peak_rss_mb": _peak_rss_mb()}


CHILDREN = {"ours": child_ours, "anchor": child_anchor, "floor": child_floor, "live": child_live}


# ---- the parent ---------------------------------------------------------------------------------

def run_child(kind: str, spec: dict, timeout: float = 3600) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(spec)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env={**USER_ENV, "YOLO_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step {kind} {spec.get('backend', '')} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (its stages and memory stay those of one run)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def pick_clips(args) -> tuple[list[str], str]:
    if SHARED_VIDEOS.is_dir() and not args.generated:
        if args.all:
            clips = sorted(str(p) for p in SHARED_VIDEOS.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv"))
        else:
            clips = [str(SHARED_VIDEOS / name) for name in DEFAULT_CLIPS if (SHARED_VIDEOS / name).is_file()]
        if args.quick:
            clips = clips[:2]
        if clips:
            return clips, f"{len(clips)} real clips from {SHARED_VIDEOS}"
    from captioner.training.synthetic import make_clip  # benchmarks may use the training kit; the runtime never does

    folder = Path(tempfile.mkdtemp(prefix="captioner-bench-clips-"))
    sizes = [(640, 360, 25.0), (1280, 720, 30.0)] if not args.quick else [(640, 360, 25.0)]
    clips = [str(make_clip(folder / f"generated_{w}x{h}.mp4", duration_sec=4.0 if args.quick else 12.0, fps=fps,
                           width=w, height=h)) for w, h, fps in sizes]
    return clips, f"{len(clips)} generated clips ({SHARED_VIDEOS} not found)"


def anchor_models(backend: str, weights: str, sha256: str, names: dict, imgsz: int, folder: Path) -> str:
    """What Ultralytics loads for the anchor and the floor: the .pt for torch; for an export
    backend the very graph captioner runs, with Ultralytics' metadata (dynamic input)."""
    if backend == "torch":
        return weights
    import onnx

    from captioner.export import export_path
    from captioner.perception import Perception

    perception = Perception(weights, imgsz=imgsz, backend=backend)
    perception.backbone  # noqa: B018 - its first pass builds (or finds) the cached export
    path = export_path(Path(weights).name, sha256, perception.feature_layers)
    metadata = {"stride": 32, "task": "detect", "batch": 1, "imgsz": [imgsz, imgsz], "names": names,
                "args": {"dynamic": True, "nms": False}, "channels": 3, "description": "captioner export"}
    if backend == "onnx":
        model = onnx.load(str(path))
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=str(value))
        target = folder / "anchor.onnx"
        onnx.save(model, str(target))
        return str(target)
    import openvino as ov
    import yaml

    if backend == "openvino-int8":  # the very int8 IR captioner runs (built on first use, cached)
        from captioner.export import export_int8

        path = export_int8(path)
    target = folder / f"anchor_{backend.replace('-', '_')}_openvino_model"
    target.mkdir(exist_ok=True)
    ov.save_model(ov.Core().read_model(str(path)), str(target / "anchor.xml"), compress_to_fp16=False)
    (target / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    return str(target)


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [f"torch {torch.__version__}"]
    for name in ("ultralytics", "openvino", "onnxruntime"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; {', '.join(versions)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 short clips, 3 s of live, imgsz 320 only")
    parser.add_argument("--all", action="store_true", help="every clip in ../shared/data/videos")
    parser.add_argument("--generated", action="store_true", help="generated clips even where real ones exist")
    parser.add_argument("--imgsz", type=int, default=640, help="offline image size (default 640, the default setting)")
    parser.add_argument("--live-imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--live-fps", type=float, nargs="+", default=[15.0, 30.0])
    parser.add_argument("--live-sec", type=float, default=20.0, help="seconds of frames pushed per live measurement")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="default: torch, and openvino and openvino-int8 where installed")
    parser.add_argument("--browser-imgsz", type=int, nargs="*", default=[320, 640],
                        help="browser live rows (Chromium, the web page's Live tab) at these sizes; none: skip")
    parser.add_argument("--browser-every", type=float, nargs="+", default=[0.08],
                        help="seconds between frames the page sends, one browser row each (default the app's)")
    parser.add_argument("--browser-sec", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the offline measurements (median reported)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return

    import importlib.util

    from captioner.options import CaptionOptions
    from captioner.fileio import file_sha256
    from captioner.model_files import resolve_yolo_weights as resolve_weights

    machine = machine_line()  # before Ultralytics' CPU set-up changes torch's thread count in this process
    backends = args.backends or ["torch"] + [b for b, m in (("openvino", "openvino"), ("openvino-int8", "nncf"))
                                             if importlib.util.find_spec(m)]
    if args.quick:
        args.live_sec, args.live_imgsz, args.live_fps, args.imgsz, args.repeats = 3.0, [320], [15.0], 320, 1
        args.browser_imgsz, args.browser_every, args.browser_sec = [320][:len(args.browser_imgsz)], [0.08], 3.0
    browser_ok = Path("/usr/bin/chromium").exists() and importlib.util.find_spec("playwright") is not None
    clips, clips_line = pick_clips(args)
    video_sec = sum(_video_sec(c) for c in clips)
    weights = resolve_weights(None)
    sha256 = file_sha256(weights)
    from ultralytics import YOLO

    names = YOLO(weights).names
    folder = Path(tempfile.mkdtemp(prefix="captioner-bench-models-"))
    load_before = os.getloadavg()
    conf = CaptionOptions.conf
    offline, live, rounds, single_rounds = {}, {}, {}, {}
    for backend in backends:
        anchor_model = anchor_models(backend, weights, sha256, names, args.imgsz, folder)
        spec = {"clips": clips, "imgsz": args.imgsz, "conf": conf, "backend": backend, "anchor_model": anchor_model,
                "read_ahead": CaptionOptions.read_ahead}
        # ours, the anchor, the floor and ours decoding inline (without the reader thread: on a machine
        # whose cores the network fills, which is faster?), interleaved, args.repeats rounds: a
        # shared VM's speed drifts by 10-20 % within minutes, so each figure is the median run and
        # each ratio is also given per round (the same minute for both)
        # "single": ours at one frame per network call, what an export backend's auto frame batch is measured against
        variants = {"inline": {"read_ahead": 0}, **({"single": {"frame_batch": 1}} if backend != "torch" else {})}
        runs: dict[str, list[dict]] = {"ours": [], "anchor": [], "floor": [], **{kind: [] for kind in variants}}
        # the order rotates each round: in one run the first child of every round was 1.16-1.23x slower
        # than the same configuration run fifth (README, Measuring)
        kinds = list(runs)
        for round_index in range(args.repeats):
            shift = round_index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                runs[kind].append(run_child("ours" if kind in variants else kind, {**spec, **variants.get(kind, {})}))
        offline[backend] = {kind: median_run(done) for kind, done in runs.items()}
        rounds[backend] = [ours["seconds"] / anchor["seconds"] for ours, anchor in zip(runs["ours"], runs["anchor"])]
        if "single" in runs:
            single_rounds[backend] = [ours["seconds"] / single["seconds"] for ours, single in zip(runs["ours"], runs["single"])]
        for imgsz in args.live_imgsz:
            for fps in args.live_fps:
                live[(backend, imgsz, fps)] = run_child("live", {
                    "clip": str(SHARED_VIDEOS / LIVE_CLIP) if (SHARED_VIDEOS / LIVE_CLIP).is_file() else clips[0],
                    "imgsz": imgsz, "backend": backend, "push_fps": fps, "seconds": args.live_sec, "max_frames": 150})
    browser_rows = []
    if browser_ok:
        from benchmarks.browser_live import run_row, table as browser_table

        for backend in [b for b in backends if b in ("torch", "openvino")]:
            for imgsz in args.browser_imgsz:
                for every in args.browser_every:
                    browser_rows.append(run_row({"backend": backend, "imgsz": imgsz, "every_sec": every,
                                                 "seconds": args.browser_sec, "warmup_sec": 3.0 if args.quick else 5.0},
                                                environ=USER_ENV))
    load_after = os.getloadavg()

    print(f"captioner benchmark ({'--quick smoke test, not a measurement' if args.quick else 'benchmarks/run.py'})")
    print(f"machine: {machine}")
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (figures mean little above ~0.3)")
    print(f"clips: {clips_line}: {video_sec:.1f} s of video; analysis {ANALYSIS_FPS:g} fps; imgsz {args.imgsz}, "
          f"conf {conf}, tracker bytetrack")
    print()
    print(f"Offline, real-time factor = processing s / video s (lower is faster); each figure the median of "
          f"{args.repeats} interleaved runs")
    print("| backend | captioner | anchor: YOLO.track | captioner / anchor | floor: decode + predict | captioner / floor "
          "| peak RSS captioner / anchor MB |")
    print("|---|---|---|---|---|---|---|")
    for backend, r in offline.items():
        anchor, floor = r["anchor"], r["floor"]
        rows = [(backend, r["ours"]), (f"{backend}, decoding inline (read_ahead=0)", r["inline"])]
        if "single" in r:
            rows.append((f"{backend}, one frame per network call (frame_batch=1)", r["single"]))
        for label, ours in rows:
            print(f"| {label} | {ours['seconds'] / video_sec:.3f} | {anchor['seconds'] / video_sec:.3f} | "
                  f"{ours['seconds'] / anchor['seconds']:.2f} | {floor['seconds'] / video_sec:.3f} | "
                  f"{ours['seconds'] / floor['seconds']:.2f} | {ours['peak_rss_mb']:.0f} / {anchor['peak_rss_mb']:.0f} |")
    for backend, ratios in rounds.items():
        print(f"{backend}: captioner / anchor per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    for backend, ratios in single_rounds.items():
        print(f"{backend}: captioner (auto frame batch) / one frame per call, per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    if "torch" in offline:
        for backend in [b for b in offline if b != "torch"]:
            print(f"\n{backend} over torch, captioner end to end: "
                  f"{offline['torch']['ours']['seconds'] / offline[backend]['ours']['seconds']:.2f}x faster")
    if "openvino" in offline and "openvino-int8" in offline:
        print(f"openvino-int8 over openvino, captioner end to end: "
              f"{offline['openvino']['ours']['seconds'] / offline['openvino-int8']['ours']['seconds']:.2f}x faster (goal >= 1.3)")
    for backend, r in offline.items():
        ours, floor = r["ours"], r["floor"]
        base = floor["seconds"]
        print(f"\nWhere the time goes, {backend} ({ours['analysed']} analysed frames; YOLO batch "
              f"{ours['frame_batch']}); % of the floor ({base:.2f} s = decode {floor['decode']:.2f} s + "
              f"predict {floor['predict']:.2f} s)")
        print("| stage | captioner s | % of floor |")
        print("|---|---|---|")
        stages = ours["stages"]
        for name in STAGES:
            print(f"| {name} | {stages[name]:.2f} | {100 * stages[name] / base:.1f} |")
        serial = sum(v for k, v in stages.items() if k != "decode (reader thread)")
        print(f"| rest (glue, sampler, windows) | {ours['seconds'] - serial:.2f} | "
              f"{100 * (ours['seconds'] - serial) / base:.1f} |")
        print(f"| total (decode overlapped) | {ours['seconds']:.2f} | {100 * ours['seconds'] / base:.1f} |")
        print(f"| overhead over the floor | {ours['seconds'] - base:+.2f} | {100 * (ours['seconds'] - base) / base:+.1f} |")
    print("\nLive: Captioner.new_live_stream() (boxes for every frame), frames pushed in real time, newest wins")
    print("| backend | imgsz | pushed fps | latency p50 / p95 / p99 ms | push() p95 ms | sustained fps | dropped | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for (backend, imgsz, fps), r in live.items():
        print(f"| {backend} | {imgsz} | {fps:g} | {r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f} | "
              f"{r['service_p95']:.0f} | {r['fps']:.1f} | {r['dropped']}/{r['pushed']} | {r['peak_rss_mb']:.0f} |")
    if browser_rows:
        print(f"\nBrowser live: Chromium streams its fake camera ({browser_rows[0]['camera']}) to the web page's Live "
              f"tab on 127.0.0.1 (benchmarks/browser_live.py; goal at 320: >= 12 overlays/s, p95 <= 150 ms)")
        print(browser_table(browser_rows))
    elif not browser_ok:
        print("\nBrowser live: skipped (needs /usr/bin/chromium and playwright)")


if __name__ == "__main__":
    main()
