"""Command line: ``captioner VIDEO...`` captions; ``captioner live SOURCE`` captions a live source;
``captioner batch INPUTS -o OUTDIR`` captions an archive resumably (``batch``), ``captioner
index`` / ``captioner search`` build and query OUTDIR's caption library (``library``);
``captioner features`` caches perception. A thin argparse layer over the library, in the manner
of whisper's CLI: it builds ``CaptionOptions`` / ``OutputOptions`` and calls ``jobs``.

More subcommands are registered by packages through the ``captioner.commands`` entry-point
group (``captioner train`` and ``captioner eval`` come from ``captioner.training``), so the
runtime never imports the training kit.

Exit codes: 0 every input done, 1 some inputs failed, 2 usage error (bad options, missing
model files).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Sequence

from .errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, CaptionerError, ModelError, OptionsError,
                     VideoError)
from .jobs import FileOutcome, OutputOptions, caption_file, expand_inputs, output_stems, run_each
from .options import BACKENDS, CaptionOptions
from .video import DEFAULT_ANALYSIS_FPS, check_source
from .writers import CAPTION_FORMATS, OUTPUT_FORMATS, parse_formats

log = logging.getLogger("captioner")

COMMAND_GROUP = "captioner.commands"


FORMAT_HELP = (f"{', '.join(OUTPUT_FORMATS)}, or several comma-separated (default: all = {', '.join(CAPTION_FORMATS)}; "
               "tracks = one CSV row per detection, tracks.jsonl = the same as JSON lines)")


def output_formats(text: str) -> str:
    """argparse type of ``-f``: a format, ``all`` or a comma-separated list (checked here)."""
    try:
        parse_formats(text)
    except CaptionerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def checked_inputs(items: Sequence[Path | str], quiet: bool,
                   timeout_sec: float | None) -> tuple[list[Path | str], list[FileOutcome]]:
    """``video.check_source`` on each input: the checks that need no model (exists, a readable,
    regular, non-empty file, opens as a video or image, within ``timeout_sec``), so bad inputs
    are reported before the models load. (the inputs that passed, the failed outcomes, each
    already reported)."""
    def check_input(item: Path | str) -> FileOutcome:
        check_source(item, timeout_sec)
        return FileOutcome(str(item))

    outcomes = run_each(items, check_input, lambda o: None if o.ok else print_outcome(quiet, str)(o))
    return [item for item, o in zip(items, outcomes) if o.ok], [o for o in outcomes if not o.ok]


def add_perception_args(parser: argparse.ArgumentParser) -> None:
    defaults = CaptionOptions()
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz, help="YOLO input size in pixels (default %(default)s)")
    parser.add_argument("--conf", type=float, default=defaults.conf, help="detection confidence threshold (default %(default)s)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--backend", default=defaults.backend, choices=BACKENDS,
                        help="where YOLO runs: torch (default; a GPU when there is one), or the network exported to "
                             "ONNX and run on the CPU by onnx (ONNX Runtime, fp32) or openvino (fastest on a CPU; "
                             "bf16 where the CPU has it)")
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout_sec, metavar="SEC",
                        help="give up on an input that sends no data for this long, opening it or between frames "
                             "(a stalled mount or stream); the run goes on with the next (default %(default)s; "
                             "0 = wait forever)")
    parser.add_argument("--yolo-weights", default=None,
                        help="YOLO .pt file (default: $CAPTIONER_YOLO_WEIGHTS, else weights/yolo11n-coco-int8w.pt)")


def add_caption_args(parser: argparse.ArgumentParser) -> None:
    defaults = CaptionOptions()
    parser.add_argument("--window", type=float, default=defaults.window_sec, help="seconds per caption segment (default %(default)s)")
    parser.add_argument("--beam", type=int, default=defaults.beam_size, help="beam size (1 = greedy; default %(default)s)")
    parser.add_argument("--weights", default=None, help="caption model (default: $CAPTIONER_WEIGHTS, else weights/captioner.pt)")
    parser.add_argument("--forecasts", type=int, default=defaults.forecast_lines, metavar="N",
                        help="'what happens next' lines per segment, the most informative first; none only restates "
                             "the present with certainty (default %(default)s; 0 = every line the forecast rules allow)")
    add_perception_args(parser)


def caption_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CaptionOptions:
    """CaptionOptions from the flags; a bad value is a usage error (exit 2) before any model loads."""
    try:
        return CaptionOptions(imgsz=args.imgsz, conf=args.conf, device=args.device, backend=args.backend,
                              window_sec=getattr(args, "window", CaptionOptions.window_sec),
                              beam_size=getattr(args, "beam", CaptionOptions.beam_size),
                              read_timeout_sec=args.read_timeout or None,
                              forecast_lines=getattr(args, "forecasts", CaptionOptions.forecast_lines))
    except OptionsError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def load(args: argparse.Namespace, options: CaptionOptions):
    from .pipeline import load_model

    return load_model(options, yolo_weights=args.yolo_weights, weights=getattr(args, "weights", None))


def progress_bar(desc: str, quiet: bool):
    """A tqdm bar driven by ``update(done, total)`` callbacks, and its ``close``; (None, no-op) when quiet."""
    if quiet:
        return None, (lambda: None)
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="frame", leave=False, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh() if done % 10 == 0 else None

    return update, bar.close


def report(outcomes: list[FileOutcome], quiet: bool) -> int:
    failed = [o for o in outcomes if not o.ok]
    if failed and not quiet:
        print(f"{len(failed)} of {len(outcomes)} inputs failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def print_outcome(quiet: bool, describe: Callable[[FileOutcome], str]) -> Callable[[FileOutcome], None]:
    def on_done(outcome: FileOutcome) -> None:
        if not outcome.ok:
            print(f"error: {outcome.error}", file=sys.stderr, flush=True)
        elif not quiet:
            print(describe(outcome), flush=True)
    return on_done


# ---- captioner VIDEO... ---------------------------------------------------------------------------

def caption_summary(outcome: FileOutcome) -> str:
    result = outcome.result
    lines = [f"{outcome.source}: {len(result.segments)} segments in {outcome.seconds:.1f}s -> "
             + ", ".join(str(p) for p in outcome.written)]
    for seg in result.segments[:3]:
        lines.append(f"  [{seg.start:6.1f} - {seg.end:6.1f}] {seg.caption}" + (f"  | next: {seg.next_text}" if seg.next_text else ""))
    if len(result.segments) > 3:
        lines.append(f"  ... {len(result.segments) - 3} more")
    return "\n".join(lines)


def cmd_caption(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="captioner", description="Caption videos and images: one YOLO pass per frame, an LSTM writes captions "
        "and predicts what happens next. Subcommands: " + ", ".join(sorted(subcommands())) + " (see `captioner SUBCOMMAND -h`).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video or image files, folders or glob patterns")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write outputs (default: .)")
    parser.add_argument("-f", "--output-format", default="all", type=output_formats, metavar="FORMAT[,FORMAT...]",
                        help=FORMAT_HELP)
    parser.add_argument("--annotate", action="store_true", help="also write NAME.annotated.mp4 with boxes, ids and captions")
    parser.add_argument("--show-next", action="store_true", help="add the what-happens-next line to subtitles")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines")
    add_caption_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    output = OutputOptions(args.output_dir, args.output_format, args.show_next, args.annotate, args.overwrite)
    paths = expand_inputs(args.inputs)
    if not paths:
        parser.error("no video or image files found in the given inputs")
    stems = output_stems(paths)  # in the order given, before any fails: the same names every run
    paths, failed = checked_inputs(paths, args.quiet, options.read_timeout_sec)  # before the models load
    if not paths:
        return report(failed, args.quiet)
    model = load(args, options)

    def job(path: Path | str) -> FileOutcome:
        name = path.name if isinstance(path, Path) else path
        update, close = progress_bar(name, args.quiet)
        render, close_render = progress_bar(f"{name} (annotating)", args.quiet or not args.annotate)
        try:
            return caption_file(model, path, output, stem=stems[path], progress=update, annotate_progress=render)
        finally:
            close()
            close_render()

    return report(failed + run_each(paths, job, print_outcome(args.quiet, caption_summary)), args.quiet)


# ---- captioner features ---------------------------------------------------------------------------

def cmd_features(argv: Sequence[str]) -> int:
    from .features import FeatureCache, extract_features
    from .perception import Perception

    parser = argparse.ArgumentParser(prog="captioner features", description="Extract and cache per-frame YOLO features.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT_OR_DIR")
    parser.add_argument("--out", default=None, help="cache directory (default: $CAPTIONER_CACHE or ~/.cache/captioner/features)")
    parser.add_argument("--fps", type=float, default=DEFAULT_ANALYSIS_FPS, help="analysis frames per second (default %(default)s)")
    parser.add_argument("--quiet", action="store_true")
    add_perception_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    paths = expand_inputs(args.inputs)
    if not paths:
        parser.error("no video or image files found in the given inputs")
    paths, failed = checked_inputs(paths, args.quiet, options.read_timeout_sec)
    if not paths:
        return report(failed, args.quiet)
    perception = Perception(args.yolo_weights, **options.perception())
    cache = FeatureCache(args.out)
    messages: dict[str, str] = {}

    def job(path: Path | str) -> FileOutcome:
        if not isinstance(path, Path):
            raise VideoError(f"{path}: features are extracted and cached for local files only")
        start = time.perf_counter()
        update, close = progress_bar(path.name, args.quiet)
        try:
            features, hit = extract_features(path, perception, analysis_fps=args.fps, cache=cache, progress=update,
                                             timeout_sec=options.read_timeout_sec)
        finally:
            close()
        messages[str(path)] = f"{'cached' if hit else 'extracted'} {len(features.frames)} frames"
        return FileOutcome(str(path), seconds=time.perf_counter() - start)

    summary = print_outcome(args.quiet, lambda o: f"{o.source}: {messages[o.source]} in {o.seconds:.2f}s")
    return report(failed + run_each(paths, job, summary), args.quiet)


# ---- captioner live -------------------------------------------------------------------------------

def cmd_live(argv: Sequence[str]) -> int:
    from .live import run_live

    parser = argparse.ArgumentParser(
        prog="captioner live", description="Caption a live source: prints timestamped captions and forecasts as they "
        "change. Late frames are dropped, so it never lags behind the source.")
    parser.add_argument("source", help="webcam index (0), video file (played at its real speed) or stream URL (rtsp://, http://...)")
    parser.add_argument("--jsonl", type=Path, default=None, help="also append each closed segment to this JSON-lines file")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--reconnect", type=int, default=3, help="times to reopen a stream that drops (default %(default)s)")
    parser.add_argument("--every", type=float, default=CaptionOptions.caption_every_sec,
                        help="seconds between live caption refreshes (default %(default)s)")
    parser.add_argument("--caption-inline", action="store_true",
                        help="refresh the live caption in the frame's own thread, not a worker (faster where YOLO "
                             "already fills every core, e.g. imgsz 640 on 2 cores)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    add_caption_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    try:
        options = options.replace(caption_every_sec=args.every, caption_in_background=not args.caption_inline)
    except OptionsError as exc:
        parser.error(str(exc))
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.reconnect < 0:
        parser.error("--reconnect must be 0 or more")
    model = load(args, options)
    return run_live(model, args.source, jsonl=args.jsonl, duration_sec=args.duration, reconnects=args.reconnect,
                    quiet=args.quiet).exit_code


# ---- captioner batch / index / search -----------------------------------------------------------

class BatchBars:
    """A batch's progress on the terminal: one overall bar (video seconds, so the ETA weighs
    long videos properly, with the videos done in its label), one bar per video being captioned
    (``progress_bar``), and a line per finished input. Called from the engine's threads."""

    def __init__(self, quiet: bool):
        import threading

        self.quiet, self.lock = quiet, threading.Lock()
        self.overall = None
        self.bars: dict[int, tuple] = {}  # item id -> (update, close) of its bar
        self.in_flight: dict[int, tuple[float, float]] = {}  # item id -> (duration_sec, fraction done)
        self.done_sec, self.done, self.failed, self.total = 0.0, 0, 0, 0

    def planned(self, summary, items) -> None:
        earlier = [f"{n} {what}" for n, what in ((summary.done_before, "done earlier"),
                                                 (summary.failed_before, "failed earlier (--retry-failed retries them)"),
                                                 (summary.skipped, "skipped"), (summary.recovered, "left mid-way, redone"),
                                                 (summary.redone, "redone with new settings")) if n]
        if not self.quiet:
            print(f"{summary.output_dir}: {summary.inputs} input(s): {len(items)} to caption"
                  + "".join(f", {e}" for e in earlier), flush=True)
        self.total = len(items)
        if items and not self.quiet:
            from tqdm import tqdm

            total_sec = sum(item.duration_sec for item in items)
            self.overall = tqdm(total=round(total_sec, 1) or None, unit="video-s", desc=f"videos 0/{len(items)}",
                                dynamic_ncols=True, unit_scale=False)

    def started(self, item) -> None:
        with self.lock:
            self.in_flight[item.id] = (item.duration_sec, 0.0)

    def progress(self, item, done: int, total: int) -> None:
        with self.lock:
            if item.id not in self.in_flight:  # a late update of a finished input
                return
            if item.id not in self.bars:  # drawn once frames flow (Ray hands every input over at once)
                self.bars[item.id] = progress_bar(Path(item.source).name[:40], self.quiet)
            update = self.bars[item.id][0]
            if update is not None:
                update(done, total)
            if total:
                self.in_flight[item.id] = (item.duration_sec, min(done / total, 1.0))
                self._refresh()

    def finished(self, item, outcome: FileOutcome) -> None:
        with self.lock:
            self.bars.pop(item.id, (None, lambda: None))[1]()
            self.in_flight.pop(item.id, None)
            self.done_sec += item.duration_sec
            if outcome.ok:
                self.done += 1
            else:
                self.failed += 1
            self._refresh()
            write = self.overall.write if self.overall is not None else (lambda text, file=None: print(text, file=file))
            if not outcome.ok:
                write(f"error: {outcome.error}", file=sys.stderr)
            elif not self.quiet:
                result = outcome.result
                write(f"{outcome.source}: {len(result.segments)} segment(s), {result.video.duration_sec:.1f} s of video "
                      f"in {outcome.seconds:.1f} s -> {', '.join(p.name for p in outcome.written)}")

    def _refresh(self) -> None:
        if self.overall is None:
            return
        self.overall.set_description(f"videos {self.done + self.failed}/{self.total}"
                                     + (f" ({self.failed} failed)" if self.failed else ""), refresh=False)
        seconds = round(self.done_sec + sum(d * f for d, f in self.in_flight.values()), 1)
        self.overall.update(seconds - self.overall.n)  # redraws at most every mininterval

    def close(self) -> None:
        with self.lock:
            for _, close in self.bars.values():
                close()
            self.bars.clear()
            if self.overall is not None:
                self.overall.close()
                self.overall = None


def cmd_batch(argv: Sequence[str]) -> int:
    from .batch import ENGINES, BatchConfig, BatchError, run_batch

    parser = argparse.ArgumentParser(
        prog="captioner batch", description="Caption many videos into one folder, resumably: a manifest in OUTDIR "
        "records every input, so running the same command again skips what is done and redoes what a crash left "
        "mid-way. Also keeps OUTDIR's searchable caption library (captioner search).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video or image files, folders, glob patterns, URLs, or .txt/.list files listing them "
                             "(one per line; relative paths are relative to the list)")
    parser.add_argument("-o", "--output-dir", type=Path, required=True, help="where outputs and the manifest go")
    parser.add_argument("-f", "--output-format", default="all", type=output_formats, metavar="FORMAT[,FORMAT...]",
                        help=FORMAT_HELP + "; json is always written")
    parser.add_argument("--annotate", action="store_true", help="also write NAME.annotated.mp4")
    parser.add_argument("--show-next", action="store_true", help="add the what-happens-next line to subtitles")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs; redo inputs done with other settings or models")
    parser.add_argument("--retry-failed", action="store_true", help="retry inputs that failed in an earlier run")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (or Ray actors), each loading the models once (default %(default)s)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local processes, or Ray Data (pip install 'captioner[ray]') (default %(default)s)")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray for the run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines")
    add_caption_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    try:
        config = BatchConfig(tuple(args.inputs), OutputOptions(args.output_dir, args.output_format, args.show_next,
                                                               args.annotate, args.overwrite), options,
                             args.yolo_weights, args.weights, args.workers, args.engine, args.ray_address,
                             args.retry_failed)
    except OptionsError as exc:
        parser.error(str(exc))
    bars = BatchBars(args.quiet)
    try:
        summary = run_batch(config, bars, argv=["batch", *argv])
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"interrupted: {bars.done} input(s) finished and recorded; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    videos_per_min, rate = summary.throughput()
    if not args.quiet or summary.exit_code:
        print(f"{summary.output_dir}: {summary.done} captioned, {summary.failed} failed in this run "
              f"({summary.video_sec:.1f} s of video in {summary.seconds:.1f} s: {videos_per_min:.1f} videos/min, "
              f"{rate:.2f} video-s/s); {summary.done_before} done earlier, {summary.failed_before} failed earlier"
              + (" (rerun with --retry-failed to retry them)" if summary.failed_before else "")
              + (f", {summary.skipped} skipped" if summary.skipped else ""), file=sys.stderr if summary.exit_code else sys.stdout)
    return summary.exit_code


def cmd_index(argv: Sequence[str]) -> int:
    from .library import Library

    parser = argparse.ArgumentParser(prog="captioner index", description="(Re)build OUTDIR's caption library "
                                     "(library.sqlite) from the json outputs in it.")
    parser.add_argument("output_dir", type=Path, metavar="OUTDIR")
    args = parser.parse_args(argv)
    if not args.output_dir.is_dir():
        parser.error(f"{args.output_dir}: no such folder")
    with Library(args.output_dir) as library:
        report = library.rebuild()
        for reason in report.skipped:
            print(f"skipped {reason}", file=sys.stderr)
        print(f"{library.path}: {report.videos} video(s), {report.segments} segment(s) indexed")
    return EXIT_OK


def cmd_search(argv: Sequence[str]) -> int:
    import json

    from .library import Library

    parser = argparse.ArgumentParser(prog="captioner search", description="Search OUTDIR's caption library: "
                                     "segments whose caption, next-event lines or objects match, best first (BM25).")
    parser.add_argument("output_dir", type=Path, metavar="OUTDIR")
    parser.add_argument("query", nargs="?", default="", help='words, or "an exact phrase" (empty: filters only)')
    parser.add_argument("--class", dest="classes", action="append", default=[], metavar="NAME",
                        help="only segments showing this object class (COCO name; repeatable)")
    parser.add_argument("--min-count", type=int, default=None,
                        help="with --class: at least this many of it seen at once")
    parser.add_argument("--video", default=None, help="only this video (its output name, without .json)")
    parser.add_argument("--limit", type=int, default=10, help="results (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as a JSON list")
    args = parser.parse_args(argv)
    if args.min_count is not None and not args.classes:
        parser.error("--min-count needs --class NAME")
    if not args.query.strip() and not args.classes and not args.video:
        parser.error("give a query, --class or --video")
    with Library(args.output_dir, create=False) as library:
        hits = library.search(args.query, classes=args.classes, min_count=args.min_count or 1, video=args.video,
                              limit=args.limit)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2, ensure_ascii=False))
    elif not hits:
        print("no segment matches", file=sys.stderr)
    for hit in hits if not args.json else []:
        objects = ", ".join(f"{n} {name}" for name, n in hit.classes.items())
        print(f"{hit.video}\t{hit.start:.1f}-{hit.end:.1f}\t{hit.caption}" + (f"\t[{objects}]" if objects else ""))
    return EXIT_OK


# ---- dispatch -------------------------------------------------------------------------------------

BUILTIN_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "batch": cmd_batch, "features": cmd_features, "index": cmd_index, "live": cmd_live, "search": cmd_search}


def subcommands() -> dict[str, object]:
    """Built-in subcommands plus those registered under the ``captioner.commands`` entry points."""
    found: dict[str, object] = dict(BUILTIN_COMMANDS)
    for entry in entry_points(group=COMMAND_GROUP):
        found.setdefault(entry.name, entry)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = subcommands()
        if argv and argv[0] in commands:
            handler = commands[argv[0]]
            if not callable(handler):
                handler = handler.load()  # an entry point
            return handler(argv[1:])
        return cmd_caption(argv)
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        return int(exc.code or 0)
    except (ModelError, OptionsError) as exc:  # missing or unfit model files, bad settings: fix and rerun
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CaptionerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
