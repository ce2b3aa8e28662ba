"""Stage 3: per-frame features, and an on-disk cache so training never recomputes perception.

A ``FrameFeatures`` is everything later stages know about one sampled frame. The cache stores
one ``.npz`` per (video content, YOLO weights, sampling settings): change any of the three and
the key changes, so a stale entry is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .perception import Detections, Perception, file_sha256
from .video import DEFAULT_ANALYSIS_FPS, SampledFrame, VideoInfo, VideoSource

log = logging.getLogger(__name__)

CACHE_ENV = "CAPTIONER_CACHE"
CACHE_FORMAT = 1


@dataclass
class FrameFeatures:
    """One analysed frame. ``embedding``: (D,) float32 pooled YOLO neck features."""

    t_sec: float
    frame_index: int
    detections: Detections  # every detection, with its track id (-1 where unconfirmed)
    embedding: np.ndarray

    @property
    def tracks(self) -> Detections:
        """The detections that belong to a confirmed track."""
        return self.detections.tracked


@dataclass
class VideoFeatures:
    """All analysed frames of one video, in time order, plus what produced them."""

    info: VideoInfo
    frames: list[FrameFeatures]
    settings: dict = field(default_factory=dict)

    @property
    def times_sec(self) -> np.ndarray:
        return np.array([f.t_sec for f in self.frames], np.float64)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "captioner" / "features")


def analyse_frames(
    frames: Iterable[SampledFrame], perception: Perception, *, analysis_fps: float, batch_size: int = 1
) -> Iterator[FrameFeatures]:
    """Run perception over frames in order with ONE tracker for this stream; frames are
    dropped as soon as they are analysed, so memory does not grow with video length."""
    tracker = perception.new_tracker(frame_rate=analysis_fps)
    batch: list[SampledFrame] = []

    def flush() -> Iterator[FrameFeatures]:
        outputs = perception.detect([f.image_bgr for f in batch], tracker)
        for frame, (detections, embedding) in zip(batch, outputs):
            yield FrameFeatures(frame.t_sec, frame.index, detections, embedding)
        batch.clear()

    for frame in frames:
        batch.append(frame)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


class FeatureCache:
    """``.npz`` files keyed by video content hash + weights hash + settings."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()

    @staticmethod
    def key(video_sha256: str, weights_sha256: str, settings: dict) -> str:
        blob = json.dumps({"video": video_sha256, "weights": weights_sha256, "settings": settings,
                           "format": CACHE_FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path_for(self, video_path: str | os.PathLike, key: str) -> Path:
        return self.directory / f"{Path(video_path).stem}-{key}.npz"

    def load(self, path: Path) -> VideoFeatures | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                offsets = data["offsets"]
                frames = []
                for i, (t_sec, index) in enumerate(zip(data["t_sec"], data["frame_index"])):
                    lo, hi = offsets[i], offsets[i + 1]
                    detections = Detections(data["box_xyxy"][lo:hi], data["confidence"][lo:hi],
                                            data["class_id"][lo:hi], data["track_id"][lo:hi])
                    frames.append(FrameFeatures(float(t_sec), int(index), detections,
                                                data["embedding"][i].astype(np.float32)))
        except Exception as exc:  # a damaged cache entry is recomputed, never trusted
            log.warning("feature cache %s is unreadable (%s); recomputing", path, exc)
            return None
        return VideoFeatures(VideoInfo(**meta["info"]), frames, meta["settings"])

    def save(self, path: Path, features: VideoFeatures) -> None:
        frames = features.frames
        counts = [len(f.detections) for f in frames]
        dim = frames[0].embedding.shape[0] if frames else 0

        def cat(attr: str, shape: tuple, dtype) -> np.ndarray:
            parts = [getattr(f.detections, attr) for f in frames]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

        arrays = {
            "meta": np.array(json.dumps({"info": features.info.__dict__, "settings": features.settings})),
            "t_sec": np.array([f.t_sec for f in frames], np.float64),
            "frame_index": np.array([f.frame_index for f in frames], np.int64),
            "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "box_xyxy": cat("box_xyxy", (0, 4), np.float32),
            "confidence": cat("confidence", (0,), np.float32),
            "class_id": cat("class_id", (0,), np.int32),
            "track_id": cat("track_id", (0,), np.int32),
            # float16 halves the cache; pooled activations need no more precision
            "embedding": np.stack([f.embedding for f in frames]).astype(np.float16) if frames else np.zeros((0, dim), np.float16),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez_compressed(handle, **arrays)
            os.replace(tmp, path)  # atomic: readers never see a half-written entry
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def extract_features(
    video_path: str | os.PathLike,
    perception: Perception,
    *,
    analysis_fps: float = DEFAULT_ANALYSIS_FPS,
    cache: FeatureCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[VideoFeatures, bool]:
    """Features of a whole video file, from the cache when possible.

    Returns ``(features, cache_hit)``. ``progress(done_frames, total_frames)`` is called as
    source frames go by (total is the container's frame count).
    """
    settings = {**perception.settings(), "analysis_fps": analysis_fps}
    path = None
    if cache is not None:
        key = FeatureCache.key(file_sha256(video_path), perception.backbone.weights_sha256 or perception.weights_path, settings)
        path = cache.path_for(video_path, key)
        cached = cache.load(path)
        if cached is not None:
            # same content and settings, perhaps a copy at another path: report the file asked for
            cached.info = replace(cached.info, source=str(video_path))
            return cached, True
    with VideoSource(video_path, target_fps=analysis_fps) as video:
        def frames() -> Iterator[SampledFrame]:
            for frame in video.frames():
                if progress:
                    progress(frame.index + 1, video.info.frame_count)
                yield frame

        frame_features = list(analyse_frames(frames(), perception, analysis_fps=analysis_fps))
        info = video.info
    features = VideoFeatures(info, frame_features, settings)
    if cache is not None and path is not None:
        cache.save(path, features)
    return features, False
