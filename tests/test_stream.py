"""One runtime: live sessions and offline captioning are the same Stream, the public API, options,
and the layout rule that the runtime never imports the training kit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import captioner
from captioner.options import CaptionOptions
from captioner.errors import OptionsError
from captioner.windows import NOTHING_SEEN
from captioner.pipeline import merge_segments
from captioner.video import VideoSource

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "captioner"


def live_segments(model, path: Path, **session_options):
    """Push every frame of a file, decoded, at its source rate into a live session (as a camera
    would), collecting the windows it closes."""
    with VideoSource(path) as video:
        info = video.info
        session = model.new_live_stream(info.size, **session_options)
        segments, analysed, pushed = [], 0, 0
        for frame in video.frames():
            update = session.push(frame.image_bgr, frame.t_sec)
            pushed += 1
            analysed += update.analysed
            assert len(update.detections.box_xyxy) == len(update.detections.class_id)  # boxes for every frame
            if update.segment is not None:
                segments.append(update.segment)
    final = session.finish()  # by default a session ends where its last frame stops showing, as a file does
    return merge_segments(segments + [final]), analysed, pushed, info


def assert_live_equals_offline(model, path: Path) -> None:
    offline = model.caption(path)
    live, analysed, pushed, info = live_segments(model, path)
    assert info.fps >= 20 and pushed > 2 * analysed  # pushed at the source rate, analysed at 4 fps
    assert analysed == sum(len(s.evidence.frame_times_sec) for s in offline.segments)
    assert [s.caption for s in live] == [s.caption for s in offline.segments]
    for a, b in zip(live, offline.segments):
        assert (a.start, a.end, a.caption, a.confidence) == (b.start, b.end, b.caption, b.confidence)
        assert a.forecast == b.forecast and a.evidence == b.evidence


def test_live_session_at_source_rate_equals_offline_generated(model, tmp_path):
    from captioner.training.synthetic import make_clip

    clip = make_clip(tmp_path / "moving.mp4", duration_sec=9.0, fps=25.0, width=480, height=270)
    assert_live_equals_offline(model, clip)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["visionet_alley_walkers.mp4", "asiya_queue_sidewalk.mp4"])
def test_live_session_at_source_rate_equals_offline_real(model, shared_dir, name):
    assert_live_equals_offline(model, shared_dir / "data" / "videos" / name)


def test_only_analysis_rate_frames_step_the_lstm(model, tmp_path):
    from captioner.training.synthetic import make_clip

    clip = make_clip(tmp_path / "fast.mp4", duration_sec=2.0, fps=25.0, width=320, height=180)
    with VideoSource(clip) as video:
        session = model.new_live_stream(video.info.size)
        states, times = [], []
        for frame in video.frames():
            before = session.lstm_state
            update = session.push(frame.image_bgr, frame.t_sec)
            states.append(session.lstm_state is not before)
            if update.analysed:
                times.append(frame.t_sec)
    assert sum(states) == len(times) == 8  # 2 s at the model's 4 fps, out of 50 frames
    assert all(abs(b - a - 0.25) < 0.041 for a, b in zip(times, times[1:]))  # within one source frame
    assert model.analysis_fps == 4.0 == model.trained.training["config"]["analysis_fps"]


def test_public_api_like_the_readme(model):
    assert captioner.load_model is not None and captioner.CaptionOptions is CaptionOptions
    result = model.caption(REPO / "samples" / "bus_people.mp4", beam_size=1)
    assert isinstance(result, captioner.Result) and result.segments
    assert result.settings["beam_size"] == 1 and result.settings["imgsz"] == 320
    with pytest.raises(OptionsError, match="loaded with"):
        model.caption(REPO / "samples" / "bus_people.mp4", imgsz=640)  # needs another model
    with pytest.raises(OptionsError, match="unknown option"):
        model.caption(REPO / "samples" / "bus_people.mp4", fps=10)


@pytest.mark.parametrize("changes, match", [
    ({"imgsz": 10}, "image size"), ({"imgsz": 320.5}, "image size"), ({"conf": 0}, "confidence"),
    ({"device": "tpu"}, "device"), ({"window_sec": 0.1}, "window"), ({"window_sec": float("nan")}, "window"),
    ({"beam_size": 0}, "beam"), ({"style": "poetry"}, "style"), ({"caption_every_sec": -1}, "refresh"),
])
def test_options_are_checked_in_one_place(changes, match):
    with pytest.raises(OptionsError, match=match):
        CaptionOptions(**changes)
    with pytest.raises(OptionsError, match=match):
        CaptionOptions().replace(**changes)
    assert CaptionOptions(device="cuda:1").device == "cuda:1"


# ---- layout ---------------------------------------------------------------------------------------

def _imports_training(path: Path) -> list[str]:
    """Import statements in ``path`` that reach the training kit."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            names = [a.name for a in node.names]
            if module in (".training", "captioner.training") or module.startswith((".training.", "captioner.training.")) \
                    or (module in (".", "captioner") and "training" in names):
                found.append(f"{path.name}:{node.lineno} from {module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names if a.name.startswith("captioner.training")]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found.append(f"{path.name}:{node.lineno} import_module(...)")  # no back doors either
    return found


def test_runtime_never_imports_training():
    runtime = [p for p in PACKAGE.glob("*.py")] + [REPO / "app.py"]
    offenders = [line for p in runtime for line in _imports_training(p)]
    assert offenders == []
    assert _imports_training(PACKAGE / "training" / "eval.py") == []  # training imports the runtime, not itself oddly
    # and at run time: the whole runtime, CLI and web app included, loads without the training kit
    code = ("import sys, captioner, captioner.cli, captioner.webapp, captioner.live, captioner.jobs\n"
            "assert not [m for m in sys.modules if m.startswith('captioner.training')], sys.modules.keys()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr


def test_train_and_eval_are_subcommands_registered_by_the_training_kit():
    from captioner.cli import subcommands

    commands = subcommands()
    assert {"features", "live", "train", "eval"} <= set(commands)
    assert commands["train"].value == "captioner.training.cli:cmd_train"


def test_a_stray_detection_is_never_named(model):
    """A cat seen in one frame of sixteen, weakly, is not named by the caption or the forecast;
    the people seen in every frame are. (The evidence bar, applied to what the decoder sees.)"""
    import numpy as np

    from captioner.coco import CLASS_INDEX
    from captioner.features import FrameFeatures
    from captioner.perception import Detections

    person, cat = CLASS_INDEX["person"], CLASS_INDEX["cat"]
    emb = model.trained.network.cfg.embedding_dim
    rng = np.random.default_rng(0)
    stream = model.new_stream((640, 360), live=True)
    for i in range(16):
        boxes = [[100 + 2 * i, 60, 220 + 2 * i, 350], [400 - 2 * i, 50, 520 - 2 * i, 350]]
        classes, conf, ids = [person, person], [0.9, 0.88], [1, 2]
        if i == 7:
            boxes.append([300, 250, 340, 290]), classes.append(cat), conf.append(0.3), ids.append(-1)
        det = Detections(np.array(boxes, np.float32), np.array(conf, np.float32), np.array(classes, np.int32),
                         np.array(ids, np.int32), rng.normal(size=(len(boxes), emb)).astype(np.float32))
        update = stream.push_features(FrameFeatures(i / 4, i, det, rng.normal(size=emb).astype(np.float32),
                                                    rng.normal(size=(9, model.trained.network.cfg.cell_dim)).astype(np.float32)))
    segment = stream.finish()
    words = segment.caption.split()
    assert "cat" not in words and "cats" not in words and segment.evidence.classes == ["person"]
    assert not any(e.class_name == "cat" for e in update.forecast + segment.forecast)
    assert segment.caption != NOTHING_SEEN


def test_people_walking_across_are_not_said_to_sit_or_stand(model, monkeypatch):
    """Two people crossing the view at walking pace (0.25 frame widths/s): the decoder may not say
    a posture of them, and gait words are made likelier. The same people standing still: nothing
    is banned or favoured but a race, never said of video, and sitting, since they are seen whole and upright."""
    import numpy as np

    import captioner.windows as windows_module
    from captioner.coco import CLASS_INDEX
    from captioner.grounding.verbs import VERB_CLASSES
    from captioner.grounding.words import GAIT_VERBS, RACE_WORDS, STILL_VERBS
    from captioner.features import FrameFeatures
    from captioner.perception import Detections

    person = CLASS_INDEX["person"]
    emb, cell_dim = model.trained.network.cfg.embedding_dim, model.trained.network.cfg.cell_dim
    vocab = model.trained.vocab
    seen = {}
    real_beam_search = windows_module.beam_search

    def spy(*args, **kwargs):
        seen["banned"], seen["bias"] = kwargs["banned"], kwargs.get("bias")
        return real_beam_search(*args, **kwargs)

    monkeypatch.setattr(windows_module, "beam_search", spy)

    def caption(speed_px: float) -> str:
        rng = np.random.default_rng(0)
        stream = model.new_stream((640, 360))
        for i in range(16):
            x = 100 + speed_px * i
            boxes = np.array([[x, 60, x + 120, 350], [x + 200, 50, x + 320, 350]], np.float32)
            det = Detections(boxes, np.array([0.9, 0.88], np.float32), np.array([person, person], np.int32),
                             np.array([1, 2], np.int32), rng.normal(size=(2, emb)).astype(np.float32))
            stream.push_features(FrameFeatures(i / 4, i, det, rng.normal(size=emb).astype(np.float32), background))
        return stream.finish().caption

    background = np.random.default_rng(1).normal(size=(9, cell_dim)).astype(np.float32)  # a still camera
    still_ids = [vocab.stoi[w] for w in STILL_VERBS if w in vocab.stoi]
    gait_ids = [vocab.stoi[w] for w in GAIT_VERBS if w in vocab.stoi]
    assert still_ids and gait_ids
    walking = caption(speed_px=40.0)  # 160 px/s in a 640 px frame
    assert walking != NOTHING_SEEN and not set(walking.split()) & STILL_VERBS, walking
    assert bool(seen["banned"][still_ids].all()) and bool((seen["bias"][gait_ids] > 0).all())
    caption(speed_px=0.0)
    # standing still, seen whole and upright (120 x 290 px boxes): staying put is free, sitting is not
    sit_ids = [vocab.stoi[w] for w in VERB_CLASSES["sit"] if w in vocab.stoi]
    stand_ids = [i for i in still_ids if i not in sit_ids]
    assert sit_ids and stand_ids and bool(seen["banned"][sit_ids].all())
    assert not seen["banned"][stand_ids].any() and (seen["bias"] is None or not (seen["bias"][still_ids] > 0).any())
    race_ids = [vocab.stoi[w] for w in RACE_WORDS if w in vocab.stoi]
    assert race_ids and bool(seen["banned"][race_ids].all())


def test_forecasts_speak_of_what_is_in_view_and_moves_now(model, monkeypatch):
    """A person walks right across the view and out. While in view the forecast may say they keep
    moving right (the head's direction is not used against the tracks); one missed detection
    keeps them in view; two analysed frames without them and they are no longer "in view"."""
    import numpy as np

    import captioner.grounding.forecast as forecast_module
    from captioner.coco import CLASS_INDEX
    from captioner.features import FrameFeatures
    from captioner.perception import Detections

    person = CLASS_INDEX["person"]
    emb, cell_dim = model.trained.network.cfg.embedding_dim, model.trained.network.cfg.cell_dim
    seen = []
    real = forecast_module.forecast_events

    def spy(presence, enter, leave, direction, present_now, leave_side, moving, *args, **kwargs):
        seen.append((dict(present_now), moving))
        return real(presence, enter, leave, direction, present_now, leave_side, moving, *args, **kwargs)

    monkeypatch.setattr(forecast_module, "forecast_events", spy)
    rng = np.random.default_rng(0)
    stream = model.new_stream((640, 360), live=True)
    for i in range(20):
        if i < 12 or i == 13:  # frame 12: one missed detection; from frame 14 on: gone
            x = 60 + 40 * i
            det = Detections(np.array([[x, 60, x + 80, 340]], np.float32), np.array([0.9], np.float32),
                             np.array([person], np.int32), np.array([1], np.int32),
                             rng.normal(size=(1, emb)).astype(np.float32))
        else:
            det = Detections.empty()
        update = stream.push_features(FrameFeatures(i / 4, i, det, rng.normal(size=emb).astype(np.float32),
                                                    rng.normal(size=(9, cell_dim)).astype(np.float32)))
        assert all(e.kind != "move" or e.direction == "right" for e in update.forecast)
    assert seen[11] == ({person: 1}, (person, "right"))  # walking right, in view
    assert seen[12][0] == {person: 1}  # missed once: still in view
    assert seen[15][0] == {} and seen[19][0] == {}  # walked out
    assert not any(e.kind in ("stay", "move", "leave") for e in update.forecast)


def test_enter_forecasts_learn_the_pace_of_this_source():
    """The head says 0.5 for "another person may enter". In a room where one new person arrived in
    a minute the stream's own rate (1 - exp(-3 s / 60 s) = 0.05) outweighs it after a while; on a
    road where a car arrives every second it rises; before any watching it is the head's."""
    import math

    import numpy as np

    from captioner.coco import CLASS_INDEX, NUM_CLASSES
    from captioner.grounding.forecast import PRIOR_HORIZONS, Arrivals
    from frames import box, frame

    person, car = CLASS_INDEX["person"], CLASS_INDEX["car"]
    head = [0.0] * NUM_CLASSES
    head[person] = head[car] = 0.5
    office, road = Arrivals(), Arrivals()
    assert office.blend(head, 3.0) == head
    for i in range(241):  # 60 s at 4 fps
        office.add(frame(i, (box(300, 180, 80, 160), "person", 1 if i < 120 else 2)))  # a second person at 30 s
        road.add(frame(i, (box(100 + 20 * (i % 4), 100, 60, 40), "car", 100 + i // 4)))  # a new car every second
    watched = 60.0 / 3.0
    p_office = 1 - math.exp(-3.0 / 60.0)
    expected = (PRIOR_HORIZONS * 0.5 + watched * p_office) / (PRIOR_HORIZONS + watched)
    assert office.blend(head, 3.0)[person] == pytest.approx(expected) and expected < 0.3  # not listed
    assert road.blend(head, 3.0)[car] > 0.6
    assert office.count == {person: 1} and road.count == {car: 60}  # the first frame's objects did not arrive
    assert np.allclose(office.blend(head, 3.0)[car], PRIOR_HORIZONS * 0.5 / (PRIOR_HORIZONS + watched))
    for i in range(241, 4801):  # 20 minutes of that road: the ids remembered stay bounded
        road.add(frame(i, (box(100, 100, 60, 40), "car", 100 + i // 4)))
    assert road.count == {car: 1200} and len(road.seen) <= 1000
