"""Annotation drawing, the MP4 writer and rendering a Result onto its source video."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import annotate
from captioner.annotate import AnnotatedVideoWriter, draw_annotations, render_annotated_video, track_color
from captioner.errors import CaptionerError, VideoError
from captioner.perception import Detections
from captioner.result import NextEvent, Result, Segment, VideoMeta

needs_ffmpeg = pytest.mark.skipif(annotate._find_ffmpeg() is None, reason="no FFmpeg with libx264 (pip install imageio-ffmpeg)")


def dets(boxes, track_ids, class_ids=None, conf=None) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.asarray(conf if conf is not None else [0.9] * n, np.float32),
        np.asarray(class_ids if class_ids is not None else [0] * n, np.int32),
        np.asarray(track_ids, np.int32),
    )


def make_clip(path: Path, n_frames: int = 10, size=(160, 120), fps: float = 10.0) -> Path:
    """A small clip whose frame i is uniformly grey level 20*i (so frames are identifiable)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.full((height, width, 3), 20 * i, np.uint8))
    writer.release()
    return path


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


# ------------------------------------------------------------------------------------------------
# draw_annotations


def is_white(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) BGR -> bright and colourless (anti-aliased small text rarely reaches 255)."""
    return (pixels.min(axis=-1) > 170) & (np.ptp(pixels, axis=-1) < 40)


def is_amber(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 2] > 170) & (pixels[..., 1] > 170) & (pixels[..., 2] - pixels[..., 0] > 80)


@pytest.mark.parametrize("size", [(160, 120), (1920, 1080), (161, 97)])
def test_draw_changes_box_and_banner_not_input(size):
    width, height = size
    image = np.full((height, width, 3), 128, np.uint8)
    original = image.copy()
    box = [0.2 * width, 0.1 * height, 0.6 * width, 0.5 * height]
    out = draw_annotations(image, dets([box], [7], class_ids=[16]), "a dog runs across the grass from left to right",
                           "the dog will probably leave to the right (0.61)", t_sec=12.5)
    assert np.array_equal(image, original)  # input untouched
    assert out.shape == image.shape and out.dtype == np.uint8 and out is not image

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    color = np.array(track_color(7), np.uint8)  # green: not confusable with the amber forecast
    # the box outline is drawn in the track's colour
    assert (out[(y1 + y2) // 2, x1] == color).all() and (out[(y1 + y2) // 2, x2] == color).all()
    assert (out[y2, (x1 + x2) // 2] == color).all()
    # inside the box (away from label and outline) the image is unchanged
    assert (out[(y1 + y2) // 2, (x1 + x2) // 2] == 128).all()

    # the bottom rows are darkened by the banner and carry text in two colours
    assert np.median(out[-max(3, height // 20):, :]) < 128
    banner = out[int(height * (1 - annotate.MAX_BANNER_FRACTION)):, :].reshape(-1, 3).astype(int)
    assert is_white(banner).any()  # the caption
    assert is_amber(banner).any()  # the forecast line, in its own colour
    assert not is_amber(out[: int(height * 0.5)].reshape(-1, 3).astype(int)).any()
    # the top-right corner (no box, no label, no banner) is untouched
    assert (out[: height // 20, -width // 10:] == 128).all()


def test_track_colours_stable_and_distinct():
    assert track_color(5) == track_color(5) == track_color(5 + len(annotate.TRACK_PALETTE))
    assert track_color(1) != track_color(2)
    assert track_color(-1) == annotate.UNTRACKED_COLOR
    image = np.zeros((120, 160, 3), np.uint8)
    a = draw_annotations(image, dets([[10, 10, 60, 60]], [7]), "", "")
    b = draw_annotations(image, dets([[80, 10, 150, 60], [10, 10, 60, 60]], [2, 7]), "", "")
    assert (a[35, 10] == track_color(7)).all() and (b[35, 10] == track_color(7)).all()  # same track, same colour


def test_draw_without_text_has_no_banner_and_tolerates_odd_input():
    image = np.full((120, 160, 3), 90, np.uint8)
    # a box partly outside the frame, a NaN box, an unknown class id, an untracked detection
    d = dets([[-20, -20, 40, 40], [np.nan, 0, 10, 10], [100, 60, 400, 300]], [-1, 4, 9], class_ids=[0, 0, 200])
    out = draw_annotations(image, d, "", "")
    assert (out[-3:, 60:90] == 90).all()  # no caption, no banner
    assert not np.array_equal(out, image)
    gray = draw_annotations(np.full((120, 160), 90, np.uint8), None, "caf\u00e9 \u2014 ok", "")
    assert gray.shape == (120, 160, 3)


def test_long_caption_wraps_within_frame():
    image = np.zeros((120, 160, 3), np.uint8)
    long_caption = " ".join(["pneumonoultramicroscopicsilicovolcanoconiosis"] + ["word"] * 60)
    out = draw_annotations(image, None, long_caption, "x " * 50)
    rows_with_text = np.where((is_white(out.astype(int)) | is_amber(out.astype(int))).any(axis=1))[0]
    assert len(rows_with_text) > 0
    assert rows_with_text.min() >= 120 * (1 - annotate.MAX_BANNER_FRACTION) - 1  # banner height capped
    assert (out[:, -2:] == 0).all()  # wrapped: nothing reaches the right margin


@pytest.mark.parametrize("width", [120, 160, 213, 320, 641])
@pytest.mark.parametrize("word", ["word", "mm", "i", "pneumonoultramicroscopic"])
def test_cut_short_caption_keeps_its_dots_inside_the_frame(width, word):
    """The banner's last line gets "..." when the caption is cut: the dots must fit too (a full
    line plus "..." ran off the frame)."""
    height = width * 3 // 4
    out = draw_annotations(np.zeros((height, width, 3), np.uint8), None, " ".join([word] * 400), "")
    assert (out[:, -2:] == 0).all()
    scale, thickness = annotate._font_scale(width, height)
    for line in ["word word word", "x" * 80, "a." * 40, "...", ""]:
        cut = annotate._with_ellipsis(line, 50, scale, thickness)
        assert cut.endswith("...") and cv2.getTextSize(cut, annotate.FONT, scale, thickness)[0][0] <= 50


# ------------------------------------------------------------------------------------------------
# AnnotatedVideoWriter


@needs_ffmpeg
@pytest.mark.parametrize("size", [(160, 120), (161, 121)])
def test_writer_produces_readable_h264(tmp_path: Path, size):
    width, height = size
    out = tmp_path / "out.mp4"
    with AnnotatedVideoWriter(out, 10.0, size) as writer:
        for i in range(10):
            writer.write(np.full((height, width, 3), 20 * i, np.uint8))
    assert writer.backend == "ffmpeg"
    assert os.listdir(tmp_path) == ["out.mp4"]
    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc in ("avc1", "h264")
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 10.0) < 1e-3
    cap.release()
    frames = read_all(out)
    assert len(frames) == 10
    assert frames[0].shape == (height + height % 2, width + width % 2, 3)  # odd sizes padded to even
    assert abs(int(frames[5][height // 2, width // 2, 1]) - 100) <= 4  # frame order and content kept
    # +faststart: the moov atom precedes mdat, so browsers can start playing before the end
    head = out.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")


@needs_ffmpeg
def test_writer_exception_in_with_leaves_nothing(tmp_path: Path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with AnnotatedVideoWriter(out, 10.0, (160, 120)) as writer:
            for _ in range(3):
                writer.write(np.zeros((120, 160, 3), np.uint8))
            assert len(os.listdir(tmp_path)) == 1  # the temp file exists while encoding
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


@needs_ffmpeg
def test_writer_ffmpeg_failure_leaves_nothing(tmp_path: Path, monkeypatch):
    out = tmp_path / "out.mp4"
    writer = AnnotatedVideoWriter(out, 10.0, (160, 120))
    writer._proc.kill()  # FFmpeg dies mid-stream (crash, killed, disk full...)
    writer._proc.wait()
    with pytest.raises(CaptionerError, match="out.mp4"):
        for _ in range(200):  # enough bytes to overflow the pipe buffer
            writer.write(np.zeros((120, 160, 3), np.uint8))
        writer.close()
    assert os.listdir(tmp_path) == []


def test_writer_refuses_existing_and_empty(tmp_path: Path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(CaptionerError, match="exists; use --overwrite"):
        AnnotatedVideoWriter(out, 10.0, (160, 120))
    assert out.read_bytes() == b"keep" and os.listdir(tmp_path) == ["out.mp4"]
    with pytest.raises(CaptionerError, match="no frames"):
        with AnnotatedVideoWriter(tmp_path / "empty.mp4", 10.0, (160, 120)):
            pass
    assert os.listdir(tmp_path) == ["out.mp4"]
    with pytest.raises(CaptionerError, match="fps"):
        AnnotatedVideoWriter(tmp_path / "x.mp4", 0.0, (160, 120))


def test_writer_opencv_fallback(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(annotate, "_find_ffmpeg", lambda: None)
    out = tmp_path / "out.mp4"
    with caplog.at_level("WARNING", logger="captioner.annotate"):
        with AnnotatedVideoWriter(out, 10.0, (161, 121)) as writer:
            for i in range(10):
                writer.write(np.full((121, 161, 3), 20 * i, np.uint8))
    assert writer.backend == "opencv"
    assert "browsers may not play" in caplog.text
    frames = read_all(out)
    assert len(frames) == 10 and frames[0].shape == (122, 162, 3)
    assert os.listdir(tmp_path) == ["out.mp4"]


# ------------------------------------------------------------------------------------------------
# render_annotated_video


def clip_result(path: Path) -> Result:
    return Result(
        VideoMeta(str(path), 1.0, 10.0, 160, 120),
        [Segment(0.0, 0.5, "a person stands", 0.9,
                 forecast=[NextEvent("a dog will probably enter from the left (0.70)", 0.7, "enter", "dog", side="left")]),
         Segment(0.5, 1.0, "a person waves", 0.8)],
    )


@needs_ffmpeg
def test_render_annotated_video(tmp_path: Path):
    src = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out" / "clip.annotated.mp4"
    # analysed at a lower rate than the source (every 4th frame), boxes in different places
    timeline = [(0.0, dets([[10, 10, 50, 50]], [1])), (0.4, dets([[90, 10, 150, 50]], [2])),
                (0.8, Detections.empty())]
    calls = []
    path = render_annotated_video(src, out, clip_result(src), timeline, progress=lambda d, t: calls.append((d, t)))
    assert path == out and sorted(os.listdir(out.parent)) == ["clip.annotated.mp4"]
    frames = read_all(out)
    assert len(frames) == 10 and frames[0].shape == (120, 160, 3)
    assert calls[-1] == (10, 10)

    def reddish(frame: np.ndarray, x: int) -> bool:
        """Is there a red/orange box edge near column x, rows 20-40? (source frames are grey;
        track colours 1 and 2 are red-dominant; H.264 blurs a 1 px line, so look at a strip)"""
        strip = frame[20:40, max(0, x - 2): x + 3].astype(int)
        return bool((strip[..., 2] - strip[..., 0] > 40).any())

    assert (np.array(track_color(1))[[2]] > 200).all() and (np.array(track_color(2))[[2]] > 200).all()
    # frames 0-3 show track 1's box (left edge x=10), frames 4-7 track 2's (x=90), frames 8-9 none
    for i, frame in enumerate(frames):
        assert (reddish(frame, 10), reddish(frame, 90)) == (0 <= i < 4, 4 <= i < 8), f"frame {i}"
    # the banner darkens the bottom rows (source grey 20*i)
    assert frames[9][-3:, :].mean() < 20 * 9 - 30


@needs_ffmpeg
def test_render_refuses_existing_and_bad_source(tmp_path: Path):
    src = make_clip(tmp_path / "clip.mp4", n_frames=3)
    out = tmp_path / "clip.annotated.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(CaptionerError, match="exists; use --overwrite"):
        render_annotated_video(src, out, clip_result(src), [])
    assert out.read_bytes() == b"keep"
    render_annotated_video(src, out, clip_result(src), [], overwrite=True)
    assert len(read_all(out)) == 3

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError):
        render_annotated_video(bad, tmp_path / "bad.annotated.mp4", clip_result(bad), [])
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4", "clip.annotated.mp4", "clip.mp4"]
