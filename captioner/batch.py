"""``captioner batch``: caption an archive into one folder, resumably, on one machine or a Ray cluster.

>>> summary = run_batch(BatchConfig(["videos/"], OutputOptions(Path("out")), CaptionOptions(), workers=2))

A run (``run_batch``):

1. takes ``OUTDIR``'s lock (one batch per folder at a time), waits until no worker of an earlier,
   killed run is still alive, and removes the temporary files such a run left;
2. expands the inputs (folders, globs, URLs, ``.txt``/``.list`` files listing them) and records
   new ones in the manifest (``manifest.py``) with a unique output stem and their duration;
3. hands back as pending every input a dead run left ``running``, removing the files it began;
4. decides what to do: done inputs are skipped, failed ones retried only with ``retry_failed``,
   inputs done with other settings or models are refused (``BatchError``) or, with
   ``overwrite``, redone;
5. captions the rest with an engine (``engines.py``: ``LocalEngine`` in this process or in N
   spawned worker processes; ``RayEngine`` on Ray Data actors), each input through the one file
   job (``jobs.caption_file``) inside the one error loop (``jobs.run_each``);
6. as each input comes back, records it in the manifest (this process is its only writer) and
   adds its segments to the caption library (``library.py``).

Every output file is written to a temporary file and renamed (``fileio``), and an input is
marked done only after its files are in place, so a ``kill -9`` at any moment leaves no partial
output and loses no finished input; rerunning the same command resumes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from .engines import BatchError, BatchItem, LocalEngine, OutputLock, RayEngine, RunEvents, WorkerSpec
from .errors import EXIT_OK, EXIT_SOME_FAILED, CaptionerError, OptionsError
from .fileio import sweep_temp_files, unique_stem
from .jobs import FileOutcome, OutputOptions, expand_inputs, source_name
from .library import Library, LibraryError
from .manifest import InputRecord, Manifest, NewInput, RunSettings
from .model_files import model_files
from .options import CaptionOptions
from .video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_media_file, is_url, probe
from .writers import parse_formats

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
LIST_SUFFIXES = (".txt", ".list", ".lst")  # an input with one of these is a list of inputs


# ------------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class BatchConfig:
    """One ``captioner batch`` command."""

    inputs: tuple[str, ...]  # folders, globs, files, URLs, .txt/.list files listing them
    output: OutputOptions  # output_dir is OUTDIR; json is always written (the library reads it)
    options: CaptionOptions = field(default_factory=CaptionOptions)
    yolo_weights: str | None = None
    weights: str | None = None
    workers: int = 1  # processes (local) or actors (ray)
    engine: str = "local"  # see ENGINES
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a local Ray started for the run
    retry_failed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.engine not in ENGINES:
            raise OptionsError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise OptionsError(f"workers must be a positive integer, got {self.workers!r}")
        if self.ray_address and self.engine != "ray":
            raise OptionsError("--ray-address needs --engine ray")


@dataclass
class BatchSummary:
    """What a run did. ``exit_code``: 0 when every input of the run is done (or skipped), 1 when
    some failed, now or in an earlier run (and were not retried)."""

    output_dir: Path
    inputs: int = 0
    to_do: int = 0
    done: int = 0  # captioned by this run
    failed: int = 0  # failed in this run
    done_before: int = 0  # done by an earlier run with the same settings: skipped
    failed_before: int = 0  # failed in an earlier run, not retried (use --retry-failed)
    skipped: int = 0  # not a video or image type
    redone: int = 0  # done earlier with other settings or models: redone (--overwrite)
    recovered: int = 0  # left mid-way by a run that died: redone from scratch
    seconds: float = 0.0  # wall time of the run
    video_sec: float = 0.0  # video seconds captioned by this run
    failures: list[str] = field(default_factory=list)  # this run's error messages
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if (self.failed or self.failed_before) else EXIT_OK

    def throughput(self) -> tuple[float, float]:
        """(videos per minute, video seconds per second) over the run's wall time."""
        if self.seconds <= 0:
            return 0.0, 0.0
        return 60.0 * self.done / self.seconds, self.video_sec / self.seconds


class BatchReporter:
    """Told what a run is doing (the CLI draws progress bars from it). Every method may be
    called from a thread other than the main one; ``finished`` is always called from the main
    thread, after the manifest records the input."""

    def planned(self, summary: BatchSummary, items: list[BatchItem]) -> None:
        pass

    def started(self, item: BatchItem) -> None:
        pass

    def progress(self, item: BatchItem, done_frames: int, total_frames: int) -> None:
        pass

    def finished(self, item: BatchItem, outcome: FileOutcome) -> None:
        pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------
# inputs


def read_input_list(path: Path) -> list[str]:
    """The entries of a list file: one path (relative to the list's folder), folder, glob or URL
    per line; blank lines and lines starting with # are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{path}: cannot read the input list ({exc})") from None
    entries = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(line if is_url(line) or os.path.isabs(line) else str(path.parent / line))
    return entries


def collect_inputs(patterns: Sequence[str], output_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Expand ``patterns`` into (sources to caption, {input: why it is skipped}). Sources are
    absolute paths (as given, symlinks kept) or URLs, once each, in the order found; a missing
    file is kept so that it fails with its name. Media files found inside ``output_dir`` are
    left out (they are outputs, e.g. annotated videos)."""
    sources: list[str] = []
    skipped: dict[str, str] = {}
    accepted = ", ".join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
    outdir = os.path.abspath(output_dir) if output_dir is not None else None

    def visit(pattern: str, in_list: bool) -> None:
        if is_url(pattern):
            sources.append(pattern)
            return
        for path in expand_inputs([pattern]):
            source = os.path.abspath(path)
            if path.suffix.lower() in LIST_SUFFIXES and path.is_file():
                if in_list:
                    skipped[source] = "a list file inside a list file is not read"
                    continue
                for entry in read_input_list(path):
                    visit(entry, True)
            elif outdir is not None and is_media_file(path) and os.path.commonpath([outdir, source]) == outdir:
                log.info("%s is inside the output folder: not an input", source)
            elif is_media_file(path) or not path.exists():
                sources.append(source)
            elif path.is_file():
                skipped[source] = f"not a video or image type ({path.suffix or 'no extension'}); accepted: {accepted}"
            else:
                skipped[source] = "not a file"

    for pattern in patterns:
        visit(pattern, False)
    return list(dict.fromkeys(sources)), skipped


def probe_duration(source: str, timeout_sec: float | None = None) -> float | None:
    """Video seconds of a local file (0 for a still image); None when unknown (a URL, or a file
    that cannot be opened, which will fail with its own message when captioned)."""
    if is_url(source):
        return None
    try:
        return round(float(probe(source, timeout_sec).duration_sec), 3)
    except (CaptionerError, OSError) as exc:
        log.debug("cannot probe %s: %s", source, exc)
        return None


# ------------------------------------------------------------------------------------------------
# settings and models


def batch_output(output: OutputOptions) -> OutputOptions:
    """A batch always writes json: resuming checks it and the library is built from it."""
    formats = parse_formats(output.output_format)
    if "json" in formats:
        return output
    log.info("batch runs always write json too (the library and resume read it)")
    return replace(output, output_format=",".join(["json", *formats]))


def run_settings(config: BatchConfig, output: OutputOptions) -> RunSettings:
    options = config.options
    caption = {"imgsz": options.imgsz, "conf": options.conf, "window_sec": options.window_sec,
               "beam_size": options.beam_size, "style": options.style}
    if options.backend != "torch":  # changes the features a little (export.py); absent = torch, as before it existed
        caption["backend"] = options.backend
    if options.forecast_lines != CaptionOptions.forecast_lines:  # absent = the default, as before it existed
        caption["forecast_lines"] = options.forecast_lines
    written = {"formats": parse_formats(output.output_format), "show_next": output.show_next,
               "annotate": output.annotate}
    return RunSettings(caption, written, model_files(config.yolo_weights, config.weights))


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Plan:
    items: list[BatchItem] = field(default_factory=list)
    changed: list[tuple[InputRecord, list[str]]] = field(default_factory=list)


def _remove_begun_files(output_dir: Path, records: list[InputRecord]) -> None:
    """Remove the files inputs left mid-way had planned (they are partial or unrecorded)."""
    for record in records:
        removed = []
        for name in record.outputs:
            path = output_dir / name
            if path.is_file():
                path.unlink()
                removed.append(name)
        log.warning("%s was mid-way when a run stopped: redoing it from scratch%s", record.source,
                    f" (removed {', '.join(removed)})" if removed else "")


def _plan(manifest: Manifest, records: list[InputRecord], settings: RunSettings, config: BatchConfig,
          summary: BatchSummary) -> _Plan:
    plan = _Plan()
    output_dir = config.output.output_dir
    for record in records:
        if record.status == "skipped":
            summary.skipped += 1
            continue
        if record.status == "failed" and not config.retry_failed:
            summary.failed_before += 1
            continue
        if record.status == "done":
            if record.settings_key != settings.key:
                old = manifest.settings(record.settings_key) if record.settings_key else None
                plan.changed.append((record, settings.changes_from(old) if old else ["settings not recorded"]))
                continue
            missing = [name for name in record.outputs if not (output_dir / name).is_file()]
            if not missing:
                summary.done_before += 1
                continue
            log.warning("%s was done, but %s %s missing: redoing it", record.source, ", ".join(missing),
                        "is" if len(missing) == 1 else "are")
            for name in record.outputs:  # its other files (recorded as its own) are made again with it
                (output_dir / name).unlink(missing_ok=True)
        plan.items.append(BatchItem(record.id, record.source, record.stem, record.duration_sec or 0.0))
    return plan


def _describe_changes(changed: list[tuple[InputRecord, list[str]]]) -> str:
    lines = sorted({line for _, lines in changed for line in lines})
    return "; ".join(lines[:6]) + (f"; and {len(lines) - 6} more" if len(lines) > 6 else "")


def make_engine(config: BatchConfig, model=None, quiet: bool = False):
    if config.engine == "ray":
        return RayEngine(config.workers, config.ray_address, quiet=quiet)
    return LocalEngine(config.workers, model)


@dataclass
class BatchRun:
    """One ``captioner batch`` run, as one value: what it was asked, the outputs it writes (json
    always on, ``batch_output``), its settings and model hashes, the engine, and the summary it
    fills in as inputs finish."""

    config: BatchConfig
    output: OutputOptions
    settings: RunSettings
    engine: Any
    reporter: BatchReporter
    summary: BatchSummary
    argv: Sequence[str] | None = None

    @property
    def output_dir(self) -> Path:
        return self.output.output_dir


def run_batch(config: BatchConfig, reporter: BatchReporter | None = None, *, model=None, engine=None,
              argv: Sequence[str] | None = None) -> BatchSummary:
    """Caption ``config.inputs`` into ``config.output.output_dir``, resuming what earlier runs
    there did; see the module docstring. ``model``: an already loaded ``Captioner`` for the
    one-worker local engine (tests, notebooks). Raises ``BatchError`` when it cannot start as
    asked; an input that fails is recorded and reported, never raised."""
    reporter = reporter or BatchReporter()
    output = batch_output(config.output)
    output_dir = output.output_dir
    engine = engine or make_engine(config, model)  # Ray missing: said before anything is done
    settings = run_settings(config, output)  # model files resolved and hashed (ModelError if missing)
    sources, skipped = collect_inputs(config.inputs, output_dir)
    if not sources and not skipped:
        raise BatchError("no video or image files found in the given inputs")
    run = BatchRun(config, output, settings, engine, reporter, BatchSummary(output_dir), argv)
    start = time.perf_counter()
    try:
        _run_batch(run, sources, skipped)
    finally:
        run.summary.seconds = time.perf_counter() - start
        reporter.close()
    return run.summary


def _run_batch(run: BatchRun, sources: list[str], skipped: dict[str, str]) -> None:
    config, output, settings, summary, output_dir = run.config, run.output, run.settings, run.summary, run.output_dir
    with OutputLock(output_dir):
        removed = sweep_temp_files(output_dir)
        if removed:
            log.warning("removed %d temporary file(s) a stopped run left in %s", len(removed), output_dir)
        with Manifest(output_dir) as manifest, Library(output_dir) as library:
            manifest.record_settings(settings)
            used = manifest.stems()
            known = {r.source for r in manifest.records([*sources, *skipped])}
            manifest.add_inputs([NewInput(s, unique_stem(source_name(s), used, untrusted=is_url(s)))
                                 for s in sources if s not in known]
                                + [NewInput(s, unique_stem(source_name(s), used, untrusted=is_url(s)), skipped_reason=why)
                                   for s, why in skipped.items() if s not in known])
            recovered = manifest.recover()
            _remove_begun_files(output_dir, recovered)
            records = manifest.records([*sources, *skipped])
            sources_set = set(sources)
            summary.inputs = len(records)
            summary.recovered = sum(1 for r in recovered if r.source in sources_set)
            plan = _plan(manifest, records, settings, config, summary)
            if plan.changed:
                if not output.overwrite:
                    raise BatchError(
                        f"{output_dir}: {len(plan.changed)} input(s) were captioned with other settings or models "
                        f"({_describe_changes(plan.changed)}), so their outputs do not count as done. Rerun with "
                        "--overwrite to redo them with these settings, or choose another output folder.")
                log.warning("redoing %d input(s) captioned with other settings or models (%s)", len(plan.changed),
                            _describe_changes(plan.changed))
                summary.redone = len(plan.changed)
                plan.items += [BatchItem(r.id, r.source, r.stem, r.duration_sec or 0.0) for r, _ in plan.changed]
            done_json = [output_dir / f"{r.stem}.json" for r in records
                         if r.status == "done" and r.settings_key == settings.key]
            try:
                library.sync(done_json)  # a run killed between recording an input and indexing it
            except LibraryError as exc:
                log.warning("library: %s", exc)
            items = _with_durations(manifest, plan.items, config.options.read_timeout_sec)
            summary.to_do = len(items)
            run.reporter.planned(summary, items)
            if items:
                _run_items(run, items, manifest, library)


def _with_durations(manifest: Manifest, items: list[BatchItem], timeout_sec: float | None) -> list[BatchItem]:
    """Probe the inputs whose duration is not yet known (for the video-seconds progress bar)."""
    out = []
    for item in items:
        if not item.duration_sec:
            duration = probe_duration(item.source, timeout_sec)
            if duration:
                manifest.set_duration(item.id, duration)
                item = replace(item, duration_sec=duration)
        out.append(item)
    return out


def _run_items(run: BatchRun, items: list[BatchItem], manifest: Manifest, library: Library) -> None:
    config, output, settings, output_dir = run.config, run.output, run.settings, run.output_dir
    engine, reporter, summary = run.engine, run.reporter, run.summary
    by_id = {item.id: item for item in items}
    spec = WorkerSpec(output, config.options, config.yolo_weights, config.weights,
                      lock_dir=str(output_dir) if engine.name == "ray" or config.workers > 1 else None)
    run_id = manifest.start_run(engine.name, config.workers, settings.key, run.argv)
    finished: set[int] = set()

    def start(started: list[BatchItem]) -> None:
        planned = {}
        for item in started:
            still = Path(item.source).suffix.lower() in IMAGE_EXTENSIONS
            planned[item.id] = [p.name for p in output.targets(item.stem, still) if output.overwrite or not p.exists()]
        manifest.mark_running([item.id for item in started], settings.key, run_id, planned)
        for item in started:
            reporter.started(item)

    def progress(item_id: int, done: int, total: int) -> None:
        if item_id in by_id:
            reporter.progress(by_id[item_id], done, total)

    def done(item: BatchItem, outcome: FileOutcome) -> None:
        finished.add(item.id)
        if outcome.ok:
            duration = outcome.result.video.duration_sec if outcome.result is not None else None
            manifest.mark_done(item.id, [p.name for p in outcome.written], outcome.seconds, duration)
            summary.done += 1
            summary.video_sec += duration or 0.0
            try:
                library.add(item.stem, outcome.result, output_dir / f"{item.stem}.json")
            except (LibraryError, OSError) as exc:  # derived data: the next run or `captioner index` fixes it
                log.warning("library: cannot index %s: %s", item.stem, exc)
        else:
            manifest.mark_failed(item.id, outcome.error or "failed", outcome.seconds)
            summary.failed += 1
            summary.failures.append(outcome.error or f"{item.source}: failed")
        reporter.finished(item, outcome)

    status = "error"
    try:
        engine.run(items, spec, RunEvents(start, progress, done))
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        summary.interrupted = True
        raise
    except BaseException as exc:
        status = f"error: {exc}"
        raise
    finally:
        # inputs started and not finished stay 'running': the next run redoes them from scratch
        # (the same path as after a kill), removing whatever files they had begun
        manifest.finish_run(run_id, summary.done, summary.failed, status)
