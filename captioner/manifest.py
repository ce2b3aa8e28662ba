"""The run manifest of a batch: one SQLite file in the output folder, ``OUTDIR/manifest.sqlite``.

It records every input a batch run in OUTDIR was given, with its status, the settings and model
hashes its outputs were made with, timings and the output files, so that running the same
command again resumes instead of starting over:

    pending ──> running ──> done
                   └──────> failed (with its error)
    skipped: never captioned on purpose (not a video or image type; the reason is kept)

Only the batch's parent process writes it (workers and Ray actors send their outcomes back), each
change in one transaction, in WAL mode with full fsync, so a ``kill -9`` at any moment leaves the
manifest as it was after the last finished input. A row left ``running`` is the input that was
mid-way when a run died; ``recover`` hands it back as pending with the files it may have begun.

Settings are stored once per distinct set (``RunSettings.key``); each input names the set its
outputs were made with, so a run with other settings or other model files can tell which
outputs no longer count as done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import CaptionerError
from .sqlitefile import SQLiteFile

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "skipped")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    key        TEXT PRIMARY KEY,            -- RunSettings.key
    settings   TEXT NOT NULL,               -- RunSettings.to_dict() as JSON
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL UNIQUE,      -- absolute path or URL, as captioned
    stem         TEXT NOT NULL UNIQUE COLLATE NOCASE,  -- OUTDIR/STEM.json, ...
    status       TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    error        TEXT,                      -- failed: what went wrong; skipped: why
    settings_key TEXT REFERENCES settings(key),  -- the settings of the last attempt / of the outputs
    duration_sec REAL,                      -- video seconds (probed when added, then from the result)
    outputs      TEXT NOT NULL DEFAULT '[]',-- JSON list of file names in OUTDIR (running: the planned ones)
    attempts     INTEGER NOT NULL DEFAULT 0,
    added_at     REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    seconds      REAL,                      -- wall time of the last attempt
    run_id       INTEGER                    -- the run that last touched it
);
CREATE INDEX IF NOT EXISTS inputs_by_status ON inputs (status);
CREATE TABLE IF NOT EXISTS runs (
    id           INTEGER PRIMARY KEY,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    engine       TEXT NOT NULL,
    workers      INTEGER NOT NULL,
    settings_key TEXT NOT NULL,
    argv         TEXT,
    pid          INTEGER,
    done         INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    outcome      TEXT                       -- finished | interrupted | error: ...; NULL while running or killed
);
"""


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class RunSettings:
    """What makes two outputs of the same input interchangeable: the caption settings, what is
    written (formats, forecast lines, annotated video) and the sha256 of both model files. The
    device is left out on purpose: it does not change what is written."""

    caption: dict[str, Any]  # imgsz, conf, window_sec, beam_size, style
    output: dict[str, Any]  # formats, show_next, annotate
    models: dict[str, Any]  # {"yolo": {"name", "sha256"}, "captioner": {"name", "sha256"}}

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "output": self.output, "models": self.models}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSettings":
        return cls(data["caption"], data["output"], data["models"])

    @property
    def key(self) -> str:
        return hashlib.sha256(_canonical(self.to_dict()).encode()).hexdigest()[:16]

    def changes_from(self, old: "RunSettings") -> list[str]:
        """What differs, one ``name: old -> new`` line each (hashes shortened)."""
        before, after = _flatten(old.to_dict()), _flatten(self.to_dict())

        def show(value: Any) -> str:
            return f"{value[:12]}..." if isinstance(value, str) and len(value) == 64 else repr(value)

        return [f"{name}: {show(before.get(name))} -> {show(after.get(name))}"
                for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]


@dataclass(frozen=True)
class InputRecord:
    """One row of the manifest."""

    id: int
    source: str
    stem: str
    status: str
    error: str | None = None
    settings_key: str | None = None
    duration_sec: float | None = None
    outputs: tuple[str, ...] = ()
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "InputRecord":
        return cls(row["id"], row["source"], row["stem"], row["status"], row["error"], row["settings_key"],
                   row["duration_sec"], tuple(json.loads(row["outputs"] or "[]")), row["attempts"],
                   row["started_at"], row["finished_at"], row["seconds"])


@dataclass(frozen=True)
class NewInput:
    """An input to add: pending (or skipped, with the reason)."""

    source: str
    stem: str
    duration_sec: float | None = None
    skipped_reason: str | None = None


@dataclass
class RunCounts:
    done: int = 0
    failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class ManifestError(CaptionerError):
    """The manifest cannot be opened or is not one this version reads."""


class Manifest(SQLiteFile):
    """``OUTDIR/manifest.sqlite``, opened by the one process that runs a batch there."""

    def __init__(self, output_dir: str | os.PathLike):
        path = Path(output_dir) / MANIFEST_NAME
        try:
            super().__init__(path, synchronous="FULL")  # a finished input survives a power cut too
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)  # idempotent; its own transaction
            with self.transaction():
                version = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if version is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(version[0]) != SCHEMA_VERSION:
                    raise ManifestError(f"{path}: manifest schema {version[0]}, this captioner reads "
                                        f"{SCHEMA_VERSION}; use another output folder")
        except sqlite3.DatabaseError as exc:
            raise ManifestError(f"{path}: cannot open the batch manifest ({exc}); is it an SQLite file?") from None

    # ---- settings and runs --------------------------------------------------------------------

    def record_settings(self, settings: RunSettings) -> str:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?, ?)",
                            (settings.key, _canonical(settings.to_dict()), time.time()))
        return settings.key

    def settings(self, key: str) -> RunSettings | None:
        row = self.db.execute("SELECT settings FROM settings WHERE key = ?", (key,)).fetchone()
        return RunSettings.from_dict(json.loads(row[0])) if row else None

    def start_run(self, engine: str, workers: int, settings_key: str, argv: Iterable[str] | None = None) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO runs (started_at, engine, workers, settings_key, argv, pid) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), engine, workers, settings_key, json.dumps(list(argv)) if argv is not None else None,
                 os.getpid()))
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, done: int, failed: int, outcome: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET finished_at = ?, done = ?, failed = ?, outcome = ? WHERE id = ?",
                            (time.time(), done, failed, outcome, run_id))

    # ---- inputs -------------------------------------------------------------------------------

    def add_inputs(self, inputs: Iterable[NewInput]) -> int:
        """Add inputs not yet recorded (by source); returns how many were new."""
        now, added = time.time(), 0
        with self.transaction():
            for item in inputs:
                status = "skipped" if item.skipped_reason else "pending"
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO inputs (source, stem, status, error, duration_sec, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (item.source, item.stem, status, item.skipped_reason,
                                                  item.duration_sec, now))
                added += cursor.rowcount
        return added

    def stems(self) -> set[str]:
        """Every stem taken, lower-cased (stems are unique regardless of case)."""
        return {row[0].lower() for row in self.db.execute("SELECT stem FROM inputs")}

    def records(self, sources: Iterable[str] | None = None) -> list[InputRecord]:
        """The rows for ``sources`` (in that order; unknown ones left out), or all rows by id."""
        if sources is None:
            return [InputRecord.from_row(r) for r in self.db.execute("SELECT * FROM inputs ORDER BY id")]
        by_source = {}
        for chunk in _chunks(list(sources), 500):
            rows = self.db.execute(f"SELECT * FROM inputs WHERE source IN ({','.join('?' * len(chunk))})", chunk)
            by_source.update({r["source"]: InputRecord.from_row(r) for r in rows})
        return [by_source[s] for s in dict.fromkeys(sources) if s in by_source]

    def record(self, input_id: int) -> InputRecord:
        row = self.db.execute("SELECT * FROM inputs WHERE id = ?", (input_id,)).fetchone()
        if row is None:
            raise ManifestError(f"{self.path}: no input with id {input_id}")
        return InputRecord.from_row(row)

    def set_duration(self, input_id: int, duration_sec: float | None) -> None:
        with self.transaction():
            self.db.execute("UPDATE inputs SET duration_sec = ? WHERE id = ?", (duration_sec, input_id))

    def mark_running(self, input_ids: Iterable[int], settings_key: str, run_id: int,
                     planned: dict[int, list[str]]) -> None:
        """Inputs handed to a worker; ``planned`` are the files each will write (removed again by
        ``recover`` if the run dies before the input is done)."""
        now = time.time()
        with self.transaction():
            for input_id in input_ids:
                self.db.execute(
                    "UPDATE inputs SET status = 'running', error = NULL, settings_key = ?, outputs = ?, "
                    "attempts = attempts + 1, started_at = ?, finished_at = NULL, seconds = NULL, run_id = ? "
                    "WHERE id = ?", (settings_key, json.dumps(planned.get(input_id, [])), now, run_id, input_id))

    def mark_done(self, input_id: int, outputs: list[str], seconds: float, duration_sec: float | None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE inputs SET status = 'done', error = NULL, outputs = ?, finished_at = ?, seconds = ?, "
                "duration_sec = COALESCE(?, duration_sec) WHERE id = ?",
                (json.dumps(outputs), time.time(), round(seconds, 3), duration_sec, input_id))

    def mark_failed(self, input_id: int, error: str, seconds: float) -> None:
        with self.transaction():
            self.db.execute("UPDATE inputs SET status = 'failed', error = ?, outputs = '[]', finished_at = ?, "
                            "seconds = ? WHERE id = ?", (error, time.time(), round(seconds, 3), input_id))

    def mark_pending(self, input_ids: Iterable[int]) -> None:
        with self.transaction():
            for input_id in input_ids:
                self.db.execute("UPDATE inputs SET status = 'pending', outputs = '[]', started_at = NULL "
                                "WHERE id = ?", (input_id,))

    def recover(self) -> list[InputRecord]:
        """Rows left ``running`` by a run that died: back to pending. Returns them as they were
        (with the files they had planned), so the caller can remove what they began."""
        stale = [InputRecord.from_row(r) for r in self.db.execute("SELECT * FROM inputs WHERE status = 'running'")]
        self.mark_pending(r.id for r in stale)
        return stale

    def counts(self) -> dict[str, int]:
        found = dict(self.db.execute("SELECT status, COUNT(*) FROM inputs GROUP BY status").fetchall())
        return {status: int(found.get(status, 0)) for status in STATUSES}


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
