"""events.py on synthetic track sequences whose truth is known (pure numpy, no YOLO)."""

from __future__ import annotations

import numpy as np
import pytest

from captioner.coco import CLASS_INDEX
from captioner.errors import OptionsError
from captioner.events import (EDGE_MARGIN, Event, dominant_motion, edge_side, heading_out, motion_direction,
                              present_class_ids, summarize_tracks, window_events)
from captioner.features import FrameFeatures
from frames import FPS, H, SIZE, W, box, frame  # noqa: F401  (shared test helpers)


def facts(events: list[Event]) -> set[tuple]:
    return {(e.kind, e.class_name, e.count, e.side, e.direction, e.other_class) for e in events}


def crossing_window() -> list[FrameFeatures]:
    """A person enters at the left edge at frame 2, walks right at 160 px/s (0.25 frame widths/s)
    and is last seen at the right edge at frame 17 of 20."""
    frames = []
    for i in range(20):
        objects = [(box(-10 + 40 * (i - 2), 200, 80, 160), "person", 7)] if 2 <= i <= 17 else []
        frames.append(frame(i, *objects))
    return frames


def test_crossing_person_enters_left_moves_right_leaves_right():
    events = window_events(crossing_window(), SIZE)
    assert facts(events) == {
        ("present", "person", 1, None, None, None),
        ("enters", "person", 1, "left", None, None),
        ("leaves", "person", 1, "right", None, None),
        ("moves", "person", 1, None, "right", None),
    }
    by_kind = {e.kind: e for e in events}
    assert by_kind["enters"].t_sec == pytest.approx(0.5)
    assert by_kind["leaves"].t_sec == pytest.approx(17 / FPS)
    assert all(e.track_ids == (7,) for e in events)
    # changes outrank presence; sorted by salience
    assert events[-1].kind == "present"
    assert [e.salience for e in events] == sorted((e.salience for e in events), reverse=True)


def test_track_summary_velocity_and_boxes():
    (s,) = summarize_tracks(crossing_window(), SIZE)
    assert (s.track_id, s.class_name, s.n_frames) == (7, "person", 16)
    assert (s.first_t_sec, s.last_t_sec) == (0.5, 4.25)
    assert s.first_box_xyxy == (0.0, 120.0, 30.0, 280.0)
    assert s.last_box_xyxy == (550.0, 120.0, 630.0, 280.0)
    assert s.velocity_xy[0] == pytest.approx(0.25, abs=0.02)
    assert s.velocity_xy[1] == pytest.approx(0.0, abs=1e-9)
    # boxes cut by the left border are left out of the size fit: the person does not grow
    assert s.scale_rate == pytest.approx(0.0, abs=1e-9)
    assert s.mean_confidence == pytest.approx(0.9)
    assert motion_direction(s) == "right"


def test_mirrored_crossing_enters_right_moves_left_leaves_left():
    frames = [frame(f.frame_index, *[((W - b[2], b[1], W - b[0], b[3]), "car", 3) for b in f.detections.box_xyxy])
              for f in crossing_window()]
    assert facts(window_events(frames, SIZE)) == {
        ("present", "car", 1, None, None, None),
        ("enters", "car", 1, "right", None, None),
        ("leaves", "car", 1, "left", None, None),
        ("moves", "car", 1, None, "left", None),
    }


@pytest.mark.parametrize("grow, direction", [(True, "toward"), (False, "away")])
def test_growing_box_moves_toward_shrinking_away(grow, direction):
    widths = np.linspace(40, 120, 12)
    widths = widths if grow else widths[::-1]
    frames = [frame(i, (box(320, 180, w, 2 * w * 0.75), "dog", 1)) for i, w in enumerate(widths)]
    events = window_events(frames, SIZE)
    assert facts(events) == {("present", "dog", 1, None, None, None), ("moves", "dog", 1, None, direction, None)}
    (s,) = summarize_tracks(frames, SIZE)
    assert abs(s.scale_rate) > 0.5 and s.velocity_xy == pytest.approx((0.0, 0.0), abs=1e-6)


def test_two_still_classes_are_together():
    frames = [frame(i, (box(150, 200, 100, 200), "person", 1), (box(450, 280, 80, 60), "dog", 2)) for i in range(12)]
    events = window_events(frames, SIZE)
    assert facts(events) == {
        ("present", "person", 1, None, None, None),
        ("present", "dog", 1, None, None, None),
        ("together", "person", 1, None, None, "dog"),  # the larger (more salient) class comes first
    }
    together = next(e for e in events if e.kind == "together")
    assert together.track_ids == (1, 2)


def test_classes_rarely_seen_together_are_not_together():
    frames = [frame(i, (box(150, 200, 100, 200), "person", 1)) for i in range(12)]
    frames += [frame(i, (box(450, 280, 80, 60), "dog", 2)) for i in range(12, 24)]
    kinds = {e.kind for e in window_events(frames, SIZE)}
    assert "together" not in kinds


def test_car_that_stops():
    # drives right at 0.25 frame widths/s for 2 s, then stands still for 2 s
    frames = [frame(i, (box(100 + 40 * min(i, 8), 250, 120, 60), "car", 5)) for i in range(16)]
    events = window_events(frames, SIZE)
    assert facts(events) == {("present", "car", 1, None, None, None), ("stops", "car", 1, None, None, None)}
    stop = next(e for e in events if e.kind == "stops")
    assert stop.t_sec == pytest.approx(2.0) and stop.track_ids == (5,)


def test_two_people_walking_left_are_one_event_with_count_two():
    frames = [frame(i, (box(500 - 30 * i, 150, 50, 120), "person", 3), (box(560 - 30 * i, 220, 50, 120), "person", 4))
              for i in range(10)]
    events = window_events(frames, SIZE)
    assert facts(events) == {("present", "person", 2, None, None, None), ("moves", "person", 2, None, "left", None)}
    assert next(e for e in events if e.kind == "moves").track_ids == (3, 4)


def test_count_is_robust_to_one_spurious_detection():
    people = [(box(100 + 150 * k, 200, 60, 150), "person", k + 1) for k in range(3)]
    frames = [frame(i, *people) for i in range(8)]
    frames[3] = frame(3, *people, ((10, 10, 40, 60), "person", -1))  # one false positive
    present = next(e for e in window_events(frames, SIZE) if e.kind == "present")
    assert present.count == 3 and present.track_ids == (1, 2, 3)


def test_untracked_detections_give_presence_only():
    frames = [frame(i, (box(100 + 40 * i, 200, 80, 80), "cat", -1)) for i in range(8)]
    assert facts(window_events(frames, SIZE)) == {("present", "cat", 1, None, None, None)}
    assert summarize_tracks(frames, SIZE) == []


def test_flicker_below_min_share_is_not_present():
    frames = [frame(i) for i in range(10)]
    frames[4] = frame(4, ((10, 10, 60, 60), "bird", -1))
    assert window_events(frames, SIZE) == []
    assert present_class_ids(frames, SIZE) == []


def test_empty_and_single_frame_windows():
    assert window_events([], SIZE) == []
    assert window_events([frame(i) for i in range(5)], SIZE) == []
    events = window_events([frame(0, (box(20, 180, 40, 100), "person", 1))], SIZE)
    assert facts(events) == {("present", "person", 1, None, None, None)}  # at an edge, but nothing to enter from


def test_bad_frame_size_is_an_options_error():
    with pytest.raises(OptionsError):
        window_events(crossing_window(), (0, 360))


def test_edge_side_rules():
    # bottom-left corner while moving right: it came in from the left
    assert edge_side((0, 300, 50, 360), SIZE, (0.2, 0.0), entering=True) == "left"
    # same corner, moving up: it came in from the bottom
    assert edge_side((0, 300, 50, 360), SIZE, (0.0, -0.2), entering=True) == "bottom"
    # spanning the full height says nothing about top or bottom
    assert edge_side((0, 0, 50, 360), SIZE, (0.0, 0.0), entering=True) == "left"
    # leaving through a corner: the edge it moves toward
    assert edge_side((600, 0, 640, 40), SIZE, (0.0, -0.3), entering=False) == "top"
    margin = EDGE_MARGIN * W
    assert edge_side((margin + 1, 100, 200, 200), SIZE, (0.0, 0.0), entering=True) is None


def test_event_rejects_unknown_kind():
    with pytest.raises(ValueError):
        Event("jumps", "person", 1)


PERSON = {CLASS_INDEX["person"]}


def test_dominant_motion_is_what_moves_now_with_the_most_track_frames():
    car, person = CLASS_INDEX["car"], CLASS_INDEX["person"]
    # one person walks right for 8 frames, two cars drive left for 6: the cars have 12 track-frames
    frames = [frame(i, (box(100 + 40 * i, 200, 80, 160), "person", 1),
                    *[(box(600 - 50 * i, 100 + 100 * k, 60, 40), "car", 10 + k) for k in range(2) if i < 6])
              for i in range(8)]
    assert dominant_motion(frames, SIZE, {car, person}) == (car, "left")
    assert dominant_motion(frames, SIZE, {person}) == (person, "right")  # only the classes asked about
    still = [frame(i, (box(300, 200, 80, 160), "person", 1)) for i in range(8)]
    assert dominant_motion(still, SIZE, {person}) is None
    growing = [frame(i, (box(320, 180, 40 * 1.15 ** i, 80 * 1.15 ** i), "person", 1)) for i in range(8)]
    assert dominant_motion(growing, SIZE, {person}) == (person, "toward")


def test_heading_out_is_a_live_track_whose_steady_motion_leaves_the_frame_within_the_horizon():
    person, car = CLASS_INDEX["person"], CLASS_INDEX["car"]
    # a person 100 px from the right edge walking right at 160 px/s: out in about 0.6 s
    near_edge = [frame(i, (box(380 + 40 * i, 200, 80, 160), "person", 1), (box(200, 100, 60, 40), "car", 2))
                 for i in range(6)]
    assert heading_out(near_edge, SIZE, 3.0) == {person}  # the parked car is not
    assert heading_out(near_edge[:2], SIZE, 0.5) == set()  # 0.5 s is too soon for it
    # the same walk seen long ago (not in the last 0.5 s): no live track
    gone = near_edge[:3] + [frame(i) for i in range(3, 8)]
    assert heading_out(gone, SIZE, 3.0) == set()
    assert heading_out([], SIZE, 3.0) == set()
    assert car not in heading_out([frame(i, (box(300, 100 + i, 60, 40), "car", 2)) for i in range(8)], SIZE, 3.0)
    # walking in from the bottom: the box is cut by the bottom edge and its visible centre rises
    # fast as more of the person shows; that is coming in, not heading out through the top
    coming_in = [frame(i, (box(300, 400 - 60 * i, 80, 200), "person", 1)) for i in range(3)]
    assert heading_out(coming_in, SIZE, 3.0) == set()
