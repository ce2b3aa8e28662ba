"""Stage 4b: how things move in a window, measured from the one YOLO pass - the evidence verbs need.

``measure_motion`` turns a window's boxes (with track ids) and grid cells into plain numbers per
track: speed in body heights/s and frame widths/s, net path, growth, posture change, limbs moving
in place, what it overlaps over time; and, for the whole window, whether the camera moves. The
camera matters because boxes alone cannot tell a walker from a camera panning past a bystander,
nor a driving car filmed from the next lane (nearly still in the image) from a parked one: when
the grid cells of the last neck map that no box touches change between frames, the background
itself moved.

``grounding.verbs`` turns these numbers into evidence for or against each verb.
Units: seconds; frame units (x / width, y / height) or box heights, so no threshold depends on
the video's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .boxes import share_of_smaller
from .coco import ANIMATE_CLASSES, CLASS_INDEX, COCO_CLASSES
from .events import MIN_TRACK_FRAMES, TimedDetections, _check_size, _collect_tracks, _steady

ANIMATE_IDS = frozenset(CLASS_INDEX[name] for name in ANIMATE_CLASSES)
VEHICLE_IDS = frozenset(CLASS_INDEX[name] for name in ("car", "bus", "truck", "motorcycle", "train", "boat", "airplane"))
# what a person rides (on or in): a box of the person lies on one of these, and they move together
RIDDEN_IDS = frozenset(CLASS_INDEX[name] for name in ("bicycle", "motorcycle", "horse", "skateboard", "surfboard",
                                                      "skis", "snowboard", "elephant"))
ON_SHARE = 0.3  # of the smaller box inside the other: a rider on a bicycle, a person at a cart
EDGE_MARGIN = 0.01  # of the frame's size: a box this close to an edge is cut by it (not a whole body)
MIN_WHOLE_BOXES = 2


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
    partners:      for a person or animal, track ids of things one rides or sits in (``RIDDEN_IDS``,
                   ``VEHICLE_IDS``) whose boxes hold this one's (``ON_SHARE``) in at least half of the
                   frames both are seen in: they move together
    upright:       median height / width of the track's boxes that no frame edge cuts (a whole body:
                   a standing person is about 2.5-3.5 times as tall as wide, a seated one 1-2); None
                   when fewer than ``MIN_WHOLE_BOXES`` are whole
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
    upright: float | None = None

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

    background_change: median over analysed frame pairs of the median change (1 - cosine) of the
        grid cells of the last neck map that no box touches: the background changes when the
        camera moves (or at a cut); None when the frames carry no cells or boxes cover the view.
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
        if 2 * np.count_nonzero(share_of_smaller(mine, theirs) >= ON_SHARE) >= len(shared):
            found.append(other.track_id)
    return tuple(found)


MIN_BACKGROUND_CELLS = 3  # fewer free cells than this (boxes cover the view): no background to judge by


def _covered_cells(detections, grid: int, frame_size: tuple[int, int]) -> np.ndarray:
    """(grid * grid,) bool: the cells any box of the frame touches (row-major, as the cells are)."""
    width, height = frame_size
    covered = np.zeros((grid, grid), bool)
    for x1, y1, x2, y2 in np.asarray(detections.box_xyxy, np.float64).reshape(-1, 4):
        c1, r1 = int(np.clip(x1 / width * grid, 0, grid - 1)), int(np.clip(y1 / height * grid, 0, grid - 1))
        c2, r2 = int(np.clip(np.ceil(x2 / width * grid), c1 + 1, grid)), int(np.clip(np.ceil(y2 / height * grid), r1 + 1, grid))
        covered[r1:r2, c1:c2] = True
    return covered.ravel()


def _cell_changes(cells: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """(T-1, G): how much each grid cell changed (1 - cosine) between consecutive analysed frames;
    None without cells."""
    if len(cells) < 2 or any(c is None for c in cells):
        return None
    grid = np.stack([np.asarray(c, np.float32) for c in cells])  # (T, G, C)
    unit = grid / np.maximum(np.linalg.norm(grid, axis=2, keepdims=True), 1e-6)
    return 1.0 - (unit[1:] * unit[:-1]).sum(axis=2)


def background_change(cells: Sequence[np.ndarray | None], frames: Sequence[TimedDetections] | None = None,
                      frame_size: tuple[int, int] | None = None) -> float | None:
    """How much the background changed: per consecutive pair of frames, the median change (1 -
    cosine) of the grid cells no box touches in either frame (what moves there is the view itself,
    not an object); the median over pairs. Without frames (or size), over all cells. None without
    cells, or when boxes leave fewer than ``MIN_BACKGROUND_CELLS`` free in every pair."""
    change = _cell_changes(cells)
    if change is None:
        return None
    side = int(round(change.shape[1] ** 0.5))
    if frames is None or frame_size is None or side * side != change.shape[1]:
        return float(np.median(np.median(change, axis=1)))
    covered = [_covered_cells(f.detections, side, frame_size) for f in frames]
    per_pair = [float(np.median(change[i][free])) for i in range(len(change))
                if np.count_nonzero(free := ~(covered[i] | covered[i + 1])) >= MIN_BACKGROUND_CELLS]
    return float(np.median(per_pair)) if per_pair else None


# median change (1 - cosine) of all grid cells between two analysed frames past which the view was
# replaced (a cut). Measured on real clips: a dense crowd under a still camera reaches 0.22 at most,
# the hard cuts of the MSR-VTT clips 0.27-0.58 (a dashcam 0.14, a panning phone 0.12)
CUT_CHANGE = 0.25
# ... and a cut is one jump: at least this many times the change of the pair before and after it.
# A handheld camera swung round a toddler changes the view by 0.14-0.34 per frame for a second
# (no cut, and its boxes stay one shot); the MSR-VTT cuts stand 3-50x above their neighbours
CUT_SPIKE = 2.0


def cuts_between(cells: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """(T-1,) bool: whether the shot changed between analysed frames i and i+1: most of the last
    neck map changed at once, far more than just before and after (a walker, a pan or a swung
    camera changes it over several frames); None without cells."""
    changes = _cell_changes(cells)
    if changes is None:
        return None
    change = np.median(changes, axis=1)
    padded = np.concatenate([[0.0], change, [0.0]])
    neighbours = np.maximum(padded[:-2], padded[2:])
    return (change >= CUT_CHANGE) & (change >= CUT_SPIKE * neighbours)


def _one_shot(track, cuts: np.ndarray | None):
    """The track's samples within one shot (the longest run with no cut between samples), and which
    of all its consecutive sample pairs stay in one shot: a box that jumps at a cut (a close-up
    after a wide shot) is not a motion."""
    n = len(track.t_sec)
    if cuts is None or not cuts.any():
        return np.arange(n), np.ones(n - 1, bool)
    cut_count = np.concatenate([[0], np.cumsum(cuts)])
    same = cut_count[track.pos[1:]] == cut_count[track.pos[:-1]]
    best, start = (0, 1), 0
    for k in range(1, n + 1):
        if k == n or not same[k - 1]:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = k
    return np.arange(*best), same


def _upright(boxes: np.ndarray, width: float, height: float) -> float | None:
    """Median height / width of the boxes no frame edge cuts (``TrackMotion.upright``)."""
    x_margin, y_margin = EDGE_MARGIN * width, EDGE_MARGIN * height
    whole = ((boxes[:, 0] > x_margin) & (boxes[:, 2] < width - x_margin)
             & (boxes[:, 1] > y_margin) & (boxes[:, 3] < height - y_margin))
    if whole.sum() < MIN_WHOLE_BOXES:
        return None
    heights, widths = boxes[whole, 3] - boxes[whole, 1], np.maximum(boxes[whole, 2] - boxes[whole, 0], 1.0)
    return float(np.median(heights / widths))


def measure_motion(frames: Sequence[TimedDetections], frame_size: tuple[int, int]) -> WindowMotion:
    """Every confirmed track of ``frames`` seen in >= ``MIN_TRACK_FRAMES`` frames, with its motion;
    ``frames`` with ``cells`` (a stream's analysed frames) also give the background change, and
    the shot cuts: rates count only frame pairs within one shot, path and posture only the
    track's longest stretch in one shot (its ``n_frames``)."""
    width, height = _check_size(frame_size)
    cells = [getattr(f, "cells", None) for f in frames]
    cuts = cuts_between(cells)
    tracks = [t for t in _collect_tracks(frames).values() if len(t.t_sec) >= MIN_TRACK_FRAMES]
    ridden = [t for t in tracks if t.class_id in RIDDEN_IDS | VEHICLE_IDS]
    out = []
    for track in tracks:
        shot, same = _one_shot(track, cuts)
        boxes, dt = track.box_xyxy, np.maximum(np.diff(track.t_sec), 1e-6)
        box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        body = max(float(np.median(box_h)), 1.0)
        log_area = np.log(np.maximum(box_w * box_h, 1.0))
        aspect = _log_ratio(box_h, box_w)[shot]
        limbs = (np.abs(np.diff(np.log(np.maximum(box_h, 1.0)))) + np.abs(np.diff(np.log(np.maximum(box_w, 1.0))))) / dt
        if same.any():
            vx, vy = _steady((np.diff(cx) / dt)[same]), _steady((np.diff(cy) / dt)[same])
            scale, limb = abs(_steady((np.diff(log_area) / dt)[same])), float(np.median(limbs[same]))
        else:
            vx = vy = scale = limb = 0.0
        first, last = shot[0], shot[-1]
        out.append(TrackMotion(
            track_id=track.track_id, class_id=track.class_id, n_frames=len(shot),
            body_speed=float(np.hypot(vx, vy) / body), lateral_speed=float(abs(vx) / width),
            path=float(np.hypot(cx[last] - cx[first], cy[last] - cy[first]) / body),
            scale_rate=scale, posture_change=float(aspect.max() - aspect.min()), limb_motion=limb,
            partners=_partners(track, ridden), upright=_upright(boxes, width, height)))
    return WindowMotion(tuple(out), background_change(cells, frames, frame_size))
