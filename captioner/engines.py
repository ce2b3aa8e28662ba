"""Where a batch's inputs are captioned: the engines, their workers, and the locks between them.

- ``LocalEngine``: one worker in this process (the models loaded here, once), or N spawned
  worker processes (``--workers N``), each loading the models once with cores // N torch
  threads, kept N inputs busy by the parent.
- ``RayEngine``: Ray Data (``--engine ray``): one row per video (``from_items``), ``map_batches``
  with the callable class ``RayCaptioner`` on an ``ActorPoolStrategy(size=N)`` actor pool.

Every engine runs the same job per input (``item_job``: the shared file job,
``jobs.caption_file``, inside the shared error loop, ``jobs.run_each``) and tells the run what
happens through ``RunEvents``: inputs started (before a worker can write anything), frames done,
an input's outcome (always in the engine's calling thread, so the manifest has one writer).

Locks: a run holds ``OUTDIR``'s batch lock (``OutputLock``: one batch per folder); worker
processes and actors hold the workers lock shared while they live and die with their parent
(``die_with_parent``), and a new run waits for that lock, so no worker of a killed run can
still be writing when the next run starts.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue as queue_module
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import CaptionerError, OptionsError
from .jobs import FileOutcome, OutputOptions, caption_file, run_each
from .options import CaptionOptions, ProgressCallback
from .result import Result

log = logging.getLogger(__name__)

BATCH_LOCK = ".captioner-batch.lock"  # held by the run's parent process
WORKERS_LOCK = ".captioner-batch.workers.lock"  # held (shared) by every worker process and actor
BATCH_LOCK_FILES = (BATCH_LOCK, WORKERS_LOCK)  # empty files that stay between runs
ORPHAN_WAIT_SEC = 60.0  # how long a new run waits for a killed run's workers to go
RAY_INSTALL = "pip install 'captioner[ray]'  (or: pip install 'ray[data]>=2.40')"


class BatchError(OptionsError):
    """A batch cannot start as asked (changed settings without --overwrite, Ray missing, the
    folder busy): fix the command and rerun. The CLI exits with 2."""


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


ProgressFor = Callable[[BatchItem], ProgressCallback | None]


def item_job(model, spec: WorkerSpec, progress_for: ProgressFor | None = None) -> Callable[[BatchItem], FileOutcome]:
    """The job every engine runs per input: the shared file job, to OUTDIR/STEM.*."""
    def job(item: BatchItem) -> FileOutcome:
        progress = progress_for(item) if progress_for else None
        return caption_file(model, item.source, spec.output, spec.options, stem=item.stem, progress=progress)
    return job


def throttled(send: ProgressCallback, every_sec: float = 0.25) -> ProgressCallback:
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
            on_gpu = spec.options.device != "cpu" and spec.options.backend == "torch"  # export backends: the CPU
            num_gpus = min(1.0, gpus / size) if gpus > 0 and on_gpu else 0
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
