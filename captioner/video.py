"""Stage 1 of the data path: open a source, report what it is, yield its frames with true times.

A source is a video file, a still image, a webcam index (``0`` or ``"0"``) or a stream URL
(``rtsp://...``, ``http://...``). ``VideoSource.frames(wants=...)`` yields every frame's
timestamp (from the container, so variable-frame-rate files and 1-2 fps clips keep their true
times) but converts to BGR only the frames ``wants`` asks for: the others are only *grabbed*
(demuxed and decoded by FFmpeg), never converted or copied.

``FrameSampler`` decides which frames are analysed: one per ``1 / target_fps`` seconds. The
offline path and a live stream use the same sampler on the same timestamps, so they analyse the
same frames.
"""

from __future__ import annotations

import atexit
import glob
import logging
import math
import queue
import re
import os
import stat
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar, Union

# FFmpeg and OpenCV print warnings for every damaged packet; our VideoError says what matters
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the log-level variables above)
import numpy as np  # noqa: E402

try:  # the same, where cv2 was imported before this module set the variables
    cv2.utils.logging.setLogLevel(min(cv2.utils.logging.getLogLevel(), cv2.utils.logging.LOG_LEVEL_ERROR))
except AttributeError:  # pragma: no cover - an OpenCV build without the logging module
    pass

from . import container
from .errors import OptionsError, VideoError
from .options import CaptionOptions

log = logging.getLogger(__name__)

Source = Union[str, os.PathLike, int]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif", ".ts", ".3gp", ".y4m")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_SIDE_PX = 16384  # larger frames are almost surely a corrupt header, and would not fit in memory anyway
DEFAULT_ANALYSIS_FPS = 4.0
TRUNCATED_SHARE = 0.6  # decoding ends before this share of the advertised frames and duration
MAX_BAD_PACKETS = 300  # consecutive undecodable packets skipped before a file is taken to have ended
DEFAULT_FRAME_SEC = 0.04  # the duration of a frame whose rate nothing tells (25 fps)


@dataclass(frozen=True)
class VideoInfo:
    """What a source is. ``frame_count`` and ``duration_sec`` are 0 for live sources."""

    source: str
    fps: float
    frame_count: int
    duration_sec: float
    width: int
    height: int
    is_live: bool = False
    is_image: bool = False  # a still image: one frame at t = 0, duration 0

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


@dataclass
class SampledFrame:
    """One decoded frame chosen by the sampler. ``image_bgr``: (H, W, 3) uint8, OpenCV order."""

    index: int  # position of the frame in the source's decoded-frame order
    t_sec: float  # presentation time from the container (live: seconds since opening)
    image_bgr: np.ndarray | None  # None where the frame was only grabbed (see ``VideoSource.frames``)


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_media_file(path: Path) -> bool:
    """A file captioner reads: a video or a still image (by its extension)."""
    return is_video_file(path) or is_image_file(path)


def _webcam_index(source: Source) -> int | None:
    if isinstance(source, int):
        return source
    if isinstance(source, str) and source.strip().isdigit():
        return int(source.strip())
    return None


def is_url(source: Source) -> bool:
    """``scheme://...`` (rtsp, http, https, file...): a stream for FFmpeg, not a local path."""
    return isinstance(source, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def check_fps(target_fps: float | None) -> None:
    if target_fps is None:
        return
    if not isinstance(target_fps, (int, float)) or not math.isfinite(target_fps) or not (0 < target_fps <= 240):
        raise OptionsError(f"analysis fps must be a number in (0, 240], got {target_fps!r}")


class FrameSampler:
    """Picks frames at ``target_fps`` from a stream of timestamps (every frame when None).

    The first frame is taken; after that, the first frame at or after each sampling instant
    (start, start + 1/fps, ...), where a frame within half a source-frame period of an instant
    counts as on it. The source period is ``1 / source_fps`` when the rate is known (files),
    else the gap since the previous frame (live pushes), which is the same for a steady stream.
    Call ``take`` once per frame, in order; ``wants`` answers the same question without
    advancing, so a decoder can skip converting frames that will not be taken.
    """

    def __init__(self, target_fps: float | None, source_fps: float | None = None):
        check_fps(target_fps)
        self.period = 1.0 / target_fps if target_fps else 0.0
        self.source_period = 1.0 / source_fps if source_fps and math.isfinite(source_fps) and source_fps > 0 else None
        self.next_t: float | None = None
        self.last_t: float | None = None

    def _tolerance(self, t_sec: float) -> float:
        if self.source_period is not None:
            return 0.5 * self.source_period
        return 0.5 * (t_sec - self.last_t) if self.last_t is not None and t_sec > self.last_t else 0.0

    def wants(self, t_sec: float) -> bool:
        if not self.period or self.next_t is None:
            return True
        return t_sec + self._tolerance(t_sec) >= self.next_t

    def take(self, t_sec: float) -> bool:
        taken = self.wants(t_sec)
        if taken and self.period:
            tolerance = self._tolerance(t_sec)
            if self.next_t is None:
                self.next_t = t_sec
            while self.next_t <= t_sec + tolerance:
                self.next_t += self.period
        self.last_t = t_sec
        return taken


class VideoSource:
    """An opened video source. Use as a context manager; iterate ``frames()`` once.

    >>> with VideoSource("clip.mp4") as video:
    ...     print(video.info.duration_sec)
    ...     for frame in video.frames(wants=sampler.wants): ...
    """

    def __init__(self, source: Source, *, special_ok: bool = False, timeout_sec: float | None = None):
        """Open ``source``. A named pipe, socket or device is refused (``VideoError``) unless
        ``special_ok`` (``captioner live``), which reads it as a live stream. Opening can block
        (a stalled mount, a pipe no one writes to): ``open_source`` bounds it in time with
        ``timeout_sec``, which FFmpeg is also given, so that its own network waits end (OpenCV
        opens one source at a time: a stuck open would hold up every later one)."""
        self._cap = None
        self.timeout_sec = timeout_sec  # reads give up after this long without data
        self._io = threading.Lock()  # held while the decoder reads; close() never releases under it
        self._release_later = False  # close() came while a stalled read held the decoder
        webcam = _webcam_index(source)
        if webcam is not None:
            self.name = f"webcam {webcam}"
            self._cap = cv2.VideoCapture(webcam)
            if not self._cap.isOpened():
                raise VideoError(f"{self.name} could not be opened: no camera at that index, or it is in use / not permitted")
            self.is_live = True
        elif is_url(source):
            self.name = str(source)
            self._cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, self._ffmpeg_timeouts())
            if not self._cap.isOpened():
                raise VideoError(f"{self.name}: the stream could not be opened (unreachable URL or unsupported protocol)")
            # a file served over http(s) has a frame count and container times; a live stream has neither
            self.is_live = not self._cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0 or self.name.startswith(("rtsp:", "rtmp:", "udp:"))
        else:
            path = Path(source)
            self.name = str(path)
            special = _check_file(path, special_ok=special_ok) is None
            self._cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, self._ffmpeg_timeouts())
            if not self._cap.isOpened() and not special:
                self._cap = cv2.VideoCapture(self.name)  # e.g. image-sequence or other backends
            if not self._cap.isOpened():
                raise VideoError(f"{self.name}: {'the stream could not be opened' if special else _why_not_video(path)}")
            self.is_live = special  # a pipe or device delivers as it comes, like a stream
        self._path = None if self.is_live or is_url(source) else Path(source)
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):  # frames as displayed: a phone's rotation flag applied
            self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        self.info = self._read_info()
        self._consumed = False
        # after frames(): what decoding found (the header may disagree)
        self.frames_decoded = 0
        self.end_sec = 0.0  # when the last decoded frame stops showing: the true duration
        self.skipped_spans: list[tuple[float, float]] = []  # corrupt stretches skipped, (after, resumed at) seconds

    def _ffmpeg_timeouts(self) -> list[int]:
        """OpenCV's open/read time limits for FFmpeg: ours plus a second, so that our own
        watchdog (``within``, ``ReadAhead``) names the problem first and FFmpeg still lets go."""
        if not self.timeout_sec:
            return []
        ms = int(self.timeout_sec * 1000) + 1000
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]

    def _read_info(self) -> VideoInfo:
        cap = self._cap
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 0.0
        count = 0 if self.is_live else max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        if not self.is_live:
            if width <= 0 or height <= 0:
                self.close()
                raise VideoError(f"{self.name}: has no video stream (audio-only or not a video)")
            if count <= 0:
                self.close()
                raise VideoError(f"{self.name}: contains no decodable video frames ({_why_no_frames(self._path)})")
        if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
            self.close()
            raise VideoError(f"{self.name}: frame size {width}x{height} is larger than {MAX_SIDE_PX}px a side; the header is probably corrupt")
        duration = count / fps if (count and fps) else 0.0
        return VideoInfo(self.name, fps, count, duration, width, height, self.is_live)

    def frames(self, wants: Callable[[float], bool] | None = None) -> Iterator[SampledFrame]:
        """Yield every frame in order with its true timestamp; ``image_bgr`` is decoded for the
        frames ``wants(t_sec)`` accepts (all when None) and is None for the others.

        Like FFmpeg, a file's corrupt stretch is skipped (logged) and decoding goes on after it.
        Afterwards ``frames_decoded`` and ``end_sec`` (the true duration) say what was found.
        Raises ``VideoError`` if a file yields no frame at all or is truncated far short of its
        advertised length; a complete file whose header merely claims more is accepted.
        """
        if self._consumed:
            raise VideoError(f"{self.name}: frames() can be iterated only once; open the source again")
        self._consumed = True
        cap, info = self._cap, self.info
        index, decoded, last_t, prev_t = -1, 0, -1.0, None
        bad = bad_total = 0  # consecutive / all packets that did not decode
        t_open = time.monotonic()
        while True:
            with self._io:
                grabbed = cap.grab()
            if self._release_later:  # given up on while this read stalled: nobody reads on
                self.close()
                return
            if not grabbed:
                # a file with frames still to come (per its header): skip the bad packet, as FFmpeg does
                if self.is_live or not (decoded < info.frame_count and bad < MAX_BAD_PACKETS):
                    break
                bad += 1
                continue
            index += 1
            t_sec = self._timestamp(index, last_t, t_open)
            image = None
            if wants is None or wants(t_sec):
                with self._io:
                    ok, image = cap.retrieve()
                if not ok or image is None:
                    bad += 0 if self.is_live else 1  # a frame that cannot be converted is skipped
                    continue
            if bad:
                self.skipped_spans.append((max(last_t, 0.0), t_sec))
                bad_total += bad
            bad = 0
            prev_t, last_t = (last_t if decoded else None), t_sec
            decoded += 1
            self.frames_decoded = decoded
            self.end_sec = end_of_frames(last_t, prev_t, info.fps, info.duration_sec)
            yield SampledFrame(index=index, t_sec=t_sec, image_bgr=image)
        if self.is_live:
            return
        if decoded == 0:
            raise VideoError(f"{self.name}: no frame could be decoded ({_why_no_frames(self._path)})")
        if bad_total > decoded:
            raise VideoError(f"{self.name}: corrupt: {bad_total} frames could not be decoded, only {decoded} could")
        if self.skipped_spans:
            log.warning("%s: %d undecodable frames skipped (corrupt data) at %s", self.name, bad_total,
                        ", ".join(f"{a:.2f}-{b:.2f}s" for a, b in self.skipped_spans[:5]))
        # Containers over-report frame counts (duplicate packets, doubled AVI counts), so only
        # stopping far short in BOTH frames and time counts; then the bytes tell a truncated file
        # from a complete one with a wrong header.
        ended_early = info.duration_sec and last_t < TRUNCATED_SHARE * info.duration_sec
        if info.frame_count and decoded < TRUNCATED_SHARE * info.frame_count and ended_early:
            truncated = _truncated(self._path)
            if truncated is False:
                log.warning("%s: the header claims %.1fs (%d frames) but the video ends at %.2fs (%d frames); "
                            "using what it holds", self.name, info.duration_sec, info.frame_count, self.end_sec, decoded)
            else:
                what = "truncated" if truncated else "truncated or corrupt"
                raise VideoError(f"{self.name}: {what}: decoding stopped after {decoded} of {info.frame_count} "
                                 f"frames ({last_t:.1f}s of {info.duration_sec:.1f}s)")

    def check_max_duration(self, max_sec: float | None) -> None:
        """Refuse (``VideoError``) a file longer than ``max_sec`` before decoding it: by its
        header, confirmed by seeking past the limit (a header may claim hours for seconds)."""
        if not max_sec or self.is_live or self.info.duration_sec <= max_sec:
            return
        def seek_past() -> bool:
            probe = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG)
            try:
                probe.set(cv2.CAP_PROP_POS_MSEC, max_sec * 1000.0 + 500.0)
                return bool(probe.grab() and probe.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 > max_sec)
            finally:
                probe.release()

        if within(self.timeout_sec, self.name, "checking its length", seek_past):
            raise too_long(self.name, max_sec, self.info.duration_sec)

    def _timestamp(self, index: int, last_t: float, t_open: float) -> float:
        if self.is_live:
            return time.monotonic() - t_open
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        t_sec = pos_ms / 1000.0 if (pos_ms is not None and math.isfinite(pos_ms)) else -1.0
        if index > 0 and t_sec <= last_t:
            # some containers (and GIFs) carry no usable timestamps: fall back to the nominal rate
            t_sec = last_t + (1.0 / self.info.fps if self.info.fps else 0.04)
        return max(t_sec, 0.0)

    def close(self) -> None:
        """Release the decoder. A read stalled in another thread still holds it: then it is
        released when that read returns (releasing under it could crash the decoder)."""
        if getattr(self, "_cap", None) is None:
            return
        if not self._io.acquire(timeout=0.2):
            self._release_later = True
            return
        try:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
        finally:
            self._io.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # release the decoder even if the caller forgot to
        try:
            self.close()
        except Exception:
            pass


def end_of_frames(last_t: float, prev_t: float | None = None, fps: float = 0.0, container_sec: float = 0.0) -> float:
    """When the last frame stops showing, i.e. the true end of a video or stream.

    The last frame's time plus one frame period: the gap since the frame before it or the
    nominal ``1 / fps``, whichever is shorter (never past the end), else ``DEFAULT_FRAME_SEC``.
    The container's duration is used instead where it is consistent: after the last frame and
    within that period.
    """
    periods = [p for p in ((last_t - prev_t) if prev_t is not None else 0.0, 1.0 / fps if fps > 0 else 0.0) if p > 0]
    end = last_t + (min(periods) if periods else DEFAULT_FRAME_SEC)
    if container_sec and last_t < container_sec <= end + 1e-6:
        end = container_sec
    return end


def too_long(name: str, max_sec: float, duration_sec: float | None = None) -> VideoError:
    length = f"{duration_sec:.0f}s long" if duration_sec else f"longer than {max_sec:g}s"
    return VideoError(f"{name}: the video is {length}; at most {max_sec:g}s is accepted here")


def _truncated(path: Path | None) -> bool | None:
    """True/False where the container's own sizes tell; None where they cannot (or not a local file)."""
    if path is None:
        return None
    try:
        return container.describe(path).truncated
    except OSError:
        return None


def _why_no_frames(path: Path | None) -> str:
    return "the file is truncated" if _truncated(path) else "empty, corrupt or truncated"


def _why_not_video(path: Path) -> str:
    """A precise reason a file that FFmpeg refused is not a video we can read."""
    layout = container.describe(path)
    if layout.audio_only:
        return "has no video stream (it is an audio-only file)"
    if layout.kind == "mp4" and not layout.has_index:
        return ("its index (moov atom) is missing: the recording, copy or download did not finish, so it cannot be "
                "played")
    if layout.truncated:
        return "the file is truncated (it ends before its data does) and cannot be played"
    if layout.kind == "text":
        return "is a text file, not a video"
    return "cannot be opened as a video (not a video file, unknown format, or corrupt/truncated)"


SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _check_file(path: Path, image_ok: bool = False, special_ok: bool = False) -> bytes | None:
    """Exists, is a readable non-empty regular file, and (unless ``image_ok``) is not a still
    image; returns its first bytes. A pipe, socket or device is refused by name (its reads may
    never end, and a pipe's bytes read here would be lost) unless ``special_ok``: then None,
    nothing read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if glob.has_magic(str(path)):  # a pattern that matched nothing was kept to be named here
            raise VideoError(f"{path}: no video or image file matches this pattern") from None
        raise VideoError(f"{path}: file not found") from None
    except PermissionError:
        raise VideoError(f"{path}: permission denied (the file cannot be read)") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise VideoError(f"{path}: is a folder with no video or image files in it")
    for is_kind, kind in SPECIAL_FILES:
        if is_kind(mode):
            if special_ok:
                return None
            raise VideoError(f"{path}: is {kind}, not a regular file; only `captioner live` reads pipes, sockets "
                             f"and devices")
    try:
        head = container.read_head(path)
    except PermissionError:
        raise VideoError(f"{path}: permission denied (the file cannot be read)") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    if not image_ok:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise VideoError(f"{path}: is a still image, not a video (open it with video.open_source)")
        if image := container.image_format(head):
            raise VideoError(f"{path}: is a {image[0]} image, not a video; rename it to {path.stem}{image[1]} to "
                             f"caption it as a still image")
    return head


class ImageSource:
    """A still image as a source of one frame at t = 0 (same interface as ``VideoSource``)."""

    def __init__(self, source: str | os.PathLike):
        path = Path(source)
        self.name = str(path)
        _check_file(path, image_ok=True)
        # imdecode, not imread: imread cannot open non-ASCII paths on every platform
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise VideoError(f"{self.name}: cannot be read as an image (corrupt, truncated or not an image file)")
        height, width = image.shape[:2]
        if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
            raise VideoError(f"{self.name}: image size {width}x{height} is larger than {MAX_SIDE_PX}px a side")
        self._image: np.ndarray | None = image
        self.timeout_sec: float | None = None  # nothing left to wait for once the image is read
        self.info = VideoInfo(self.name, 0.0, 1, 0.0, width, height, is_image=True)
        self.frames_decoded, self.end_sec = 1, 0.0  # as VideoSource reports after frames(): one frame, no duration

    def frames(self, wants: Callable[[float], bool] | None = None) -> Iterator[SampledFrame]:
        if self._image is None:
            raise VideoError(f"{self.name}: frames() can be iterated only once; open the source again")
        image, self._image = self._image, None
        yield SampledFrame(index=0, t_sec=0.0, image_bgr=image if wants is None or wants(0.0) else None)

    def close(self) -> None:
        self._image = None

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


YIELD_WAIT_SEC = 0.05  # the longest the reader waits for the network to pause


class ReadAhead:
    """Decode a source in a background thread while the caller works on earlier frames.

    >>> with open_source("clip.mp4") as video, ReadAhead(video, 4.0) as frames:
    ...     for frame in frames: ...      # every frame, in order, as video.frames() yields them

    The reader thread converts only the frames a ``FrameSampler(target_fps, video.info.fps)``
    of its own takes: the same decisions the caller's sampler makes on the same timestamps (it
    must be built the same way), so no frame is converted twice or skipped wrongly. At most
    ``depth`` converted frames wait in the queue (the frames in between, not converted, travel
    with them), so memory stays bounded however far decoding runs ahead. An error of the
    reader (``VideoError``...) is raised in the caller's thread, as it was raised; leaving the
    ``with`` block (the end, an error, Ctrl-C) stops the thread and waits for it, before the
    ``VideoSource`` is closed (list ``ReadAhead`` after it in the ``with``).

    ``yield_to`` (an event set while the network is idle): while the caller already has a frame
    waiting, the reader decodes on only when the event is set (or after ``YIELD_WAIT_SEC``). With
    an export runtime on all cores, decoding beside it made its network 10-25 % slower and the
    pipeline 4-17 % slower than decoding in its pauses (OpenVINO, 8 clips, 2 cores; torch, whose
    pooling and LSTM also use the cores between passes, ran 12 % slower gated: it gets None).

    Reads are bounded in time: when the source has a ``timeout_sec`` (``open_source`` sets it)
    and the reader delivers nothing for that long (a stalled mount or stream), iteration raises
    ``VideoError`` and the stuck reader is left behind (it cannot be interrupted; it ends, and
    the decoder is released, if its read ever returns). ``depth=0`` decodes in the caller's
    thread instead (the same frames, no thread), which only a source without a time bound allows.
    """

    _END = object()

    def __init__(self, video: VideoSource | ImageSource, target_fps: float | None, depth: int = CaptionOptions.read_ahead,
                 yield_to: threading.Event | None = None):
        self.video = video
        self.yield_to = yield_to
        self.sampler = FrameSampler(target_fps, video.info.fps)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="captioner-read-ahead", daemon=True)
        self._pending: list[SampledFrame] = []
        self._done = False
        self._stalled = False  # given up on: the reader is stuck in a read
        self.timeout_sec = getattr(video, "timeout_sec", None)  # a source without a bound: wait as long as it takes
        self._inline = self._inline_frames() if depth <= 0 and not self.timeout_sec else None
        self._delivered = 0  # frames handed to the caller

    def _inline_frames(self) -> Iterator[SampledFrame]:
        for frame in self.video.frames(wants=self.sampler.wants):
            self.sampler.take(frame.t_sec)
            yield frame

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        frames = self.video.frames(wants=self.sampler.wants)
        chunk: list[SampledFrame] = []
        try:
            for frame in frames:
                self.sampler.take(frame.t_sec)  # as the caller's sampler will, for every frame
                chunk.append(frame)
                if frame.image_bgr is not None:  # a converted frame closes a chunk
                    if not self._put(chunk):
                        return
                    chunk = []
                if self._stop.is_set():
                    return
                if self.yield_to is not None and self._queue.qsize():
                    # the caller has a frame to go on with: decode on when the network is not
                    # filling the cores (bounded, so a busy network only slows decoding)
                    self.yield_to.wait(YIELD_WAIT_SEC)
            self._put(chunk + [self._END])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            if chunk:  # the frames before the error first, as frames() yielded them
                self._put(chunk)
            self._put(exc)
        finally:
            frames.close()

    def __enter__(self) -> "ReadAhead":
        if self._inline is None:
            self._thread.start()
        return self

    def __iter__(self) -> Iterator[SampledFrame]:
        return self

    def __next__(self) -> SampledFrame:
        if self._inline is not None:
            return next(self._inline)
        waiting_since = time.monotonic()
        while not self._pending:
            if self._done:
                raise StopIteration
            try:
                item = self._queue.get(timeout=0.5 if not self.timeout_sec else min(0.5, self.timeout_sec))
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True  # the reader ended without a word (it was stopped)
                elif self.timeout_sec and time.monotonic() - waiting_since >= self.timeout_sec:
                    self._done = self._stalled = True
                    _left_behind.add(self._thread)
                    raise VideoError(no_data(self.video.name, self.timeout_sec,
                                             f"reading frames (after {self._delivered} frames)")) from None
                continue
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if item and item[-1] is self._END:
                self._done, item = True, item[:-1]
            self._pending = list(reversed(item))
        self._delivered += 1
        return self._pending.pop()

    def close(self) -> None:
        """Stop the reader and wait for it (the ``with`` block does this)."""
        if self._inline is not None:
            self._inline.close()
        self._stop.set()
        started = time.monotonic()
        while self._thread.is_alive() and not self._stalled:
            try:
                while True:
                    self._queue.get_nowait()  # unblock a reader waiting to put
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)
            if self.timeout_sec and time.monotonic() - started > self.timeout_sec:
                log.warning("%s: the reader is stuck in a read; left behind", self.video.name)
                break
        self._done = True

    def __exit__(self, *exc) -> None:
        self.close()


T = TypeVar("T")
_left_behind: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()  # threads given up on in a read
LEFT_BEHIND_EXIT_WAIT_SEC = 3.0


@atexit.register
def _let_left_behind_reads_end() -> None:
    """At exit, give reads given up on a moment to end (FFmpeg's own limit, set a second past
    ours, ends network waits): a thread still inside the decoder as the process ends aborts it."""
    deadline = time.monotonic() + LEFT_BEHIND_EXIT_WAIT_SEC
    for thread in list(_left_behind):
        thread.join(max(0.0, deadline - time.monotonic()))


def no_data(name: str, timeout_sec: float, doing: str) -> str:
    return (f"{name}: no data for {timeout_sec:g}s while {doing} (a stalled network mount or stream, or a source "
            f"that never sends anything); gave up (--read-timeout sets how long to wait)")


def within(timeout_sec: float | None, name: str, doing: str, call: Callable[[], T],
           on_late: Callable[[T], None] | None = None) -> T:
    """``call()``'s answer, or ``VideoError`` when none comes within ``timeout_sec`` (None or 0:
    wait as long as it takes). A blocked read cannot be interrupted, so the call runs in a
    daemon thread that is left behind; ``on_late`` gets its answer if it ever comes (to close
    what it opened)."""
    if not timeout_sec:
        return call()
    box: dict = {}
    lock, done = threading.Lock(), threading.Event()

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            box["error"] = exc
        with lock:
            done.set()
            late = box.get("late", False)
        if late and "value" in box and on_late is not None:
            on_late(box["value"])

    thread = threading.Thread(target=run, name="captioner-bounded-open", daemon=True)
    thread.start()
    if not done.wait(timeout_sec):
        with lock:
            if not done.is_set():
                box["late"] = True
                _left_behind.add(thread)
                raise VideoError(no_data(name, timeout_sec, doing))
    if "error" in box:
        raise box["error"]
    return box["value"]


def open_source(source: Source, timeout_sec: float | None = None, *, live: bool = False) -> VideoSource | ImageSource:
    """A still image (by extension) as a one-frame ``ImageSource``, anything else as a
    ``VideoSource``; ``live`` opens everything as a ``VideoSource`` and accepts pipes, sockets
    and devices. Opening, and later every read of frames through ``ReadAhead``, gives up after
    ``timeout_sec`` without data (``VideoError``; None waits as long as it takes)."""
    def open_it() -> VideoSource | ImageSource:
        if not live and isinstance(source, (str, os.PathLike)) and not is_url(source) \
                and _webcam_index(source) is None and is_image_file(Path(source)):
            return ImageSource(source)
        return VideoSource(source, special_ok=live, timeout_sec=timeout_sec)

    return within(timeout_sec, str(source), "opening it", open_it, on_late=lambda late: late.close())


def check_source(source: Source, timeout_sec: float | None = None) -> None:
    """The checks that need no model, before any is loaded: a local file exists, is a readable,
    regular, not empty file, and opens as what its name says (a video's header is read, no
    frame decoded); a URL answers. Webcams are left to the reader. Raises ``VideoError``
    naming the source, also when it gives no answer within ``timeout_sec``."""
    if _webcam_index(source) is not None:
        return
    with open_source(source, timeout_sec):
        pass


def probe(source: Source, timeout_sec: float | None = None) -> VideoInfo:
    """Open a source just to report its fps, frame count, duration and size."""
    with open_source(source, timeout_sec) as video:
        return video.info


def sample_frames(source: Source, target_fps: float | None = DEFAULT_ANALYSIS_FPS) -> Iterator[SampledFrame]:
    """Yield the ``SampledFrame``s a ``FrameSampler`` at ``target_fps`` takes from ``source``;
    the decoder is released at the end."""
    with VideoSource(source) as video:
        sampler = FrameSampler(target_fps, video.info.fps)
        for frame in video.frames(wants=sampler.wants):
            if sampler.take(frame.t_sec):
                yield frame
