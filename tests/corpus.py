"""The bad-input corpus, generated (nothing binary is committed): files from phones and cameras
that are odd in every way, and inputs that are not files at all.

``make_corpus(folder, ffmpeg)`` writes every case into ``folder`` and returns them as ``Case``s:
what to pass on the command line and what must come back: captions with the true duration, or
one line naming the input and its problem. Clips are small (160-320 px, a few seconds) so that
every runner (CLI, web Upload tab, batch) gets through all of them in seconds on two cores.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from captioner.training.synthetic import default_sprites, render_frame

SIZE = (320, 180)
FPS = 10.0
QUOTED_NAME = "it's a \"quoted\" clip — café 日本.mp4"  # spaces, quotes, non-ASCII


@dataclass
class Case:
    """One input and what must come back for it."""

    name: str  # the row label
    source: Path | str  # what is passed on the command line (a URL stays a string)
    expect: str  # "captions" or "error"
    problem: str = ""  # errors: a fragment of the one-line message
    duration_sec: float | None = None  # captions: the true duration
    duration_tol: float = 0.06
    uploadable: bool = True  # can go through the web Upload tab (a file the client can read)
    mixed_stem: str | None = None  # its outputs' stem when given with the others in one run (a name taken before)

    @property
    def ok(self) -> bool:
        return self.expect == "captions"

    @property
    def stem(self) -> str:
        text = str(self.source)
        return Path(text.rsplit("/", 1)[-1]).stem


def frames(n: int, size: tuple[int, int] = SIZE, fps: float = FPS) -> list[np.ndarray]:
    """The synthetic scene (a bus and two men moving), ``n`` BGR frames at ``fps``."""
    width, height = size
    sprites = default_sprites(width, height, max(n / fps, 1.0))
    return [render_frame(sprites, i / fps, width, height) for i in range(n)]


def encode(ffmpeg: str, images: list[np.ndarray], out: Path, fps: float = FPS, *args: str,
           input_args: tuple[str, ...] = ()) -> Path:
    """Raw BGR frames -> ``out`` with FFmpeg (H.264 unless ``args`` say otherwise)."""
    height, width = images[0].shape[:2]
    codec = [] if "-c:v" in args or out.suffix == ".gif" else ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{width}x{height}", "-r", f"{fps:g}", *input_args, "-i", "pipe:0", *codec, *args, str(out)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(i).tobytes() for i in images), check=True, timeout=120)
    return out


def ffmpeg_run(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120)


def with_rotation_flag(ffmpeg: str, src: Path, out: Path, degrees: int = 90) -> Path:
    """``src`` with a display-rotation flag (as phones write it), pixels untouched."""
    try:
        ffmpeg_run(ffmpeg, "-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(out))
    except subprocess.CalledProcessError:  # an FFmpeg before 6.0: the old metadata tag
        ffmpeg_run(ffmpeg, "-i", str(src), "-c", "copy", "-metadata:s:v", f"rotate={degrees}", str(out))
    return out


VFR_TIMES = [i / 10 for i in range(20)] + [2.0 + k / 2 for k in range(10)]  # 10 fps for 2 s, then 2 fps


def variable_frame_rate(ffmpeg: str, out: Path) -> Path:
    """30 frames at ``VFR_TIMES``: a constant-rate clip re-timed (timestamps, not frames, change)."""
    cfr = encode(ffmpeg, frames(30), out.with_name(f"{out.stem}.cfr.mp4"))
    ffmpeg_run(ffmpeg, "-i", str(cfr), "-vf", "setpts='if(lt(N,20),N/10,2+(N-20)/2)/TB'", "-fps_mode", "passthrough",
               "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out))
    cfr.unlink()
    return out


def claim_ten_hours(mkv: Path) -> Path:
    """Rewrite a Matroska file's Segment Duration (milliseconds, a float) to 10 hours."""
    data = bytearray(mkv.read_bytes())
    at = data.find(b"\x44\x89")  # the Duration element
    size = data[at + 2] & 0x0F
    fmt = ">d" if size == 8 else ">f"
    data[at + 3:at + 3 + size] = struct.pack(fmt, 10 * 3600 * 1000.0)
    mkv.write_bytes(bytes(data))
    return mkv


READ_TIMEOUT_SEC = "3"  # --read-timeout of every runner: how long the stalled cases take to give up


def make_corpus(folder: Path, ffmpeg: str, refused_url: str, served_url: str | None = None,
                stalled_url: str | None = None) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder
    cases: list[Case] = []
    scene = frames(30)

    # ---- playable: captions with the true duration -------------------------------------------
    good = encode(ffmpeg, scene, f / "good.mp4", FPS, "-movflags", "+faststart")
    cases.append(Case("good clip", good, "captions", duration_sec=3.0))
    cases.append(Case("one frame", encode(ffmpeg, scene[:1], f / "one_frame.mp4", 25.0), "captions", duration_sec=0.04))
    cases.append(Case("16x16 pixels", encode(ffmpeg, frames(30, (16, 16)), f / "tiny_16x16.mp4"), "captions",
                      duration_sec=3.0))
    cases.append(Case("8000x200 pixels", encode(ffmpeg, frames(10, (8000, 200), 5.0), f / "wide_8000x200.mp4", 5.0),
                      "captions", duration_sec=2.0))
    rotated = with_rotation_flag(ffmpeg, good, f / "rotated.mp4")
    cases.append(Case("rotation flag (90)", rotated, "captions", duration_sec=3.0))
    # variable frame rate: 20 frames at 10 fps, then 10 at 2 fps (t = 0..1.9, then 2.0..6.5): it ends
    # after its last frame, at most one 2 fps period later
    cases.append(Case("variable frame rate", variable_frame_rate(ffmpeg, f / "vfr.mp4"), "captions", duration_sec=6.75,
                      duration_tol=0.25))
    cases.append(Case("animated GIF", encode(ffmpeg, frames(15, (160, 90), 5.0), f / "animated.gif", 5.0), "captions",
                      duration_sec=3.0))
    ten = encode(ffmpeg, frames(50, (160, 90), 5.0), f / "ten_hour_header.mkv", 5.0)
    cases.append(Case("10-hour header, 10 s video", claim_ten_hours(ten), "captions", duration_sec=10.0))
    g10 = encode(ffmpeg, frames(40), f / "g10.tmpclip.mp4", FPS, "-g", "10", "-movflags", "+faststart")
    data = g10.read_bytes()
    g10.unlink()
    corrupt = bytearray(data)
    lo, hi = int(len(data) * 0.45), int(len(data) * 0.55)
    corrupt[lo:hi] = np.random.default_rng(1).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    (f / "corrupt_middle.mp4").write_bytes(bytes(corrupt))
    cases.append(Case("corrupt bytes in the middle", f / "corrupt_middle.mp4", "captions", duration_sec=4.0))
    quoted = f / QUOTED_NAME
    quoted.write_bytes(good.read_bytes())
    cases.append(Case("spaces, quotes, non-ASCII name", quoted, "captions", duration_sec=3.0))
    if served_url:
        cases.append(Case("URL of a served clip", served_url, "captions", duration_sec=3.0, uploadable=False))
    # names read as glob patterns where no file of that name exists (yt-dlp names downloads "Title [id].ext")
    download = f / "Talk [x1Y2z3].mp4"
    download.write_bytes(good.read_bytes())
    cases.append(Case("name with [brackets]", download, "captions", duration_sec=3.0))
    starred = f / "what*? [1].mp4"
    starred.write_bytes(good.read_bytes())
    cases.append(Case("name with * and ?", starred, "captions", duration_sec=3.0))
    (f / "day2").mkdir(exist_ok=True)
    again = f / "day2" / "good.mp4"  # one name in two folders (a camera's 0001.mp4 each day)
    again.write_bytes(good.read_bytes())
    cases.append(Case("same name, other folder", again, "captions", duration_sec=3.0, mixed_stem="good-2"))

    # ---- refused: one line naming the input and the problem ------------------------------------
    (f / "empty.mp4").write_bytes(b"")
    cases.append(Case("zero bytes", f / "empty.mp4", "error", "file is empty"))
    (f / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    cases.append(Case("random bytes", f / "random.mp4", "error", "cannot be opened as a video"))
    (f / "notes.mp4").write_text("these are my notes, not a video\n" * 40)
    cases.append(Case("text renamed .mp4", f / "notes.mp4", "error", "is a text file"))
    (f / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov first (faststart), half the frames cut
    cases.append(Case("truncated mp4 (header intact)", f / "truncated.mp4", "error", "truncated"))
    plain = encode(ffmpeg, scene, f / "plain.tmpclip.mp4")  # moov at the end
    raw = plain.read_bytes()
    plain.unlink()
    (f / "no_moov.mp4").write_bytes(raw[: raw.rfind(b"moov") - 4])
    cases.append(Case("mp4 without moov atom", f / "no_moov.mp4", "error", "index (moov atom) is missing"))
    ffmpeg_run(ffmpeg, "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(f / "audio_only.mp4"))
    cases.append(Case("audio only", f / "audio_only.mp4", "error", "no video stream"))
    ok, jpeg = cv2.imencode(".jpg", scene[10])
    (f / "photo.mp4").write_bytes(jpeg.tobytes())
    cases.append(Case("still image renamed .mp4", f / "photo.mp4", "error", "is a JPEG image, not a video"))
    locked = f / "locked.mp4"
    locked.write_bytes(good.read_bytes())
    locked.chmod(0o000)
    cases.append(Case("no read permission", locked, "error", "permission denied", uploadable=False))
    (f / "folder.mp4").mkdir(exist_ok=True)
    cases.append(Case("a directory", f / "folder.mp4", "error", "is a folder with no video or image files",
                      uploadable=False))
    cases.append(Case("non-existent path", f / "missing.mp4", "error", "file not found", uploadable=False))
    cases.append(Case("URL refusing connection", refused_url, "error", "could not be opened", uploadable=False))
    cases.append(Case("pattern matching nothing", str(f / "nothing*?.mp4"), "error",
                      "no video or image file matches this pattern", uploadable=False))
    os.mkfifo(f / "fifo.mp4")  # a named pipe no one writes to: reading it would wait forever
    cases.append(Case("named pipe (FIFO)", f / "fifo.mp4", "error", "is a named pipe (FIFO), not a regular file",
                      uploadable=False))
    if stalled_url:
        cases.append(Case("server that sends nothing", stalled_url, "error", f"no data for {READ_TIMEOUT_SEC}s",
                          uploadable=False))
    return cases
