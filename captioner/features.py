"""Stage 3: per-frame features of one source, and an on-disk cache so training never recomputes
perception.

``SourcePerception`` is the perception half of a stream: the frame sampler and the tracker of
ONE source. Every frame's timestamp goes through it; the frames the sampler takes (the analysis
rate) get one YOLO pass and the tracker, and come out as ``FrameFeatures`` - everything later
stages know about a frame. Offline files, live sessions and the training cache all go through
it, so they analyse the same frames the same way.

The cache stores one ``.npz`` per (video content, YOLO weights, sampling settings): change any
of the three and the key changes, so a stale entry is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .fileio import atomic_output, file_sha256
from .boxes import box_iou
from .options import CaptionOptions, ProgressCallback
from .perception import Detections, FrameFeatures, Perception
from .video import DEFAULT_ANALYSIS_FPS, FrameSampler, ReadAhead, SampledFrame, VideoInfo, open_source

log = logging.getLogger(__name__)

CACHE_ENV = "CAPTIONER_CACHE"
CACHE_FORMAT = 4  # 2: per-box appearance, spatial cells, one class per track; 3: box colours; 4: 6x6 cells


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


class SourcePerception:
    """The frame sampler and the tracker of ONE source (never share one between sources).

    ``push(image, t_sec)`` for every frame, in order: a frame the sampler takes (at
    ``analysis_fps``) gets a YOLO pass and the tracker and is returned as ``FrameFeatures``;
    any other frame returns None. ``wants(t_sec)`` tells beforehand whether a frame will be
    taken, so a decoder need not convert the others. ``display_detections`` gives boxes for a
    frame that is not analysed (live views draw every frame), labelled with the track ids of
    the last analysed frame; it never touches the tracker, so what is analysed stays the same.
    """

    def __init__(self, perception: Perception, analysis_fps: float, source_fps: float | None = None):
        self.perception = perception
        self.sampler = FrameSampler(analysis_fps, source_fps)
        self.tracker = perception.new_tracker(frame_rate=analysis_fps)
        self.last: FrameFeatures | None = None

    def wants(self, t_sec: float) -> bool:
        return self.sampler.wants(t_sec)

    def push(self, image_bgr: np.ndarray | None, t_sec: float, frame_index: int = -1) -> FrameFeatures | None:
        return self.push_many([SampledFrame(frame_index, t_sec, image_bgr)])[0]

    def push_many(self, frames: Sequence[SampledFrame]) -> list[FrameFeatures | None]:
        """``push`` for consecutive frames: the ones the sampler takes go through YOLO in ONE
        batch, then through the tracker one by one, in order; the same features as pushing
        them one at a time (up to float rounding: a batched convolution may sum in another order)."""
        taken = [self.sampler.take(f.t_sec) for f in frames]
        images = [f.image_bgr for f, take in zip(frames, taken) if take]
        if any(image is None for image in images):
            t_sec = next(f.t_sec for f, take in zip(frames, taken) if take and f.image_bgr is None)
            raise ValueError(f"frame at {t_sec:.3f}s is analysed but no image was given (decode frames that wants() "
                             f"accepts)")
        times = [(f.t_sec, f.index) for f, take in zip(frames, taken) if take]
        seen = iter(self.perception.detect(images, self.tracker, times=times))
        out: list[FrameFeatures | None] = []
        for take in taken:
            if take:
                self.last = next(seen)
            out.append(self.last if take else None)
        return out

    def display_detections(self, image_bgr: np.ndarray) -> Detections:
        detections = self.perception.detect([image_bgr], features=False)[0].detections
        if self.last is not None:
            detections.track_id[:] = match_track_ids(detections, self.last.detections.tracked)
        return detections


def match_track_ids(detections: Detections, tracked: Detections, min_iou: float = 0.3) -> np.ndarray:
    """(N,) track ids for ``detections`` from the same-class tracked box they overlap most
    (IoU >= ``min_iou``), -1 where none: labels for frames between analysed ones."""
    ids = np.full(len(detections), -1, np.int32)
    if not len(detections) or not len(tracked):
        return ids
    iou = box_iou(detections.box_xyxy, tracked.box_xyxy)
    iou[detections.class_id[:, None] != tracked.class_id[None, :]] = 0.0
    best = iou.argmax(axis=1)
    hit = iou[np.arange(len(detections)), best] >= min_iou
    ids[hit] = tracked.track_id[best[hit]]
    return ids


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
            with np.load(path, allow_pickle=False) as npz:
                data = {name: npz[name] for name in npz.files}  # each read once (npz decompresses per access)
            meta = json.loads(str(data["meta"]))
            offsets = data["offsets"]
            appearance = data["appearance"].astype(np.float32)
            colours = data["colours"]
            frames = []
            for i, (t_sec, index) in enumerate(zip(data["t_sec"], data["frame_index"])):
                lo, hi = offsets[i], offsets[i + 1]
                detections = Detections(data["box_xyxy"][lo:hi], data["confidence"][lo:hi], data["class_id"][lo:hi],
                                        data["track_id"][lo:hi], appearance[lo:hi], colours[lo:hi])
                frames.append(FrameFeatures(float(t_sec), int(index), detections, data["embedding"][i].astype(np.float32),
                                            data["cells"][i].astype(np.float32)))
        except Exception as exc:  # a damaged cache entry is recomputed, never trusted
            log.warning("feature cache %s is unreadable (%s); recomputing", path, exc)
            return None
        return VideoFeatures(VideoInfo(**meta["info"]), frames, meta["settings"])

    def save(self, path: Path, features: VideoFeatures) -> None:
        frames = features.frames
        counts = [len(f.detections) for f in frames]
        dim = frames[0].embedding.shape[0] if frames else 0
        cells_shape = frames[0].cells.shape if frames else (0, 0)

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
            "cells": np.stack([f.cells for f in frames]).astype(np.float16) if frames else np.zeros((0, *cells_shape), np.float16),
            "appearance": cat("appearance", (0, dim), np.float16),
            "colours": np.concatenate([np.zeros(len(f.detections), np.uint16) if f.detections.colours is None
                                       else f.detections.colours for f in frames]).astype(np.uint16)
                       if frames else np.zeros(0, np.uint16),
        }
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:  # readers never see a half-written entry
            np.savez_compressed(handle, **arrays)


def extract_features(
    video_path: str | os.PathLike,
    perception: Perception,
    *,
    analysis_fps: float = DEFAULT_ANALYSIS_FPS,
    cache: FeatureCache | None = None,
    progress: ProgressCallback | None = None,
    timeout_sec: float | None = CaptionOptions.read_timeout_sec,
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
    with open_source(video_path, timeout_sec) as video, ReadAhead(video, analysis_fps) as frames:
        info = video.info
        stream = SourcePerception(perception, analysis_fps, info.fps)
        frame_features = []
        for frame in frames:
            if progress:
                progress(frame.index + 1, info.frame_count)
            analysed = stream.push(frame.image_bgr, frame.t_sec, frame.index)
            if analysed is not None:
                frame_features.append(analysed)
    features = VideoFeatures(info, frame_features, settings)
    if cache is not None and path is not None:
        try:
            cache.save(path, features)
        except OSError as exc:  # a full disk costs the cache entry, never the features (nothing partial is kept)
            log.warning("feature cache: could not save %s (%s); continuing without caching it", path.name,
                        exc.strerror or exc)
    return features, False
