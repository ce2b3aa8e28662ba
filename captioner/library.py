"""A searchable caption library: an SQLite FTS5 index over every segment of an output folder.

``OUTDIR/library.sqlite`` holds, per segment, the caption, the next-event lines and the object
classes (full-text, Porter-stemmed, ranked by BM25), with the video, the start and end times,
the number of tracks and, per class, the most objects of it seen at once (for ``--class person
--min-count 3``). ``captioner batch`` keeps it up to date as inputs finish; ``captioner index
OUTDIR`` rebuilds it from the json outputs (also those of plain ``captioner -o OUTDIR``);
``captioner search OUTDIR "dog runs on the beach"`` and the web app's Library tab query it.

>>> library = Library("out")
>>> for hit in library.search("dog runs on the beach", classes=["dog"]):
...     print(hit.video, hit.start, hit.end, hit.caption)

The index is derived data: it can always be rebuilt from the json files. Writes are single
transactions in WAL mode, so searches (the web app, ``captioner search``) can run while a batch
adds videos.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import CaptionerError
from .result import SCHEMA_VERSION as RESULT_SCHEMA, Result
from .sqlitefile import SQLiteFile

log = logging.getLogger(__name__)

LIBRARY_NAME = "library.sqlite"
COLUMN_WEIGHTS = (10.0, 2.0, 1.0)  # BM25 weights: caption, next-event lines, classes

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id           INTEGER PRIMARY KEY,
    stem         TEXT NOT NULL UNIQUE,   -- OUTDIR/STEM.json
    source       TEXT NOT NULL,          -- the input as the json records it (path or URL)
    json_name    TEXT NOT NULL,          -- file name in OUTDIR
    json_mtime_ns INTEGER NOT NULL,      -- to tell when the json changed
    duration_sec REAL NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS segments USING fts5(
    caption, next_text, classes,
    video_id UNINDEXED, start_sec UNINDEXED, end_sec UNINDEXED, track_count UNINDEXED, confidence UNINDEXED,
    tokenize = 'porter unicode61'
);
CREATE TABLE IF NOT EXISTS segment_classes (
    segment_id INTEGER NOT NULL,         -- segments.rowid
    video_id   INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    count      INTEGER NOT NULL,         -- most objects of the class seen at once in the segment
    PRIMARY KEY (segment_id, class_name)
);
CREATE INDEX IF NOT EXISTS segment_classes_by_class ON segment_classes (class_name, count);
CREATE INDEX IF NOT EXISTS segment_classes_by_video ON segment_classes (video_id);
"""


class LibraryError(CaptionerError):
    """The library index cannot be read or written, or a query makes no sense."""


@dataclass(frozen=True)
class Hit:
    """One segment found by a search."""

    segment_id: int
    video: str  # the output stem (OUTDIR/VIDEO.json)
    source: str  # the input the json records
    start: float  # seconds
    end: float
    caption: str
    next_text: str  # the next-event lines, one per line
    classes: dict[str, int]  # class -> most objects of it seen at once
    track_count: int
    confidence: float
    score: float  # BM25 relevance, larger is better (0 when there is no text query)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoEntry:
    stem: str
    source: str
    json_path: Path
    duration_sec: float


@dataclass
class IndexReport:
    videos: int = 0
    segments: int = 0
    skipped: list[str] = field(default_factory=list)  # "FILE: why", for json files that are not outputs


def fts_query(text: str) -> str:
    """A user's words -> an FTS5 query that cannot be a syntax error: every word and every
    "quoted phrase" as a quoted term, joined by OR (BM25 ranks segments matching more of them,
    and rarer ones, first), plus the whole text as one phrase, so an exact caption phrase wins."""
    phrases = [p.strip() for p in re.findall(r'"([^"]*)"', text) if p.strip()]
    words = re.findall(r"\w+", re.sub(r'"[^"]*"', " ", text).lower())
    all_words = re.findall(r"\w+", text.lower())
    terms = phrases + words + ([" ".join(all_words)] if len(all_words) > 1 else [])
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in dict.fromkeys(terms))


def _segment_rows(result: Result) -> Iterator[tuple[str, str, str, float, float, int, float, dict[str, int]]]:
    for seg in result.segments:
        evidence = seg.evidence
        counts = dict(evidence.class_counts) or {name: 1 for name in evidence.classes}  # older outputs: present
        yield (seg.caption, "\n".join(e.text for e in seg.forecast), " ".join(evidence.classes), float(seg.start),
               float(seg.end), len(evidence.track_ids), float(seg.confidence), counts)


def read_output_json(path: Path) -> Result:
    """A captioner json output, or ``LibraryError`` saying why the file is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LibraryError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or "segments" not in data or "video" not in data:
        raise LibraryError(f"{path}: not a captioner output (no video/segments)")
    if str(data.get("schema_version", "")).split(".")[0] != RESULT_SCHEMA.split(".")[0]:
        raise LibraryError(f"{path}: schema {data.get('schema_version')!r}, this captioner reads {RESULT_SCHEMA}")
    try:
        return Result.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise LibraryError(f"{path}: malformed captioner output ({exc})") from None


class Library(SQLiteFile):
    """``OUTDIR/library.sqlite``. Opening creates it (empty) unless ``create=False``."""

    def __init__(self, output_dir: str | os.PathLike, *, create: bool = True):
        self.output_dir = Path(output_dir)
        path = self.output_dir / LIBRARY_NAME
        if not create and not path.is_file():
            raise LibraryError(f"{self.output_dir}: no caption library ({LIBRARY_NAME}); "
                               f"build it with `captioner index {self.output_dir}`")
        try:
            super().__init__(path)
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc).lower():
                raise LibraryError("this Python's sqlite3 has no FTS5 full-text search; "
                                   "use a Python built with a current SQLite") from None
            raise LibraryError(f"{path}: cannot open the library index ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{path}: cannot open the library index ({exc})") from None

    # ---- writing ------------------------------------------------------------------------------

    def _remove(self, stem: str) -> None:
        row = self.db.execute("SELECT id FROM videos WHERE stem = ?", (stem,)).fetchone()
        if row is not None:
            self.db.execute("DELETE FROM segments WHERE video_id = ?", (row[0],))
            self.db.execute("DELETE FROM segment_classes WHERE video_id = ?", (row[0],))
            self.db.execute("DELETE FROM videos WHERE id = ?", (row[0],))

    def _insert(self, stem: str, result: Result, json_path: Path) -> int:
        self._remove(stem)
        video = result.video
        cursor = self.db.execute(
            "INSERT INTO videos (stem, source, json_name, json_mtime_ns, duration_sec, width, height) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (stem, video.path, json_path.name, json_path.stat().st_mtime_ns,
                                             video.duration_sec, video.width, video.height))
        video_id = cursor.lastrowid
        n = 0
        for caption, next_text, classes, start, end, tracks, confidence, counts in _segment_rows(result):
            seg = self.db.execute(
                "INSERT INTO segments (caption, next_text, classes, video_id, start_sec, end_sec, track_count, "
                "confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (caption, next_text, classes, video_id, start, end, tracks, confidence))
            self.db.executemany("INSERT OR REPLACE INTO segment_classes VALUES (?, ?, ?, ?)",
                                [(seg.lastrowid, video_id, name, int(count)) for name, count in counts.items()])
            n += 1
        return n

    def add(self, stem: str, result: Result, json_path: str | os.PathLike) -> int:
        """Index (or re-index) one video's segments; returns how many."""
        with self.transaction():
            return self._insert(stem, result, Path(json_path))

    def remove(self, stem: str) -> None:
        with self.transaction():
            self._remove(stem)

    def rebuild(self) -> IndexReport:
        """Index every json output in the folder, replacing what was there, in one transaction
        (a search meanwhile sees the old index, then the new one)."""
        report = IndexReport()
        parsed = []
        for path in sorted(self.output_dir.glob("*.json")):
            try:
                parsed.append((path.stem, read_output_json(path), path))
            except LibraryError as exc:
                report.skipped.append(str(exc))
        with self.transaction():
            for table in ("segments", "segment_classes", "videos"):
                self.db.execute(f"DELETE FROM {table}")
            for stem, result, path in parsed:
                report.segments += self._insert(stem, result, path)
                report.videos += 1
        return report

    def sync(self, json_paths: Iterable[Path]) -> int:
        """Index those of ``json_paths`` that are missing or changed since indexed (a batch that
        was killed between finishing an input and indexing it); returns how many were indexed."""
        known = {row["stem"]: row["json_mtime_ns"] for row in self.db.execute("SELECT stem, json_mtime_ns FROM videos")}
        n = 0
        for path in json_paths:
            if path.is_file() and known.get(path.stem) != path.stat().st_mtime_ns:
                self.add(path.stem, read_output_json(path), path)
                n += 1
        return n

    # ---- reading ------------------------------------------------------------------------------

    def search(self, query: str = "", *, classes: Iterable[str] = (), min_count: int = 1, video: str | None = None,
               limit: int = 10) -> list[Hit]:
        """Segments matching ``query`` (any of its words; BM25, best first) that show each of
        ``classes`` at least ``min_count`` times at once; with no query, every segment that passes
        the filters, by video and time."""
        if limit < 1:
            raise LibraryError(f"limit must be at least 1, got {limit}")
        if min_count < 1:
            raise LibraryError(f"min count must be at least 1, got {min_count}")
        where, params = [], []
        match = fts_query(query) if query.strip() else ""
        if match:
            where.append("segments MATCH ?")
            params.append(match)
        for name in classes:
            where.append("EXISTS (SELECT 1 FROM segment_classes c WHERE c.segment_id = segments.rowid "
                         "AND c.class_name = ? AND c.count >= ?)")
            params += [name.strip().lower(), int(min_count)]
        if video:
            where.append("v.stem = ?")
            params.append(video)
        score = f"bm25(segments, {', '.join(map(str, COLUMN_WEIGHTS))})" if match else "0.0"
        sql = (f"SELECT segments.rowid AS id, v.stem, v.source, start_sec, end_sec, caption, next_text, track_count, "
               f"confidence, {score} AS score FROM segments JOIN videos v ON v.id = segments.video_id "
               + (f"WHERE {' AND '.join(where)} " if where else "")
               + f"ORDER BY score, v.stem, start_sec LIMIT {int(limit)}")
        try:
            rows = self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise LibraryError(f"search {query!r} failed: {exc}") from None
        counts: dict[int, dict[str, int]] = {}
        ids = [row["id"] for row in rows]
        if ids:
            for seg_id, name, count in self.db.execute(
                    f"SELECT segment_id, class_name, count FROM segment_classes WHERE segment_id IN "
                    f"({','.join('?' * len(ids))}) ORDER BY count DESC, class_name", ids):
                counts.setdefault(seg_id, {})[name] = count
        return [Hit(row["id"], row["stem"], row["source"], float(row["start_sec"]), float(row["end_sec"]),
                    row["caption"], row["next_text"], counts.get(row["id"], {}), int(row["track_count"]),
                    float(row["confidence"]), round(-float(row["score"]), 4) + 0.0) for row in rows]

    def class_names(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT class_name FROM segment_classes ORDER BY class_name")]

    def videos(self) -> list[VideoEntry]:
        return [VideoEntry(row["stem"], row["source"], self.output_dir / row["json_name"], row["duration_sec"])
                for row in self.db.execute("SELECT * FROM videos ORDER BY stem")]

    def video_of(self, segment_id: int) -> tuple[VideoEntry, float] | None:
        """The video a segment belongs to, and the segment's start (seconds); None if unknown."""
        row = self.db.execute("SELECT v.*, s.start_sec FROM segments s JOIN videos v ON v.id = s.video_id "
                              "WHERE s.rowid = ?", (int(segment_id),)).fetchone()
        if row is None:
            return None
        return VideoEntry(row["stem"], row["source"], self.output_dir / row["json_name"], row["duration_sec"]), \
            float(row["start_sec"])

    def media_path(self, entry: VideoEntry) -> Path | None:
        """The file to play for a video of the library: its annotated video in the output folder
        when there is one (browser-friendly H.264, with boxes and captions), else the input it
        records if that is a local file that exists; None otherwise (a URL, or moved)."""
        annotated = self.output_dir / f"{entry.stem}.annotated.mp4"
        if annotated.is_file():
            return annotated.resolve()
        source = Path(entry.source)
        if "://" not in entry.source and source.is_absolute() and source.is_file():
            return source
        return None
