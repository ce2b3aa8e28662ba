"""Command line: ``captioner VIDEO...`` captions; ``captioner features|train|eval`` for the rest.

A thin argparse layer over the library, in the manner of whisper's CLI.
Exit codes: 0 every input done, 1 some inputs failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .errors import CaptionerError
from .video import DEFAULT_ANALYSIS_FPS, is_video_file

log = logging.getLogger("captioner")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Globs and directories expand to their video files (sorted); anything else is kept as
    given so that a missing file is reported by name rather than silently dropped."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                paths.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_video_file(p)))
            elif not glob.has_magic(pattern) or is_video_file(path):
                paths.append(path)
    seen: set[Path] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def add_perception_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, default=DEFAULT_ANALYSIS_FPS, help="analysis frames per second (default %(default)s)")
    parser.add_argument("--imgsz", type=int, default=640, help="YOLO input size in pixels (default %(default)s)")
    parser.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold (default %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--yolo-weights", default=None, help="YOLO .pt file (default: $CAPTIONER_YOLO_WEIGHTS, weights/, then yolo11n.pt)")


def make_perception(args: argparse.Namespace):
    from .perception import Perception

    return Perception(args.yolo_weights, imgsz=args.imgsz, conf=args.conf, device=args.device)


def progress_bar(desc: str, quiet: bool):
    """A tqdm bar driven by ``update(done, total)`` callbacks; None when quiet."""
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


def run_each(paths: list[Path], job: Callable[[Path], str], quiet: bool) -> int:
    """Run ``job`` on every input; one failure never stops the batch."""
    failed = 0
    for path in paths:
        try:
            message = job(path)
            if not quiet:
                print(message, flush=True)
        except CaptionerError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:  # an unexpected bug on one file must not lose the others' work
            failed += 1
            log.exception("unexpected failure on %s", path)
            print(f"error: {path}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    if failed and not quiet:
        print(f"{failed} of {len(paths)} inputs failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def cmd_features(argv: Sequence[str]) -> int:
    from .features import FeatureCache, extract_features

    parser = argparse.ArgumentParser(prog="captioner features", description="Extract and cache per-frame YOLO features.")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR")
    parser.add_argument("--out", default=None, help="cache directory (default: $CAPTIONER_CACHE or ~/.cache/captioner/features)")
    parser.add_argument("--quiet", action="store_true")
    add_perception_args(parser)
    args = parser.parse_args(argv)
    paths = expand_inputs(args.inputs)
    if not paths:
        parser.error("no video files found in the given inputs")
    perception = make_perception(args)
    cache = FeatureCache(args.out)

    def job(path: Path) -> str:
        start = time.perf_counter()
        update, close = progress_bar(path.name, args.quiet)
        try:
            features, hit = extract_features(path, perception, analysis_fps=args.fps, cache=cache, progress=update)
        finally:
            close()
        state = "cached" if hit else "extracted"
        return f"{path}: {state} {len(features.frames)} frames in {time.perf_counter() - start:.2f}s"

    return run_each(paths, job, args.quiet)


SUBCOMMANDS: dict[str, str] = {"features": "cmd_features", "train": "cmd_train", "eval": "cmd_eval"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            handler = globals().get(SUBCOMMANDS[argv[0]])
            if handler is None:
                print(f"captioner {argv[0]}: not available yet", file=sys.stderr)
                return EXIT_USAGE
            return handler(argv[1:])
        return cmd_caption(argv)
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        return int(exc.code or 0)
    except CaptionerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED


def cmd_caption(argv: Sequence[str]) -> int:
    print("captioning is not available yet; use `captioner features`", file=sys.stderr)
    return EXIT_USAGE
