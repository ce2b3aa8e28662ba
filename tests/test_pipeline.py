"""End to end: load_model -> caption / stream, the CLI, subtitles and the annotated video.
Uses the shipped weights/captioner.pt and the sample clip (or a generated one)."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import cli
from captioner.pipeline import merge_segments
from captioner.windows import NOTHING_SEEN
from captioner.result import Evidence, Segment
from captioner.writers import parse_srt, parse_vtt

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "bus_people.mp4"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    if SAMPLE.exists():
        return SAMPLE
    from captioner.training.synthetic import make_clip

    return make_clip(tmp_path_factory.mktemp("s") / "bus_people.mp4", duration_sec=8, fps=10)


def test_caption_returns_grounded_timed_segments(model, sample):
    calls = []
    result = model.caption(sample, window_sec=4.0, progress=lambda d, t: calls.append((d, t)))
    assert result.segments and calls and calls[-1][0] == calls[-1][1]
    for a, b in zip(result.segments, result.segments[1:]):
        assert a.end <= b.start + 1e-6 and a.caption != b.caption  # identical neighbours were merged
    for seg in result.segments:
        assert seg.start < seg.end and seg.caption and 0.0 <= seg.confidence <= 1.0
        assert set(seg.evidence.classes) >= {"person"} and seg.evidence.frame_times_sec
        assert all(seg.start - 1e-6 <= t < seg.end + 1e-6 for t in seg.evidence.frame_times_sec)
        for event in seg.forecast:
            assert 0.0 <= event.probability <= 1.0 and f"({event.probability:.2f})" in event.text
    assert result.models["yolo"]["sha256"] and result.models["captioner"]["sha256"]
    assert result.video.duration_sec == pytest.approx(cv2.VideoCapture(str(sample)).get(cv2.CAP_PROP_FRAME_COUNT)
                                                      / cv2.VideoCapture(str(sample)).get(cv2.CAP_PROP_FPS), abs=0.05)


def test_live_sessions_have_their_own_state(model, sample):
    frames = []
    cap = cv2.VideoCapture(str(sample))
    while len(frames) < 12:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    a = model.new_live_stream((frames[0].shape[1], frames[0].shape[0]))
    b = model.new_live_stream((frames[0].shape[1], frames[0].shape[0]))
    assert a.perception.tracker is not b.perception.tracker and a.tokenizer is not b.tokenizer
    blank = np.full_like(frames[0], 114)
    for i, image in enumerate(frames):
        ua = a.push(image, i * 0.25)
        ub = b.push(blank, i * 0.25)
    a.settle(), b.settle()  # the preview captions are written by a worker thread
    assert len(ua.detections) > 0 and a.caption and a.caption != NOTHING_SEEN
    assert len(ub.detections) == 0 and b.caption == NOTHING_SEEN  # b never saw a's frames
    updates = list(model.stream((img, i * 0.25) for i, img in enumerate(frames[:5])))
    assert len(updates) == 6 and all(u.server_ms > 0 and u.analysed for u in updates[:5])
    assert updates[-1].segment is not None and updates[-1].segment.end == pytest.approx(1.25)  # the open window, closed


def test_the_live_preview_caption_never_holds_up_a_frame(model, sample, monkeypatch):
    """The beam search of a live preview runs on a worker: a frame that asks for a caption goes on
    at once, and the caption comes with a later frame (``settle`` waits for it)."""
    import threading

    import captioner.stream as stream_module

    ok, image = cv2.VideoCapture(str(sample)).read()
    assert ok
    started, release = threading.Event(), threading.Event()
    real = stream_module.describe_window

    def slow_describe(*args, **kwargs):
        started.set()
        release.wait(10.0)  # were the preview written inline, the push below would wait here
        return real(*args, **kwargs)

    session = model.new_live_stream((image.shape[1], image.shape[0]))
    first = session.push(image, 0.0)  # a stream's first caption is written inline: shown at once
    assert first.analysed and first.caption and first.caption_changed
    monkeypatch.setattr(stream_module, "describe_window", slow_describe)
    for t in (0.25, 0.5, 0.75):  # no refresh due yet
        assert session.push(image, t).caption == first.caption
    refresh = session.push(image, 1.0)  # due: asked of the worker, not waited for
    assert started.wait(10.0) and not release.is_set()
    assert refresh.analysed and refresh.caption == first.caption and not refresh.caption_changed
    later = session.push(image, 1.25)  # still being written: this frame goes on without it
    assert later.analysed and later.caption == first.caption
    release.set()
    session.settle()
    assert session._preview is None and session.caption and session.caption != NOTHING_SEEN
    inline = model.new_live_stream((image.shape[1], image.shape[0]), caption_in_background=False)
    first = inline.push(image, 0.0)  # written in the frame's own thread: there at once
    assert first.caption and first.caption_changed and not inline.settle()


def test_merge_segments_joins_identical_neighbours():
    def seg(s, e, text):
        return Segment(s, e, text, 0.5, [], Evidence([1], ["person"], [s]))

    merged = merge_segments([seg(0, 4, "a man walks"), seg(4, 8, "a man walks"), seg(8, 12, "a bus drives")])
    assert [(m.start, m.end, m.caption) for m in merged] == [(0, 8, "a man walks"), (8, 12, "a bus drives")]
    assert merged[0].evidence.frame_times_sec == [0, 4]


def _cues_ok(cues):
    assert cues
    for (s1, e1, _), (s2, e2, _) in zip(cues, cues[1:]):
        assert s1 < e1 <= s2 < e2


def test_cli_writes_every_format_and_subtitles_validate(sample, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main([str(sample), "-o", str(out), "-f", "all", "--imgsz", "320", "--show-next", "--quiet"])
    assert code == 0
    stem = sample.stem
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".srt", ".tsv", ".txt", ".vtt"]
    _cues_ok(parse_srt((out / f"{stem}.srt").read_text()))
    _cues_ok(parse_vtt((out / f"{stem}.vtt").read_text()))
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["schema_version"] and data["video"]["path"] == str(sample) and data["settings"]["imgsz"] == 320
    first = data["segments"][0]
    assert {"start", "end", "caption", "confidence", "next", "evidence"} <= set(first)
    assert {"text", "probability", "kind", "class_name", "horizon_sec"} <= set(first["next"][0])
    # existing outputs are kept unless --overwrite
    before = (out / f"{stem}.json").read_bytes()
    assert cli.main([str(sample), "-o", str(out), "--imgsz", "320", "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err and (out / f"{stem}.json").read_bytes() == before
    assert cli.main([str(sample), "-o", str(out), "--imgsz", "320", "--quiet", "--overwrite"]) == 0


def test_cli_reports_bad_inputs_and_captions_the_rest(sample, tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "corrupt.mp4").write_bytes(sample.read_bytes()[:2000])
    good = tmp_path / "good.mp4"
    shutil.copy(sample, good)
    out = tmp_path / "out"
    code = cli.main([str(tmp_path / "empty.mp4"), str(tmp_path / "notes.mp4"), str(good), str(tmp_path / "corrupt.mp4"),
                     str(tmp_path / "missing.mp4"), "-o", str(out), "-f", "json", "--imgsz", "320", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("empty.mp4", "notes.mp4", "corrupt.mp4", "missing.mp4"):
        assert name in err
    assert [p.name for p in out.iterdir()] == ["good.json"]


def test_cli_usage_errors_exit_2(sample):
    assert cli.main([]) == 2
    assert cli.main([str(sample), "--fps", "0"]) == 2
    assert cli.main([str(sample), "--imgsz", "5"]) == 2
    assert cli.main([str(sample), "-f", "docx"]) == 2
    assert cli.main([str(sample), "--window", "-1"]) == 2


def test_cli_annotate_writes_a_playable_video_at_source_rate(sample, tmp_path):
    out = tmp_path / "out"
    assert cli.main([str(sample), "-o", str(out), "-f", "json", "--annotate", "--imgsz", "320", "--quiet"]) == 0
    annotated = out / f"{sample.stem}.annotated.mp4"
    cap, src = cv2.VideoCapture(str(annotated)), cv2.VideoCapture(str(sample))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(src.get(cv2.CAP_PROP_FPS), rel=0.01)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == src.get(cv2.CAP_PROP_FRAME_COUNT)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
