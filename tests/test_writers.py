"""Output writers: formats, clamped subtitle cues, atomic and refusing writes, strict parsers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from captioner import fileio, writers
from captioner.errors import CaptionerError
from captioner.result import SCHEMA_VERSION, Evidence, NextEvent, Result, Segment, VideoMeta
from captioner.writers import CAPTION_FORMATS, SubtitleParseError, get_writer, parse_srt, parse_vtt

EXTENSIONS = {"json", "srt", "vtt", "txt", "tsv"}


def make_result() -> Result:
    """Three segments: the 2nd overlaps the 1st, the 3rd touches the 2nd exactly."""
    return Result(
        video=VideoMeta(path="clips/street.mp4", duration_sec=9.0, fps=25.0, width=160, height=120),
        segments=[
            Segment(0.0, 3.5, "a person walks a dog", 0.81,
                    forecast=[NextEvent("a car will probably enter from the left (0.72)", 0.72, "enter", "car", side="left"),
                          NextEvent("the dog will stay (0.60)", 0.60, "stay", "dog")],
                    evidence=Evidence(track_ids=[1, 2], classes=["person", "dog"], frame_times_sec=[0.0, 0.25])),
            Segment(3.0, 6.0, "a car drives <unk> past & stops", 0.64,
                    forecast=[NextEvent("the car will probably leave to the right (0.55)", 0.55, "leave", "car", side="right")],
                    evidence=Evidence(track_ids=[3], classes=["car"], frame_times_sec=[3.0])),
            Segment(6.0, 8.25, "une personne traverse la rue", 0.5),  # no forecast; non-ASCII kept
        ],
        settings={"fps": 4.0},
        models={"yolo": {"name": "yolo11n.pt", "sha256": "0" * 64}},
    )


def assert_increasing_non_overlapping(cues):
    for start, end, _ in cues:
        assert end > start
    for (_, prev_end, _), (next_start, _, _) in zip(cues, cues[1:]):
        assert prev_end <= next_start


def test_all_formats_written_and_parsed_back(tmp_path: Path):
    paths = get_writer("all", tmp_path)(make_result(), "clips/street.mp4")
    assert {p.name for p in paths} == {f"street.{ext}" for ext in EXTENSIONS}
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)  # no temp files left

    srt = parse_srt((tmp_path / "street.srt").read_text(encoding="utf-8"))
    vtt = parse_vtt((tmp_path / "street.vtt").read_text(encoding="utf-8"))
    expected = [(0.0, 3.0, "a person walks a dog"),  # clamped to where the overlapping cue begins
                (3.0, 6.0, "a car drives <unk> past & stops"),
                (6.0, 8.25, "une personne traverse la rue")]
    assert srt == expected
    assert vtt == expected  # "<unk>" and "&" survive WebVTT escaping
    assert_increasing_non_overlapping(srt)
    assert_increasing_non_overlapping(vtt)

    srt_text = (tmp_path / "street.srt").read_text(encoding="utf-8")
    assert "00:00:00,000 --> 00:00:03,000" in srt_text and "00:00:06,000 --> 00:00:08,250" in srt_text
    vtt_text = (tmp_path / "street.vtt").read_text(encoding="utf-8")
    assert vtt_text.startswith("WEBVTT\n\n")
    assert "00:00:06.000 --> 00:00:08.250" in vtt_text and "&lt;unk&gt;" in vtt_text
    assert "will probably" not in srt_text + vtt_text  # forecasts only with show_next

    assert (tmp_path / "street.txt").read_text(encoding="utf-8").splitlines() == [t for _, _, t in expected]


def test_show_next_adds_the_segment_s_forecast_lines(tmp_path: Path):
    """One line per forecast the segment keeps (at most ``options.forecast_lines``, 2 by default)."""
    get_writer("all", tmp_path, show_next=True)(make_result(), "street.mp4")
    for cues in (parse_srt((tmp_path / "street.srt").read_text("utf-8")),
                 parse_vtt((tmp_path / "street.vtt").read_text("utf-8"))):
        assert [text.split("\n") for _, _, text in cues] == [
            ["a person walks a dog", "a car will probably enter from the left (0.72)", "the dog will stay (0.60)"],
            ["a car drives <unk> past & stops", "the car will probably leave to the right (0.55)"],
            ["une personne traverse la rue"],  # no forecast: no second line
        ]
        assert_increasing_non_overlapping(cues)


def test_json_round_trip(tmp_path: Path):
    result = make_result()
    (path,) = get_writer("json", tmp_path)(result, "street.mp4")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert Result.from_dict(data) == result
    assert "une personne" in text and text.startswith('{\n  "schema_version"')  # indent 2


def test_tsv_in_milliseconds(tmp_path: Path):
    (path,) = get_writer("tsv", tmp_path)(make_result(), "street.mp4")
    rows = [line.split("\t") for line in path.read_text("utf-8").splitlines()]
    assert rows[0] == ["start", "end", "text"]
    assert rows[1:] == [["0", "3500", "a person walks a dog"],
                        ["3000", "6000", "a car drives <unk> past & stops"],
                        ["6000", "8250", "une personne traverse la rue"]]


def test_cues_clamped_and_zero_length_dropped():
    result = make_result()
    result.segments = [
        Segment(2.0, 4.0, "second", 1.0),
        Segment(0.0, 5.0, "first, overlaps everything", 1.0),  # out of order on purpose
        Segment(2.0, 2.0, "zero length", 1.0),
        Segment(4.0, 4.0004, "rounds to zero ms", 1.0),
        Segment(4.5, 7.0, "line one\n\nline two --> three", 1.0),  # blank line and arrow in text
        Segment(7.0, 9.0, "   ", 1.0),  # empty caption: no cue
    ]
    cues = parse_srt(writers.WriteSRT(".").render(result))
    assert cues == [(0.0, 2.0, "first, overlaps everything"), (2.0, 4.0, "second"),
                    (4.5, 7.0, "line one\nline two -> three")]
    assert parse_vtt(writers.WriteVTT(".").render(result)) == cues


def test_long_timestamps():
    assert writers.format_timestamp(3725.0456, decimal_marker=",") == "01:02:05,046"
    assert writers.format_timestamp(100 * 3600 + 0.5) == "100:00:00.500"
    assert writers.format_timestamp(-1.0) == "00:00:00.000"


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path):
    result = make_result()
    (tmp_path / "street.vtt").write_bytes(b"original vtt\n")
    with pytest.raises(CaptionerError, match=r"street\.vtt exists; use --overwrite"):
        get_writer("all", tmp_path)(result, "street.mp4")
    # the refusal came before anything was written: only the pre-existing file, byte-identical
    assert os.listdir(tmp_path) == ["street.vtt"]
    assert (tmp_path / "street.vtt").read_bytes() == b"original vtt\n"

    paths = get_writer("all", tmp_path, overwrite=True)(result, "street.mp4")
    assert len(paths) == len(EXTENSIONS)
    assert parse_vtt((tmp_path / "street.vtt").read_text("utf-8"))[0][2] == "a person walks a dog"


def test_refusal_keeps_all_existing_outputs_identical(tmp_path: Path):
    get_writer("all", tmp_path)(make_result(), "street.mp4")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = make_result()
    other.segments[0].caption = "something else"
    for fmt in ["all", *CAPTION_FORMATS]:  # the tracks formats write other files (and need detections)
        with pytest.raises(CaptionerError, match="exists; use --overwrite"):
            get_writer(fmt, tmp_path)(other, "street.mp4")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch):
    real_write = fileio._write_staged
    calls = []

    def failing_write(tmp: Path, content: str) -> None:
        calls.append(tmp)
        if len(calls) == 3:  # the third file: two are already staged
            with open(tmp, "w") as handle:
                handle.write(content[: len(content) // 2])  # a partial file on disk...
            raise OSError(28, "No space left on device")  # ...then the disk fills up
        real_write(tmp, content)

    monkeypatch.setattr(fileio, "_write_staged", failing_write)
    with pytest.raises(OSError, match="No space left"):
        get_writer("all", tmp_path)(make_result(), "street.mp4")
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []  # no outputs, no partial or temp files


def test_failure_during_commit_rolls_back(tmp_path: Path, monkeypatch):
    real_commit = fileio.commit_file
    committed = []

    def failing_commit(tmp: Path, target: Path, *, overwrite: bool) -> None:
        if len(committed) == 2:
            raise OSError(5, "I/O error")
        real_commit(tmp, target, overwrite=overwrite)
        committed.append(target)

    monkeypatch.setattr(fileio, "commit_file", failing_commit)
    with pytest.raises(OSError, match="I/O error"):
        get_writer("all", tmp_path)(make_result(), "street.mp4")
    assert len(committed) == 2 and os.listdir(tmp_path) == []


def test_file_created_meanwhile_is_not_clobbered(tmp_path: Path, monkeypatch):
    """A target that appears after the check (another worker) is not overwritten."""
    real_check = fileio.check_targets

    def check_then_race(paths, *, overwrite):
        real_check(paths, overwrite=overwrite)
        (tmp_path / "street.txt").write_text("other worker\n")

    monkeypatch.setattr(fileio, "check_targets", check_then_race)
    with pytest.raises(CaptionerError, match="exists"):
        get_writer("all", tmp_path)(make_result(), "street.mp4")
    assert os.listdir(tmp_path) == ["street.txt"]
    assert (tmp_path / "street.txt").read_text() == "other worker\n"


def test_unknown_format_and_output_dir_created(tmp_path: Path):
    with pytest.raises(CaptionerError, match="unknown output format"):
        get_writer("docx", tmp_path)
    (path,) = get_writer("SRT", tmp_path / "a" / "b")(make_result(), Path("x/y/clip.final.mov"))
    assert path == tmp_path / "a" / "b" / "clip.final.srt" and path.is_file()


def test_output_file_mode_follows_umask(tmp_path: Path):
    (path,) = get_writer("txt", tmp_path)(make_result(), "street.mp4")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("bad", [
    "1\n00:00:01.000 --> 00:00:02,000\nhi\n",  # '.' instead of ','
    "1\n00:00:01,00 --> 00:00:02,000\nhi\n",  # two-digit milliseconds
    "1\n00:61:01,000 --> 00:62:02,000\nhi\n",  # minutes out of range
    "1\n0:00:01,000 --> 00:00:02,000\nhi\n",  # one-digit hours
    "1\n00:00:01,000 -> 00:00:02,000\nhi\n",  # wrong arrow
    "1\n00:00:03,000 --> 00:00:02,000\nhi\n",  # ends before it starts
    "x\n00:00:01,000 --> 00:00:02,000\nhi\n",  # no index
    "1\nhi\n",  # no timing line
])
def test_parse_srt_rejects_malformed(bad: str):
    with pytest.raises(SubtitleParseError):
        parse_srt(bad)


@pytest.mark.parametrize("bad", [
    "00:00:01.000 --> 00:00:02.000\nhi\n",  # no header
    "WEBVTT\n\n00:00:01,000 --> 00:00:02.000\nhi\n",  # ',' instead of '.'
    "WEBVTT\n\n00:00:01.0000 --> 00:00:02.000\nhi\n",
    "WEBVTT\n\n00:01.000 --> 00:00:02.00\nhi\n",
    "WEBVTT\n\n00:00:05.000 --> 00:00:02.000\nhi\n",
    "WEBVTT\n\ncue-1\nnot a timing\nhi\n",
])
def test_parse_vtt_rejects_malformed(bad: str):
    with pytest.raises(SubtitleParseError):
        parse_vtt(bad)


def test_parsers_accept_valid_variants():
    srt = "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\nhello\r\nworld\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\nbye\r\n"
    assert parse_srt(srt) == [(1.0, 2.5, "hello\nworld"), (3.0, 4.0, "bye")]
    vtt = ("WEBVTT - captions\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:02.500 align:start\nfish &amp; chips\n\n"
           "01:00:00.000 --> 01:00:01.000\nlate\n")
    assert parse_vtt(vtt) == [(1.0, 2.5, "fish & chips"), (3600.0, 3601.0, "late")]
    assert parse_srt("") == [] and parse_vtt("WEBVTT\n") == []
