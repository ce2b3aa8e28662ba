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
5. captions the rest with an engine (``LocalEngine``: in this process or in N spawned worker
   processes; ``RayEngine``: Ray Data actors), each input through the one file job
   (``jobs.caption_file``) inside the one error loop (``jobs.run_each``);
6. as each input comes back, records it in the manifest (this process is its only writer) and
   adds its segments to the caption library (``library.py``).

Every output file is written to a temporary file and renamed (``fileio``), and an input is
marked done only after its files are in place, so a ``kill -9`` at any moment leaves no partial
output and loses no finished input; rerunning the same command resumes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue as queue_module
import re
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from .errors import CaptionerError, OptionsError
from .fileio import sweep_temp_files, unique_stem
from .jobs import FileOutcome, OutputOptions, caption_file, expand_inputs, run_each
from .library import Library, LibraryError
from .manifest import InputRecord, Manifest, NewInput, RunSettings
from .options import CaptionOptions
from .result import Result
from .video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_media_file, probe
from .writers import parse_formats

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
LIST_SUFFIXES = (".txt", ".list", ".lst")  # an input with one of these is a list of inputs
BATCH_LOCK = ".captioner-batch.lock"  # held by the run's parent process
WORKERS_LOCK = ".captioner-batch.workers.lock"  # held (shared) by every worker process and actor
ORPHAN_WAIT_SEC = 60.0  # how long a new run waits for a killed run's workers to go
RAY_INSTALL = "pip install 'captioner[ray]'  (or: pip install 'ray[data]>=2.40')"


class BatchError(OptionsError):
    """A batch cannot start as asked (changed settings without --overwrite, Ray missing, the
    folder busy): fix the command and rerun. The CLI exits with 2."""


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


@dataclass(frozen=True)
class BatchItem:
    """One input handed to an engine."""

    id: int  # the manifest row
    source: str  # absolute path or URL
    stem: str  # outputs: OUTDIR/STEM.EXT
    duration_sec: float = 0.0  # 0 when unknown

    def __str__(self) -> str:  # what run_each names in an error message
        return self.source


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process or a Ray actor needs: how to load the models (once), how to caption
    and write, how many torch threads to use, and the folder whose workers lock to hold."""

    output: OutputOptions
    options: CaptionOptions
    yolo_weights: str | None = None
    weights: str | None = None
    threads: int | None = None  # torch/OpenCV threads; None leaves the defaults
    lock_dir: str | None = None


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
        return 1 if (self.failed or self.failed_before) else 0

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


def is_url(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


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


def source_name(source: str) -> str:
    """The file name an input's output stem is made from (a URL's last path part)."""
    if is_url(source):
        url = urlparse(source)
        return Path(url.path).name or url.netloc
    return Path(source).name


def probe_duration(source: str) -> float | None:
    """Video seconds of a local file (0 for a still image); None when unknown (a URL, or a file
    that cannot be opened, which will fail with its own message when captioned)."""
    if is_url(source):
        return None
    try:
        return round(float(probe(source).duration_sec), 3)
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


def model_files(yolo_weights: str | None, weights: str | None) -> dict[str, dict[str, str]]:
    """Name and sha256 of the two model files a run will load, resolved exactly as
    ``load_model`` resolves them (without loading them)."""
    from .checkpoint import resolve_checkpoint
    from .perception import file_sha256, resolve_weights

    yolo = resolve_weights(yolo_weights)
    captioner_path = resolve_checkpoint(weights)
    return {"yolo": {"name": Path(yolo).name, "sha256": file_sha256(yolo) if Path(yolo).is_file() else ""},
            "captioner": {"name": captioner_path.name, "sha256": file_sha256(captioner_path)}}


def run_settings(config: BatchConfig, output: OutputOptions) -> RunSettings:
    options = config.options
    caption = {"imgsz": options.imgsz, "conf": options.conf, "window_sec": options.window_sec,
               "beam_size": options.beam_size, "style": options.style}
    written = {"formats": parse_formats(output.output_format), "show_next": output.show_next,
               "annotate": output.annotate}
    return RunSettings(caption, written, model_files(config.yolo_weights, config.weights))


# ------------------------------------------------------------------------------------------------
# locks: one run per folder; no worker of a killed run still writing


def _flock(handle, mode: int) -> bool:
    import fcntl

    try:
        fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


class OutputLock:
    """``OUTDIR``'s batch lock, held by a run's parent process (the kernel drops it when the
    process dies, however it dies). Taking it also waits until every worker of an earlier run
    has gone: workers hold the workers lock shared, and die with their parent."""

    def __init__(self, output_dir: Path, orphan_wait_sec: float = ORPHAN_WAIT_SEC):
        self.output_dir, self.orphan_wait_sec = output_dir, orphan_wait_sec
        self.handle = None

    def __enter__(self) -> "OutputLock":
        if os.name != "posix":
            log.warning("no file locks on this platform: do not run two batches into %s at once", self.output_dir)
            return self
        import fcntl

        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.output_dir / BATCH_LOCK, "a+")
        if not _flock(self.handle, fcntl.LOCK_EX):
            self.handle.close()
            raise BatchError(f"{self.output_dir}: another `captioner batch` is running into this folder; wait for it "
                             "to finish or stop it first")
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        with open(self.output_dir / WORKERS_LOCK, "a+") as workers:
            deadline = time.monotonic() + self.orphan_wait_sec
            while not _flock(workers, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise BatchError(f"{self.output_dir}: worker processes of an earlier run are still writing here "
                                     f"after {self.orphan_wait_sec:.0f} s; stop them (they hold "
                                     f"{WORKERS_LOCK}) and rerun")
                time.sleep(0.1)
            fcntl.flock(workers.fileno(), fcntl.LOCK_UN)
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # releases the lock
            self.handle = None


_HELD_LOCKS: list = []  # a worker process keeps its workers-lock file open (shared) while it lives


def hold_workers_lock(lock_dir: str) -> None:
    if os.name != "posix":
        return
    import fcntl

    try:
        handle = open(Path(lock_dir) / WORKERS_LOCK, "a+")
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        _HELD_LOCKS.append(handle)
    except OSError as exc:  # e.g. a network file system without locks: the run still works
        log.warning("cannot hold %s in %s (%s): a later run cannot tell if this worker outlived its run",
                    WORKERS_LOCK, lock_dir, exc)


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when the batch's parent process ends, even by ``kill -9``
    (Linux: the kernel sends SIGKILL; elsewhere a thread notices the parent is gone)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# ------------------------------------------------------------------------------------------------
# the per-input job (every engine) and workers


def start_worker(spec: WorkerSpec):
    """In a worker process or actor: threads, the workers lock, then the models, once."""
    from .pipeline import load_model

    if spec.threads:
        import cv2
        import torch

        torch.set_num_threads(spec.threads)
        cv2.setNumThreads(spec.threads)
    if spec.lock_dir:
        hold_workers_lock(spec.lock_dir)
    return load_model(spec.options, yolo_weights=spec.yolo_weights, weights=spec.weights)


ProgressFor = Callable[[BatchItem], Callable[[int, int], None] | None]


def item_job(model, spec: WorkerSpec, progress_for: ProgressFor | None = None) -> Callable[[BatchItem], FileOutcome]:
    """The job every engine runs per input: the shared file job, to OUTDIR/STEM.*."""
    def job(item: BatchItem) -> FileOutcome:
        progress = progress_for(item) if progress_for else None
        return caption_file(model, item.source, spec.output, spec.options, stem=item.stem, progress=progress)
    return job


def throttled(send: Callable[[int, int], None], every_sec: float = 0.25) -> Callable[[int, int], None]:
    """A progress callback that passes on at most one update per ``every_sec`` (and the last)."""
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_sec or (total and done >= total):
            last[0] = now
            send(done, total)
    return update


def outcome_to_dict(outcome: FileOutcome) -> dict[str, Any]:
    """A FileOutcome as plain data (to cross from a Ray actor)."""
    return {"source": outcome.source, "error": outcome.error, "seconds": outcome.seconds,
            "written": [str(p) for p in outcome.written],
            "result": outcome.result.to_dict() if outcome.result is not None else None}


def outcome_from_dict(data: dict[str, Any]) -> FileOutcome:
    result = Result.from_dict(data["result"]) if data.get("result") else None
    return FileOutcome(data["source"], result, [Path(p) for p in data["written"]], data["error"], data["seconds"])


# process-pool workers: one model per process, loaded by the initializer
_POOL: dict[str, Any] = {}


def _pool_init(spec: WorkerSpec, progress_queue, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # Ctrl-C reaches workers too: the input they are on stops, files cleaned up
    _POOL["model"], _POOL["spec"], _POOL["queue"] = start_worker(spec), spec, progress_queue


def _pool_caption(item: BatchItem) -> FileOutcome:
    progress_queue = _POOL["queue"]

    def progress_for(it: BatchItem):
        return throttled(lambda done, total: progress_queue.put((it.id, done, total)))

    return run_each([item], item_job(_POOL["model"], _POOL["spec"], progress_for))[0]


class RayCaptioner:
    """The Ray Data UDF (a callable class): each actor loads the models once, then captions the
    rows it is given (one video per row) with the same job as the local engine."""

    def __init__(self, spec: WorkerSpec, progress=None):
        self.model, self.spec, self.progress = start_worker(spec), spec, progress

    def _progress_for(self, item: BatchItem):
        if self.progress is None:
            return None
        channel = self.progress
        return throttled(lambda done, total: channel.put_nowait((item.id, done, total)), every_sec=0.5)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items = [BatchItem(int(i), str(s), str(st), float(d))
                 for i, s, st, d in zip(batch["id"], batch["source"], batch["stem"], batch["duration_sec"])]
        outcomes = run_each(items, item_job(self.model, self.spec, self._progress_for))
        return {"id": [item.id for item in items],
                "outcome": [json.dumps(outcome_to_dict(o), ensure_ascii=False) for o in outcomes]}


# ------------------------------------------------------------------------------------------------
# engines


class RunEvents:
    """What an engine tells the run: inputs started, frames done, an input's outcome. ``done``
    is called from the engine's main thread only; ``progress`` from any thread."""

    def __init__(self, start: Callable[[list[BatchItem]], None], progress: Callable[[int, int, int], None],
                 done: Callable[[BatchItem, FileOutcome], None]):
        self.start, self.progress, self.done = start, progress, done


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LocalEngine:
    """This machine: one worker captions in this process (the models loaded here, once); N
    workers are N spawned processes, each loading the models once and using cores // N torch
    threads, so they do not oversubscribe the cores."""

    name = "local"
    max_pool_restarts = 3

    def __init__(self, workers: int = 1, model=None):
        self.workers, self.model = workers, model

    def run(self, items: list[BatchItem], spec: WorkerSpec, events: RunEvents) -> None:
        if self.workers == 1 or len(items) <= 1:
            self._run_here(items, spec, events)
        else:
            self._run_pool(items, spec, events)

    def _run_here(self, items: list[BatchItem], spec: WorkerSpec, events: RunEvents) -> None:
        from .pipeline import load_model

        model = self.model or load_model(spec.options, yolo_weights=spec.yolo_weights, weights=spec.weights)
        by_source = {item.source: item for item in items}

        def job(item: BatchItem) -> FileOutcome:
            events.start([item])
            return item_job(model, spec, lambda it: lambda d, t: events.progress(it.id, d, t))(item)

        run_each(items, job, lambda outcome: events.done(by_source[outcome.source], outcome))

    def _run_pool(self, items: list[BatchItem], spec: WorkerSpec, events: RunEvents) -> None:
        import multiprocessing

        workers = min(self.workers, len(items))
        spec = replace(spec, threads=max(1, cpu_count() // workers))
        context = multiprocessing.get_context("spawn")
        progress_queue = context.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    item_id, done, total = progress_queue.get(timeout=0.2)
                except queue_module.Empty:
                    continue
                except (EOFError, OSError):
                    return
                events.progress(item_id, done, total)

        drainer = threading.Thread(target=drain, name="batch-progress", daemon=True)
        drainer.start()
        todo = list(items)
        restarts = 0
        try:
            while todo:
                with ProcessPoolExecutor(workers, mp_context=context, initializer=_pool_init,
                                         initargs=(spec, progress_queue, os.getpid())) as pool:
                    broken = self._feed(pool, todo, workers, events)
                if broken:
                    restarts += 1
                    if restarts > self.max_pool_restarts:
                        raise CaptionerError(f"worker processes kept dying ({restarts} times); see the log above")
                    log.warning("a worker process died; starting new ones")
        finally:
            stop.set()
            drainer.join(timeout=2)
            progress_queue.close()

    @staticmethod
    def _feed(pool: ProcessPoolExecutor, todo: list[BatchItem], workers: int, events: RunEvents) -> bool:
        """Keep ``workers`` inputs in flight until ``todo`` is empty. True when the pool broke (a
        worker process died): the inputs in flight then fail with a message saying so, and the
        rest stay in ``todo`` for a new pool."""
        in_flight: dict[Future, BatchItem] = {}
        try:
            while todo or in_flight:
                while todo and len(in_flight) < workers:
                    events.start([todo[0]])  # before the worker can write anything
                    in_flight[pool.submit(_pool_caption, todo[0])] = todo[0]
                    todo.pop(0)
                finished, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcome = future.result()  # run_each in the worker caught the input's own errors
                    events.done(in_flight.pop(future), outcome)
        except BrokenProcessPool:
            for item in in_flight.values():
                events.done(item, FileOutcome(item.source, error=(
                    f"{item.source}: a worker process died while this input was being captioned (out of memory, "
                    "or a crash in a decoder?); rerun with --retry-failed")))
            return True
        return False


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchError(f"--engine ray needs Ray Data, which is not installed: {RAY_INSTALL}") from None
    return ray


class RayEngine:
    """Ray Data: one row per video (``from_items``), ``map_batches`` with ``RayCaptioner`` on a
    fixed pool of ``workers`` actors (``ActorPoolStrategy``), each with cluster CPUs // workers
    CPUs (at most one node's; as many torch threads) and a GPU share when the cluster has GPUs. Joins ``address`` (or
    ``$RAY_ADDRESS``) when given, else starts a local Ray for the run; a Ray that was already
    initialised in this process (tests) is used as it is. Outputs are written by the actors,
    so on a cluster OUTDIR must be a shared folder with the same path on every node."""

    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, quiet: bool = False):
        self.ray = import_ray()
        self.workers, self.address, self.quiet = workers, address, quiet

    def run(self, items: list[BatchItem], spec: WorkerSpec, events: RunEvents) -> None:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            where = self.address or os.environ.get("RAY_ADDRESS")
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=not self.quiet)
            except Exception as exc:  # ConnectionError, an authentication error, a bad address...
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
                raise BatchError(f"cannot {'join the Ray cluster at ' + where if where else 'start a local Ray'}: "
                                 f"{first_line}" + (". A cluster started with `ray start` uses token authentication: "
                                                    "set RAY_AUTH_MODE=token here and give this machine the head's "
                                                    "~/.ray/auth_token (see the README)" if where else "")) from None
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # our bars say how it goes
        stop = threading.Event()
        drainer = None
        try:
            resources = ray.cluster_resources()
            size = min(self.workers, len(items))
            # an actor lives on one node: never ask for more CPUs than the biggest node has
            node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
            cpus = max(1, min(int(resources.get("CPU", 1)) // size, int(node_cpus)))
            gpus = float(resources.get("GPU", 0))
            num_gpus = min(1.0, gpus / size) if gpus > 0 and spec.options.device != "cpu" else 0
            spec = replace(spec, threads=cpus)
            from ray.util.queue import Queue

            progress = Queue(actor_options={"num_cpus": 0})
            data_context = ray.data.DataContext.get_current()
            data_context.enable_progress_bars = False  # the CLI draws its own
            rows = [{"id": i.id, "source": i.source, "stem": i.stem, "duration_sec": i.duration_sec} for i in items]
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                RayCaptioner, fn_constructor_kwargs={"spec": spec, "progress": progress}, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=size), num_cpus=cpus, num_gpus=num_gpus,
                batch_format="numpy")
            log.info("Ray: %d actor(s), %d CPU(s) and %.2g GPU(s) each", size, cpus, num_gpus)

            def drain() -> None:
                while not stop.is_set():
                    try:
                        item_id, done, total = progress.get(timeout=0.5)
                    except Exception:  # Empty, or the queue actor gone at shutdown
                        continue
                    events.progress(item_id, done, total)

            drainer = threading.Thread(target=drain, name="ray-progress", daemon=True)
            drainer.start()
            by_id = {item.id: item for item in items}
            events.start(items)  # all handed to Ray now; each is done when its row comes back
            for row in dataset.iter_rows():
                events.done(by_id[int(row["id"])], outcome_from_dict(json.loads(row["outcome"])))
        finally:
            stop.set()
            if drainer is not None:
                drainer.join(timeout=2)
            if started_here:
                ray.shutdown()


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
    summary = BatchSummary(output_dir)
    start = time.perf_counter()
    try:
        _run_batch(config, output, settings, sources, skipped, engine, reporter, summary, argv)
    finally:
        summary.seconds = time.perf_counter() - start
        reporter.close()
    return summary


def _run_batch(config: BatchConfig, output: OutputOptions, settings: RunSettings, sources: list[str],
               skipped: dict[str, str], engine, reporter: BatchReporter, summary: BatchSummary,
               argv: Sequence[str] | None) -> None:
    output_dir = output.output_dir
    with OutputLock(output_dir):
        removed = sweep_temp_files(output_dir)
        if removed:
            log.warning("removed %d temporary file(s) a stopped run left in %s", len(removed), output_dir)
        with Manifest(output_dir) as manifest, Library(output_dir) as library:
            manifest.record_settings(settings)
            used = manifest.stems()
            known = {r.source for r in manifest.records([*sources, *skipped])}
            manifest.add_inputs([NewInput(s, unique_stem(source_name(s), used)) for s in sources if s not in known]
                                + [NewInput(s, unique_stem(source_name(s), used), skipped_reason=why)
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
            items = _with_durations(manifest, plan.items)
            summary.to_do = len(items)
            reporter.planned(summary, items)
            if items:
                _run_items(engine, items, config, output, settings, manifest, library, reporter, summary, argv)


def _with_durations(manifest: Manifest, items: list[BatchItem]) -> list[BatchItem]:
    """Probe the inputs whose duration is not yet known (for the video-seconds progress bar)."""
    out = []
    for item in items:
        if not item.duration_sec:
            duration = probe_duration(item.source)
            if duration:
                manifest.set_duration(item.id, duration)
                item = replace(item, duration_sec=duration)
        out.append(item)
    return out


def _run_items(engine, items: list[BatchItem], config: BatchConfig, output: OutputOptions, settings: RunSettings,
               manifest: Manifest, library: Library, reporter: BatchReporter, summary: BatchSummary,
               argv: Sequence[str] | None) -> None:
    output_dir = output.output_dir
    by_id = {item.id: item for item in items}
    spec = WorkerSpec(output, config.options, config.yolo_weights, config.weights,
                      lock_dir=str(output_dir) if engine.name == "ray" or config.workers > 1 else None)
    run_id = manifest.start_run(engine.name, config.workers, settings.key, argv)
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
