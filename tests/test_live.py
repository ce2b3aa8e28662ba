"""``captioner live``: a file played at real time, an HTTP stream served on 127.0.0.1 by FFmpeg,
a stream that drops and comes back, Ctrl-C, and a source that refuses. Every run is bounded."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from captioner.live import run_live

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from captioner.training.synthetic import make_clip

    return make_clip(tmp_path_factory.mktemp("live") / "moving.mp4", duration_sec=6.0, fps=25.0, width=480, height=270)


def serve(ffmpeg: str, clip: Path, port: int, loop: bool) -> subprocess.Popen:
    """FFmpeg as a one-client HTTP server of an MPEG-TS stream, at the clip's real speed."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "quiet", "-re", *(["-stream_loop", "-1"] if loop else []),
           "-i", str(clip), "-an",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it bind
    return proc


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # every line complete and parseable


def test_file_played_at_real_time(model, clip, tmp_path):
    out, jsonl = io.StringIO(), tmp_path / "live.jsonl"
    started = time.monotonic()
    stats = run_live(model, str(clip), jsonl=jsonl, out=out)
    elapsed = time.monotonic() - started
    assert stats.exit_code == 0 and 5.5 < elapsed < 15  # real time, not as fast as it decodes
    assert stats.frames_read == 150 and 20 <= stats.frames_analysed <= 25
    assert stats.lag_percentile(95) < 1.0, stats.summary()
    records = read_jsonl(jsonl)
    segments = [r for r in records if r["type"] == "segment"]
    assert [s["start"] for s in segments] == [0.0, 4.0] and segments[0]["end"] == 4.0
    assert segments[1]["end"] == pytest.approx(6.0, abs=0.05)
    assert all(r["caption"] for r in records if r["type"] == "caption")
    printed = out.getvalue()
    assert "] " in printed and "lag p50" in printed
    print(stats.summary())


def test_http_stream_keeps_up_and_survives_a_drop(model, clip, ffmpeg_exe, tmp_path):
    port = free_port()
    first = serve(ffmpeg_exe, clip, port, loop=False)  # 6 s, then the stream drops
    second: list[subprocess.Popen] = []

    def restart_when_dropped():
        first.wait(timeout=30)
        second.append(serve(ffmpeg_exe, clip, port, loop=True))

    threading.Thread(target=restart_when_dropped, daemon=True).start()
    jsonl = tmp_path / "stream.jsonl"
    try:
        stats = run_live(model, f"http://127.0.0.1:{port}/live.ts", jsonl=jsonl, duration_sec=10.0, reconnects=3,
                         out=io.StringIO())
    finally:
        first.kill()
        for proc in second:
            proc.kill()
    assert stats.exit_code == 0 and stats.reconnects == 1, stats.summary()
    assert stats.frames_analysed >= 25 and stats.lag_percentile(95) < 1.0, stats.summary()
    segments = [r for r in read_jsonl(jsonl) if r["type"] == "segment"]
    assert segments and segments[-1]["end"] <= 10.5
    print(stats.summary())


def test_ctrl_c_leaves_complete_output(clip, tmp_path):
    jsonl = tmp_path / "interrupted.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "captioner", "live", str(clip), "--imgsz", "320", "--jsonl", str(jsonl),
                             "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (jsonl.exists() and jsonl.stat().st_size):
        time.sleep(0.1)  # models loaded and the first caption written
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    records = read_jsonl(jsonl)
    assert records and records[-1]["type"] == "segment"  # the open window was closed on the way out
    assert "Traceback" not in stderr and "frames read" in stdout  # --quiet still prints the summary
    assert len(stdout.strip().splitlines()) == 1, stdout


def test_unreachable_stream_is_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    out = subprocess.run([sys.executable, "-m", "captioner", "live", f"http://127.0.0.1:{port}/live.ts", "--imgsz", "320"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 1
    assert f"http://127.0.0.1:{port}/live.ts" in out.stderr and "could not be opened" in out.stderr
    assert "Traceback" not in out.stderr
