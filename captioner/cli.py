"""Command line: ``captioner VIDEO...`` captions; ``captioner live SOURCE`` captions a live source;
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
import glob
import logging
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Sequence

from .errors import CaptionerError, ModelError, OptionsError, VideoError
from .jobs import FileOutcome, OutputOptions, caption_file, run_each
from .options import CaptionOptions
from .video import DEFAULT_ANALYSIS_FPS, check_source, is_media_file, is_url
from .writers import OUTPUT_FORMATS

log = logging.getLogger("captioner")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
COMMAND_GROUP = "captioner.commands"


def expand_inputs(patterns: Sequence[str]) -> list[Path | str]:
    """Globs and directories expand to their video and image files (sorted); URLs stay URLs
    (strings); anything else is kept as given, so that a missing file, or a folder with nothing
    to caption, is reported by name rather than silently dropped."""
    items: list[Path | str] = []
    for pattern in patterns:
        if is_url(pattern):
            items.append(pattern)
            continue
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file() and is_media_file(p))
                items.extend(found if found or glob.has_magic(pattern) else [path])
            elif not glob.has_magic(pattern) or is_media_file(path):
                items.append(path)
    seen: set[Path | str] = set()
    return [p for p in items if not (p in seen or seen.add(p))]


def check_input(item: Path | str) -> FileOutcome:
    """``video.check_source``: the checks that need no model (exists, readable, not empty,
    opens as a video or image), so bad inputs are reported before the models load."""
    if isinstance(item, Path) and item.is_dir():
        raise VideoError(f"{item}: is a folder with no video or image files in it")
    check_source(item)
    return FileOutcome(str(item))


def checked_inputs(items: Sequence[Path | str], quiet: bool) -> tuple[list[Path | str], list[FileOutcome]]:
    """(the inputs that passed ``check_input``, the failed outcomes, each already reported)."""
    outcomes = run_each(items, check_input, lambda o: None if o.ok else print_outcome(quiet, str)(o))
    return [item for item, o in zip(items, outcomes) if o.ok], [o for o in outcomes if not o.ok]


def add_perception_args(parser: argparse.ArgumentParser) -> None:
    defaults = CaptionOptions()
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz, help="YOLO input size in pixels (default %(default)s)")
    parser.add_argument("--conf", type=float, default=defaults.conf, help="detection confidence threshold (default %(default)s)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--yolo-weights", default=None,
                        help="YOLO .pt file (default: $CAPTIONER_YOLO_WEIGHTS, else weights/yolo11n-coco-int8w.pt)")


def add_caption_args(parser: argparse.ArgumentParser) -> None:
    defaults = CaptionOptions()
    parser.add_argument("--window", type=float, default=defaults.window_sec, help="seconds per caption segment (default %(default)s)")
    parser.add_argument("--beam", type=int, default=defaults.beam_size, help="beam size (1 = greedy; default %(default)s)")
    parser.add_argument("--weights", default=None, help="caption model (default: $CAPTIONER_WEIGHTS, else weights/captioner.pt)")
    add_perception_args(parser)


def caption_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CaptionOptions:
    """CaptionOptions from the flags; a bad value is a usage error (exit 2) before any model loads."""
    try:
        return CaptionOptions(imgsz=args.imgsz, conf=args.conf, device=args.device,
                              window_sec=getattr(args, "window", CaptionOptions.window_sec),
                              beam_size=getattr(args, "beam", CaptionOptions.beam_size))
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
    parser.add_argument("-f", "--output-format", default="all", choices=OUTPUT_FORMATS, help="default: all")
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
    paths, failed = checked_inputs(paths, args.quiet)  # before the models load: bad inputs answer at once
    if not paths:
        return report(failed, args.quiet)
    model = load(args, options)

    def job(path: Path | str) -> FileOutcome:
        name = path.name if isinstance(path, Path) else path
        update, close = progress_bar(name, args.quiet)
        render, close_render = progress_bar(f"{name} (annotating)", args.quiet or not args.annotate)
        try:
            return caption_file(model, path, output, progress=update, annotate_progress=render)
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
    paths, failed = checked_inputs(paths, args.quiet)
    if not paths:
        return report(failed, args.quiet)
    perception = Perception(args.yolo_weights, imgsz=options.imgsz, conf=options.conf, device=options.device)
    cache = FeatureCache(args.out)
    messages: dict[str, str] = {}

    def job(path: Path | str) -> FileOutcome:
        if not isinstance(path, Path):
            raise VideoError(f"{path}: features are extracted and cached for local files only")
        start = time.perf_counter()
        update, close = progress_bar(path.name, args.quiet)
        try:
            features, hit = extract_features(path, perception, analysis_fps=args.fps, cache=cache, progress=update)
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
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    add_caption_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    try:
        options = options.replace(caption_every_sec=args.every)
    except OptionsError as exc:
        parser.error(str(exc))
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.reconnect < 0:
        parser.error("--reconnect must be 0 or more")
    model = load(args, options)
    return run_live(model, args.source, jsonl=args.jsonl, duration_sec=args.duration, reconnects=args.reconnect,
                    quiet=args.quiet).exit_code


# ---- dispatch -------------------------------------------------------------------------------------

BUILTIN_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"features": cmd_features, "live": cmd_live}


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
        return 130
