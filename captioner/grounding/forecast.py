"""The forecast rules: which "what happens next" sentences may be said, and with what probability.

The next-event head (``model.py``) gives per-class probabilities; these rules turn them into
sentences that come true about as often as they say (model card, forecast reliability): only
classes with enough evidence; "stays" / "leaves" only of what is in view now (``visible_now``);
"keeps moving" only the way the tracks move now (``events.dominant_motion``); enter weighed
against this source's own arrival rate (``Arrivals``); leave raised for tracks heading out of
the frame (``leave_with_exits``); each kind listed only from its floor.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..coco import COCO_CLASSES, STATIC_CLASSES, class_word, with_article
from ..events import DIRECTIONS, dominant_motion, heading_out
from ..result import NextEvent
from .window import TimedDetections

MOTION_SEC = 2.0  # "moving left now": the tracks of the last 2 s (8 analysed frames)
PRIOR_HORIZONS = 10.0  # the head's enter probability counts as this many horizons of observation
EXIT_WEIGHT = 0.5  # leave = 1 - (1 - head) x (1 - this) for a class heading out of the frame
MOVING_SPEED = 0.05  # frame-widths per second; slower is not "moving"

# ---- what happens next ------------------------------------------------------------------------

def _likelihood_words(p: float) -> str:
    if p >= 0.85:
        return "will"
    if p >= 0.6:
        return "will probably"
    if p >= 0.4:
        return "may"
    return "might"


CERTAIN = 0.85  # a line this sure reads "will ...": a stay this sure only restates the present


def informativeness(event: NextEvent) -> float:
    """How far a line is from "everything stays as it is now": a change's probability (leave,
    enter, appear, keep moving); for a stay, the chance that it does not stay."""
    return 1.0 - event.probability if event.kind == "stay" else event.probability


def restates_the_present(event: NextEvent) -> bool:
    """A stay said with certainty ("people will still be in view (1.00)"): it tells nothing new."""
    return event.kind == "stay" and event.probability >= CERTAIN


def forecast_lines(events: Sequence[NextEvent], limit: int) -> list[NextEvent]:
    """The lines shown of ``events`` (``forecast_events``' sentences), the most informative
    first: at most ``limit`` of them and never one that only restates the present with
    certainty; ``limit`` 0: every line, ranked the same way."""
    ranked = sorted(events, key=lambda e: -informativeness(e))
    return ranked if not limit else [e for e in ranked if not restates_the_present(e)][:limit]


MIN_FORECAST_PROBABILITY = 0.3  # below this a forecast is noise, not information: not listed
# Kinds whose sentences came true far less often than they claimed (model card, forecast
# reliability): "might leave (0.33)" 24 % of the time on the training clips, 10 % on held-out
# ones; "a person will probably appear" of someone who just walked out, 15-33 % held-out at any
# probability below 0.85. Those are listed only from these probabilities on.
MIN_LEAVE_PROBABILITY = 0.4
MIN_APPEAR_PROBABILITY = 0.85
MIN_MOVE_PROBABILITY = 0.4


def forecast_events(
    presence: list[float], enter: list[float], leave: list[float], direction_probs: list[float],
    present_now: dict[int, int], leave_side: dict[int, str], moving: tuple[int, str] | None,
    horizon_sec: float, evidenced: set[int], max_events: int = 3,
) -> list[NextEvent]:
    """Turn next-event probabilities into sentences, most informative first.

    present_now: class id -> count visible now (only classes that pass the evidence bar);
    evidenced: classes that passed the bar anywhere in the recent history - the only ones a
    forecast may name; leave_side: class id -> the edge its tracks are heading to (from their
    current motion); moving: (class id, direction) of what moves now, measured on its tracks
    (None when nothing that can move does): "keeps moving" only that way, with the head's
    probability of that direction. Events below ``MIN_FORECAST_PROBABILITY`` (or their kind's
    higher floor) are not listed.
    """
    changes: list[NextEvent] = []
    steady: list[NextEvent] = []
    floor = MIN_FORECAST_PROBABILITY
    leaving = set()
    for c in present_now:
        p_leave = leave[c]
        if p_leave >= max(floor, MIN_LEAVE_PROBABILITY):
            leaving.add(c)
            side = leave_side.get(c)
            # a leave is any one of them leaving: "the cars will leave" would say all of them do
            noun = "the " + class_word(COCO_CLASSES[c]) if present_now[c] == 1 else \
                "one of the " + class_word(COCO_CLASSES[c], present_now[c])
            where = f" on the {side}" if side in ("left", "right") else (" at the top" if side == "top" else
                                                                         " at the bottom" if side == "bottom" else "")
            verb = "leave the view" if not where else "leave"
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_leave)} {verb}{where} ({p_leave:.2f})",
                                     round(p_leave, 4), "leave", COCO_CLASSES[c], side=side, horizon_sec=horizon_sec))
    for c in sorted(evidenced):
        p_enter = enter[c]
        if p_enter >= floor:
            noun = "another " + class_word(COCO_CLASSES[c]) if c in present_now else with_article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_enter)} enter ({p_enter:.2f})",
                                     round(p_enter, 4), "enter", COCO_CLASSES[c], horizon_sec=horizon_sec))
        p = presence[c]
        if c not in present_now and p >= max(floor, MIN_APPEAR_PROBABILITY):
            noun = with_article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p)} appear ({p:.2f})", round(p, 4), "appear",
                                     COCO_CLASSES[c], horizon_sec=horizon_sec))
        elif c in present_now and not (present_now[c] == 1 and c in leaving):  # (staying = not leaving, turned round)
            if present_now[c] == 1:  # that one stays: it is there then, and does not leave first
                p = p * (1.0 - leave[c])
                text = f"the {class_word(COCO_CLASSES[c])} {_likelihood_words(p)} stay in view ({p:.2f})"
            else:  # of several, some are still there (a class's presence, which the head predicts)
                text = f"{class_word(COCO_CLASSES[c], present_now[c])} {_likelihood_words(p)} still be in view ({p:.2f})"
            if p >= floor:
                steady.append(NextEvent(text, round(p, 4), "stay", COCO_CLASSES[c], horizon_sec=horizon_sec))
    if moving is not None and moving[0] in present_now and COCO_CLASSES[moving[0]] not in STATIC_CLASSES:
        moving_class, name = moving
        p_dir = direction_probs[DIRECTIONS.index(name)]
        if p_dir >= max(floor, MIN_MOVE_PROBABILITY):
            phrase = "toward the camera" if name == "toward" else "away from the camera" if name == "away" else f"to the {name}"
            noun = "the " + class_word(COCO_CLASSES[moving_class], present_now[moving_class])
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_dir)} keep moving {phrase} ({p_dir:.2f})", round(p_dir, 4),
                                     "move", COCO_CLASSES[moving_class], direction=name, horizon_sec=horizon_sec))
    changes.sort(key=lambda e: -e.probability)
    steady.sort(key=lambda e: -e.probability)
    confident_changes = [e for e in changes if e.probability >= 0.5]
    rest = [e for e in changes if e.probability < 0.5]
    return (confident_changes + steady + rest)[:max_events]


def leave_with_exits(leave: Sequence[float], exiting: set[int]) -> list[float]:
    """The head's leave probabilities, with ``EXIT_WEIGHT`` of a leave added for each class
    heading out of the frame (``events.heading_out``)."""
    return [1.0 - (1.0 - p) * (1.0 - EXIT_WEIGHT) if c in exiting else float(p) for c, p in enumerate(leave)]


class Arrivals:
    """How often new objects of each class have arrived in this source so far: new confirmed
    track ids (what the next-event targets count as "enter") since the stream's first frame.

    The head's enter probability is learned from the training clips' pace; a source has its own
    ("another person may enter (0.5)" every frame of an office where one person arrives a
    minute). ``blend`` weighs the head's probability against this source's observed rate as
    ``PRIOR_HORIZONS`` horizons against the horizons watched so far."""

    FORGET_SEC = 60.0  # a track id unseen this long is gone for good (the tracker drops lost tracks in seconds)

    def __init__(self) -> None:
        self.first_t: float | None = None
        self.last_t = 0.0
        self.seen: dict[int, float] = {}  # track id -> when last seen (bounded: a webcam may run for days)
        self.count: dict[int, int] = {}

    def add(self, frame: TimedDetections) -> None:
        self.first_t = frame.t_sec if self.first_t is None else self.first_t
        self.last_t = frame.t_sec
        det = frame.detections
        for tid, c in zip(det.track_id.tolist(), det.class_id.tolist()):
            if tid >= 0:
                if tid not in self.seen and frame.t_sec > self.first_t:  # what is there at the start did not arrive
                    self.count[c] = self.count.get(c, 0) + 1
                self.seen[tid] = frame.t_sec
        if len(self.seen) > 1000:
            self.seen = {tid: t for tid, t in self.seen.items() if t >= frame.t_sec - self.FORGET_SEC}

    def blend(self, enter: list[float], horizon_sec: float) -> list[float]:
        watched = 0.0 if self.first_t is None else (self.last_t - self.first_t) / horizon_sec
        if watched <= 0:
            return list(enter)
        out = []
        for c, p_head in enumerate(enter):
            rate = self.count.get(c, 0) / (watched * horizon_sec)  # arrivals per second
            p_seen = 1.0 - math.exp(-rate * horizon_sec)  # at least one in a horizon, at that rate
            out.append((PRIOR_HORIZONS * p_head + watched * p_seen) / (PRIOR_HORIZONS + watched))
        return out


def visible_now(recent: Sequence[TimedDetections], classes: set[int]) -> dict[int, int]:
    """Class id -> how many are in view now, for each of ``classes`` detected in either of the
    last two analysed frames: one missed detection is not a leave, but someone last seen half a
    second ago has usually walked out (on held-out clips, "stays in view" said of a class missing
    from the last frame was wrong 70 % of the time)."""
    counts: dict[int, int] = {}
    for f in recent[-2:]:
        for c, n in zip(*np.unique(f.detections.class_id, return_counts=True)):
            if int(c) in classes:
                counts[int(c)] = max(counts.get(int(c), 0), int(n))
    return counts


def forecast_sentences(presence: Sequence[float], enter: Sequence[float], leave: Sequence[float],
                       direction: Sequence[float], frames: Sequence[TimedDetections], frame_size: tuple[int, int],
                       velocity_x: np.ndarray, horizon_sec: float, evidenced: set[int],
                       arrivals: Arrivals | None = None) -> list[NextEvent]:
    """The head's probabilities for the next ``horizon_sec`` (per class; ``direction`` per
    ``events.DIRECTIONS``) -> the sentences the rules let through, given the recent ``frames``
    (oldest first), each class's ``velocity_x`` now (frame widths per second, from the last
    frame's token) and the classes with enough evidence in those frames."""
    present_now = visible_now(frames, evidenced)
    leave_side = {c: ("right" if velocity_x[c] > 0 else "left") for c in present_now if abs(velocity_x[c]) >= MOVING_SPEED}
    movers = {c for c in present_now if COCO_CLASSES[c] not in STATIC_CLASSES}
    # the head's own direction was right only 18 % of the time on held-out clips when it was
    # sure (>= 0.4); said only where it agrees with the motion measured now, 78 % (model card)
    last_t = frames[-1].t_sec
    moving = dominant_motion([f for f in frames if f.t_sec >= last_t - MOTION_SEC], frame_size, movers)
    enter = arrivals.blend(enter, horizon_sec) if arrivals is not None else enter
    # the head rarely sees an exit coming; a track whose steady motion takes it out of the frame
    # within the horizon is half of a leave on its own (model card: leave AUROC of what is in view)
    leave = leave_with_exits(leave, heading_out(frames, frame_size, horizon_sec))
    return forecast_events(presence, enter, leave, direction, present_now, leave_side, moving, horizon_sec, evidenced)
