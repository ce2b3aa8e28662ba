"""Next-event targets (what happens in the next ``HORIZON_SEC``) and the baselines to beat.

Targets come from the detections and tracks of the *future* window only, so the next-event head
trains self-supervised on any clip. The two baselines return ``NextEventScores`` with the same
shapes as the model's outputs (scores in [0, 1]) so one evaluation computes AUROC / F1 for all:

- persistence: the future looks like now (recent presence; enters / leaves at the past rate);
- constant velocity: each live track keeps its current velocity over the horizon.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..coco import NUM_CLASSES
from ..events import (DIRECTIONS, TrackSummary, edge_side, motion_direction, present_class_ids, seconds_in_view,
                      summarize_tracks)
from ..features import FrameFeatures

log = logging.getLogger(__name__)

HORIZON_SEC = 3.0
END_SEC = 0.5  # "at the end of a window" = its last 0.5 s: two frames at 4 fps, so one missed detection is not a leave
RECENT_SEC = 1.0  # persistence looks at the last second: recent enough to be "now", long enough to smooth flicker
EDGE_ENTER_SCORE = 0.6  # unconfirmed detection at an edge: ByteTrack confirms a new object on its 2nd frame,
# so it most likely becomes a new track in the future window; not 1.0 because some are detector flicker


@dataclass
class NextEventTargets:
    """Ground truth for one (past, future) pair; all arrays (80,) float32 0/1 by COCO index.

    presence: the class is present in the future window (same rule as ``events.window_events``).
    enter:    a confirmed track of the class appears in the future window whose id was never seen
              in the past window: an object entering from an edge *or* simply newly appearing
              (out of occlusion, newly detected, or a tracker id switch - all count).
    leave:    a track of the class seen in the last ``END_SEC`` of the past window is not seen in
              the last ``END_SEC`` of the future window (it left the frame or was lost).
    direction: index into ``DIRECTIONS``: the motion of the future window's moving tracks
              (``events.motion_direction``) with the most track-frames; 0 ("none") if none move.
    """

    presence: np.ndarray
    enter: np.ndarray
    leave: np.ndarray
    direction: int


@dataclass
class NextEventScores:
    """Predicted scores in [0, 1]: presence, enter, leave (80,) float32 by COCO index;
    direction_probs (5,) float32 over ``DIRECTIONS``, summing to 1."""

    presence: np.ndarray
    enter: np.ndarray
    leave: np.ndarray
    direction_probs: np.ndarray


def _zeros() -> np.ndarray:
    return np.zeros(NUM_CLASSES, np.float32)


def _ids_since(frames: Sequence[FrameFeatures], t_from: float) -> dict[int, int]:
    """track id -> class id for confirmed tracks seen in frames with t_sec >= t_from."""
    ids: dict[int, int] = {}
    for frame in frames:
        if frame.t_sec >= t_from:
            det = frame.tracks
            ids.update(zip(det.track_id.tolist(), det.class_id.tolist()))
    return ids


def _direction_weights(tracks: Sequence[TrackSummary], weights: Sequence[float]) -> np.ndarray:
    """(5,) summed weight of moving tracks per direction; index 0 ("none") stays 0."""
    out = np.zeros(len(DIRECTIONS), np.float64)
    for track, weight in zip(tracks, weights):
        direction = motion_direction(track)
        if direction is not None:
            out[DIRECTIONS.index(direction)] += weight
    return out


def _probs(weights: np.ndarray) -> np.ndarray:
    if weights.sum() <= 0:
        probs = np.zeros(len(DIRECTIONS), np.float32)
        probs[0] = 1.0
        return probs
    return (weights / weights.sum()).astype(np.float32)


def targets_for_window(
    past: Sequence[FrameFeatures], future: Sequence[FrameFeatures], frame_size: tuple[int, int]
) -> NextEventTargets:
    """Targets for predicting ``future`` from ``past``. ``frame_size``: (width, height) pixels.
    An empty ``future`` gives all-zero targets and direction "none"."""
    presence, enter, leave = _zeros(), _zeros(), _zeros()
    if not future:
        return NextEventTargets(presence, enter, leave, 0)
    presence[present_class_ids(future, frame_size)] = 1.0
    past_ids = _ids_since(past, -math.inf)
    for tid, cls in _ids_since(future, -math.inf).items():
        if tid not in past_ids:
            enter[cls] = 1.0
    if past:
        end_ids = _ids_since(future, future[-1].t_sec - END_SEC)
        for tid, cls in _ids_since(past, past[-1].t_sec - END_SEC).items():
            if tid not in end_ids:
                leave[cls] = 1.0
    tracks = summarize_tracks(future, frame_size)
    weights = _direction_weights(tracks, [t.n_frames for t in tracks])
    direction = int(np.argmax(weights)) if weights.sum() > 0 else 0
    return NextEventTargets(presence, enter, leave, direction)


def _rate_score(count: int, duration_sec: float, horizon_sec: float) -> float:
    """P(at least one event in the horizon) for events seen ``count`` times in ``duration_sec``
    (Poisson with the observed rate)."""
    if duration_sec <= 0 or count == 0:
        return 0.0
    return 1.0 - math.exp(-count / duration_sec * horizon_sec)


def persistence_baseline(
    past: Sequence[FrameFeatures], frame_size: tuple[int, int], horizon_sec: float = HORIZON_SEC
) -> NextEventScores:
    """The future looks like now.

    presence: share of the last ``RECENT_SEC`` of frames in which the class is detected.
    enter:    1 - exp(-rate x horizon), rate = new tracks of the class per second in the past
              window (tracks first seen after its first frame).
    leave:    the same with the rate of tracks of the class that disappeared during the past
              window, for classes with a track live at its end (0 otherwise: nothing to leave).
    direction_probs: the past window's moving live tracks' directions, weighted by track-frames;
              one-hot "none" if none moves.
    """
    presence, enter, leave = _zeros(), _zeros(), _zeros()
    if not past:
        return NextEventScores(presence, enter, leave, _probs(np.zeros(len(DIRECTIONS))))
    t_end = past[-1].t_sec
    recent = [f for f in past if f.t_sec >= t_end - RECENT_SEC]
    for frame in recent:
        presence[np.unique(frame.detections.class_id)] += 1.0 / len(recent)
    duration = t_end - past[0].t_sec
    tracks = summarize_tracks(past, frame_size)
    live = _ids_since(past, t_end - END_SEC)
    new_per_class = np.bincount([t.class_id for t in tracks if t.first_t_sec > past[0].t_sec], minlength=NUM_CLASSES)
    gone_per_class = np.bincount([t.class_id for t in tracks if t.track_id not in live], minlength=NUM_CLASSES)
    for c in range(NUM_CLASSES):
        enter[c] = _rate_score(int(new_per_class[c]), duration, horizon_sec)
    for c in set(live.values()):
        leave[c] = _rate_score(int(gone_per_class[c]), duration, horizon_sec)
    live_tracks = [t for t in tracks if t.track_id in live]
    probs = _probs(_direction_weights(live_tracks, [t.n_frames for t in live_tracks]))
    return NextEventScores(np.clip(presence, 0, 1), enter, leave, probs)


def constant_velocity_baseline(
    past: Sequence[FrameFeatures], frame_size: tuple[int, int], horizon_sec: float = HORIZON_SEC
) -> NextEventScores:
    """Every track live at the end of ``past`` keeps its fitted velocity for ``horizon_sec``.

    leave:    1 for a class if one of its live tracks' box centre leaves the frame in the horizon.
    presence: for a class with live tracks, 1 if any stays in view, else 0; other classes keep
              the persistence score (untracked detections have no velocity to extrapolate).
    enter:    the persistence rate, raised to ``EDGE_ENTER_SCORE`` for a class with an
              unconfirmed detection at a frame edge in the last past frame. (A confirmed track
              already moving in from the edge keeps its id, so it is not a future "enter".)
    direction_probs: live tracks' directions weighted by their extrapolated seconds in view.
    """
    base = persistence_baseline(past, frame_size, horizon_sec)
    presence, enter, leave = base.presence.copy(), base.enter.copy(), _zeros()
    if not past:
        return NextEventScores(presence, enter, leave, base.direction_probs)
    live = _ids_since(past, past[-1].t_sec - END_SEC)
    tracks = [t for t in summarize_tracks(past, frame_size) if t.track_id in live]
    in_view = [seconds_in_view(t, frame_size, horizon_sec) for t in tracks]
    stays = {t.class_id: False for t in tracks}
    for track, seconds in zip(tracks, in_view):
        if seconds < horizon_sec:
            leave[track.class_id] = 1.0
        else:
            stays[track.class_id] = True
    for c, stay in stays.items():
        presence[c] = 1.0 if stay else 0.0
    last = past[-1].detections
    for k in np.nonzero(last.track_id < 0)[0]:
        if edge_side(last.box_xyxy[k], frame_size, (0.0, 0.0), entering=True) is not None:
            enter[last.class_id[k]] = max(enter[last.class_id[k]], EDGE_ENTER_SCORE)
    # a track that stops moving in the horizon is still "moving" here: that is the baseline's bias
    probs = _probs(_direction_weights(tracks, in_view))
    log.debug("constant velocity: %d live tracks, %d leaving", len(tracks), int(sum(s < horizon_sec for s in in_view)))
    return NextEventScores(presence, enter, leave, probs)
