"""Stage 4: deterministic track-level facts for one time window.

From the detections and track ids of a window of frames this module derives a few facts that a
caption can state and that can be checked against the frames: which classes are present (and
how many), which tracks enter or leave through a frame edge, which move left / right / toward /
away from the camera, which stop, and which classes are seen together. ``training/describe.py``
turns them into training captions and ``training/forecast.py`` into next-event targets.

Units: times in seconds; positions and velocities in frame units (x / frame width, y / frame
height), so thresholds do not depend on the video resolution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .boxes import box_areas, box_centres
from .coco import COCO_CLASSES, NUM_CLASSES
from .errors import OptionsError
from .perception import Detections

log = logging.getLogger(__name__)


class TimedDetections(Protocol):
    """The one kind of frame the track facts read: its time and its boxes (with track ids). An
    analysed frame of any stage has both (``perception.FrameFeatures``, ``stream.AnalysedFrame``)."""

    t_sec: float
    detections: Detections


EVENT_KINDS = ("present", "enters", "leaves", "moves", "stops", "together")
SIDES = ("left", "right", "top", "bottom")
DIRECTIONS = ("none", "left", "right", "toward", "away")  # motion_direction's answers; "none" = nothing moves

# Thresholds. Tuned for the 4 fps analysis rate but expressed in seconds / frame units.
PRESENT_MIN_SHARE = 0.25  # detector flicker on clutter rarely lasts a quarter of a window; real objects do
MIN_TRACK_FRAMES = 2  # ByteTrack confirms on the second hit; a one-frame track says nothing about motion
EDGE_MARGIN = 0.06  # of the frame side: a track confirmed one frame late (4 fps, walking pace) is still this close
CLIP_TOL_PX = 2.0  # a box this close to the border is cut by it: its size is not the object's size
MOVE_MIN_FRAMES = 3  # a line fit through fewer points is mostly jitter
MOVE_MIN_SPEED = 0.05  # frame widths/s (crossing the frame in 20 s); box jitter fits far below this
MOVE_MIN_SCALE_RATE = 0.15  # d log(area)/dt per s, ~16 %/s growth; a still box's size jitter fits far below
STILL_MAX_SPEED = 0.02  # frame units/s: "nearly still"
STILL_MAX_SCALE_RATE = 0.06  # per s
STOP_MIN_FRAMES = 6  # two line fits (moving half, still half) of >= 3 points each
STOP_RADIUS = 0.03  # frame units: after stopping, the centre stays this close to where it ended
TOGETHER_MIN_SHARE = 0.6  # "most of the window"
TOGETHER_MAX_CLASSES = 3  # pairs only among the most salient classes (80 classes would give 3160 pairs)
# Changes are what a caption is about, so they outrank mere presence at equal prominence.
KIND_WEIGHT = {"moves": 1.0, "enters": 1.0, "leaves": 1.0, "stops": 1.0, "together": 0.6, "present": 0.5}


@dataclass(frozen=True)
class TrackSummary:
    """One confirmed track within a window.

    Boxes are (x1, y1, x2, y2) source pixels. ``velocity_xy``: box-centre velocity in (frame
    widths/s, frame heights/s); ``scale_rate``: d log(box area)/dt per second (> 0 grows). Both
    are least-squares slopes over the track's frames (0 for a single frame).
    """

    track_id: int
    class_id: int
    class_name: str
    first_t_sec: float
    last_t_sec: float
    n_frames: int
    first_box_xyxy: tuple[float, float, float, float]
    last_box_xyxy: tuple[float, float, float, float]
    mean_confidence: float
    velocity_xy: tuple[float, float]
    scale_rate: float


@dataclass(frozen=True)
class Event:
    """A fact about a window.

    count: present = robust per-frame count; enters/leaves = tracks that crossed; moves/stops =
    most of those tracks seen at once (an id switch does not double it); together = count of
    ``class_name``. ``side`` only for enters/leaves, ``direction`` only for moves, ``t_sec`` when
    it entered (earliest) / left (latest) / stopped (earliest), ``other_class`` only for
    together. ``salience`` (>= 0, unitless) orders events: share of the window's frames x share
    of the frame area covered, weighted by ``KIND_WEIGHT``.
    """

    kind: str
    class_name: str
    count: int
    track_ids: tuple[int, ...] = ()
    side: str | None = None
    direction: str | None = None
    t_sec: float | None = None
    other_class: str | None = None
    salience: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {EVENT_KINDS}")


@dataclass
class _Track:
    """The raw samples of one track: t_sec (n,), box_xyxy (n, 4), confidence (n,), pos (n,) frame
    index within the window."""

    track_id: int
    class_id: int
    t_sec: np.ndarray
    box_xyxy: np.ndarray
    confidence: np.ndarray
    pos: np.ndarray


def _check_size(frame_size: tuple[int, int]) -> tuple[float, float]:
    width, height = frame_size
    if width <= 0 or height <= 0:
        raise OptionsError(f"frame size must be (width, height) in pixels, both > 0; got {frame_size!r}")
    return float(width), float(height)


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope dy/dt; 0 when t has no spread."""
    if len(t) < 2:
        return 0.0
    tc = t - t.mean()
    var = float((tc * tc).sum())
    return float((tc * (y - y.mean())).sum() / var) if var > 0 else 0.0


def _collect_tracks(frames: Sequence[TimedDetections]) -> dict[int, _Track]:
    """Samples per confirmed track id (one per frame: the most confident if an id repeats)."""
    samples: dict[int, dict[int, tuple[float, np.ndarray, int, float]]] = {}
    for pos, frame in enumerate(frames):
        det = frame.detections
        for k in np.nonzero(det.track_id >= 0)[0]:
            per_frame = samples.setdefault(int(det.track_id[k]), {})
            conf = float(det.confidence[k])
            if pos not in per_frame or conf > per_frame[pos][3]:
                per_frame[pos] = (frame.t_sec, det.box_xyxy[k].astype(np.float64), int(det.class_id[k]), conf)
    tracks = {}
    for tid in sorted(samples):
        rows = [samples[tid][p] for p in sorted(samples[tid])]
        classes = np.array([r[2] for r in rows])
        tracks[tid] = _Track(
            track_id=tid,
            class_id=int(np.bincount(classes).argmax()),  # the tracker may flip classes; take the majority
            t_sec=np.array([r[0] for r in rows], np.float64),
            box_xyxy=np.stack([r[1] for r in rows]),
            confidence=np.array([r[3] for r in rows], np.float64),
            pos=np.array(sorted(samples[tid]), np.int64),
        )
    return tracks


def _summarize(track: _Track, width: float, height: float) -> TrackSummary:
    boxes, t = track.box_xyxy, track.t_sec
    cx, cy = box_centres(boxes, width, height)
    # boxes cut by the frame border shrink/grow because of the cut, not the distance
    inside = ((boxes[:, 0] > CLIP_TOL_PX) & (boxes[:, 1] > CLIP_TOL_PX)
              & (boxes[:, 2] < width - CLIP_TOL_PX) & (boxes[:, 3] < height - CLIP_TOL_PX))
    use = inside if inside.sum() >= 2 else np.ones(len(t), bool)
    log_area = np.log(np.maximum(box_areas(boxes), 1.0))
    return TrackSummary(
        track_id=track.track_id,
        class_id=track.class_id,
        class_name=COCO_CLASSES[track.class_id],
        first_t_sec=float(t[0]),
        last_t_sec=float(t[-1]),
        n_frames=len(t),
        first_box_xyxy=tuple(float(v) for v in boxes[0]),
        last_box_xyxy=tuple(float(v) for v in boxes[-1]),
        mean_confidence=float(track.confidence.mean()),
        velocity_xy=(_slope(t, cx), _slope(t, cy)),
        scale_rate=_slope(t[use], log_area[use]),
    )


def summarize_tracks(frames: Sequence[TimedDetections], frame_size: tuple[int, int]) -> list[TrackSummary]:
    """One summary per confirmed track (track_id >= 0) in ``frames``, sorted by track id.
    ``frame_size``: (width, height) in pixels."""
    width, height = _check_size(frame_size)
    return [_summarize(tr, width, height) for tr in _collect_tracks(frames).values()]


def _steady(rates: np.ndarray) -> float:
    """The median of frame-to-frame rates; of an even count, the middle one nearer zero, so that
    one jump in two steps (a cut) is not a steady motion."""
    ordered = np.sort(rates)
    lower, upper = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    return float(lower if abs(lower) <= abs(upper) else upper)


def motion_direction(track: TrackSummary) -> str | None:
    """"left" | "right" | "toward" | "away" for a track that clearly moves, else None.

    Horizontal speed and area growth have different units, so each is measured against its own
    threshold and the larger ratio wins. Vertical motion alone is not a direction we name.
    """
    if track.n_frames < MOVE_MIN_FRAMES:
        return None
    lateral = abs(track.velocity_xy[0]) / MOVE_MIN_SPEED
    depth = abs(track.scale_rate) / MOVE_MIN_SCALE_RATE
    if max(lateral, depth) < 1.0:
        return None
    if lateral >= depth:
        return "right" if track.velocity_xy[0] > 0 else "left"
    return "toward" if track.scale_rate > 0 else "away"


def dominant_motion(frames: Sequence[TimedDetections], frame_size: tuple[int, int],
                    class_ids: set[int]) -> tuple[int, str] | None:
    """(class id, direction) of the motion of ``class_ids``' tracks in ``frames`` with the most
    track-frames (the rule that labels the next-event head's direction targets, applied to the
    past), or None when none of them clearly moves. ``frames``: anything with ``t_sec`` and
    ``detections``."""
    weights: dict[tuple[int, str], int] = {}
    for track in summarize_tracks(frames, frame_size):
        direction = motion_direction(track) if track.class_id in class_ids else None
        if direction is not None:
            key = (track.class_id, direction)
            weights[key] = weights.get(key, 0) + track.n_frames
    return max(weights, key=weights.get) if weights else None


def seconds_in_view(track: TrackSummary, frame_size: tuple[int, int], horizon_sec: float) -> float:
    """Seconds (<= horizon) before the box centre, moving at the track's fitted velocity from its
    last position, crosses the frame border."""
    width, height = _check_size(frame_size)
    x1, y1, x2, y2 = track.last_box_xyxy
    centre = ((x1 + x2) / (2 * width), (y1 + y2) / (2 * height))
    t_exit = horizon_sec
    for c, v in zip(centre, track.velocity_xy):
        if v > 0:
            t_exit = min(t_exit, (1.0 - c) / v)
        elif v < 0:
            t_exit = min(t_exit, c / -v)
    return max(t_exit, 0.0)


def heading_out(frames: Sequence[TimedDetections], frame_size: tuple[int, int], horizon_sec: float,
                live_sec: float = 0.5) -> set[int]:
    """Classes with a track seen in the last ``live_sec`` whose centre, kept at its fitted
    velocity over ``frames``, leaves the frame within ``horizon_sec``."""
    if not frames:
        return set()
    end = frames[-1].t_sec
    return {t.class_id for t in summarize_tracks(frames, frame_size)
            if t.last_t_sec >= end - live_sec and not _coming_in(t, frame_size)
            and seconds_in_view(t, frame_size, horizon_sec) < horizon_sec}


def _coming_in(track: TrackSummary, frame_size: tuple[int, int]) -> bool:
    """True when the track's last box is cut by a frame edge and its centre moves away from that
    edge: someone walking in from the bottom, whose visible centre rises as more of them shows."""
    width, height = _check_size(frame_size)
    x1, y1, x2, y2 = track.last_box_xyxy
    vx, vy = track.velocity_xy
    return ((x1 <= CLIP_TOL_PX and vx > 0) or (x2 >= width - CLIP_TOL_PX and vx < 0)
            or (y1 <= CLIP_TOL_PX and vy > 0) or (y2 >= height - CLIP_TOL_PX and vy < 0))


def edge_side(box_xyxy, frame_size: tuple[int, int], velocity_xy: tuple[float, float], entering: bool) -> str | None:
    """The frame edge a box is at (within ``EDGE_MARGIN``), or None.

    An edge counts only if the box does not also reach the opposite edge (a box spanning the
    frame top to bottom says nothing about the top). At a corner, the edge the box moves away
    from (entering) or toward (leaving) wins.
    """
    width, height = _check_size(frame_size)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    mx, my = EDGE_MARGIN * width, EDGE_MARGIN * height
    near = {"left": x1 <= mx, "right": x2 >= width - mx, "top": y1 <= my, "bottom": y2 >= height - my}
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    sides = [s for s in SIDES if near[s] and not near[opposite[s]]]
    if not sides:
        return None
    vx, vy = velocity_xy
    inward = {"left": vx, "right": -vx, "top": vy, "bottom": -vy}  # speed away from each edge
    sign = 1.0 if entering else -1.0
    return max(sides, key=lambda s: (sign * inward[s], -SIDES.index(s)))


def _stop_time(track: _Track, width: float, height: float) -> float | None:
    """When a track that moved in its first half and is nearly still in its second half stopped."""
    t = track.t_sec
    if len(t) < STOP_MIN_FRAMES:
        return None
    cx, cy = box_centres(track.box_xyxy, width, height)
    log_area = np.log(np.maximum(box_areas(track.box_xyxy), 1.0))
    first = t <= (t[0] + t[-1]) / 2
    halves = [first, ~first]
    if min(h.sum() for h in halves) < 3:
        return None
    speed = [np.hypot(_slope(t[h], cx[h]), _slope(t[h], cy[h])) for h in halves]
    scale = [abs(_slope(t[h], log_area[h])) for h in halves]
    moving_first = speed[0] >= MOVE_MIN_SPEED or scale[0] >= MOVE_MIN_SCALE_RATE
    still_second = speed[1] < STILL_MAX_SPEED and scale[1] < STILL_MAX_SCALE_RATE
    if not (moving_first and still_second):
        return None
    # the earliest sample from which the centre stays near its final place
    drift = np.maximum(np.abs(cx - cx[-1]), np.abs(cy - cy[-1]))
    far = np.nonzero(drift > STOP_RADIUS)[0]
    return float(t[far[-1] + 1]) if len(far) else float(t[0])


def _class_stats(frames: Sequence[TimedDetections], width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """counts (n_frames, 80) int: detections per class per frame (tracked or not);
    area (n_frames, 80) float: summed box area as a share of the frame."""
    counts = np.zeros((len(frames), NUM_CLASSES), np.int64)
    area = np.zeros((len(frames), NUM_CLASSES), np.float64)
    for i, frame in enumerate(frames):
        det = frame.detections
        if len(det):
            np.add.at(counts[i], det.class_id, 1)
            np.add.at(area[i], det.class_id, box_areas(det.box_xyxy.astype(np.float64)) / (width * height))
    return counts, area


def _present(counts: np.ndarray, tracks: dict[int, _Track]) -> np.ndarray:
    present = (counts > 0).mean(axis=0) >= PRESENT_MIN_SHARE if len(counts) else np.zeros(NUM_CLASSES, bool)
    for tr in tracks.values():
        if len(tr.t_sec) >= MIN_TRACK_FRAMES:
            present[tr.class_id] = True  # a confirmed, repeated track is real even if brief
    return present


def present_class_ids(frames: Sequence[TimedDetections], frame_size: tuple[int, int]) -> list[int]:
    """COCO ids of the classes ``window_events`` would call present, ascending."""
    width, height = _check_size(frame_size)
    counts, _ = _class_stats(frames, width, height)
    return [int(c) for c in np.nonzero(_present(counts, _collect_tracks(frames)))[0]]


def _max_simultaneous(tracks: list[_Track]) -> int:
    positions = np.concatenate([tr.pos for tr in tracks])
    return int(np.bincount(positions).max())


def window_events(frames: Sequence[TimedDetections], frame_size: tuple[int, int]) -> list[Event]:
    """All events of a window, most salient first. ``frame_size``: (width, height) pixels.

    An empty window, or one without detections, gives []. Untracked detections (track_id -1)
    count for presence and counts only; motion events need confirmed tracks.
    """
    width, height = _check_size(frame_size)
    n = len(frames)
    if n == 0:
        return []
    counts, area = _class_stats(frames, width, height)
    tracks = _collect_tracks(frames)
    present = _present(counts, tracks)
    seen = counts > 0
    share = seen.mean(axis=0)
    mean_area = np.minimum(area.sum(axis=0) / np.maximum(seen.sum(axis=0), 1), 1.0)
    class_salience = share * mean_area
    count_of: dict[int, int] = {}
    events: list[Event] = []
    for c in np.nonzero(present)[0]:
        in_view = counts[seen[:, c], c]
        # median over frames where the class is seen: robust to one-frame misses and false positives
        count_of[c] = max(1, int(np.floor(np.median(in_view) + 0.5))) if len(in_view) else 1
        ids = tuple(tid for tid, tr in tracks.items() if tr.class_id == c)
        events.append(Event("present", COCO_CLASSES[c], count_of[c], ids,
                            salience=KIND_WEIGHT["present"] * float(class_salience[c])))

    groups: dict[tuple, list[tuple[_Track, float | None]]] = {}  # (kind, class, side/direction) -> tracks
    for tr in tracks.values():
        if len(tr.t_sec) < MIN_TRACK_FRAMES:
            continue
        summary = _summarize(tr, width, height)
        if tr.pos[0] > 0:
            side = edge_side(tr.box_xyxy[0], (width, height), summary.velocity_xy, entering=True)
            if side:
                groups.setdefault(("enters", tr.class_id, side), []).append((tr, summary.first_t_sec))
        if tr.pos[-1] < n - 1:
            side = edge_side(tr.box_xyxy[-1], (width, height), summary.velocity_xy, entering=False)
            if side:
                groups.setdefault(("leaves", tr.class_id, side), []).append((tr, summary.last_t_sec))
        stop_t = _stop_time(tr, width, height)
        if stop_t is not None:  # a stopped track is not also reported as moving: the fit mixes both phases
            groups.setdefault(("stops", tr.class_id, None), []).append((tr, stop_t))
        elif (direction := motion_direction(summary)) is not None:
            groups.setdefault(("moves", tr.class_id, direction), []).append((tr, None))

    for (kind, c, detail), members in groups.items():
        trs = [m[0] for m in members]
        times = [m[1] for m in members if m[1] is not None]
        count = len(trs) if kind in ("enters", "leaves") else _max_simultaneous(trs)
        salience = sum(len(tr.t_sec) / n * min(float(box_areas(tr.box_xyxy).mean()) / (width * height), 1.0) for tr in trs)
        events.append(Event(
            kind, COCO_CLASSES[c], count, tuple(tr.track_id for tr in trs),
            side=detail if kind in ("enters", "leaves") else None,
            direction=detail if kind == "moves" else None,
            t_sec=(max(times) if kind == "leaves" else min(times)) if times else None,
            salience=KIND_WEIGHT[kind] * salience,
        ))

    top = sorted(np.nonzero(present)[0], key=lambda c: (-class_salience[c], c))[:TOGETHER_MAX_CLASSES]
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            both = float((seen[:, a] & seen[:, b]).mean())
            if both >= TOGETHER_MIN_SHARE:
                ids = tuple(sorted(tid for tid, tr in tracks.items() if tr.class_id in (a, b)))
                events.append(Event("together", COCO_CLASSES[a], count_of[a], ids, other_class=COCO_CLASSES[b],
                                    salience=KIND_WEIGHT["together"] * both * float(mean_area[a] + mean_area[b]) / 2))

    events.sort(key=lambda e: (-e.salience, EVENT_KINDS.index(e.kind), e.class_name, e.track_ids))
    log.debug("window of %d frames: %d events", n, len(events))
    return events
