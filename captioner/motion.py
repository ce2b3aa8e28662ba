"""Stage 4b: how things move in a window, measured from the one YOLO pass - the evidence verbs need.

``measure_motion`` turns a window's boxes (with track ids) and grid cells into plain numbers per
track: speed in body heights/s and frame widths/s, net path, growth, posture change, limbs moving
in place, what it overlaps over time; and, for the whole window, whether the camera moves. The
camera matters because boxes alone cannot tell a walker from a camera panning past a bystander,
nor a driving car filmed from the next lane (nearly still in the image) from a parked one: when
every grid cell of the last neck map changes between frames, the background itself moved.

``grounding.verbs`` turns these numbers into evidence for or against each verb.
Units: seconds; frame units (x / width, y / height) or box heights, so no threshold depends on
the video's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .coco import ANIMATE_CLASSES, CLASS_INDEX, COCO_CLASSES
from .events import MIN_TRACK_FRAMES, TimedDetections, _check_size, _collect_tracks, _steady

ANIMATE_IDS = frozenset(CLASS_INDEX[name] for name in ANIMATE_CLASSES)
VEHICLE_IDS = frozenset(CLASS_INDEX[name] for name in ("car", "bus", "truck", "motorcycle", "train", "boat", "airplane"))
# what a person rides (on or in): a box of the person lies on one of these, and they move together
RIDDEN_IDS = frozenset(CLASS_INDEX[name] for name in ("bicycle", "motorcycle", "horse", "skateboard", "surfboard",
                                                      "skis", "snowboard", "elephant"))
ON_SHARE = 0.3  # of the smaller box inside the other: a rider on a bicycle, a person at a cart


@dataclass(frozen=True)
class TrackMotion:
    """How one confirmed track moved in the window (speeds are medians of frame-to-frame rates,
    so one jump, a cut or a gesture, does not make a walk).

    body_speed:    centre speed in the track's own median box heights per second (any direction)
    lateral_speed: |horizontal centre speed| in frame widths per second
    path:          net displacement first -> last sample, in box heights
    scale_rate:    |d log(box area)/dt| per second: coming toward or going away
    posture_change: max - min of log(box height / width) over the track: sits down, stands up, bends
    limb_motion:   median |d log height| + |d log width| per second: arms and legs moving in place
    partners:      for a person or animal, track ids of things one rides (``RIDDEN_IDS``) whose boxes
                   hold this one's (``ON_SHARE``) in at least half of the frames both are seen in
    """

    track_id: int
    class_id: int
    n_frames: int
    body_speed: float
    lateral_speed: float
    path: float
    scale_rate: float
    posture_change: float
    limb_motion: float
    partners: tuple[int, ...] = ()

    @property
    def class_name(self) -> str:
        return COCO_CLASSES[self.class_id]

    @property
    def animate(self) -> bool:
        return self.class_id in ANIMATE_IDS

    @property
    def vehicle(self) -> bool:
        return self.class_id in VEHICLE_IDS


@dataclass(frozen=True)
class WindowMotion:
    """The tracks of a window with their motion, and how much the background changed.

    background_change: median over analysed frame pairs of the least change (1 - cosine) of any
        grid cell of the last neck map: some cell shows only background unless the camera moves
        (or a cut); None when the frames carry no cells.
    """

    tracks: tuple[TrackMotion, ...]
    background_change: float | None

    def of(self, class_ids) -> list[TrackMotion]:
        class_ids = set(class_ids)
        return [t for t in self.tracks if t.class_id in class_ids]


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(a, 1.0) / np.maximum(b, 1.0))


def _partners(track, ridden: list) -> tuple[int, ...]:
    """Ids of the ``ridden`` tracks whose boxes hold ``track``'s in at least half of the frames
    both are seen in (only people and animals ride; most windows have nothing to ride: no cost)."""
    if track.class_id not in ANIMATE_IDS:
        return ()
    found = []
    for other in ridden:
        if other.class_id == track.class_id:
            continue
        shared = np.intersect1d(track.pos, other.pos)
        if len(shared) < MIN_TRACK_FRAMES:
            continue
        mine = track.box_xyxy[np.searchsorted(track.pos, shared)]
        theirs = other.box_xyxy[np.searchsorted(other.pos, shared)]
        inter = np.prod(np.clip(np.minimum(mine[:, 2:], theirs[:, 2:]) - np.maximum(mine[:, :2], theirs[:, :2]), 0, None), axis=1)
        smaller = np.minimum(np.prod(mine[:, 2:] - mine[:, :2], axis=1), np.prod(theirs[:, 2:] - theirs[:, :2], axis=1))
        if 2 * np.count_nonzero(inter / np.maximum(smaller, 1e-6) >= ON_SHARE) >= len(shared):
            found.append(other.track_id)
    return tuple(found)


def background_change(cells: Sequence[np.ndarray | None]) -> float | None:
    """Median over consecutive pairs of the least cosine change of any grid cell; None without cells."""
    if len(cells) < 2 or any(c is None for c in cells):
        return None
    grid = np.stack([np.asarray(c, np.float32) for c in cells])  # (T, G, C)
    unit = grid / np.maximum(np.linalg.norm(grid, axis=2, keepdims=True), 1e-6)
    change = 1.0 - (unit[1:] * unit[:-1]).sum(axis=2)  # (T-1, G)
    return float(np.median(change.min(axis=1)))


def measure_motion(frames: Sequence[TimedDetections], frame_size: tuple[int, int]) -> WindowMotion:
    """Every confirmed track of ``frames`` seen in >= ``MIN_TRACK_FRAMES`` frames, with its motion;
    ``frames`` with ``cells`` (a stream's analysed frames) also give the background change."""
    width, _ = _check_size(frame_size)
    tracks = [t for t in _collect_tracks(frames).values() if len(t.t_sec) >= MIN_TRACK_FRAMES]
    ridden = [t for t in tracks if t.class_id in RIDDEN_IDS]
    out = []
    for track in tracks:
        boxes, dt = track.box_xyxy, np.maximum(np.diff(track.t_sec), 1e-6)
        box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        body = max(float(np.median(box_h)), 1.0)
        vx, vy = _steady(np.diff(cx) / dt), _steady(np.diff(cy) / dt)
        log_area = np.log(np.maximum(box_w * box_h, 1.0))
        aspect = _log_ratio(box_h, box_w)
        limbs = (np.abs(np.diff(np.log(np.maximum(box_h, 1.0)))) + np.abs(np.diff(np.log(np.maximum(box_w, 1.0))))) / dt
        out.append(TrackMotion(
            track_id=track.track_id, class_id=track.class_id, n_frames=len(track.t_sec),
            body_speed=float(np.hypot(vx, vy) / body), lateral_speed=float(abs(vx) / width),
            path=float(np.hypot(cx[-1] - cx[0], cy[-1] - cy[0]) / body),
            scale_rate=abs(_steady(np.diff(log_area) / dt)),
            posture_change=float(aspect.max() - aspect.min()), limb_motion=float(np.median(limbs)),
            partners=_partners(track, ridden)))
    cells = [getattr(f, "cells", None) for f in frames]
    return WindowMotion(tuple(out), background_change(cells))
