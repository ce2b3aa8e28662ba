"""forecast.py: next-event targets and baselines on synthetic tracks (pure numpy, no YOLO)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from captioner.coco import CLASS_INDEX, NUM_CLASSES
from captioner.features import FrameFeatures
from captioner.training.forecast import (DIRECTIONS, EDGE_ENTER_SCORE, HORIZON_SEC, NextEventScores, constant_velocity_baseline,
                                persistence_baseline, targets_for_window)
from frames import FPS, H, SIZE, W, box, frame  # noqa: F401  (shared test helpers)

PERSON, DOG, CAR, CAT = (CLASS_INDEX[n] for n in ("person", "dog", "car", "cat"))


def walker(i: int) -> tuple:
    """A person walking right at 120 px/s (0.1875 frame widths/s), visible up to frame 17."""
    return (box(100 + 30 * i, 200, 60, 150), "person", 1)


def only(array: np.ndarray, *classes: int) -> bool:
    expected = np.zeros(NUM_CLASSES, np.float32)
    expected[list(classes)] = 1.0
    return array.dtype == np.float32 and array.shape == (NUM_CLASSES,) and np.array_equal(array, expected)


def clip_person_leaves_dog_arrives() -> tuple[list[FrameFeatures], list[FrameFeatures]]:
    """Past 0-2.75 s: the walker. Future 3-5.75 s: the walker until frame 17 (then gone), and a
    still dog (new track 2) from frame 14."""
    past = [frame(i, walker(i)) for i in range(12)]
    future = []
    for i in range(12, 24):
        objects = [walker(i)] if i <= 17 else []
        if i >= 14:
            objects.append((box(200, 300, 80, 60), "dog", 2))
        future.append(frame(i, *objects))
    return past, future


def test_targets_person_leaves_dog_enters_motion_right():
    past, future = clip_person_leaves_dog_arrives()
    t = targets_for_window(past, future, SIZE)
    assert only(t.presence, PERSON, DOG)
    assert only(t.enter, DOG)  # the person's track id was already seen in the past
    assert only(t.leave, PERSON)
    assert DIRECTIONS[t.direction] == "right"


def test_targets_still_scene_changes_nothing():
    still = lambda i: frame(i, (box(320, 180, 100, 200), "person", 4), (box(100, 300, 60, 40), "cat", -1))
    t = targets_for_window([still(i) for i in range(12)], [still(i) for i in range(12, 24)], SIZE)
    assert only(t.presence, PERSON, CAT)  # untracked but seen in every frame
    assert only(t.enter) and only(t.leave)
    assert DIRECTIONS[t.direction] == "none"


def test_targets_one_missed_detection_at_the_end_is_not_a_leave():
    past = [frame(i, walker(i)) for i in range(8)]
    future = [frame(i, walker(i)) for i in range(8, 15)] + [frame(15)]  # missing only in the very last frame
    assert only(targets_for_window(past, future, SIZE).leave)


def test_targets_dominant_direction_by_track_frames():
    past = [frame(i) for i in range(4)]
    future = [frame(i, (box(500 - 30 * i, 100, 40, 80), "person", 1), (box(500 - 30 * i, 250, 40, 80), "person", 2),
                    *([(box(100 + 30 * i, 300, 60, 40), "car", 3)] if i < 8 else []))
              for i in range(12)]
    t = targets_for_window(past, future, SIZE)
    assert DIRECTIONS[t.direction] == "left"  # 24 track-frames left beat 8 right
    assert only(t.enter, PERSON, CAR)


def test_targets_empty_future():
    t = targets_for_window([frame(0, walker(0))], [], SIZE)
    assert only(t.presence) and only(t.enter) and only(t.leave) and t.direction == 0


def check_scores(s: NextEventScores) -> None:
    for a in (s.presence, s.enter, s.leave):
        assert a.shape == (NUM_CLASSES,) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert s.direction_probs.shape == (len(DIRECTIONS),) and s.direction_probs.sum() == pytest.approx(1.0)


def test_persistence_baseline():
    # person (track 1) all along, walking right; cat only early; a dog track appears at frame 4 and is gone at 7
    past = []
    for i in range(12):
        objects = [walker(i)]
        if i < 4:
            objects.append((box(500, 80, 40, 30), "cat", -1))
        if 4 <= i <= 6:
            objects.append((box(400, 300, 60, 40), "dog", 2))
        if i == 10:
            objects.append((box(400, 300, 60, 40), "dog", -1))  # 1 of the last 5 frames (last second)
        past.append(frame(i, *objects))
    s = persistence_baseline(past, SIZE)
    check_scores(s)
    assert s.presence[PERSON] == 1.0 and s.presence[CAT] == 0.0
    assert s.presence[DOG] == pytest.approx(0.2)
    duration = 11 / FPS
    assert s.enter[DOG] == pytest.approx(1 - math.exp(-1 / duration * HORIZON_SEC))  # one new track in 2.75 s
    assert s.enter[PERSON] == 0.0  # the person was there from the first frame
    assert s.leave[DOG] == 0.0  # no dog track is live at the end: nothing to leave
    assert s.leave[PERSON] == 0.0  # no person track ever disappeared
    assert DIRECTIONS[int(np.argmax(s.direction_probs))] == "right" and s.direction_probs.max() == 1.0


def test_persistence_baseline_empty_past():
    s = persistence_baseline([], SIZE)
    check_scores(s)
    assert s.presence.sum() == 0 and s.direction_probs[0] == 1.0


def test_constant_velocity_walker_near_right_edge_leaves():
    # walker at cx = 100 + 30*i: last past frame i=17 -> cx 610 px, exits in ~0.2 s; a still dog stays
    past = [frame(i, walker(i), (box(200, 300, 80, 60), "dog", 2)) for i in range(6, 18)]
    s = constant_velocity_baseline(past, SIZE)
    check_scores(s)
    assert only(s.leave, PERSON)
    assert s.presence[PERSON] == 0.0 and s.presence[DOG] == 1.0
    assert DIRECTIONS[int(np.argmax(s.direction_probs))] == "right" and s.direction_probs.max() == 1.0
    # persistence, by contrast, expects the person to stay
    assert persistence_baseline(past, SIZE).presence[PERSON] == 1.0


def test_constant_velocity_walker_in_the_middle_stays():
    past = [frame(i, walker(i)) for i in range(12)]  # ends at cx 430 px: 210 px from the edge = 1.75 s at 120 px/s
    s = constant_velocity_baseline(past, SIZE, horizon_sec=1.0)
    assert only(s.leave) and s.presence[PERSON] == 1.0
    s3 = constant_velocity_baseline(past, SIZE, horizon_sec=3.0)
    assert only(s3.leave, PERSON) and s3.presence[PERSON] == 0.0


def test_constant_velocity_enter_from_unconfirmed_edge_detection():
    past = [frame(i, (box(320, 180, 100, 200), "person", 1)) for i in range(8)]
    past[-1] = frame(7, (box(320, 180, 100, 200), "person", 1), ((0, 200, 50, 260), "car", -1), ((300, 100, 340, 140), "dog", -1))
    s = constant_velocity_baseline(past, SIZE)
    check_scores(s)
    assert s.enter[CAR] == pytest.approx(EDGE_ENTER_SCORE)  # at the left edge, not yet tracked
    assert s.enter[DOG] == 0.0  # unconfirmed, but in the middle of the frame
    assert s.direction_probs[0] == 1.0  # nothing moves
    assert only(s.leave)


def test_baselines_agree_with_targets_on_a_still_scene():
    still = [frame(i, (box(320, 180, 100, 200), "person", 4)) for i in range(24)]
    t = targets_for_window(still[:12], still[12:], SIZE)
    for s in (persistence_baseline(still[:12], SIZE), constant_velocity_baseline(still[:12], SIZE)):
        assert np.array_equal(s.presence, t.presence) and np.array_equal(s.leave, t.leave)
        assert int(np.argmax(s.direction_probs)) == t.direction


# ---- which forecast lines are shown (options.forecast_lines) ----------------------------------------

def _event(kind: str, p: float, text: str = ""):
    from captioner.result import NextEvent

    return NextEvent(text or f"{kind} ({p:.2f})", p, kind, "person")


def test_forecast_lines_are_the_most_informative_and_never_a_certain_restatement():
    from captioner.grounding.forecast import forecast_lines

    still = _event("stay", 1.0, "people will still be in view (1.00)")
    stays = _event("stay", 0.7, "the person will probably stay in view (0.70)")
    leave = _event("leave", 0.9)
    enter = _event("enter", 0.45)
    events = [still, stays, leave, enter]
    assert forecast_lines(events, 2) == [leave, enter]  # 0.9 and 0.45 from "nothing changes"; a 0.7 stay is 0.3
    assert forecast_lines(events, 3) == [leave, enter, stays]
    assert forecast_lines([still], 2) == []  # only the present, restated: nothing to say
    assert forecast_lines(events, 0) == [leave, enter, stays, still]  # every line, ranked the same way


def test_segments_and_live_updates_show_at_most_the_option_s_lines(model, synthetic_clip):
    from captioner.grounding.forecast import restates_the_present

    default = model.caption(synthetic_clip)
    every = model.caption(synthetic_clip, forecast_lines=0)
    assert [s.caption for s in default.segments] == [s.caption for s in every.segments]
    for shown, allowed in zip(default.segments, every.segments):
        assert len(shown.forecast) <= 2 and not any(restates_the_present(e) for e in shown.forecast)
        assert shown.forecast == [e for e in allowed.forecast if not restates_the_present(e)][:2]
    assert sum(len(s.forecast) for s in every.segments) >= sum(len(s.forecast) for s in default.segments)
    updates = [u for u in model.stream(((f.image_bgr, f.t_sec) for f in _frames(synthetic_clip)), forecast_lines=1)]
    assert updates and all(len(u.forecast) <= 1 for u in updates)


def _frames(path):
    from captioner.video import sample_frames

    return list(sample_frames(path, None))


def test_forecast_lines_option_is_checked():
    import pytest

    from captioner import CaptionOptions, OptionsError
    from captioner.cli import main

    for bad in (-1, 17, 1.5, True):
        with pytest.raises(OptionsError, match="forecast lines"):
            CaptionOptions(forecast_lines=bad)
    assert main(["x.mp4", "--forecasts", "-1"]) == 2
