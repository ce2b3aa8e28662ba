"""Stage 4c: one decoder slot per tracked object, with how it moved - motion into the model.

The class slots of ``tokens.window_objects`` say *what* is in a window (one per class); they
average motion away. A track slot keeps one object's own motion over the window, measured from
the one YOLO pass the same way ``motion.py`` measures it for the verb evidence: signed speed
across and down the frame, growth (toward / away from the camera), path, posture and limb change,
where it is, whether it was there at the start and still at the end, what it rides. So the
decoder can learn "walks toward the camera", "crosses the street", "drives past" from windows
whose captions say so.

A photo (or any single frame) gives one still slot per detection: same layout, motion zero and
the ``has_motion`` flag off, so what photos teach about objects carries over to video windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .boxes import share_of_smaller
from .events import TimedDetections, _steady
from .motion import ANIMATE_IDS, ON_SHARE, RIDDEN_IDS

# signed horizontal / vertical centre speed (frame widths, heights per s), log1p body speed (box
# heights/s), log1p net path (box heights), signed growth d log(area)/dt (> 0: toward the camera),
# posture change, limb motion, share of the window's frames it is seen in, seen in the first
# frame, seen in the last frame, mean centre x and y (frame units), sqrt area share, rides
# something, has motion (>= 2 frames tracked), best confidence
TRACK_FEATURES = 17
MAX_TRACK_SLOTS = 6  # the most salient tracks of a window; a crowd's 30 walkers say no more than 6
_SPEED_CLIP, _GROWTH_CLIP, _LIMB_CLIP = 1.0, 2.0, 3.0  # per s: beyond these it is a cut or a tracker jump


@dataclass
class TrackSlots:
    """The tracks of a window (or the boxes of a photo), most salient first.

    class_ids:  (K,) int64 COCO class of each track
    features:   (K, TRACK_FEATURES) float32 (see ``TRACK_FEATURES``)
    appearance: (K, D) float32 the track's RoI features averaged over its boxes (zeros where unknown)
    track_ids:  (K,) int64 the tracker's ids (-1 for a photo's boxes)
    """

    class_ids: np.ndarray
    features: np.ndarray
    appearance: np.ndarray
    track_ids: np.ndarray

    @classmethod
    def empty(cls, embedding_dim: int) -> "TrackSlots":
        return cls(np.zeros(0, np.int64), np.zeros((0, TRACK_FEATURES), np.float32),
                   np.zeros((0, embedding_dim), np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.class_ids)

    def of_classes(self, class_ids, limit: int = MAX_TRACK_SLOTS) -> "TrackSlots":
        """Only tracks of ``class_ids`` (the classes that pass the evidence bar), at most ``limit``."""
        keep = np.flatnonzero(np.isin(self.class_ids, np.asarray(class_ids, np.int64)))[:limit]
        return TrackSlots(self.class_ids[keep], self.features[keep], self.appearance[keep], self.track_ids[keep])

    def without_appearance(self) -> "TrackSlots":
        return TrackSlots(self.class_ids, self.features, np.zeros_like(self.appearance), self.track_ids)


def track_slots(frames: Sequence[TimedDetections], frame_size: tuple[int, int], embedding_dim: int,
                limit: int = 4 * MAX_TRACK_SLOTS) -> TrackSlots:
    """Slots for the confirmed tracks of ``frames`` (a video window) or, for one frame without
    track ids (a photo), for each of its boxes. At most ``limit`` kept (before the evidence bar
    picks classes: ``TrackSlots.of_classes``)."""
    width, height = float(frame_size[0]), float(frame_size[1])
    if width <= 0 or height <= 0 or not frames:
        return TrackSlots.empty(embedding_dim)
    # samples per track: one box per frame, the most confident where an id repeats
    samples: dict[int, dict[int, tuple[int, int]]] = {}
    for pos, frame in enumerate(frames):
        det = frame.detections
        for k in range(len(det)):
            tid = int(det.track_id[k])
            if tid < 0:
                if len(frames) > 1:
                    continue  # an unconfirmed box in a video: the class slot covers it
                tid = -1 - k  # a photo's boxes: one still slot each
            per = samples.setdefault(tid, {})
            if pos not in per or det.confidence[k] > frames[per[pos][0]].detections.confidence[per[pos][1]]:
                per[pos] = (pos, k)
    n = len(frames)
    rows, classes, appearances, ids, salience = [], [], [], [], []
    for tid, per in samples.items():
        order = sorted(per)
        picks = [per[p] for p in order]
        dets = [frames[p].detections for p, _ in picks]
        boxes = np.stack([d.box_xyxy[k] for d, (_, k) in zip(dets, picks)]).astype(np.float64)
        conf = np.array([d.confidence[k] for d, (_, k) in zip(dets, picks)], np.float64)
        cls = np.array([int(d.class_id[k]) for d, (_, k) in zip(dets, picks)])
        t = np.array([frames[p].t_sec for p in order], np.float64)
        bw, bh = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0), np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / width, (boxes[:, 1] + boxes[:, 3]) / 2 / height
        body = float(np.median(bh)) / height  # box height in frame heights
        vx = vy = growth = body_speed = path = limbs = 0.0
        moving = len(order) >= 2
        if moving:
            dt = np.maximum(np.diff(t), 1e-6)
            vx, vy = _steady(np.diff(cx) / dt), _steady(np.diff(cy) / dt)
            body_speed = float(np.hypot(vx * width, vy * height) / max(body * height, 1.0))
            path = float(np.hypot((cx[-1] - cx[0]) * width, (cy[-1] - cy[0]) * height) / max(body * height, 1.0))
            growth = _steady(np.diff(np.log(bw * bh)) / dt)
            limbs = _steady((np.abs(np.diff(np.log(bh))) + np.abs(np.diff(np.log(bw)))) / dt)
        aspect = np.log(bh / bw)
        area = float(np.sqrt(np.mean(bw * bh) / (width * height)))
        rows.append([np.clip(vx, -_SPEED_CLIP, _SPEED_CLIP), np.clip(vy, -_SPEED_CLIP, _SPEED_CLIP),
                     np.log1p(min(body_speed, 20.0)), np.log1p(min(path, 50.0)),
                     np.clip(growth, -_GROWTH_CLIP, _GROWTH_CLIP), float(aspect.max() - aspect.min()),
                     min(limbs, _LIMB_CLIP), len(order) / n, float(order[0] == 0), float(order[-1] == n - 1),
                     float(cx.mean()), float(cy.mean()), area, 0.0, float(moving), float(conf.max())])
        classes.append(int(np.bincount(cls).argmax()))  # the tracker may flip classes: the majority
        app = [d.appearance[k] * w for d, (_, k), w in zip(dets, picks, conf) if d.appearance is not None]
        appearances.append(np.sum(app, axis=0) / max(conf.sum(), 1e-6) if app else np.zeros(embedding_dim))
        ids.append(tid if tid >= 0 else -1)
        salience.append(len(order) / n * (area + 0.05) * conf.max())
    if not rows:
        return TrackSlots.empty(embedding_dim)
    features = np.array(rows, np.float32)
    features = np.concatenate([features, np.zeros((len(rows), 1), np.float32)], axis=1)  # has appearance
    features[:, -1] = [float(np.any(a)) for a in appearances]
    _mark_riders(features, classes, samples, frames)
    order = np.argsort(-np.array(salience), kind="stable")[:limit]
    return TrackSlots(np.array(classes, np.int64)[order], features[order],
                      np.stack(appearances).astype(np.float32)[order], np.array(ids, np.int64)[order])


RIDES_COLUMN = 13


def _mark_riders(features: np.ndarray, classes: list[int], samples: dict, frames) -> None:
    """Set ``rides`` where a person's or animal's box lies on a rideable thing's box in at least
    half of the frames both are seen in (the rule of ``motion._partners``)."""
    keys = list(samples)
    riders = [i for i, c in enumerate(classes) if c in ANIMATE_IDS]
    ridden = [i for i, c in enumerate(classes) if c in RIDDEN_IDS]
    if not riders or not ridden:
        return

    def box(i: int, pos: int) -> np.ndarray:
        p, k = samples[keys[i]][pos]
        return frames[p].detections.box_xyxy[k].astype(np.float64)

    for i in riders:
        for j in ridden:
            if classes[i] == classes[j]:
                continue
            shared = sorted(set(samples[keys[i]]) & set(samples[keys[j]]))
            if not shared:
                continue
            on = share_of_smaller(np.stack([box(i, pos) for pos in shared]), np.stack([box(j, pos) for pos in shared]))
            if 2 * np.count_nonzero(on >= ON_SHARE) >= len(shared):
                features[i, RIDES_COLUMN] = 1.0
                break
