"""The Gradio 6 web app: four tabs over caption pipelines that are loaded once.

- **Upload**: a video in; out come the annotated video (boxes, track ids, caption banner) with
  the captions as a subtitle track, a timeline table and json/srt/vtt downloads. A still image
  in; out come the annotated image, its caption and json/txt downloads.
- **Live**: webcam frames streamed to ``Stream.push``; each browser session keeps its own
  ``Stream`` (tracker, sampler, LSTM state) in ``gr.State``, so two browser tabs never share one.
  Every frame gets boxes; only frames at the model's analysis rate step the LSTM. A session's
  state is freed when its tab closes (``demo.unload``) and, should Gradio miss that, once it
  has been idle for ``AppConfig.live_idle_sec``.
- **Batch**: several videos in, one zip of every output format out, and a per-file status table
  (a file that fails is listed with its error; the others are still processed).
- **Library** (with ``library_dir``, ``app.py --library OUTDIR``): search the caption library of a
  ``captioner batch`` output folder (``library.py``); clicking a result plays that video from the
  segment's start. Only videos the library records are served (each one added to Gradio's
  allowed paths when it is first played), and OUTDIR itself is allowed only when given.

``create_app(model, live_model)`` builds the ``gr.Blocks`` (tests call it with models they have
already loaded); ``launch(demo, ...)`` starts it with the page's CSS and allowed paths. Every
request writes into its own temporary directory, each file atomically.

Models are not thread-safe (Ultralytics' predictor and our feature hooks keep per-call state on
the model object), so each pipeline is guarded by a lock: the queue may run several events at
once, and whatever does not need the model (writing files, encoding the annotated video) runs
outside the lock.
"""

from __future__ import annotations

import atexit
import html
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
import weakref
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from .annotate import draw_annotations
from .errors import CaptionerError, VideoError
from .fileio import atomic_output, unique_stem, write_files_atomically
from .jobs import FileOutcome, OutputOptions, caption_file, run_each
from .library import Library, LibraryError
from .options import ProgressCallback
from .pipeline import Captioner
from .result import Result, WordEvidence
from .stream import Stream
from .video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .writers import CAPTION_FORMATS

log = logging.getLogger(__name__)

ACCEPTED_VIDEO_TYPES: list[str] = list(VIDEO_EXTENSIONS)  # file_types for uploads
ACCEPTED_IMAGE_TYPES: list[str] = list(IMAGE_EXTENSIONS)
DOWNLOAD_FORMATS = ("json", "srt", "vtt")  # offered beside the upload result
IMAGE_DOWNLOAD_FORMATS = ("json", "txt")  # a still image has no subtitles
BATCH_FORMATS = CAPTION_FORMATS  # json, srt, vtt, txt, tsv per video in the zip
TIMELINE_HEADERS = ["start (s)", "end (s)", "caption", "what happens next", "confidence"]
BATCH_HEADERS = ["file", "status", "segments", "duration (s)", "details"]
LIBRARY_HEADERS = ["video", "start (s)", "end (s)", "caption", "objects (most at once)"]
LIBRARY_RESULTS = 50  # rows a library search shows
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES_DIR = REPO / "samples"
PROGRESS_ANALYSIS_SHARE = 0.7  # of the upload progress bar; rendering the video takes the rest


@dataclass
class AppConfig:
    """Settings of one app instance (the launch flags that are not about the server). Caption
    settings (window, beam, live refresh) are the models' ``CaptionOptions``."""

    live_stream_every_sec: float = 0.08  # how often the browser sends a webcam frame (12.5 fps at most)
    live_time_limit_sec: int = 600  # one live stream runs at most this long, then press start again
    upload_concurrency: int = 2  # uploads processed at once (the model itself is used by one at a time)
    batch_concurrency: int = 1
    live_concurrency: int = 2
    max_batch_files: int = 20
    max_video_sec: float | None = 600.0  # longer uploads are refused with a readable message (None: no limit)
    live_idle_sec: float = 300.0  # a live session's state is freed this long after its last frame...
    # ...and at once when its browser tab closes (``demo.unload``)
    work_dir: Path | None = None  # per-request directories go here (default: a new temp dir)
    keep_outputs_sec: float = 3600.0  # request directories older than this are removed
    samples_dir: Path | None = DEFAULT_SAMPLES_DIR
    library_dir: Path | None = None  # a `captioner batch` output folder to search (the Library tab)


class LockedCaptioner:
    """A loaded ``Captioner`` and the lock that makes one caller at a time use it."""

    def __init__(self, captioner: Captioner, lock: threading.Lock | None = None):
        self.captioner = captioner
        self.lock = lock or threading.Lock()

    def caption(self, *args, **kwargs) -> Result:
        """``Captioner.caption`` under the lock (writing files and encoding video run outside it)."""
        with self.lock:
            return self.captioner.caption(*args, **kwargs)


# ------------------------------------------------------------------------------------------------
# helpers


def readable_error(message: str, path: str | os.PathLike | None = None, name: str | None = None) -> str:
    """An error message (``jobs.error_message``) with the server-side temp path replaced by the
    uploaded file's name: the server's directories are nobody's business."""
    message = message.strip()
    if path is not None and name:
        for spelling in {str(path), str(Path(path).resolve())}:
            message = message.replace(spelling, name)
    return message


def check_media_name(path: Path, name: str, accepted: tuple[str, ...] = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS) -> None:
    """Accept only the types we read; the message says which ones."""
    if path.suffix.lower() not in accepted:
        kind = f"a '{path.suffix}' file" if path.suffix else "a file without an extension"
        what = "a video" if set(accepted) <= set(VIDEO_EXTENSIONS) else "an image" if set(accepted) <= set(IMAGE_EXTENSIONS) \
            else "a video or an image"
        raise VideoError(f"{name} is {kind}, not {what}; accepted types: {', '.join(accepted)}")


def timeline_rows(result: Result) -> list[list[Any]]:
    return [[round(s.start, 2), round(s.end, 2), s.caption, s.next_text, round(float(s.confidence), 3)]
            for s in result.segments]


WORD_STYLE = {"object": "border-bottom: 2px solid #2a9d8f", "verb": "border-bottom: 2px dotted #e76f51",
              "scene": "border-bottom: 2px dashed #8d99ae", "colour": "border-bottom: 2px dotted #8d99ae"}
MAX_EVIDENCE_LINES = 30  # segments shown with their word evidence (the JSON has them all)


def word_title(word: WordEvidence) -> str:
    """The hover text of a caption word: what licensed it."""
    tracks = f"track{'s' if len(word.track_ids) != 1 else ''} {', '.join(map(str, word.track_ids))}" if word.track_ids else ""
    if word.kind == "object":
        return f"{word.why}; {tracks}; confidence {word.score:.2f}" if tracks else f"{word.why}; confidence {word.score:.2f}"
    if word.verdict == "ranked":  # a still picture's verb or scene noun: the pixels' probability, not a measurement
        return f"{word.why}: {word.score:.2f}"
    if word.kind == "colour":
        return f"{word.why}; {tracks}" if tracks else word.why
    if word.kind == "verb":
        score = f" ({word.score:.2f})" if word.score is not None else ""
        return "; ".join(part for part in (f"motion evidence: {word.verdict}{score}", word.why, tracks) if part)
    return word.why


def evidence_html(result: Result) -> str:
    """Each segment's caption with its content words marked; hovering a word shows what licensed it
    (track ids match the labels on the annotated video's boxes)."""
    lines = []
    for seg in result.segments[:MAX_EVIDENCE_LINES]:
        words, parts = list(seg.evidence.words), []
        for token in seg.caption.split():
            match = next((w for w in words if w.word == token.strip(".,").lower()), None)
            if match is None:
                parts.append(html.escape(token))
                continue
            words.remove(match)
            parts.append(f'<span class="caption-word caption-{match.kind}" title="{html.escape(word_title(match))}" '
                         f'style="{WORD_STYLE.get(match.kind, "")}">{html.escape(token)}</span>')
        when = "" if result.video.is_image else f"{seg.start:.1f}-{seg.end:.1f} s: "
        lines.append(f'<div class="evidence-line">{when}{" ".join(parts)}</div>')
    more = len(result.segments) - MAX_EVIDENCE_LINES
    if more > 0:
        lines.append(f"<div>... {more} more segment(s) in the JSON download</div>")
    legend = ("<div><small>Hover a word: <span style='border-bottom: 2px solid #2a9d8f'>object</span> (its boxes' "
              "track ids and confidence), <span style='border-bottom: 2px dotted #e76f51'>verb</span> (the motion "
              "evidence), <span style='border-bottom: 2px dashed #8d99ae'>scene</span> word, "
              "<span style='border-bottom: 2px dotted #8d99ae'>colour</span> (the boxes that show it).</small></div>")
    return '<div id="caption-evidence">' + legend + "".join(lines) + "</div>"


def player_vtt(vtt_text: str) -> str:
    """The downloadable VTT with every cue moved near the top of the picture (``line:10%``, below
    the player's label), so the subtitle track does not cover the caption banner burnt into the
    annotated video."""
    lines = []
    for line in vtt_text.split("\n"):
        if "-->" in line and "line:" not in line:
            line = f"{line} line:10%"
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# live state


@dataclass(eq=False)  # identity, not value: live states are tracked in a WeakSet
class LiveState:
    """Everything one browser session's live stream remembers (kept in ``gr.State``)."""

    stream: Stream | None = None
    frame_size: tuple[int, int] | None = None
    t0: float = 0.0
    frames: int = 0
    server_ms: deque = field(default_factory=lambda: deque(maxlen=60))
    frame_times: deque = field(default_factory=lambda: deque(maxlen=60))  # when the last frames arrived, monotonic s

    def stats(self) -> dict[str, float]:
        median_ms = statistics.median(self.server_ms) if self.server_ms else 0.0
        fps = 0.0
        if len(self.frame_times) >= 2 and self.frame_times[-1] > self.frame_times[0]:
            fps = (len(self.frame_times) - 1) / (self.frame_times[-1] - self.frame_times[0])
        return {"frames": self.frames, "median_ms": median_ms, "last_ms": self.server_ms[-1] if self.server_ms else 0.0,
                "fps": fps}

    def stats_text(self) -> str:
        s = self.stats()
        return (f"server {s['median_ms']:.0f} ms/frame (median of last {len(self.server_ms)}), "
                f"last {s['last_ms']:.0f} ms | {s['fps']:.1f} fps | {s['frames']} frames")

    def close(self) -> None:
        """Drop the stream (tracker, LSTM state, windows): what a session holds beyond a few numbers."""
        self.stream = None


def release_live_state(state: Any) -> None:
    """``gr.State``'s delete callback: the session expired, left or was cleared. A plain function,
    not a method: Gradio deep-copies component settings for every page load."""
    if isinstance(state, LiveState):
        state.close()


# ------------------------------------------------------------------------------------------------
# the app


class CaptionApp:
    """The request handlers; one instance per ``gr.Blocks``."""

    def __init__(self, model: Captioner, live_model: Captioner | None = None,
                 config: AppConfig | None = None):
        self.config = config or AppConfig()
        self.clock = time.monotonic  # when a webcam frame arrived (tests replace it)
        self.live_states: weakref.WeakSet[LiveState] = weakref.WeakSet()  # live sessions whose state is still held
        self.demo: gr.Blocks | None = None  # set by create_app: its state holder frees sessions that leave
        self.upload = LockedCaptioner(model)
        if live_model is None or live_model is model:
            self.live = self.upload  # one model: share its lock too
        else:
            self.live = LockedCaptioner(live_model)
        if self.config.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="captioner-webapp-"))
            atexit.register(shutil.rmtree, self.work_dir, True)
        else:
            self.work_dir = Path(self.config.work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        # what Gradio may serve; launch() hands this very list to Gradio, so a library video
        # appended when it is first played is served from then on
        self.allowed_paths: list[str] = [str(self.work_dir.resolve())]
        if self.config.samples_dir is not None and Path(self.config.samples_dir).is_dir():
            self.allowed_paths.append(str(Path(self.config.samples_dir).resolve()))
        # not the library folder itself (its manifest lists server paths): each video is allowed
        # when it is looked up in the library and played (allow_file)
        self.library_dir = Path(self.config.library_dir).resolve() if self.config.library_dir is not None else None

    # ---- per-request directories ----------------------------------------------------------------

    def request_dir(self, kind: str) -> Path:
        self._sweep()
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.work_dir))

    def _sweep(self) -> None:
        """Remove request directories older than ``keep_outputs_sec`` (Gradio has its own copies)."""
        cutoff = time.time() - self.config.keep_outputs_sec
        for child in self.work_dir.iterdir():
            try:
                if child.is_dir() and child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass

    # ---- upload -----------------------------------------------------------------------------

    def _caption_file(self, path: Path, name: str, out_dir: Path, stem: str, annotate: bool,
                      on_frames: ProgressCallback | None = None,
                      on_render: ProgressCallback | None = None,
                      accepted: tuple[str, ...] = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS) -> FileOutcome:
        """The shared file job (``jobs.caption_file``); the model is locked only while it runs."""
        check_media_name(path, name, accepted)
        options = self.upload.captioner.options.replace(max_duration_sec=self.config.max_video_sec)
        return caption_file(self.upload, path, OutputOptions(out_dir, "all", annotate=annotate), options,  # type: ignore[arg-type]
                            stem=stem, display_name=name, progress=on_frames, annotate_progress=on_render)

    def _caption_request(self, upload: str, kind: str, accepted: tuple[str, ...], refusal_title: str,
                         on_frames: ProgressCallback | None = None,
                         on_render: ProgressCallback | None = None) -> tuple[str, str, Path, FileOutcome, dict[str, Path]]:
        """What the upload and image handlers share: caption one uploaded file into a fresh request
        folder, with its annotated copy. (its name, its output stem, the folder, the outcome, its
        files by extension); a file that cannot be captioned is a ``gr.Error`` naming it."""
        path = Path(upload)
        name = path.name
        out_dir = self.request_dir(kind)
        stem = unique_stem(name, set())
        outcome, = run_each([path], lambda p: self._caption_file(p, name, out_dir, stem, True, on_frames, on_render,
                                                                 accepted))
        if not outcome.ok:
            log.info("%s %s failed: %s", kind, name, outcome.error)
            raise gr.Error(readable_error(outcome.error, path, name), title=refusal_title, print_exception=False)
        return name, stem, out_dir, outcome, {p.name[len(stem) + 1:]: p for p in outcome.written}

    def caption_upload(self, video: str | None, progress=gr.Progress()):
        """Upload tab: (annotated video with subtitles, timeline rows, [json, srt, vtt], summary)."""
        if not video:
            raise gr.Error("Choose a video file first (drop it on the box or click to browse).")
        progress(0.0, desc="Waiting for the model")

        def on_frames(done: int, total: int) -> None:
            if total > 0:
                progress(PROGRESS_ANALYSIS_SHARE * min(done / total, 1.0), desc="Analysing frames")

        def on_render(done: int, total: int) -> None:
            if total > 0:
                progress(PROGRESS_ANALYSIS_SHARE + (1 - PROGRESS_ANALYSIS_SHARE) * min(done / total, 1.0),
                         desc="Drawing the annotated video")

        name, stem, out_dir, outcome, by_ext = self._caption_request(video, "upload", VIDEO_EXTENSIONS,
                                                                     "Cannot caption this file", on_frames, on_render)
        result = outcome.result
        player_track = out_dir / f"{stem}.player.vtt"
        write_files_atomically({player_track: player_vtt(by_ext["vtt"].read_text(encoding="utf-8"))})
        meta = result.video
        summary = (f"**{name}**: {meta.duration_sec:.1f} s, {meta.width}x{meta.height}, "
                   f"{len(result.segments)} segment(s); analysed at {self.upload.captioner.analysis_fps:g} fps in "
                   f"{outcome.seconds:.1f} s.\n\n{evidence_html(result)}")
        return (gr.Video(value=str(by_ext["annotated.mp4"]), subtitles=str(player_track)), timeline_rows(result),
                [str(by_ext[f]) for f in DOWNLOAD_FORMATS], summary)

    def caption_image(self, image: str | None):
        """Upload tab, a still image: (annotated image, timeline row, [json, txt], summary)."""
        if not image:
            raise gr.Error("Choose an image file first (drop it on the box or click to browse).")
        name, _, _, outcome, by_ext = self._caption_request(image, "image", IMAGE_EXTENSIONS, "Cannot caption this image")
        result = outcome.result
        caption = result.segments[0].caption if result.segments else ""
        summary = (f"**{name}**: {result.video.width}x{result.video.height} image in {outcome.seconds:.1f} s: "
                   f"*{caption}*\n\n{evidence_html(result)}")
        return (str(by_ext["annotated.jpg"]), timeline_rows(result), [str(by_ext[f]) for f in IMAGE_DOWNLOAD_FORMATS],
                summary)

    # ---- batch ------------------------------------------------------------------------------

    def caption_batch(self, files: list[str] | None, progress=gr.Progress()):
        """Batch tab: (zip of all outputs, status rows, summary)."""
        if not files:
            raise gr.Error("Add one or more video files first.")
        if len(files) > self.config.max_batch_files:
            raise gr.Error(f"{len(files)} files given; at most {self.config.max_batch_files} per batch.")
        request = self.request_dir("batch")
        out_dir = request / "captions"
        out_dir.mkdir()
        used: set[str] = set()
        n = len(files)
        paths = [Path(item if isinstance(item, (str, os.PathLike)) else getattr(item, "name", str(item))) for item in files]

        def job(path: Path) -> FileOutcome:
            i, name = paths.index(path), path.name
            progress(i / n, desc=f"{name} ({i + 1}/{n})")

            def on_frames(done: int, total: int) -> None:
                if total > 0:
                    progress((i + min(done / total, 1.0)) / n, desc=f"{name} ({i + 1}/{n})")

            return self._caption_file(path, name, out_dir, unique_stem(name, used), False, on_frames)

        outcomes = run_each(paths, job)
        rows: list[list[Any]] = []
        archive_files: list[Path] = []
        for path, outcome in zip(paths, outcomes):
            name = path.name
            if outcome.ok:
                result = outcome.result
                archive_files += outcome.written
                first = result.segments[0].caption if result.segments else ""
                stem = outcome.written[0].stem
                rows.append([name, "ok", len(result.segments), round(result.video.duration_sec, 2),
                             f"{stem}.{{{','.join(p.suffix.lstrip('.') for p in outcome.written)}}}; first caption: {first}"])
            else:
                log.info("batch file %s failed: %s", name, outcome.error)
                rows.append([name, "failed", 0, None, readable_error(outcome.error, path, name)])
        status = out_dir / "status.tsv"
        write_files_atomically({status: "\t".join(BATCH_HEADERS) + "\n" + "".join(
            "\t".join("" if v is None else " ".join(str(v).split()) for v in row) + "\n" for row in rows)})
        archive_files.append(status)
        zip_path = write_zip(request / "captions.zip", archive_files, out_dir)
        ok = sum(1 for r in rows if r[1] == "ok")
        progress(1.0, desc="Done")
        summary = f"{ok} of {n} file(s) captioned" + (f"; {n - ok} failed (see the table)." if ok < n else ".")
        return str(zip_path), rows, summary

    # ---- library ----------------------------------------------------------------------------

    def _library(self) -> Library:
        if self.library_dir is None:
            raise gr.Error("No caption library: start the app with --library OUTDIR (a captioner batch output folder).")
        try:
            return Library(self.library_dir, create=False)
        except LibraryError as exc:
            raise gr.Error(str(exc), title="Cannot open the library", print_exception=False) from None

    def library_classes(self) -> list[str]:
        if self.library_dir is None:
            return []
        try:
            with Library(self.library_dir, create=False) as library:
                return library.class_names()
        except LibraryError:
            return []

    def library_search(self, query: str | None, class_name: str | None, min_count: float | None):
        """Library tab: (result rows, the segment ids behind them, summary)."""
        query = (query or "").strip()
        classes = [class_name] if class_name else []
        with self._library() as library:
            try:
                hits = library.search(query, classes=classes, min_count=max(1, int(min_count or 1)),
                                      limit=LIBRARY_RESULTS)
            except LibraryError as exc:
                raise gr.Error(str(exc), title="Search failed", print_exception=False) from None
            n_videos = len(library.videos())
        rows = [[h.video, round(h.start, 2), round(h.end, 2), h.caption,
                 ", ".join(f"{n} {name}" for name, n in h.classes.items())] for h in hits]
        what = f"**{query}**" if query else "every segment"
        where = f" showing {class_name}" + (f" (at least {int(min_count)} at once)" if min_count and min_count > 1 else "") \
            if class_name else ""
        summary = (f"{len(hits)} segment(s) for {what}{where}, best first, in a library of {n_videos} video(s). "
                   "Click a row to play that moment." if hits else f"No segment matches {what}{where}.")
        return rows, [h.segment_id for h in hits], summary

    def library_open(self, segment_ids: list[int] | None, evt: gr.SelectData):
        """Library tab, a result clicked: (the video, where to seek {start, name}, summary). The
        file comes from the library's own records, never from the request."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not segment_ids or not isinstance(row, int) or not 0 <= row < len(segment_ids):
            raise gr.Error("Search first, then click a result.")
        with self._library() as library:
            found = library.video_of(segment_ids[row])
            if found is None:
                raise gr.Error("That result is no longer in the library; search again.")
            entry, start = found
            media = library.media_path(entry)
        if media is None:
            raise gr.Error(f"{entry.stem}: its video ({entry.source}) is not a file on this server, and there is no "
                           f"{entry.stem}.annotated.mp4 in the library folder.", title="Cannot play this video",
                           print_exception=False)
        self.allow_file(media)
        return (gr.Video(value=str(media)), {"start": start, "name": media.name},
                f"**{entry.stem}** from {start:.1f} s ({media.name})")

    def allow_file(self, path: Path) -> None:
        """Let Gradio serve one file (a library video, looked up in the library by the caller)."""
        path = path.resolve()
        if not any(path.is_relative_to(allowed) for allowed in self.allowed_paths):
            self.allowed_paths.append(str(path))

    # ---- live -------------------------------------------------------------------------------

    def live_step(self, image_rgb: np.ndarray | None, state: LiveState | None):
        """Live tab, one webcam frame: (annotated frame, caption, next event, stats, state)."""
        arrived = self.clock()
        if image_rgb is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
        start = time.perf_counter()
        if state is None:
            state = LiveState()
            self.live_states.add(state)
        if image_rgb.ndim == 2:
            image_rgb = cv2.cvtColor(image_rgb, cv2.COLOR_GRAY2RGB)
        image_bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb[..., :3]), cv2.COLOR_RGB2BGR)
        size = (image_bgr.shape[1], image_bgr.shape[0])
        if state.stream is None or state.frame_size != size:  # first frame, or the camera changed
            state.stream = self.live.captioner.new_live_stream(size)
            state.frame_size, state.t0 = size, arrived
        try:
            with self.live.lock:
                update = state.stream.push(image_bgr, arrived - state.t0)
        except CaptionerError as exc:
            raise gr.Error(str(exc), title="Live captioning stopped", print_exception=False) from None
        next_text = update.forecast[0].text if update.forecast else ""
        annotated = draw_annotations(image_bgr, update.detections, update.caption, next_text)
        annotated_rgb = cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB)
        state.frames += 1
        state.frame_times.append(arrived)
        state.server_ms.append((time.perf_counter() - start) * 1000.0)
        next_lines = "\n".join(e.text for e in update.forecast)  # options.forecast_lines of them
        return annotated_rgb, update.caption, next_lines, state.stats_text(), state

    def live_reset(self, state: LiveState | None = None):
        """A fresh live state (the 'clear' of the webcam, or a new stream)."""
        release_live_state(state)
        return None, "", "", "", None

    def session_left(self, request: gr.Request) -> None:
        """``demo.unload``: a browser tab closed. Free its live state now, not when Gradio's
        hour-long grace period for closed sessions ends, and forget the session itself."""
        holder = getattr(self.demo, "state_holder", None)
        session_hash = getattr(request, "session_hash", None)
        if holder is None or not session_hash or session_hash not in holder.session_data:
            return
        holder.delete_state(session_hash)  # calls release_live_state on the live state
        with holder.lock:
            holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)


def write_zip(zip_path: Path, files: list[Path], root: Path) -> Path:
    """Zip ``files`` (names relative to ``root``) into ``zip_path`` atomically."""
    with atomic_output(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return zip_path


# ------------------------------------------------------------------------------------------------
# page


CAMERA_CHECK_JS = """
async () => {
  const secure = window.isSecureContext;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return secure
      ? "**No camera API in this browser.** The Live tab needs a browser with camera access (navigator.mediaDevices)."
      : "**Camera unavailable: this page is not a secure context.** Browsers only allow the camera on https:// or http://localhost; open the app there (or launch it with --share).";
  }
  try {
    if (navigator.permissions && navigator.permissions.query) {
      const p = await navigator.permissions.query({name: "camera"});
      if (p.state === "denied") {
        return "**Camera permission is denied for this site.** Allow the camera in the browser's site settings, then reload the page.";
      }
    }
  } catch (e) { /* some browsers do not know the 'camera' permission name */ }
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    if (!devices.some(d => d.kind === "videoinput")) {
      return "**No camera found.** Connect a webcam and reload the page.";
    }
  } catch (e) {}
  return "Camera available. Click the webcam box, allow access if asked, then press the record button to start; press it again to stop.";
}
"""

# After a library result is clicked: wait for the player to hold that video, then seek to the
# segment's start and play (muted, so browsers allow it).
LIBRARY_SEEK_JS = """
(target) => {
  if (!target || target.start === undefined) { return []; }
  const deadline = Date.now() + 20000;
  const attempt = () => {
    const video = document.querySelector('#library-video video');
    const src = video ? decodeURIComponent(video.currentSrc || video.src || '') : '';
    if (!video || !src.includes(target.name)) {
      if (Date.now() < deadline) { setTimeout(attempt, 100); }
      return;
    }
    const go = () => { video.currentTime = target.start; video.muted = true; video.play().catch(() => {}); };
    if (video.readyState >= 1) { go(); } else { video.addEventListener('loadedmetadata', go, {once: true}); }
  };
  attempt();
  return [];
}
"""

PAGE_CSS = """
#live-stats textarea, #live-stats input { font-family: ui-monospace, monospace; }
"""


# Real footage first (the synthetic test clip's thumbnail is a grey frame, which looks broken).
EXAMPLE_CLIPS = ("person_enters_room.mp4",)


def sample_examples(samples_dir: Path | None) -> list[list[str]]:
    """The real sample clips for the Upload tab's examples (an empty list when there are none)."""
    if samples_dir is None or not Path(samples_dir).is_dir():
        return []
    return [[str(Path(samples_dir) / name)] for name in EXAMPLE_CLIPS if (Path(samples_dir) / name).is_file()]


def upload_tab(app: CaptionApp) -> None:
    """The Upload tab: a video (or, in its accordion, a still image) -> annotated copy, timeline, files."""
    cfg = app.config
    with gr.Tab("Upload", id="upload"):
        with gr.Row():
            with gr.Column(scale=1):
                video_in = gr.Video(label="Video", sources=["upload"], elem_id="upload-video")
                run = gr.Button("Caption video", variant="primary", elem_id="upload-run")
                examples = sample_examples(cfg.samples_dir)
                if examples:
                    gr.Examples(examples=examples, inputs=[video_in], label="Sample clips", elem_id="upload-examples")
                longest = f", up to {cfg.max_video_sec:g} s long" if cfg.max_video_sec else ""
                gr.Markdown(f"Accepted: {', '.join(ACCEPTED_VIDEO_TYPES)}{longest}. Analysed at "
                            f"{app.upload.captioner.analysis_fps:g} frames/s in {app.upload.captioner.options.window_sec:g} s segments.")
            with gr.Column(scale=1):
                video_out = gr.Video(label="Annotated video (captions as subtitles)", interactive=False,
                                     elem_id="upload-annotated")
                summary = gr.Markdown(elem_id="upload-summary")
        timeline = gr.Dataframe(headers=TIMELINE_HEADERS, datatype=["number", "number", "str", "str", "number"],
                                type="array", label="Timeline", interactive=False, wrap=True,
                                column_widths=["8%", "8%", "42%", "32%", "10%"], elem_id="upload-timeline")
        downloads = gr.File(label="Downloads (json, srt, vtt)", file_count="multiple", interactive=False,
                            elem_id="upload-files")
        with gr.Accordion("...or caption a still image", open=False, elem_id="upload-image-section"):
            with gr.Row():
                with gr.Column(scale=1):
                    image_in = gr.Image(label="Image", sources=["upload"], type="filepath", elem_id="upload-image")
                    run_image = gr.Button("Caption image", variant="primary", elem_id="upload-image-run")
                    gr.Markdown(f"Accepted: {', '.join(ACCEPTED_IMAGE_TYPES)}.")
                with gr.Column(scale=1):
                    image_out = gr.Image(label="Annotated image", interactive=False, elem_id="upload-image-annotated")
        run.click(app.caption_upload, inputs=[video_in], outputs=[video_out, timeline, downloads, summary],
                  api_name="caption", concurrency_limit=cfg.upload_concurrency, concurrency_id="upload")
        run_image.click(app.caption_image, inputs=[image_in], outputs=[image_out, timeline, downloads, summary],
                        api_name="caption_image", concurrency_limit=cfg.upload_concurrency, concurrency_id="upload")


def live_tab(app: CaptionApp) -> gr.Markdown:
    """The Live tab: webcam frames stream to the server, each tab keeps its own ``Stream``. Returns
    the camera note the page fills in on load."""
    cfg = app.config
    with gr.Tab("Live", id="live"):
        camera_note = gr.Markdown("Checking for a camera...", elem_id="camera-note")
        with gr.Row():
            with gr.Column(scale=1):
                webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                  webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-webcam")
            with gr.Column(scale=1):
                live_out = gr.Image(label="Annotated (boxes, track ids, caption)", format="jpeg",
                                    interactive=False, elem_id="live-annotated")
        with gr.Row():
            live_caption = gr.Textbox(label="Caption now", interactive=False, elem_id="live-caption")
            live_next = gr.Textbox(label="What happens next", lines=2, interactive=False, elem_id="live-next")
        live_stats = gr.Textbox(label="Speed (server time per frame, frames per second)", interactive=False,
                                elem_id="live-stats")
        gr.Markdown(f"Frames go to the server every {cfg.live_stream_every_sec:g} s; a stream stops after "
                    f"{cfg.live_time_limit_sec} s (press start again to continue). Each browser tab keeps "
                    "its own tracker and caption state.")
        live_state = gr.State(None, time_to_live=cfg.live_idle_sec, delete_callback=release_live_state)
        webcam.stream(app.live_step, inputs=[webcam, live_state],
                      outputs=[live_out, live_caption, live_next, live_stats, live_state],
                      stream_every=cfg.live_stream_every_sec, time_limit=cfg.live_time_limit_sec,
                      concurrency_limit=cfg.live_concurrency, concurrency_id="live", api_name="live",
                      show_progress="hidden")
        webcam.clear(app.live_reset, inputs=[live_state],
                     outputs=[live_out, live_caption, live_next, live_stats, live_state],
                     api_visibility="private")
    return camera_note


def batch_tab(app: CaptionApp) -> None:
    """The Batch tab: many files -> a zip of every output and a status table."""
    cfg = app.config
    with gr.Tab("Batch", id="batch"):
        with gr.Row():
            with gr.Column(scale=1):
                batch_in = gr.File(label="Videos or images", file_count="multiple", file_types=ACCEPTED_VIDEO_TYPES + ACCEPTED_IMAGE_TYPES,
                                   type="filepath", elem_id="batch-files")
                batch_run = gr.Button("Caption all", variant="primary", elem_id="batch-run")
                gr.Markdown(f"Up to {cfg.max_batch_files} files. The zip holds "
                            f"{', '.join(BATCH_FORMATS)} for each video and status.tsv.")
            with gr.Column(scale=1):
                batch_zip = gr.File(label="All outputs (zip)", interactive=False, elem_id="batch-zip")
                batch_summary = gr.Markdown(elem_id="batch-summary")
        batch_table = gr.Dataframe(headers=BATCH_HEADERS, datatype=["str", "str", "number", "number", "str"],
                                   type="array", label="Status per file", interactive=False, wrap=True,
                                   column_widths=["20%", "8%", "10%", "12%", "50%"], elem_id="batch-status")
        batch_run.click(app.caption_batch, inputs=[batch_in], outputs=[batch_zip, batch_table, batch_summary],
                        api_name="batch", concurrency_limit=cfg.batch_concurrency, concurrency_id="batch")


def library_tab(app: CaptionApp) -> None:
    """The Library tab: search the captions of a ``captioner batch`` output folder and play a hit."""
    with gr.Tab("Library", id="library"):
        if app.library_dir is None:
            gr.Markdown("No caption library. Caption a folder with `captioner batch VIDEOS -o OUTDIR`, then "
                        "start the app with `python app.py --library OUTDIR` to search it here.",
                        elem_id="library-none")
        else:
            with gr.Row():
                library_query = gr.Textbox(label="Search captions", placeholder="dog runs on the beach",
                                           scale=4, elem_id="library-query")
                library_class = gr.Dropdown(choices=[""] + app.library_classes(), value="", label="Object",
                                            allow_custom_value=True, scale=1, elem_id="library-class")
                library_min = gr.Number(value=1, minimum=1, precision=0, label="at least (at once)", scale=1,
                                        elem_id="library-min-count")
                library_run = gr.Button("Search", variant="primary", scale=1, elem_id="library-run")
            library_summary = gr.Markdown(f"Library: `{app.library_dir}`", elem_id="library-summary")
            library_table = gr.Dataframe(headers=LIBRARY_HEADERS,
                                         datatype=["str", "number", "number", "str", "str"],
                                         type="array", label="Segments (click one to play it)",
                                         interactive=False, wrap=True,
                                         column_widths=["18%", "8%", "8%", "48%", "18%"],
                                         elem_id="library-results")
            library_video = gr.Video(label="Video", interactive=False, elem_id="library-video")
            library_seek = gr.JSON(visible=False, elem_id="library-seek")
            library_ids = gr.State([])
            for trigger in (library_run.click, library_query.submit):
                trigger(app.library_search, inputs=[library_query, library_class, library_min],
                        outputs=[library_table, library_ids, library_summary], concurrency_limit=4,
                        concurrency_id="library", api_name="library_search")
            library_table.select(app.library_open, inputs=[library_ids],
                                 outputs=[library_video, library_seek, library_summary],
                                 concurrency_limit=4, concurrency_id="library", api_visibility="private"
                                 ).then(None, inputs=[library_seek], js=LIBRARY_SEEK_JS)


def create_app(model: Captioner, live_model: Captioner | None = None, *,
               config: AppConfig | None = None) -> gr.Blocks:
    """Build the Blocks over already-loaded pipelines (``live_model`` e.g. at imgsz 320): the
    shared layout, then one builder per tab."""
    app = CaptionApp(model, live_model, config)
    with gr.Blocks(title="captioner", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# captioner\nCaptions for video, with a forecast of what happens next. "
                    "One YOLO pass per frame gives boxes, track ids and features; an LSTM writes the captions.")
        with gr.Tabs():
            upload_tab(app)
            camera_note = live_tab(app)
            batch_tab(app)
            library_tab(app)
        demo.load(None, None, [camera_note], js=CAMERA_CHECK_JS)
        demo.unload(app.session_left)
    demo.caption_app = app  # type: ignore[attr-defined]  # for tests and launch()
    app.demo = demo
    return demo


def allowed_paths(demo: gr.Blocks) -> list[str]:
    """What Gradio may serve beyond its own upload and cache folders: the request directories
    (outputs are copied from there into Gradio's cache), the example clips, and each library
    video once it is played. Nothing else: not the working directory, the repository, the model
    weights, the library's databases or the home directory."""
    app: CaptionApp | None = getattr(demo, "caption_app", None)
    return app.allowed_paths if app else []  # the app's own list: library videos are added as they are played


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           max_upload_mb: float = 500, auth: tuple[str, str] | None = None, concurrency: int = 2,
           queue_size: int | None = 16, prevent_thread_lock: bool = False, quiet: bool = False):
    """Queue with a concurrency limit and start the server (returns what ``Blocks.launch`` returns).

    Loopback only unless ``host`` says otherwise; no public link unless ``share``. When
    ``queue_size`` requests already wait, the next one is refused at once with Gradio's "busy,
    please try again" instead of waiting without end."""
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return demo.launch(server_name=host, server_port=port, share=share, auth=auth,
                       max_file_size=int(max_upload_mb * 1024 * 1024) if max_upload_mb else None,
                       allowed_paths=allowed_paths(demo), prevent_thread_lock=prevent_thread_lock, quiet=quiet,
                       show_error=True, css=PAGE_CSS, footer_links=["api", "gradio", "settings"])
