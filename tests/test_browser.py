"""The web app in a real browser: Debian's Chromium driven by Playwright (headless).

(a) Upload tab: upload a generated clip, wait for the timeline, check the captions are on the
    page, save a screenshot. (b) Live tab: Chromium's fake camera plays a generated clip (.y4m);
    start streaming and check annotated frames and a caption keep arriving; print the median
    server time per frame (the app's own measurement, shown on the page) and the frames per
    second the browser received.

Bounded: one server and one browser for the module, every wait has a timeout.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's Chromium is not installed at {CHROMIUM}"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LIVE_RUN_SEC = 12.0  # how long the live stream is watched
Y4M_SIZE, Y4M_FPS, Y4M_SEC = (480, 270), 10, 6.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_y4m(path: Path, frames_bgr: list[np.ndarray], fps: int) -> Path:
    """Y4M: a one-line header, then 'FRAME' + the I420 planes for each frame."""
    height, width = frames_bgr[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames_bgr:
            handle.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def fake_camera(artifacts) -> Path:
    from captioner.training.synthetic import default_sprites, render_frame

    width, height = Y4M_SIZE
    sprites = default_sprites(width, height, Y4M_SEC)
    frames = [render_frame(sprites, i / Y4M_FPS, width, height) for i in range(int(Y4M_SEC * Y4M_FPS))]
    return write_y4m(artifacts / "camera.y4m", frames, Y4M_FPS)


@pytest.fixture(scope="module")
def browser_clip(artifacts) -> Path:
    """The synthetic scene as H.264 (what browsers play; OpenCV's mp4v is not playable in Chromium)."""
    from captioner.annotate import AnnotatedVideoWriter, _find_ffmpeg
    from captioner.training.synthetic import default_sprites, render_frame

    if _find_ffmpeg() is None:
        pytest.skip("no FFmpeg with libx264 to make a browser-playable clip")
    width, height, fps, duration = 640, 360, 10, 6.0
    sprites = default_sprites(width, height, duration)
    path = artifacts / "bus_people_h264.mp4"
    with AnnotatedVideoWriter(path, fps, (width, height)) as writer:
        for i in range(int(duration * fps)):
            writer.write(render_frame(sprites, i / fps, width, height))
    return path


def serve(model, config):
    """The app over ``model`` on 127.0.0.1 (a free port): yields its URL, then closes it."""
    from captioner.webapp import create_app, launch

    demo = create_app(model, model, config=config)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=50)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def server(model, artifacts):
    from captioner.webapp import AppConfig

    yield from serve(model, AppConfig(work_dir=artifacts / "work", samples_dir=None, live_time_limit_sec=120))


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright, fake_camera):
    """Chromium whose camera is the generated clip (and which grants camera access unasked)."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                              f"--use-file-for-fake-video-capture={fake_camera}"])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server, wait_until="domcontentloaded")
    page.locator("#upload-run").wait_for(state="visible")
    try:
        yield page
    finally:
        context.close()


def test_upload_shows_captions(page, model, browser_clip, artifacts):
    expected = [s.caption for s in model.caption(browser_clip).segments]
    page.locator("#upload-video input[type=file]").set_input_files(str(browser_clip))
    page.locator("#upload-video video").first.wait_for(state="attached", timeout=30_000)
    page.locator("#upload-run").click()
    page.locator("#upload-summary").get_by_text("segment(s)").wait_for(timeout=120_000)
    page.wait_for_function("(text) => document.querySelector('#upload-timeline').innerText.includes(text)",
                           arg=expected[0], timeout=30_000)
    table = page.locator("#upload-timeline").inner_text()
    for caption in expected:
        assert caption in table, f"caption {caption!r} not shown in the timeline:\n{table}"
    assert page.locator("#upload-annotated video").count() == 1
    assert page.get_by_text("Video not playable").count() == 0
    track = page.locator("#upload-annotated video track")
    assert track.count() == 1 and track.first.get_attribute("src"), "the annotated video has no subtitle track"
    files = page.locator("#upload-files").inner_text()
    for ext in ("json", "srt", "vtt"):
        assert f".{ext}" in files
    shot = artifacts / "upload.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nupload tab screenshot: {shot}")


def test_live_webcam_stream(page, artifacts):
    page.get_by_role("tab", name="Live").click()
    note = page.locator("#camera-note")
    note.get_by_text("Camera available").wait_for(timeout=15_000)  # the page's navigator.mediaDevices check
    page.locator("#live-webcam").get_by_text("Click to Access Webcam").click()
    record = page.locator("#live-webcam button[aria-label='capture photo']")
    record.wait_for(state="visible", timeout=15_000)
    # count changes of the annotated image's src in the page itself (timestamps in ms)
    page.evaluate("""() => {
        window.__frames = [];
        const root = document.querySelector('#live-annotated');
        let last = null;
        const seen = () => {
            const img = root.querySelector('img');
            if (img && img.src && img.src !== last) { last = img.src; window.__frames.push(performance.now()); }
        };
        new MutationObserver(seen).observe(root, {subtree: true, childList: true, attributes: true,
                                                  attributeFilter: ['src']});
    }""")
    record.click()
    page.wait_for_function("() => window.__frames.length >= 1", timeout=60_000)
    captions, stats_seen = set(), []
    deadline = time.monotonic() + LIVE_RUN_SEC
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        captions.add(page.locator("#live-caption textarea").input_value())
        stats_seen.append(page.locator("#live-stats textarea").input_value())
    frame_times = page.evaluate("() => window.__frames")
    shot = artifacts / "live.png"
    page.screenshot(path=str(shot), full_page=True)
    page.locator("#live-webcam").get_by_text("Stop").first.click()

    assert len(frame_times) >= 10, f"only {len(frame_times)} annotated frames arrived in {LIVE_RUN_SEC} s"
    captions.discard("")
    assert captions, "no caption arrived"
    assert any(re.search(r"(bus|person|people|man|men)", c) for c in captions), captions
    medians = [float(m.group(1)) for s in stats_seen if (m := re.search(r"server (\d+(?:\.\d+)?) ms/frame", s))]
    assert medians, f"no server timing on the page: {stats_seen[-1:]}"
    frames_on_server = int(re.search(r"(\d+) frames", stats_seen[-1]).group(1))
    gaps = np.diff(frame_times) / 1000.0
    browser_fps = (len(frame_times) - 1) / (frame_times[-1] - frame_times[0]) * 1000.0
    print(f"\nlive tab: median server time {medians[-1]:.0f} ms/frame (app's own measurement, "
          f"last {min(frames_on_server, 60)} frames), browser received {len(frame_times)} annotated frames, "
          f"{browser_fps:.1f} fps (median gap {statistics.median(gaps) * 1000:.0f} ms); "
          f"captions seen: {sorted(captions)}; screenshot: {shot}")


def test_live_without_camera_says_so(playwright, server):
    """Without a (fake) camera the Live tab's own check tells the user, instead of failing silently."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(server, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Live").click()
        note = page.locator("#camera-note")
        page.wait_for_function("() => !document.querySelector('#camera-note').innerText.includes('Checking')",
                               timeout=15_000)
        text = note.inner_text()
        assert "No camera" in text or "permission" in text or "not a secure context" in text, text
        print(f"\nwithout a camera the Live tab says: {text}")
    finally:
        browser.close()


# ------------------------------------------------------------------------------------------------
# Library tab: search a caption library, click a result, the video plays from the segment's start


LIBRARY_SEGMENT_START = 3.0


@pytest.fixture(scope="module")
def library_dir(artifacts, browser_clip) -> Path:
    """A caption library whose segments are known, over the H.264 clip (what Chromium plays)."""
    from captioner.library import Library
    from captioner.result import Evidence, Result, Segment, VideoMeta
    from captioner.writers import WriteJSON

    folder = artifacts / "library"
    segments = [Segment(0.0, LIBRARY_SEGMENT_START, "a bus waits at the stop", 0.5, [],
                        Evidence([1], ["bus"], [0.0], {"bus": 1})),
                Segment(LIBRARY_SEGMENT_START, 6.0, "two men walk past the bus", 0.5, [],
                        Evidence([2, 3], ["person", "bus"], [LIBRARY_SEGMENT_START], {"person": 2, "bus": 1}))]
    WriteJSON(folder)(Result(VideoMeta(str(browser_clip), 6.0, 10.0, 640, 360), segments), stem="bus_people")
    with Library(folder) as library:
        assert library.rebuild().segments == 2
    return folder


@pytest.fixture(scope="module")
def library_server(model, artifacts, library_dir):
    from captioner.webapp import AppConfig

    yield from serve(model, AppConfig(work_dir=artifacts / "work-library", samples_dir=None, library_dir=library_dir))


def test_library_search_plays_the_result_from_its_start(playwright, library_server, artifacts):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(library_server, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Library").click()
        page.locator("#library-query textarea, #library-query input").first.fill("men walking by the bus")
        page.locator("#library-run").click()
        page.wait_for_function("() => document.querySelector('#library-results').innerText"
                               ".includes('two men walk past the bus')", timeout=30_000)
        cells = page.locator("#library-results").get_by_text("two men walk past the bus").locator("visible=true")
        first_row = page.locator("#library-results").get_by_text("bus_people").locator("visible=true").first
        assert first_row.bounding_box()["y"] == pytest.approx(cells.first.bounding_box()["y"], abs=5)  # best first
        # where the player seeks to (media events do not bubble, but a capturing listener sees them)
        page.evaluate("() => document.addEventListener('seeked', e => { window.__seekedTo ??= e.target.currentTime; },"
                      " true)")
        cells.first.click()
        page.wait_for_function("() => window.__seekedTo !== undefined", timeout=30_000)
        seeked_to = page.evaluate("() => window.__seekedTo")
        position = page.evaluate("() => document.querySelector('#library-video video').currentTime")
        shot = artifacts / "library.png"
        page.screenshot(path=str(shot), full_page=True)
        assert seeked_to == pytest.approx(LIBRARY_SEGMENT_START, abs=0.25), seeked_to
        assert LIBRARY_SEGMENT_START - 0.25 <= position <= LIBRARY_SEGMENT_START + 3.1, position
        assert "bus_people" in page.locator("#library-summary").inner_text()
        print(f"\nlibrary tab: clicked the first result; the player sought to {seeked_to:.2f} s and is at "
              f"{position:.2f} s (segment starts at {LIBRARY_SEGMENT_START} s); screenshot: {shot}")
    finally:
        browser.close()
