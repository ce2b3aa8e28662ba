"""Stage 9: output writers: one class per format, like openai/whisper's ``utils.py``.

>>> write = get_writer("all", "out/", show_next=True)
>>> write(result, "clips/street.mp4")   # out/street.json, .srt, .vtt, .txt, .tsv

Besides the five caption formats, ``tracks`` (``NAME.tracks.csv``) and ``tracks.jsonl``
(``NAME.tracks.jsonl``) write one row per detection of every analysed frame, for analysts; they
need the result's per-frame detections (``caption(..., keep_detections=True)``), which
``jobs.caption_file`` asks for when one of them is requested. ``-f`` takes one format, ``all``
(the five caption formats) or a comma-separated list such as ``json,tracks``.

Every file is written atomically (``fileio.write_files_atomically``: temporary file in the same
directory, fsync, rename), and a run that would replace an existing file is refused *before*
anything is written unless ``overwrite=True``. When several formats are written at once, all of them are rendered and
staged first and only then renamed into place, so a failure part-way leaves no partial output.

``parse_srt`` / ``parse_vtt`` read subtitles back strictly (the tests use them to validate what
was written).
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import CaptionerError
from .fileio import StrPath, write_files_atomically
from .result import Result

log = logging.getLogger(__name__)

class SubtitleParseError(CaptionerError, ValueError):
    """An SRT/VTT text is malformed (bad timestamp, missing header, cue ending before it starts)."""


# ------------------------------------------------------------------------------------------------
# timestamps and cues


def format_timestamp(seconds: float, *, decimal_marker: str = ".") -> str:
    """``HH:MM:SS<marker>mmm`` (hours grow past two digits if needed); negative clamps to 0."""
    return _format_ms(round(max(seconds, 0.0) * 1000.0), decimal_marker)


def _format_ms(ms: int, decimal_marker: str) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


@dataclass(frozen=True)
class Cue:
    """One subtitle cue, in integer milliseconds so clamping cannot be undone by rounding."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def _clean_lines(text: str) -> list[str]:
    # a blank line ends an SRT/VTT cue, and "-->" would read as a timing line: keep neither
    return [" ".join(line.split()).replace("-->", "->") for line in text.splitlines() if line.strip()]


def subtitle_cues(result: Result, *, show_next: bool = False) -> list[Cue]:
    """Cues for SRT/VTT: sorted, clamped so each ends at or before the next begins, no empty ones.

    Segments whose caption (and, with ``show_next``, forecast) is empty are skipped, as are
    segments with non-finite times. A cue that clamps to zero length is dropped.
    """
    raw: list[tuple[int, int, tuple[str, ...]]] = []
    for seg in result.segments:
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)):
            log.warning("skipping a segment with non-finite times (%r, %r)", seg.start, seg.end)
            continue
        lines = _clean_lines(seg.caption)
        if show_next:  # every forecast line the segment keeps (options.forecast_lines)
            lines += [line for event in seg.forecast for line in _clean_lines(event.text)]
        if not lines:
            continue
        raw.append((round(max(seg.start, 0.0) * 1000), round(max(seg.end, 0.0) * 1000), tuple(lines)))
    raw.sort(key=lambda c: (c[0], c[1]))  # stable: equal starts keep pipeline order
    cues: list[Cue] = []
    for i, (start_ms, end_ms, lines) in enumerate(raw):
        if i + 1 < len(raw):
            end_ms = min(end_ms, raw[i + 1][0])
        if end_ms <= start_ms:
            log.debug("dropping a zero-length cue at %d ms: %s", start_ms, lines[0])
            continue
        cues.append(Cue(start_ms, end_ms, lines))
    return cues


# ------------------------------------------------------------------------------------------------
# writers


def output_stem(video_path: StrPath | None = None, stem: str | None = None) -> str:
    """The file stem outputs are named after: ``stem`` when given, else the video's."""
    return stem or (Path(str(video_path)).stem if video_path is not None else "") or "output"


class ResultWriter:
    """Base class: renders a ``Result`` to text; ``__call__`` writes ``<output_dir>/<stem><ext>``
    (the stem is the video's, or the ``stem`` given)."""

    extension: str = ""
    needs_detections: bool = False  # renders result.frame_detections (caption with keep_detections)

    def __init__(self, output_dir: StrPath, *, show_next: bool = False, overwrite: bool = False):
        self.output_dir = Path(output_dir)
        self.show_next = show_next
        self.overwrite = overwrite

    def render(self, result: Result) -> str:
        raise NotImplementedError

    def output_path(self, video_path: StrPath | None = None, *, stem: str | None = None) -> Path:
        return self.output_dir / f"{output_stem(video_path, stem)}.{self.extension}"

    def output_paths(self, video_path: StrPath | None = None, *, stem: str | None = None) -> list[Path]:
        return [self.output_path(video_path, stem=stem)]

    def __call__(self, result: Result, video_path: StrPath | None = None, *, stem: str | None = None) -> list[Path]:
        return write_result([self], result, video_path, stem=stem, overwrite=self.overwrite)


class WriteJSON(ResultWriter):
    extension = "json"

    def render(self, result: Result) -> str:
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


class WriteSRT(ResultWriter):
    extension = "srt"

    def render(self, result: Result) -> str:
        blocks = [
            f"{i}\n{_format_ms(c.start_ms, ',')} --> {_format_ms(c.end_ms, ',')}\n" + "\n".join(c.lines) + "\n"
            for i, c in enumerate(subtitle_cues(result, show_next=self.show_next), start=1)
        ]
        return "\n".join(blocks)


class WriteVTT(ResultWriter):
    extension = "vtt"

    def render(self, result: Result) -> str:
        # & < > must be escaped in WebVTT cue text (a model token like "<unk>" would vanish as a tag)
        blocks = ["WEBVTT\n"] + [
            f"{_format_ms(c.start_ms, '.')} --> {_format_ms(c.end_ms, '.')}\n"
            + "\n".join(html.escape(line, quote=False) for line in c.lines) + "\n"
            for c in subtitle_cues(result, show_next=self.show_next)
        ]
        return "\n".join(blocks)


class WriteTXT(ResultWriter):
    """One caption per line, in segment order (empty captions skipped)."""

    extension = "txt"

    def render(self, result: Result) -> str:
        lines = [" ".join(seg.caption.split()) for seg in result.segments]
        return "".join(f"{line}\n" for line in lines if line)


class WriteTSV(ResultWriter):
    """``start<TAB>end<TAB>text`` with integer milliseconds, as whisper writes it.

    Times are the segments' own (not clamped like subtitle cues): this is a data export.
    """

    extension = "tsv"

    def render(self, result: Result) -> str:
        rows = ["start\tend\ttext"]
        for seg in result.segments:
            if not (math.isfinite(seg.start) and math.isfinite(seg.end)):
                continue
            text = " ".join(seg.caption.split())  # no tabs or newlines inside a field
            rows.append(f"{round(1000 * seg.start)}\t{round(1000 * seg.end)}\t{text}")
        return "\n".join(rows) + "\n"


TRACK_FIELDS = ("t_sec", "track_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2")


def detection_rows(result: Result) -> list[dict]:
    """One dict per detection of every analysed frame, in time order: ``TRACK_FIELDS`` (seconds,
    track id or -1 where the tracker has not confirmed one, COCO class, confidence, box corners in
    source-frame pixels)."""
    if not result.frame_detections:
        raise CaptionerError(f"{result.video.path}: the tracks formats need the per-frame detections; "
                             "caption with keep_detections=True")
    rows = []
    for t_sec, det in result.frame_detections:
        for box, conf, class_id, track_id, name in zip(det.box_xyxy, det.confidence, det.class_id, det.track_id,
                                                       det.class_names):
            rows.append({"t_sec": round(float(t_sec), 3), "track_id": int(track_id), "class_id": int(class_id),
                         "class_name": name, "confidence": round(float(conf), 4),
                         **{k: round(float(v), 1) for k, v in zip(("x1", "y1", "x2", "y2"), box)}})
    return rows


class WriteTracksCSV(ResultWriter):
    """``NAME.tracks.csv``: one row per detection (``TRACK_FIELDS``), with a header line."""

    extension = "tracks.csv"
    needs_detections = True

    def render(self, result: Result) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TRACK_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(detection_rows(result))
        return buffer.getvalue()


class WriteTracksJSONL(ResultWriter):
    """``NAME.tracks.jsonl``: one JSON object per detection, the box as ``box_xyxy``."""

    extension = "tracks.jsonl"
    needs_detections = True

    def render(self, result: Result) -> str:
        lines = []
        for row in detection_rows(result):
            box = [row.pop(k) for k in ("x1", "y1", "x2", "y2")]
            lines.append(json.dumps({**row, "box_xyxy": box}, ensure_ascii=False))
        return "".join(f"{line}\n" for line in lines)


WRITERS: dict[str, type[ResultWriter]] = {
    "json": WriteJSON,
    "srt": WriteSRT,
    "vtt": WriteVTT,
    "txt": WriteTXT,
    "tsv": WriteTSV,
    "tracks": WriteTracksCSV,
    "tracks.jsonl": WriteTracksJSONL,
}
CAPTION_FORMATS: tuple[str, ...] = ("json", "srt", "vtt", "txt", "tsv")  # what "all" writes
OUTPUT_FORMATS: tuple[str, ...] = (*WRITERS, "all")
TIMED_FORMATS = ("srt", "vtt")  # subtitles need a timeline: not written for a still image


def parse_formats(output_format: str) -> list[str]:
    """``json``, ``all`` or ``json,tracks,...`` -> the format names, in order, once each; an
    unknown name is a ``CaptionerError`` naming it."""
    formats: list[str] = []
    for part in output_format.split(","):
        fmt = part.strip().lower().lstrip(".")
        if fmt not in OUTPUT_FORMATS:
            raise CaptionerError(f"unknown output format {part.strip()!r}; choose from {', '.join(OUTPUT_FORMATS)} "
                                 "(several: comma-separated, e.g. json,tracks)")
        formats += CAPTION_FORMATS if fmt == "all" else [fmt]
    return list(dict.fromkeys(formats))


def writer_formats(output_format: str, still_image: bool = False) -> list[str]:
    """The formats ``-f output_format`` writes; ``all`` leaves out subtitles for a still image,
    and asking for subtitles of a still image is an error."""
    formats = parse_formats(output_format)
    if still_image:
        named = [part.strip().lower().lstrip(".") for part in output_format.split(",")]
        asked = [f for f in named if f in TIMED_FORMATS]  # by name, not through "all"
        if asked:
            raise CaptionerError(f"a still image has no timeline, so no {asked[0]} subtitles; use -f json, txt, tsv or all")
        formats = [f for f in formats if f not in TIMED_FORMATS]
    return formats


def write_result(
    writers: Sequence[ResultWriter], result: Result, video_path: StrPath | None = None, *, stem: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Render every writer's output, then write them all atomically; returns the paths written."""
    contents: dict[Path, str] = {}
    for writer in writers:
        contents[writer.output_path(video_path, stem=stem)] = writer.render(result)
    paths = write_files_atomically(contents, overwrite=overwrite)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


class WriteAll:
    """Writes several formats at once (``-f all``: the caption formats), all-or-nothing."""

    def __init__(self, output_dir: StrPath, *, show_next: bool = False, overwrite: bool = False,
                 formats: Sequence[str] = CAPTION_FORMATS):
        self.writers = [WRITERS[f](output_dir, show_next=show_next, overwrite=overwrite) for f in formats]
        self.overwrite = overwrite

    def output_paths(self, video_path: StrPath | None = None, *, stem: str | None = None) -> list[Path]:
        return [w.output_path(video_path, stem=stem) for w in self.writers]

    def __call__(self, result: Result, video_path: StrPath | None = None, *, stem: str | None = None) -> list[Path]:
        return write_result(self.writers, result, video_path, stem=stem, overwrite=self.overwrite)


def get_writer(
    output_format: str, output_dir: StrPath, *, show_next: bool = False, overwrite: bool = False
) -> ResultWriter | WriteAll:
    """A callable ``(result, video_path=None, *, stem=None) -> [paths written]`` for one format,
    ``"all"`` or a comma-separated list; ``output_paths(...)`` says which files it would write."""
    formats = parse_formats(output_format)
    if len(formats) == 1 and output_format.strip().lower().lstrip(".") != "all":
        return WRITERS[formats[0]](output_dir, show_next=show_next, overwrite=overwrite)
    return WriteAll(output_dir, show_next=show_next, overwrite=overwrite, formats=formats)


# ------------------------------------------------------------------------------------------------
# parsing subtitles back (strict)

_SRT_TIMING = re.compile(
    r"^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$"
)
# WebVTT: hours optional; cue settings may follow the end time
_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_VTT_TIMING = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?$")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000.0


def _blocks(text: str) -> list[list[str]]:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [block.split("\n") for block in re.split(r"\n[ \t]*\n", text.strip("\n")) if block.strip()]


def _check_order(start: float, end: float, where: str) -> None:
    if end < start:
        raise SubtitleParseError(f"{where}: cue ends ({end:.3f}s) before it starts ({start:.3f}s)")


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """Parse SRT text into ``[(start_sec, end_sec, text)]`` (cue lines joined with ``\\n``).

    Raises ``SubtitleParseError`` on a missing/non-numeric index, a malformed timing line
    (must be ``HH:MM:SS,mmm --> HH:MM:SS,mmm``) or a cue that ends before it starts.
    """
    cues = []
    for n, block in enumerate(_blocks(text), start=1):
        if len(block) < 2 or not re.fullmatch(r"[0-9]+", block[0].strip()):
            raise SubtitleParseError(f"SRT cue {n}: expected a numeric index line, got {block[0]!r}")
        match = _SRT_TIMING.match(block[1].strip())
        if not match:
            raise SubtitleParseError(f"SRT cue {n}: malformed timing line {block[1]!r}")
        g = match.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        _check_order(start, end, f"SRT cue {n}")
        cues.append((start, end, "\n".join(block[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """Parse WebVTT text into ``[(start_sec, end_sec, text)]`` (entities unescaped).

    Requires the ``WEBVTT`` header; skips NOTE/STYLE/REGION blocks; a cue may have an
    identifier line. Raises ``SubtitleParseError`` on a malformed timing line or a cue that
    ends before it starts.
    """
    blocks = _blocks(text)
    if not blocks or not re.match(r"^WEBVTT(?:[ \t].*)?$", blocks[0][0]):
        raise SubtitleParseError("not WebVTT: the first line must be 'WEBVTT'")
    cues = []
    for n, block in enumerate(blocks[1:], start=1):
        if block[0].startswith(("NOTE", "STYLE", "REGION")) and "-->" not in block[0]:
            continue
        timing_index = 0 if "-->" in block[0] else 1  # optional cue identifier first
        if timing_index >= len(block):
            raise SubtitleParseError(f"VTT block {n}: a cue identifier without a timing line: {block[0]!r}")
        match = _VTT_TIMING.match(block[timing_index].strip())
        if not match:
            raise SubtitleParseError(f"VTT block {n}: malformed timing line {block[timing_index]!r}")
        g = match.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        _check_order(start, end, f"VTT block {n}")
        cues.append((start, end, html.unescape("\n".join(block[timing_index + 1:]))))
    return cues
