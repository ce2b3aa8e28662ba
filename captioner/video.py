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

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

# FFmpeg and OpenCV print warnings for every damaged packet; our VideoError says what matters
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the log-level variables above)
import numpy as np  # noqa: E402

from .errors import OptionsError, VideoError

log = logging.getLogger(__name__)

Source = Union[str, os.PathLike, int]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif", ".ts", ".3gp", ".y4m")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_SIDE_PX = 16384  # larger frames are almost surely a corrupt header, and would not fit in memory anyway
DEFAULT_ANALYSIS_FPS = 4.0
TRUNCATED_SHARE = 0.6  # decoding ends before this share of the advertised frames and duration


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


def _is_url(source: Source) -> bool:
    return isinstance(source, str) and "://" in source


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

    def __init__(self, source: Source):
        webcam = _webcam_index(source)
        if webcam is not None:
            self.name = f"webcam {webcam}"
            self._cap = cv2.VideoCapture(webcam)
            if not self._cap.isOpened():
                raise VideoError(f"{self.name} could not be opened: no camera at that index, or it is in use / not permitted")
            self.is_live = True
        elif _is_url(source):
            self.name = str(source)
            self._cap = cv2.VideoCapture(self.name)
            if not self._cap.isOpened():
                raise VideoError(f"{self.name}: the stream could not be opened (unreachable URL or unsupported protocol)")
            self.is_live = True
        else:
            path = Path(source)
            self.name = str(path)
            _check_file(path)
            self._cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG)
            if not self._cap.isOpened():
                self._cap = cv2.VideoCapture(self.name)  # e.g. image-sequence or other backends
            if not self._cap.isOpened():
                raise VideoError(f"{self.name}: {_why_not_video(path)}")
            self.is_live = False
        self.info = self._read_info()
        self._consumed = False

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
                raise VideoError(f"{self.name}: contains no decodable video frames (empty, corrupt or truncated)")
        if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
            self.close()
            raise VideoError(f"{self.name}: frame size {width}x{height} is larger than {MAX_SIDE_PX}px a side; the header is probably corrupt")
        duration = count / fps if (count and fps) else 0.0
        return VideoInfo(self.name, fps, count, duration, width, height, self.is_live)

    def frames(self, wants: Callable[[float], bool] | None = None) -> Iterator[SampledFrame]:
        """Yield every frame in order with its true timestamp; ``image_bgr`` is decoded for the
        frames ``wants(t_sec)`` accepts (all when None) and is None for the others.

        Raises ``VideoError`` if a file yields no frame at all or stops far short of its
        advertised length (truncated).
        """
        if self._consumed:
            raise VideoError(f"{self.name}: frames() can be iterated only once; open the source again")
        self._consumed = True
        cap, info = self._cap, self.info
        index, last_t = -1, -1.0
        t_open = time.monotonic()
        while True:
            if not cap.grab():
                break
            index += 1
            t_sec = self._timestamp(index, last_t, t_open)
            last_t = t_sec
            image = None
            if wants is None or wants(t_sec):
                ok, image = cap.retrieve()
                if not ok or image is None:
                    if self.is_live:
                        continue
                    raise VideoError(f"{self.name}: frame {index} at {t_sec:.2f}s could not be decoded (corrupt file)")
            yield SampledFrame(index=index, t_sec=t_sec, image_bgr=image)
        decoded = index + 1
        if not self.is_live:
            if decoded == 0:
                raise VideoError(f"{self.name}: no frame could be decoded (corrupt or truncated file)")
            # Containers over-report frame counts (duplicate packets, doubled AVI counts), so
            # only stopping far short in BOTH frames and time is taken as truncation.
            ended_early = info.duration_sec and last_t < TRUNCATED_SHARE * info.duration_sec
            if info.frame_count and decoded < TRUNCATED_SHARE * info.frame_count and ended_early:
                raise VideoError(
                    f"{self.name}: truncated or corrupt: decoding stopped after {decoded} of {info.frame_count} frames "
                    f"({last_t:.1f}s of {info.duration_sec:.1f}s)"
                )

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
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # release the decoder even if the caller forgot to
        try:
            self.close()
        except Exception:
            pass


# leading bytes of common audio-only containers
_AUDIO_MAGIC = ((0, b"RIFF", 8, b"WAVE"), (0, b"ID3"), (0, b"fLaC"), (0, b"OggS"), (4, b"ftypM4A"), (0, b"\xff\xfb"), (0, b"\xff\xf3"))


def _why_not_video(path: Path) -> str:
    """A precise reason a file that FFmpeg refused is not a video we can read."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    for rule in _AUDIO_MAGIC:
        if all(head[rule[i]:rule[i] + len(rule[i + 1])] == rule[i + 1] for i in range(0, len(rule), 2)):
            return "has no video stream (it is an audio-only file)"
    try:
        head.decode("utf-8")
        if head and all(c >= 9 for c in head):
            return "is a text file, not a video"
    except UnicodeDecodeError:
        pass
    return "cannot be opened as a video (not a video file, unknown format, or corrupt/truncated)"


def _check_file(path: Path, image_ok: bool = False) -> None:
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_EXTENSIONS and not image_ok:
        raise VideoError(f"{path}: is a still image, not a video (open it with video.open_source)")


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
        self.info = VideoInfo(self.name, 0.0, 1, 0.0, width, height, is_image=True)

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


def open_source(source: Source) -> VideoSource | ImageSource:
    """A still image (by extension) as a one-frame ``ImageSource``, anything else as a ``VideoSource``."""
    if isinstance(source, (str, os.PathLike)) and not _is_url(source) and _webcam_index(source) is None \
            and is_image_file(Path(source)):
        return ImageSource(source)
    return VideoSource(source)


def probe(source: Source) -> VideoInfo:
    """Open a source just to report its fps, frame count, duration and size."""
    with open_source(source) as video:
        return video.info


def sample_frames(source: Source, target_fps: float | None = DEFAULT_ANALYSIS_FPS) -> Iterator[SampledFrame]:
    """Yield the ``SampledFrame``s a ``FrameSampler`` at ``target_fps`` takes from ``source``;
    the decoder is released at the end."""
    with VideoSource(source) as video:
        sampler = FrameSampler(target_fps, video.info.fps)
        for frame in video.frames(wants=sampler.wants):
            if sampler.take(frame.t_sec):
                yield frame
