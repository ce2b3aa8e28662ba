"""The Gradio web app end to end through gradio_client (server on 127.0.0.1, a free port).

One server is started for the module, in a background thread, over one loaded pipeline at
imgsz 320 (fast on 2 CPU cores), and closed at the end. Clips are generated, 3-6 s long.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from captioner.writers import parse_vtt  # noqa: E402

CLIENT_TIMEOUT_SEC = 180


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(model, tmp_path_factory):
    from captioner.webapp import AppConfig, create_app

    config = AppConfig(work_dir=tmp_path_factory.mktemp("webapp"), samples_dir=None)
    return create_app(model, model, config=config)


@pytest.fixture(scope="module")
def server(demo):
    from captioner.webapp import launch

    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=50, concurrency=2)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture()
def client(server, tmp_path):
    return Client(server, verbose=False, download_files=str(tmp_path))


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    from captioner.training.synthetic import make_clip

    return make_clip(tmp_path_factory.mktemp("short") / "short.mp4", duration_sec=3.0, fps=10.0, width=480, height=270)


def _video_path(value) -> str:
    """The annotated video as gradio_client returns it (a path, or a dict holding one)."""
    if isinstance(value, dict):
        value = value.get("video") or value.get("value") or value.get("path")
        if isinstance(value, dict):
            value = value.get("path")
    return str(value)


def _rows(value) -> list[list]:
    return value["data"] if isinstance(value, dict) else value


def _caption(client: Client, clip: Path):
    return client.predict(handle_file(str(clip)), api_name="/caption")


# ------------------------------------------------------------------------------------------------
# upload


def test_upload_end_to_end(client, synthetic_clip):
    video, timeline, files, summary = _caption(client, synthetic_clip)
    rows = _rows(timeline)
    assert rows, "the timeline is empty"
    for start, end, caption, _next_text, confidence in rows:
        assert float(end) > float(start) >= 0
        assert isinstance(caption, str) and caption.strip()
        assert 0.0 <= float(confidence) <= 1.0
    assert rows[-1][1] >= 5.0  # the 6 s clip is covered to (nearly) its end

    annotated = Path(_video_path(video))
    assert annotated.exists() and annotated.stat().st_size > 1000
    cap = cv2.VideoCapture(str(annotated))
    assert cap.isOpened() and cap.read()[0]
    cap.release()

    paths = {Path(f).suffix: Path(f) for f in files}
    assert set(paths) == {".json", ".srt", ".vtt"}
    cues = parse_vtt(paths[".vtt"].read_text(encoding="utf-8"))
    assert cues and all(text.strip() for _, _, text in cues)
    data = json.loads(paths[".json"].read_text(encoding="utf-8"))
    assert data["schema_version"]
    assert [s["caption"] for s in data["segments"]] == [r[2] for r in rows]
    assert data["video"]["path"] == synthetic_clip.name  # not the server's temp path
    assert synthetic_clip.name in summary


def test_upload_video_has_subtitle_track(demo, synthetic_clip):
    """The Upload handler's video output carries our VTT as its subtitle track."""
    app = demo.caption_app
    video, rows, files, _ = app.caption_upload(str(synthetic_clip), progress=lambda *a, **k: None)
    assert isinstance(video, gr.Video)
    track = video.subtitles
    track_path = track["path"] if isinstance(track, dict) else track.path
    cues = parse_vtt(Path(track_path).read_text(encoding="utf-8"))
    assert [c[2] for c in cues] == [c[2] for c in parse_vtt(Path(files[2]).read_text(encoding="utf-8"))]
    assert len(cues) >= 1 and rows


def test_bad_upload_gives_readable_error_and_app_keeps_serving(client, tmp_path, short_clip):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a video\n")
    with pytest.raises(Exception) as info:
        _caption(client, text_file)
    message = str(info.value)
    assert "notes.txt" in message and "not a video" in message, message

    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + random.Random(0).randbytes(4000))  # the same bytes every run
    with pytest.raises(Exception) as info:
        _caption(client, corrupt)
    message = str(info.value)
    # named, and the problem said: e.g. "its index (moov atom) is missing ... cannot be played"
    assert "broken.mp4" in message and any(w in message for w in ("video", "corrupt", "cannot be played")), message
    assert "/tmp/" not in message, f"the server's temp path leaked into the message: {message}"

    _, timeline, files, _ = _caption(client, short_clip)  # the app still serves
    assert _rows(timeline) and len(files) == 3


# ------------------------------------------------------------------------------------------------
# batch


def test_batch_good_and_bad(client, tmp_path, short_clip):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"definitely not an mp4 " * 200)
    zip_file, status, summary = client.predict([handle_file(str(short_clip)), handle_file(str(bad))], api_name="/batch")
    rows = {r[0]: r for r in _rows(status)}
    assert rows["short.mp4"][1] == "ok"
    assert rows["corrupt.mp4"][1] == "failed"
    assert "corrupt.mp4" in rows["corrupt.mp4"][4] and "video" in rows["corrupt.mp4"][4]
    assert "1 of 2" in summary
    with zipfile.ZipFile(zip_file) as archive:
        names = set(archive.namelist())
        assert {f"short.{ext}" for ext in ("json", "srt", "vtt", "txt", "tsv")} <= names
        assert not any(n.startswith("corrupt.") for n in names)
        status_tsv = archive.read("status.tsv").decode()
        assert "corrupt.mp4\tfailed" in status_tsv
        assert parse_vtt(archive.read("short.vtt").decode())
        assert json.loads(archive.read("short.json"))["schema_version"]


# ------------------------------------------------------------------------------------------------
# concurrency


def test_four_simultaneous_uploads(server, short_clip, tmp_path):
    def one(i: int):
        client = Client(server, verbose=False, download_files=str(tmp_path / f"c{i}"))
        job = client.submit(handle_file(str(short_clip)), api_name="/caption")
        return job.result(timeout=CLIENT_TIMEOUT_SEC)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(4)))
    elapsed = time.monotonic() - started
    assert len(results) == 4
    captions = [[r[2] for r in _rows(res[1])] for res in results]
    assert all(c and all(x.strip() for x in c) for c in captions)
    assert all(c == captions[0] for c in captions), "the same clip must give the same captions in every session"
    print(f"4 simultaneous uploads of a 3 s clip: {elapsed:.1f} s")


# ------------------------------------------------------------------------------------------------
# live


def _frames(kind: str, n: int, size=(480, 270)) -> list[np.ndarray]:
    """RGB frames: 'scene' = the bus and people moving; 'empty' = plain grey."""
    from captioner.training.synthetic import default_sprites, render_frame

    width, height = size
    if kind == "empty":
        return [np.full((height, width, 3), 114, np.uint8) for _ in range(n)]
    sprites = default_sprites(width, height, 3.0)
    return [cv2.cvtColor(render_frame(sprites, i * 0.15, width, height), cv2.COLOR_BGR2RGB) for i in range(n)]


def test_live_sessions_are_separate(demo):
    """Two sessions' states never share objects, and each sees only its own frames."""
    app = demo.caption_app
    scene, empty = _frames("scene", 8), _frames("empty", 8)
    clock = iter(np.arange(0, 10, 0.075))  # both webcams send a frame every 0.15 s
    app.clock = lambda: float(next(clock))
    state_a = state_b = None
    for frame_a, frame_b in zip(scene, empty):
        image_a, caption_a, next_a, stats_a, state_a = app.live_step(frame_a, state_a)
        image_b, caption_b, next_b, stats_b, state_b = app.live_step(frame_b, state_b)
    assert state_a is not state_b
    assert state_a.stream is not state_b.stream
    assert state_a.stream.perception.tracker is not state_b.stream.perception.tracker
    assert state_a.stream.tokenizer is not state_b.stream.tokenizer
    assert state_a.stream.window is not state_b.stream.window
    assert state_a.frames == state_b.frames == 8
    assert len(state_a.stream.window) == 5  # 1.05 s of frames at 0.15 s: analysed at 4 fps, not 6.7
    assert caption_a and caption_b and caption_a != caption_b
    assert "no objects" in caption_b
    assert image_a.shape == scene[0].shape and image_a.dtype == np.uint8
    assert not np.array_equal(image_a, scene[-1])  # boxes and the caption banner were drawn
    assert "ms/frame" in stats_a and "fps" in stats_a
    # A's tracker saw the bus and people; B's never saw anything
    seen_a = {int(t) for f in state_a.stream.window for t in f.detections.track_id if t >= 0}
    seen_b = {int(t) for f in state_b.stream.window for t in f.detections.track_id if t >= 0}
    assert seen_a and not seen_b


def test_live_sessions_separate_through_gradio_state(demo, tmp_path):
    """Two Gradio sessions running the live stream event get their own ``gr.State``.

    gradio_client cannot drive a ``.stream`` event (it does not know the 'process_streaming'
    message), so this goes through ``Blocks.process_api`` with two ``SessionState``s, the path a
    browser's frames take after the websocket/queue layer (the browser test covers that layer).
    """
    import asyncio

    from gradio.state_holder import SessionState

    live_fn = next(fn for fn in demo.fns.values() if fn.api_name == "live")
    sessions = {"scene": SessionState(demo), "empty": SessionState(demo)}
    outputs = {}
    for i in range(5):
        for kind, session in sessions.items():
            frame = _frames(kind, 5)[i]
            path = tmp_path / f"{kind}{i}.png"
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            payload = {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
            result = asyncio.run(demo.process_api(live_fn, [payload, None], state=session, explicit_call=True))
            outputs[kind] = result["data"]
    state_id = live_fn.inputs[1]._id
    state_a, state_b = sessions["scene"][state_id], sessions["empty"][state_id]
    assert state_a is not state_b and state_a.stream is not state_b.stream
    assert state_a.frames == state_b.frames == 5  # each counted only its own frames
    caption_a, caption_b = outputs["scene"][1], outputs["empty"][1]
    assert caption_a and caption_b and caption_a != caption_b and "no objects" in caption_b
    assert "5 frames" in outputs["scene"][3] and "5 frames" in outputs["empty"][3]
