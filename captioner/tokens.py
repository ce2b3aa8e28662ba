"""Frame tokens: the vector the LSTM reads for each analysed frame, and segment object slots.

token = [ pooled YOLO features (D) | per-class log-count (80) | per-class max confidence (80)
          | per-class sqrt area share (80) | per-class mean horizontal velocity (80)
          | per-class mean size growth (80) | has-visual flag (1) ]

The detection and motion parts are what a caption may be grounded in; the pooled features add
appearance. Human-caption training pairs have no video, so their tokens are synthesised from
pseudo-detections with the visual part zeroed and the flag at 0 (modality dropout; see
``training/pairs.synthetic_tokens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .coco import NUM_CLASSES
from .features import FrameFeatures

C = NUM_CLASSES
MAX_SPEED = 2.0  # frame-widths per second; faster is tracking noise
MAX_GROWTH = 2.0  # log-area per second


def token_dim(embedding_dim: int) -> int:
    return embedding_dim + 5 * C + 1


@dataclass
class TokenLayout:
    embedding_dim: int

    @property
    def counts(self) -> slice:
        return slice(self.embedding_dim, self.embedding_dim + C)

    @property
    def conf(self) -> slice:
        return slice(self.embedding_dim + C, self.embedding_dim + 2 * C)

    @property
    def area(self) -> slice:
        return slice(self.embedding_dim + 2 * C, self.embedding_dim + 3 * C)

    @property
    def velocity(self) -> slice:
        return slice(self.embedding_dim + 3 * C, self.embedding_dim + 4 * C)

    @property
    def growth(self) -> slice:
        return slice(self.embedding_dim + 4 * C, self.embedding_dim + 5 * C)

    @property
    def flag(self) -> int:
        return self.embedding_dim + 5 * C

    @property
    def dim(self) -> int:
        return token_dim(self.embedding_dim)


@dataclass
class FrameTokenizer:
    """Turns FrameFeatures into tokens, one stream at a time (it remembers where each track
    was in the previous frame to measure motion). Create one per video / live session."""

    frame_size: tuple[int, int]  # (width, height) in pixels
    embedding_dim: int
    _last: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # track -> (t, cx, log area)

    def __call__(self, frame: FrameFeatures) -> np.ndarray:
        layout = TokenLayout(self.embedding_dim)
        token = np.zeros(layout.dim, np.float32)
        token[: self.embedding_dim] = frame.embedding
        token[layout.flag] = 1.0
        width, height = self.frame_size
        d = frame.detections
        if len(d):
            cls = d.class_id.astype(int)
            counts = np.bincount(cls, minlength=C)[:C]
            token[layout.counts] = np.log1p(counts)
            np.maximum.at(token[layout.conf], cls, d.confidence)
            box = d.box_xyxy
            areas = np.clip((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / float(width * height), 0, 1)
            area_sum = np.bincount(cls, weights=areas, minlength=C)[:C]
            token[layout.area] = np.sqrt(np.clip(area_sum, 0, 1))
        velocity_sum, growth_sum, moving = np.zeros(C), np.zeros(C), np.zeros(C)
        seen: dict[int, tuple[float, float, float]] = {}
        for box, c, tid in zip(d.box_xyxy, d.class_id, d.track_id):
            if tid < 0:
                continue
            cx = float(box[0] + box[2]) / 2 / width
            log_area = math.log(max(float((box[2] - box[0]) * (box[3] - box[1])), 1.0) / (width * height))
            seen[int(tid)] = (frame.t_sec, cx, log_area)
            if int(tid) in self._last:
                t0, cx0, la0 = self._last[int(tid)]
                dt = frame.t_sec - t0
                if dt > 1e-3:
                    velocity_sum[c] += np.clip((cx - cx0) / dt, -MAX_SPEED, MAX_SPEED)
                    growth_sum[c] += np.clip((log_area - la0) / dt, -MAX_GROWTH, MAX_GROWTH)
                    moving[c] += 1
        self._last = seen
        has = moving > 0
        token[layout.velocity][has] = (velocity_sum[has] / moving[has]).astype(np.float32)
        token[layout.growth][has] = (growth_sum[has] / moving[has]).astype(np.float32)
        return token


def tokens_for_frames(frames: list[FrameFeatures], frame_size: tuple[int, int], embedding_dim: int) -> np.ndarray:
    """(T, token_dim) for a whole clip, in order."""
    tokenizer = FrameTokenizer(frame_size, embedding_dim)
    if not frames:
        return np.zeros((0, token_dim(embedding_dim)), np.float32)
    return np.stack([tokenizer(f) for f in frames])


# ---- a window's objects: one per class seen; the decoder attends over them -----------------------

# log1p(mean count when present), max confidence, mean sqrt area share, share of frames present,
# share of frames with a confirmed track, has appearance (1 where ``appearance`` is real)
SLOT_FEATURES = 6
SLOT_CONF, SLOT_AREA, SLOT_SHARE, SLOT_TRACKED = 1, 2, 3, 4


@dataclass
class WindowObjects:
    """The objects of a window (or photo), one per class seen, most salient first.

    class_ids:  (K,) int64 COCO classes
    features:   (K, SLOT_FEATURES) float32 evidence statistics (see SLOT_FEATURES)
    appearance: (K, D) float32 what they look like: the RoI features of the class's boxes,
                averaged with weights confidence x area (zeros where unknown)
    """

    class_ids: np.ndarray
    features: np.ndarray
    appearance: np.ndarray

    def __len__(self) -> int:
        return len(self.class_ids)

    def select(self, keep: np.ndarray) -> "WindowObjects":
        return WindowObjects(self.class_ids[keep], self.features[keep], self.appearance[keep])


def window_objects(tokens: np.ndarray, embedding_dim: int, detections: list | None = None) -> WindowObjects:
    """Objects of a window from its tokens (T, token_dim) and, when known, its frames'
    ``Detections`` (for track shares and appearance; corpus pairs have neither)."""
    layout = TokenLayout(embedding_dim)
    counts = np.expm1(tokens[:, layout.counts])  # (T, C)
    present = counts > 0.5
    share = present.mean(axis=0) if len(tokens) else np.zeros(C)
    classes = np.flatnonzero(share > 0)
    if len(classes) == 0:
        return WindowObjects(np.zeros(0, np.int64), np.zeros((0, SLOT_FEATURES), np.float32),
                             np.zeros((0, embedding_dim), np.float32))
    conf = tokens[:, layout.conf].max(axis=0)
    area = tokens[:, layout.area]
    mean_count = np.array([counts[present[:, c], c].mean() for c in classes])
    mean_area = np.array([area[present[:, c], c].mean() for c in classes])
    tracked = np.zeros(C)
    appearance = np.zeros((C, embedding_dim), np.float32)
    has_appearance = np.zeros(C, np.float32)
    if detections:
        weights = np.zeros(C)
        for d in detections:
            for c in set(d.class_id[d.track_id >= 0].tolist()):
                tracked[c] += 1.0 / len(detections)
            if d.appearance is not None and len(d):
                box = d.box_xyxy
                w = d.confidence * np.sqrt(np.clip((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), 1.0, None))
                np.add.at(appearance, d.class_id, d.appearance * w[:, None])
                np.add.at(weights, d.class_id, w)
        seen = weights > 0
        appearance[seen] /= weights[seen, None]
        has_appearance[seen] = 1.0
    feats = np.stack([np.log1p(mean_count), conf[classes], mean_area, share[classes], tracked[classes],
                      has_appearance[classes]], axis=1).astype(np.float32)
    salience = share[classes] * (mean_area + 0.05) * conf[classes]
    order = np.argsort(-salience, kind="stable")
    return WindowObjects(classes[order].astype(np.int64), feats[order], appearance[classes[order]])


def salient_classes(objects: WindowObjects, max_classes: int = 2, min_share: float = 0.5,
                    min_conf: float = 0.5) -> list[int]:
    """The objects a good caption should name: seen in at least half the window's frames with a
    confident detection, the top ``max_classes`` by salience (objects are already ordered)."""
    keep = [int(c) for c, f in zip(objects.class_ids, objects.features) if f[SLOT_SHARE] >= min_share and f[SLOT_CONF] >= min_conf]
    return keep[:max_classes]


def window_cells(cells: list[np.ndarray | None]) -> np.ndarray | None:
    """The mean of a window's frames' grid cells (G, C), or None when no frame has them."""
    known = [c for c in cells if c is not None]
    return np.mean(known, axis=0).astype(np.float32) if known else None
