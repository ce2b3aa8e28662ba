"""``captioner live SOURCE``: caption a webcam, a stream URL or a file played at its real speed.

A reader thread decodes the source as fast as it arrives and keeps only the newest frame the
stream will analyse (``LatestFrame``): when captioning falls behind, stale frames are dropped,
so the lag stays bounded however long it runs. The main thread pushes frames into one
``Stream`` (the same object offline captioning uses), prints the caption and the forecast when
they change, and appends them, and every closed segment, to a JSON-lines file. A stream that
drops is reopened (``reconnects`` times); a file ends when it ends. Ctrl-C stops cleanly: the
open window is closed and every line written is complete.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from .errors import EXIT_OK, EXIT_SOME_FAILED, VideoError
from .pipeline import Captioner
from .result import Segment
from .stream import Stream
from .video import VideoSource, no_data, open_source

log = logging.getLogger(__name__)


@dataclass
class LiveFrame:
    image_bgr: np.ndarray
    t_sec: float  # source time: container time for a file, seconds since start for a live source
    due: float  # monotonic time the frame is (or was) due: arrival, or its real-time playback instant


class LatestFrame:
    """A one-slot mailbox: the reader puts, the newest frame wins, the consumer takes."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: LiveFrame | None = None
        self.closed = False
        self.dropped = 0

    def put(self, frame: LiveFrame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1  # captioning is behind: the older frame is stale
            self._frame = frame
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def get(self, timeout: float = 0.5) -> LiveFrame | None:
        """The newest frame, or None when none came within ``timeout`` (check ``closed``)."""
        with self._cond:
            if self._frame is None and not self.closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


@dataclass
class LiveStats:
    """What a live run did. Lag: seconds from when a frame was due (its arrival, or its real-time
    playback instant for a file) until its update was ready."""

    frames_read: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    lags_sec: list = field(default_factory=list)
    exit_code: int = EXIT_OK

    def lag_percentile(self, q: float) -> float:
        return float(np.percentile(self.lags_sec, q)) if self.lags_sec else 0.0

    def summary(self) -> str:
        return (f"{self.frames_read} frames read, {self.frames_analysed} analysed, {self.frames_dropped} stale dropped, "
                f"{self.reconnects} reconnects; lag p50 {self.lag_percentile(50):.3f}s, p95 "
                f"{self.lag_percentile(95):.3f}s, max {max(self.lags_sec, default=0.0):.3f}s")


class SourceReader(threading.Thread):
    """Decodes ``source`` into a ``LatestFrame``; reopens a live stream that drops."""

    def __init__(self, source: str, mailbox: LatestFrame, stats: LiveStats, reconnects: int, stop: threading.Event,
                 timeout_sec: float | None = None):
        super().__init__(name="captioner-live-reader", daemon=True)
        self.source, self.mailbox, self.stats, self.reconnects, self.stop = source, mailbox, stats, reconnects, stop
        self.timeout_sec = timeout_sec
        # opened here, so a bad source fails before the thread starts; a pipe or device is a live source
        self.video = open_source(source, timeout_sec, live=True)
        self.last_data = time.monotonic()  # when the source last delivered a frame (or was opened)
        self.abandoned = False  # replaced after a stalled read: whatever it reads later is dropped
        self.is_file = not self.video.is_live
        self.stream: Stream | None = None  # once set, its sampler says which frames to convert
        self.error: str | None = None
        self.start_time = time.monotonic()
        self.file_end_sec: float | None = None  # a file read to its end: where it truly ends

    def run(self) -> None:
        try:
            video: VideoSource | None = self.video
            attempts = 0
            while not self.stop.is_set():
                if video is not None:
                    self._read(video)
                    video.close()
                    video = None
                if self.is_file or self.stop.is_set() or attempts >= self.reconnects:
                    if not self.is_file and not self.stop.is_set():
                        log.warning("%s: the stream ended and could not be reopened", self.source)
                    break
                attempts += 1
                self.stop.wait(min(2.0 ** (attempts - 1), 5.0))  # back off: 1, 2, 4, 5, 5... s
                try:
                    video = open_source(self.source, self.timeout_sec, live=True)
                    self.last_data = time.monotonic()
                    self.stats.reconnects += 1
                    log.warning("%s: reconnected (attempt %d)", self.source, attempts)
                except VideoError as exc:
                    log.warning("reconnect %d failed: %s", attempts, exc)
        except VideoError as exc:
            self.error = str(exc)
        finally:
            if not self.abandoned:  # a replaced reader no longer speaks for the source
                self.mailbox.close()

    def stalled(self) -> bool:
        """No frame for ``timeout_sec`` while still reading: stuck in a read that may never return."""
        return bool(self.timeout_sec) and self.is_alive() and not self.mailbox.closed \
            and time.monotonic() - self.last_data > self.timeout_sec

    def _read(self, video: VideoSource) -> None:
        def wants(t_sec: float) -> bool:  # no stream yet (its size comes from the first frame): take it
            return self.stream is None or self.stream.wants(self._source_time(t_sec))

        for frame in video.frames(wants=wants):
            if self.stop.is_set() or self.abandoned:
                return
            self.last_data = time.monotonic()
            self.stats.frames_read += 1
            if frame.image_bgr is None:
                continue  # not a frame the stream analyses
            t_sec = self._source_time(frame.t_sec)
            due = self.start_time + t_sec
            if self.is_file:  # play a file at its real speed
                delay = due - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
            else:
                due = time.monotonic()
            self.mailbox.put(LiveFrame(frame.image_bgr, t_sec, due))
        if self.is_file:
            self.file_end_sec = video.end_sec

    def _source_time(self, container_t: float) -> float:
        # a live source's times run on one clock since the start, across reconnects
        return container_t if self.is_file else time.monotonic() - self.start_time


def segment_record(segment: Segment) -> dict:
    return {"type": "segment", **segment.to_dict()}


def replace_stalled(reader: SourceReader, mailbox: LatestFrame, stats: LiveStats,
                    stop: threading.Event) -> SourceReader:
    """A new reader on the source in place of one stuck in a read (left behind: it cannot be
    interrupted, and what it reads later is dropped); a file, or a source with no reconnects left
    or that cannot be reopened, ends the run with the error."""
    reader.abandoned = True
    reader.error = no_data(reader.source, reader.timeout_sec, "reading frames")
    if reader.is_file or reader.reconnects <= 0:
        mailbox.close()
        return reader
    log.warning("%s; reopening it", reader.error)
    try:
        fresh = SourceReader(reader.source, mailbox, stats, reader.reconnects - 1, stop, reader.timeout_sec)
    except VideoError as exc:
        reader.error = f"{reader.error}; reopening failed: {exc}"
        mailbox.close()
        return reader
    fresh.start_time, fresh.stream = reader.start_time, reader.stream  # one clock and stream across reopenings
    stats.reconnects += 1
    fresh.start()
    return fresh


def run_live(model: Captioner, source: str, *, jsonl: Path | None = None, duration_sec: float | None = None,
             reconnects: int = 3, quiet: bool = False, out: TextIO = sys.stdout) -> LiveStats:
    """Caption ``source`` until it ends, ``duration_sec`` passes or Ctrl-C (``exit_code`` says how it went)."""
    stats, mailbox, stop = LiveStats(), LatestFrame(), threading.Event()
    timeout_sec = model.options.read_timeout_sec
    reader = SourceReader(source, mailbox, stats, reconnects, stop, timeout_sec)
    source_fps = reader.video.info.fps or None
    stream: Stream | None = None  # made at the first frame: a stream's header may not tell the size
    sink = open(jsonl, "a", encoding="utf-8") if jsonl else None

    def emit(record: dict, line: str | None) -> None:
        if line and not quiet:
            print(line, file=out, flush=True)
        if sink is not None:  # one whole line per write, flushed: an interrupted run leaves complete lines
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()

    previous_handler = signal.getsignal(signal.SIGINT)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:  # Ctrl-C ends the loop instead of interrupting a write
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    shown: tuple = ()
    stopped_early = False
    try:
        reader.start()
        while not stop.is_set():
            frame = mailbox.get()
            if frame is None:
                if mailbox.closed:
                    break
                if reader.stalled():  # stuck in a read that may never return: reopen the source, or end
                    reader = replace_stalled(reader, mailbox, stats, stop)
                continue
            if duration_sec is not None and frame.t_sec > duration_sec:
                stopped_early = True
                break
            size = (frame.image_bgr.shape[1], frame.image_bgr.shape[0])
            if stream is None or stream.frame_size != size:  # first frame, or the source changed size
                if stream is not None:
                    final = stream.finish()
                    if final is not None:
                        emit(segment_record(final), None)
                stream = reader.stream = model.new_live_stream(size, source_fps=source_fps, detect_every_frame=False)
            update = stream.push(frame.image_bgr, frame.t_sec)
            stats.lags_sec.append(max(time.monotonic() - frame.due, 0.0))
            if not update.analysed:
                continue
            stats.frames_analysed += 1
            if update.segment is not None:
                emit(segment_record(update.segment), None)
            top = update.forecast[0] if update.forecast else None
            now = (update.caption, (top.kind, top.class_name) if top else None)
            if update.caption and now != shown:  # the first caption comes from the worker a frame or two late
                shown = now
                line = f"[{update.t_sec:8.2f}s] {update.caption}" + (f"  | next: {top.text}" if top else "")
                emit({"type": "caption", "t_sec": round(update.t_sec, 3), "caption": update.caption,
                      "next": [asdict(e) for e in update.forecast]}, line)
        stop.set()
        # a file played to its end ends where it truly does; anything else one frame after the last
        final = stream.finish(None if stopped_early else reader.file_end_sec) if stream is not None else None
        if final is not None:
            emit(segment_record(final), None)
    finally:
        stop.set()
        if in_main:
            signal.signal(signal.SIGINT, previous_handler)
        reader.join(timeout=5.0)
        if sink is not None:
            sink.close()
    stats.frames_dropped = mailbox.dropped
    if reader.error:
        print(f"error: {reader.error}", file=sys.stderr)
        stats.exit_code = EXIT_SOME_FAILED
    print(f"{source}: {stats.summary()}", file=out, flush=True)  # --quiet keeps only this line
    return stats
