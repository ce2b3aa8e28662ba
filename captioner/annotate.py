"""Drawing for the annotated MP4 and the live webcam view, and a browser-playable MP4 writer.

``draw_annotations`` puts boxes (one stable colour per track), labels and a caption banner on a
frame. ``AnnotatedVideoWriter`` pipes raw BGR frames into FFmpeg to make H.264/yuv420p MP4 with
``+faststart`` (what browsers play), writing to a temp file that is renamed only on success.
``render_annotated_video`` re-reads a source at its full frame rate and draws a ``Result`` on it;
``render_annotated_image`` does the same for a still image (a JPEG).
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import os
import shutil
import subprocess
import tempfile
import unicodedata
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .coco import COCO_CLASSES
from .errors import CaptionerError
from .options import ProgressCallback
from .perception import Detections
from .result import Result, Segment
from .video import VideoSource
from .fileio import StrPath, atomic_output, check_targets, commit_file, reserve_temp_path

log = logging.getLogger(__name__)

# BGR; distinct hues so neighbouring track ids differ visibly (after supervision's default palette)
TRACK_PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)
UNTRACKED_COLOR = (160, 160, 160)  # grey: detections the tracker has not confirmed (track_id -1)
CAPTION_COLOR = (255, 255, 255)
NEXT_COLOR = (80, 220, 255)  # amber, so the forecast never reads as the caption
BANNER_ALPHA = 0.6  # opacity of the dark banner behind the text
MAX_BANNER_FRACTION = 0.45  # the banner never covers more than this share of the frame height
FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_color(track_id: int) -> tuple[int, int, int]:
    """The colour of a track: the same id always gets the same colour (grey when -1)."""
    return UNTRACKED_COLOR if track_id < 0 else TRACK_PALETTE[track_id % len(TRACK_PALETTE)]


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only: fold accents (é -> e), replace the rest with "?"
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return folded.encode("ascii", "replace").decode("ascii")


def _font_scale(width: int, height: int) -> tuple[float, int]:
    """Font scale and stroke thickness (px) for a frame: ~0.35 at 160x120, ~1.2 at 1080p."""
    scale = max(0.3, min(width, height) / 900.0)
    return scale, max(1, round(scale * 2))


@functools.lru_cache(maxsize=256)  # the same caption is drawn on every frame of its segment
def _wrap(text: str, max_width_px: int, scale: float, thickness: int) -> tuple[str, ...]:
    """Greedy word wrap by measured pixel width; words longer than a line are split."""
    char_w = max(1, cv2.getTextSize("n", FONT, scale, thickness)[0][0])
    lines: list[str] = []
    for paragraph in text.splitlines():
        words = paragraph.split()
        current = ""
        for word in words:
            while cv2.getTextSize(word, FONT, scale, thickness)[0][0] > max_width_px and len(word) > 1:
                # too wide even alone: break it into chunks that fit
                chunk = max(1, max_width_px // char_w)
                while chunk > 1 and cv2.getTextSize(word[:chunk], FONT, scale, thickness)[0][0] > max_width_px:
                    chunk -= 1
                if current:
                    lines.append(current)
                    current = ""
                lines.append(word[:chunk])
                word = word[chunk:]
            candidate = f"{current} {word}".strip()
            if current and cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] > max_width_px:
                lines.append(current)
                current = word
            else:
                current = candidate
        if current:
            lines.append(current)
    return tuple(lines)


def _with_ellipsis(line: str, max_width_px: int, scale: float, thickness: int) -> str:
    """``line`` cut short with "..." that still fits in ``max_width_px`` (the wrap filled the
    line, so the dots need room made for them: whole words first, then characters)."""
    text = line.rstrip(".")
    while text and cv2.getTextSize(text + "...", FONT, scale, thickness)[0][0] > max_width_px:
        text = text.rsplit(" ", 1)[0] if " " in text.strip() else text[:-1]
        text = text.rstrip(" .")
    return text + "..."


def _class_name(class_id: int) -> str:
    return COCO_CLASSES[class_id] if 0 <= class_id < len(COCO_CLASSES) else f"class {class_id}"


def _draw_label(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: float,
                thickness: int) -> None:
    """A filled tag with ``text`` whose bottom-left is at (x, y), kept inside the frame."""
    height, width = image.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(1, thickness)
    box_h = th + baseline + 2 * pad
    x = int(min(max(x, 0), max(width - tw - 2 * pad, 0)))
    top = y - box_h
    if top < 0:  # no room above the box: put the tag just inside its top edge
        top = min(max(y, 0), max(height - box_h, 0))
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + box_h), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + pad, top + pad + th), FONT, scale, ink, thickness, cv2.LINE_AA)


def draw_annotations(
    image_bgr: np.ndarray,
    detections: Detections | None,
    caption: str,
    next_text: str = "",
    *,
    t_sec: float | None = None,
) -> np.ndarray:
    """Draw boxes, labels and the caption banner on a copy of a frame.

    image_bgr:  (H, W, 3) uint8 BGR (grayscale (H, W) and BGRA are converted); not modified.
    detections: boxes in the frame's own pixels; label "class #track conf" (no "#" when -1).
    caption:    drawn white in a dark translucent banner at the bottom, wrapped to the width.
    next_text:  the forecast, drawn below the caption in amber as "Next: ..." ("" = none).
    t_sec:      if given, the time (seconds) is shown in the top-left corner.
    Returns a new (H, W, 3) uint8 array.
    """
    if image_bgr.ndim == 2:
        out = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    elif image_bgr.shape[2] == 4:
        out = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
    else:
        out = image_bgr.copy()
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)
    height, width = out.shape[:2]
    scale, thickness = _font_scale(width, height)
    box_thickness = max(1, round(min(width, height) / 300))
    # labels a little smaller than the caption, but never below what stays legible on 160x120
    label_scale, label_thickness = max(0.3, scale * 0.8), max(1, thickness - 1)

    if detections is not None:
        for i in range(len(detections)):
            box = np.asarray(detections.box_xyxy[i], dtype=np.float64)
            if not np.all(np.isfinite(box)):
                continue
            x1, y1, x2, y2 = box
            x1, x2 = sorted((int(round(np.clip(x1, 0, width - 1))), int(round(np.clip(x2, 0, width - 1)))))
            y1, y2 = sorted((int(round(np.clip(y1, 0, height - 1))), int(round(np.clip(y2, 0, height - 1)))))
            track_id = int(detections.track_id[i])
            color = track_color(track_id)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, box_thickness)
            tag = _class_name(int(detections.class_id[i])) + (f" #{track_id}" if track_id >= 0 else "")
            _draw_label(out, f"{tag} {float(detections.confidence[i]):.2f}", x1, y1, color, label_scale, label_thickness)

    if t_sec is not None and math.isfinite(t_sec):
        minutes, secs = divmod(max(t_sec, 0.0), 60.0)
        _draw_label(out, f"{int(minutes):02d}:{secs:04.1f}", 0, 0, (32, 32, 32), label_scale, label_thickness)

    margin = max(2, round(6 * scale))
    text_width = width - 2 * margin
    lines = [(line, CAPTION_COLOR) for line in _wrap(_ascii(caption.strip()), text_width, scale, thickness)]
    if next_text.strip():
        lines += [(line, NEXT_COLOR) for line in _wrap(_ascii(f"Next: {next_text.strip()}"), text_width, scale, thickness)]
    if lines:
        (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
        line_h = text_h + baseline + max(2, round(4 * scale))
        max_lines = max(1, int((height * MAX_BANNER_FRACTION - 2 * margin) // line_h))
        if len(lines) > max_lines:  # keep the caption's start and the forecast's colour cue readable
            lines = lines[:max_lines]
            last, color = lines[-1]
            lines[-1] = (_with_ellipsis(last, text_width, scale, thickness), color)
        banner_h = min(height, len(lines) * line_h + 2 * margin)
        top = height - banner_h
        region = out[top:, :]
        # dark translucent: blend the region toward black
        out[top:, :] = (region.astype(np.float32) * (1.0 - BANNER_ALPHA)).astype(np.uint8)
        y = top + margin + text_h
        for line, color in lines:
            cv2.putText(out, line, (margin, y), FONT, scale, color, thickness, cv2.LINE_AA)
            y += line_h
    return out


# ------------------------------------------------------------------------------------------------
# MP4 output


@functools.lru_cache(maxsize=8)
def _has_libx264(exe: str) -> bool:
    try:
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libx264" in encoders


def _find_ffmpeg() -> str | None:
    """An FFmpeg binary that can encode H.264: imageio-ffmpeg's bundled one, else ``ffmpeg`` on PATH."""
    candidates: list[str] = []
    try:
        import imageio_ffmpeg

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # not installed, or no binary for this platform
        log.debug("imageio-ffmpeg unavailable: %s", exc)
    if path_exe := shutil.which("ffmpeg"):
        candidates.append(path_exe)
    for exe in candidates:
        if _has_libx264(exe):
            return exe
        log.debug("%s has no libx264 encoder", exe)
    return None


def _even(n: int) -> int:
    return n + (n % 2)


class AnnotatedVideoWriter:
    """Write BGR frames to a browser-playable MP4 (H.264, yuv420p, +faststart).

    >>> with AnnotatedVideoWriter("out.mp4", fps=25.0, size=(640, 360)) as writer:
    ...     writer.write(frame_bgr)

    out_path: the final file; frames go to a hidden temp file beside it, renamed on success.
    fps:      frames per second of the output (> 0).
    size:     (width, height) in pixels, as OpenCV gives them. Odd sizes are padded by one black
              row/column to the even size yuv420p needs; frames of another size are resized.
    overwrite: replace an existing ``out_path`` (else ``CaptionerError`` before encoding).

    Uses FFmpeg (imageio-ffmpeg's binary, else ``ffmpeg`` on PATH); without either it falls
    back to OpenCV's mp4v encoder, which browsers may not play (a warning is logged). On an
    exception inside ``with``, or if encoding fails, the temp file is removed and nothing is left.
    """

    def __init__(self, out_path: StrPath, fps: float, size: tuple[int, int], *, overwrite: bool = False):
        self.out_path = Path(out_path)
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise CaptionerError(f"annotated video {self.out_path}: frame size must be positive, got {size!r}")
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise CaptionerError(f"annotated video {self.out_path}: fps must be a positive number, got {fps!r}")
        check_targets([self.out_path], overwrite=overwrite)
        self.fps, self.size, self.overwrite = float(fps), (width, height), overwrite
        self.frames_written = 0
        self._closed = False
        self._proc: subprocess.Popen | None = None
        self._cv_writer: cv2.VideoWriter | None = None
        self._stderr = None
        self.backend = ""  # "ffmpeg" (H.264) or "opencv" (mp4v fallback)
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = reserve_temp_path(self.out_path, suffix=".tmp.mp4")
        try:
            exe = _find_ffmpeg()
            if exe:
                self._start_ffmpeg(exe)
            else:
                self._start_opencv()
        except BaseException:
            self._discard()
            raise

    def _start_ffmpeg(self, exe: str) -> None:
        width, height = self.size
        rate = Fraction(self.fps).limit_denominator(1001)  # NTSC 29.97002997 -> 30000/1001
        cmd = [
            exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}",
            "-i", "pipe:0", "-an",
            # yuv420p halves chroma resolution, so both sides must be even: pad, never crop
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(self._tmp),
        ]
        # stderr to a file, not a pipe: a pipe nobody reads can fill up and deadlock FFmpeg
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        self.backend = "ffmpeg"
        log.debug("encoding %s with %s", self.out_path, exe)

    def _start_opencv(self) -> None:
        log.warning("no FFmpeg with libx264 found (install imageio-ffmpeg); writing %s with OpenCV mp4v, "
                    "which browsers may not play", self.out_path)
        width, height = self.size
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (_even(width), _even(height)))
        if not writer.isOpened():
            raise CaptionerError(f"annotated video {self.out_path}: OpenCV could not open an mp4v writer")
        self._cv_writer = writer
        self.backend = "opencv"

    def _ffmpeg_error(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(line.strip() for line in lines if line.strip())[-2000:]  # one line, for one-line errors

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if self._closed:
            raise CaptionerError(f"annotated video {self.out_path}: write() after close()")
        width, height = self.size
        frame = frame_bgr
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if frame.shape[:2] != (height, width):
            # a raw stream has no frame boundaries: a wrong-sized frame would shear every later one
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        try:
            if self._proc is not None:
                self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            else:
                if (width, height) != (_even(width), _even(height)):
                    frame = cv2.copyMakeBorder(frame, 0, _even(height) - height, 0, _even(width) - width,
                                               cv2.BORDER_CONSTANT, value=(0, 0, 0))
                self._cv_writer.write(frame)
        except OSError as exc:  # BrokenPipeError: FFmpeg exited (bad options, disk full...)
            if self._proc is not None:
                self._proc.wait()
            message = self._ffmpeg_error()
            self.abort()
            raise CaptionerError(f"annotated video {self.out_path}: the encoder stopped: {message or exc}") from exc
        self.frames_written += 1

    def close(self) -> Path:
        """Finish encoding and move the file into place; returns ``out_path``.

        Raises ``CaptionerError`` (leaving nothing behind) if no frame was written or FFmpeg failed.
        """
        if self._closed:
            return self.out_path
        try:
            if self.frames_written == 0:
                raise CaptionerError(f"annotated video {self.out_path}: no frames were written")
            if self._proc is not None:
                try:
                    self._proc.stdin.close()
                except OSError:  # FFmpeg already gone; its exit code says why
                    pass
                code = self._proc.wait()
                if code != 0:
                    raise CaptionerError(f"annotated video {self.out_path}: FFmpeg failed (exit {code}): {self._ffmpeg_error()}")
            else:
                self._cv_writer.release()
            with open(self._tmp, "rb") as handle:
                os.fsync(handle.fileno())
            commit_file(self._tmp, self.out_path, overwrite=self.overwrite)
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        self._closed = True
        self._release()
        log.info("wrote %s (%d frames, %s)", self.out_path, self.frames_written, self.backend)
        return self.out_path

    def abort(self) -> None:
        """Stop encoding and delete the temp file; ``out_path`` is left untouched."""
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._discard()

    def _discard(self) -> None:
        self._release()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _release(self) -> None:
        if self._proc is not None and self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        if self._cv_writer is not None:
            self._cv_writer.release()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self):  # a writer dropped without close() must not leave a temp file behind
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass


# ------------------------------------------------------------------------------------------------
# rendering a Result onto its source video


class _SegmentLookup:
    """Which segment is on screen at time t: the latest-starting one with start <= t < end,
    matching how subtitle cues are clamped (a later cue wins where segments overlap)."""

    def __init__(self, segments: Sequence[Segment]):
        self.segments = sorted((s for s in segments if math.isfinite(s.start) and math.isfinite(s.end)),
                               key=lambda s: (s.start, s.end))
        self.starts = [s.start for s in self.segments]

    def at(self, t_sec: float) -> Segment | None:
        i = bisect.bisect_right(self.starts, t_sec) - 1
        while i >= 0:
            if t_sec < self.segments[i].end:
                return self.segments[i]
            i -= 1
        return None




def render_annotated_video(
    video_path: StrPath,
    out_path: StrPath,
    result: Result,
    frame_detections: Sequence[tuple[float, Detections]],
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Draw a ``Result`` on every frame of its source video and write an H.264 MP4.

    video_path:       the source, re-read at its full frame rate (timestamps from the container,
                      as ``video.VideoSource`` gives them, so they match the analysed frames').
    frame_detections: ``[(t_sec, Detections)]`` of the analysed frames (any order, usually a
                      lower rate); each source frame shows the latest at or before its time.
    progress:         called as ``progress(frames_done, frames_total)`` every few frames and at
                      the end (``frames_total`` is the container's count, an estimate).
    Returns ``out_path``. Raises ``CaptionerError`` if ``out_path`` exists and not ``overwrite``,
    ``VideoError`` if the source cannot be decoded; nothing is left behind on failure.
    """
    out_path = Path(out_path)
    check_targets([out_path], overwrite=overwrite)
    timeline = sorted(((float(t), d) for t, d in frame_detections if math.isfinite(t)), key=lambda td: td[0])
    times = [t for t, _ in timeline]
    segments = _SegmentLookup(result.segments)
    empty = Detections.empty()
    # analysed and re-read timestamps come from the same decoder; allow float noise only
    tolerance_sec = 1e-3

    with VideoSource(video_path) as video:
        info = video.info
        fps = info.fps or result.video.fps or 25.0
        total = info.frame_count
        with AnnotatedVideoWriter(out_path, fps, info.size, overwrite=overwrite) as writer:
            done = 0
            for frame in video.frames():
                i = bisect.bisect_right(times, frame.t_sec + tolerance_sec) - 1
                detections = timeline[i][1] if i >= 0 else empty
                segment = segments.at(frame.t_sec)
                caption, next_text = (segment.caption, segment.next_text) if segment else ("", "")
                writer.write(draw_annotations(frame.image_bgr, detections, caption, next_text, t_sec=frame.t_sec))
                done += 1
                if progress is not None and done % 10 == 0:
                    progress(done, max(total, done))
    if progress is not None:
        progress(done, done)
    return out_path


def render_annotated_image(
    image_path: StrPath,
    out_path: StrPath,
    result: Result,
    frame_detections: Sequence[tuple[float, Detections]],
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Draw a still image's ``Result`` (boxes, the caption) on it and write a JPEG atomically."""
    from .video import ImageSource

    out_path = Path(out_path)
    check_targets([out_path], overwrite=overwrite)
    with ImageSource(image_path) as source:
        image = next(source.frames()).image_bgr
    segment = result.segments[0] if result.segments else None
    detections = frame_detections[0][1] if frame_detections else Detections.empty()
    drawn = draw_annotations(image, detections, segment.caption if segment else "", segment.next_text if segment else "")
    ok, encoded = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise CaptionerError(f"annotated image {out_path}: JPEG encoding failed")
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        tmp.write_bytes(encoded.tobytes())
    if progress is not None:
        progress(1, 1)
    return out_path
