"""The web page's Live tab in a real browser: frames sent, overlays received, send-to-overlay latency.

Debian's Chromium (Playwright, headless) streams its fake camera (a .y4m of a real clip, or a
generated scene where ../shared is absent) to the app's Live tab, served on 127.0.0.1 in this
process, for ``--seconds`` after a warm-up. Measured in the page: when each frame was sent (the
Gradio client's POST to /gradio_api/stream/<event>, wrapped in the page) and when each annotated
overlay appeared (a MutationObserver on the overlay image). On the server: when each ``live_step``
call started and ended. Gradio keeps only the newest frame a stream sent (``event.data`` is
overwritten), so the frame a call analysed is the last one sent before it started; its latency is
overlay shown - that send. Same machine, same clock (epoch ms on both sides).

    python benchmarks/browser_live.py                                   # torch, imgsz 320 and 640, every 0.08 s
    python benchmarks/browser_live.py --backends torch openvino --every 0.08 0.06 0.05

Bounded: one server and one browser per row, every wait has a timeout. Chromium needs no
download: /usr/bin/chromium (Debian).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHARED_VIDEOS = Path(os.environ.get("CAPTIONER_SHARED", REPO.parent / "shared")) / "data" / "videos"
CAMERA_CLIP = "visionet_alley_walkers.mp4"
CAMERA_SIZE, CAMERA_FPS, CAMERA_SEC = (640, 360), 30, 10.0

PAGE_PROBE = """() => {
    window.__sent = []; window.__shown = [];
    const now = () => performance.timeOrigin + performance.now();
    const fetch0 = window.fetch;
    window.fetch = function(input, init) {
        const url = typeof input === 'string' ? input : input.url;
        if (/\\/stream\\/[^/]+$/.test(url) && init && init.method === 'POST') window.__sent.push(now());
        return fetch0.apply(this, arguments);
    };
    const root = document.querySelector('#live-annotated');
    let last = null;
    new MutationObserver(() => {
        const img = root.querySelector('img');
        if (img && img.src && img.src !== last) { last = img.src; window.__shown.push(now()); }
    }).observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def camera_y4m(folder: Path) -> tuple[Path, str]:
    """The fake camera: CAMERA_SEC of a real clip at CAMERA_FPS (or the generated scene)."""
    import cv2

    width, height = CAMERA_SIZE
    frames, what = [], ""
    clip = SHARED_VIDEOS / CAMERA_CLIP
    if clip.is_file():
        capture = cv2.VideoCapture(str(clip))
        fps = capture.get(cv2.CAP_PROP_FPS) or CAMERA_FPS
        t = 0.0
        while len(frames) < CAMERA_SEC * CAMERA_FPS:
            capture.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(image, (width, height)))
            t += 1.0 / CAMERA_FPS * min(1.0, fps / CAMERA_FPS)
        capture.release()
        what = f"{CAMERA_CLIP} ({len(frames)} frames)"
    if not frames:
        from captioner.training.synthetic import default_sprites, render_frame

        sprites = default_sprites(width, height, CAMERA_SEC)
        frames = [render_frame(sprites, i / CAMERA_FPS, width, height) for i in range(int(CAMERA_SEC * CAMERA_FPS))]
        what = "generated scene (../shared not found)"
    path = folder / "camera.y4m"
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            handle.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path, what


def measure(spec: dict) -> dict:
    """One row: the app over a model at spec imgsz/backend, the page sending every spec every_sec."""
    from playwright.sync_api import sync_playwright

    import captioner
    from captioner.webapp import AppConfig, CaptionApp, create_app, launch

    calls: list[tuple[float, float]] = []
    lock = threading.Lock()
    live_step = CaptionApp.live_step

    def timed_live_step(self, *args, **kwargs):
        start = time.time() * 1000.0
        try:
            return live_step(self, *args, **kwargs)
        finally:
            with lock:
                calls.append((start, time.time() * 1000.0))

    CaptionApp.live_step = timed_live_step
    folder = Path(tempfile.mkdtemp(prefix="captioner-browser-live-"))
    camera, camera_what = camera_y4m(folder)
    model = captioner.load_model(imgsz=spec["imgsz"], backend=spec["backend"])
    config = AppConfig(live_stream_every_sec=spec["every_sec"], live_time_limit_sec=int(spec["seconds"] + 120),
                       work_dir=folder / "work", samples_dir=None)
    demo = create_app(model, model, config=config)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=50)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                      f"--use-file-for-fake-video-capture={camera}"])
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                page.get_by_role("tab", name="Live").click()
                page.locator("#live-webcam").get_by_text("Click to Access Webcam").click()
                record = page.locator("#live-webcam button[aria-label='capture photo']")
                record.wait_for(state="visible", timeout=15_000)
                page.evaluate(PAGE_PROBE)
                record.click()
                page.wait_for_function("() => window.__shown.length >= 1", timeout=120_000)
                page.wait_for_timeout(spec["warmup_sec"] * 1000)  # first calls, the export backend's compile
                start = time.time() * 1000.0
                page.wait_for_timeout(spec["seconds"] * 1000)
                end = time.time() * 1000.0
                sent, shown = page.evaluate("() => [window.__sent, window.__shown]")
                page.locator("#live-webcam").get_by_text("Stop").first.click()
            finally:
                browser.close()
    finally:
        demo.close()
        CaptionApp.live_step = live_step
    with lock:
        done = list(calls)
    # call k's output is overlay k (every call returns a new JPEG); its frame: the last one sent before it began
    sent_arr = np.array(sent)
    latencies, service = [], []
    for (call_start, call_end), overlay in zip(done, shown):
        if not start <= overlay <= end:
            continue
        before = sent_arr[sent_arr <= call_start]
        if len(before):
            latencies.append(overlay - before[-1])
            service.append(call_end - call_start)
    window_sec = (end - start) / 1000.0
    sent_in = int(((sent_arr >= start) & (sent_arr <= end)).sum())
    shown_in = sum(start <= t <= end for t in shown)

    def pct(values, q):
        return float(np.percentile(values, q)) if values else float("nan")

    return {"backend": spec["backend"], "imgsz": spec["imgsz"], "every_sec": spec["every_sec"], "seconds": window_sec,
            "sent": sent_in, "sent_fps": sent_in / window_sec, "shown": shown_in, "shown_fps": shown_in / window_sec,
            "latency_p50": pct(latencies, 50), "latency_p95": pct(latencies, 95), "server_p50": pct(service, 50),
            "server_p95": pct(service, 95), "calls_matched": len(latencies), "camera": camera_what}


def table(rows: list[dict]) -> str:
    lines = ["| backend | imgsz | page sends every | frames sent (fps) | overlays shown (fps) | send -> overlay p50 / p95 ms "
             "| server ms p50 / p95 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['imgsz']} | {r['every_sec']:g} s | {r['sent']} ({r['sent_fps']:.1f}) | "
                     f"{r['shown']} ({r['shown_fps']:.1f}) | {r['latency_p50']:.0f} / {r['latency_p95']:.0f} | "
                     f"{r['server_p50']:.0f} / {r['server_p95']:.0f} |")
    return "\n".join(lines)


def run_row(spec: dict, timeout: float = 600, environ: dict | None = None) -> dict:
    """One row in a fresh process (its own model, server and browser), with ``environ`` (default
    this process's: pass the user's where Ultralytics, imported here, set OMP_NUM_THREADS)."""
    import subprocess

    env = {**(os.environ if environ is None else environ), "YOLO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"browser live row {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", default=["torch"])
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--every", type=float, nargs="+", default=[0.08], help="seconds between frames the page sends")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per row (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    load_before = os.getloadavg()
    rows = [run_row({"backend": b, "imgsz": i, "every_sec": e, "seconds": args.seconds, "warmup_sec": args.warmup})
            for b in args.backends for i in args.imgsz for e in args.every]
    load_after = os.getloadavg()
    print(f"browser live (Chromium {CHROMIUM}, fake camera: {rows[0]['camera']}); load average {load_before[0]:.2f} "
          f"before, {load_after[0]:.2f} after")
    print(table(rows))


if __name__ == "__main__":
    main()
