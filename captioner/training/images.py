"""Captioned photos (Flickr8k in ../shared/data/images/flickr8k): real pixels next to human
sentences, the caption decoder's main teacher.

Each photo goes through our own perception once (one YOLO pass: detections, pooled features,
cells, per-box appearance) and is cached like a video of one frame. 6,216 of the photos exist
only as 224 x 224 copies squashed from their original aspect ratio; they are resized back to
their original width and height first, so the detector sees objects in their true shapes, as
it will in users' photos and videos.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import CaptionerError
from ..features import FeatureCache, FrameFeatures, VideoFeatures
from ..fileio import file_sha256
from ..options import ProgressCallback
from ..perception import Perception
from ..video import VideoInfo
from ..vocab import tokenize

log = logging.getLogger(__name__)


@dataclass
class CaptionedPhoto:
    name: str  # the Flickr8k id, e.g. "1000268201_693b08cb0e.jpg"
    split: str  # train / dev / unassigned
    frame_size: tuple[int, int]  # (width, height) the detector saw
    frame: FrameFeatures
    captions: list[list[str]]  # the 5 human captions, tokenised
    raw_captions: list[str]


def read_flickr8k(folder: Path) -> list[dict]:
    """The rows of ``captions.jsonl`` (id, file, width, height, split, squashed_224, captions)."""
    index = Path(folder) / "captions.jsonl"
    if not index.is_file():
        raise CaptionerError(f"{index}: not found (expected Flickr8k's captions.jsonl; see ../shared/data/SOURCES.md)")
    return [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_photo(path: Path, row: dict) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CaptionerError(f"{path}: cannot be read as an image")
    if row.get("squashed_224"):  # undo the squash: back to the original aspect ratio
        image = cv2.resize(image, (int(row["width"]), int(row["height"])), interpolation=cv2.INTER_CUBIC)
    return image


def photo_features(path: Path, row: dict, perception: Perception, cache: FeatureCache) -> FrameFeatures:
    """One photo's features, from the cache when possible (key: file content, weights, settings)."""
    settings = {**perception.settings(), "photo": True, "resize_to": [row["width"], row["height"]] if row.get("squashed_224") else None}
    key = FeatureCache.key(file_sha256(path), perception.backbone.weights_sha256 or perception.weights_path, settings)
    entry = cache.path_for(path, key)
    cached = cache.load(entry)
    if cached is not None and len(cached.frames) == 1:
        return cached.frames[0]
    image = load_photo(path, row)
    frame, = perception.detect([image])  # a photo: one frame at t = 0
    info = VideoInfo(str(path), 0.0, 1, 0.0, image.shape[1], image.shape[0], is_image=True)
    cache.save(entry, VideoFeatures(info, [frame], settings))
    return frame


def load_photos(folder: Path, perception: Perception, *, splits: tuple[str, ...] = ("train", "dev"),
                cache: FeatureCache | None = None, limit: int | None = None,
                progress: ProgressCallback | None = None) -> list[CaptionedPhoto]:
    """Every photo of ``splits`` with its features and captions; unreadable photos are skipped with a warning."""
    cache = cache or FeatureCache()
    rows = [r for r in read_flickr8k(folder) if r["split"] in splits][:limit]
    photos = []
    for i, row in enumerate(rows):
        path = Path(folder) / row["file"]
        try:
            frame = photo_features(path, row, perception, cache)
        except Exception as exc:  # one bad photo must not stop training on the rest
            log.warning("skipping %s: %s", path, exc)
            continue
        size = (int(row["width"]), int(row["height"]))
        photos.append(CaptionedPhoto(row["id"], row["split"], size, frame, [tokenize(c) for c in row["captions"]],
                                     list(row["captions"])))
        if progress:
            progress(i + 1, len(rows))
    return photos
