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


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (or $CAPTIONER_SHARED/data)."""
    import os

    root = os.environ.get("CAPTIONER_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    return Path(root) / "data"


def cmd_train(argv: Sequence[str]) -> int:
    from .checkpoint import DEFAULT_CHECKPOINT
    from .train import TrainConfig, run_training

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner train", description="Train the caption + next-event model from scratch.")
    parser.add_argument("--videos", type=Path, default=data / "videos", help="folder of training videos (default %(default)s)")
    parser.add_argument("--captions", type=Path, default=data / "captions",
                        help="caption corpora folder (MSVD/MSR-VTT/ActivityNet/DiDeMo/YouCook2; default %(default)s); 'none' to skip")
    parser.add_argument("--user-captions", type=Path, default=None,
                        help="captions for your own videos: MSVD-style TSV, MSR-VTT-style JSON or ActivityNet-style JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint to write (default %(default)s)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    add_perception_args(parser)
    args = parser.parse_args(argv)
    if not args.videos.is_dir():
        parser.error(f"--videos {args.videos}: not a folder")
    captions = None if str(args.captions) == "none" else args.captions
    if captions is not None and not captions.is_dir():
        parser.error(f"--captions {args.captions}: not a folder (use 'none' to train on videos only)")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    logging.getLogger("captioner").setLevel(logging.INFO)
    cfg = TrainConfig(steps=args.steps, seed=args.seed, analysis_fps=args.fps)
    start = time.perf_counter()
    path = run_training(args.videos, captions, args.out, make_perception(args), cfg, args.user_captions)
    print(f"wrote {path} in {time.perf_counter() - start:.0f}s")
    return EXIT_OK


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


def check_caption_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Wrong options are usage errors (exit 2), caught before any model is loaded."""
    from .errors import OptionsError
    from .perception import check_imgsz
    from .video import check_fps

    try:
        check_fps(args.fps)
        check_imgsz(args.imgsz)
    except OptionsError as exc:
        parser.error(str(exc))
    if not (0.5 <= args.window <= 600):
        parser.error(f"--window must be between 0.5 and 600 seconds, got {args.window}")
    if not (0.0 < args.conf < 1.0):
        parser.error(f"--conf must be in (0, 1), got {args.conf}")
    if not (1 <= args.beam <= 16):
        parser.error(f"--beam must be between 1 and 16, got {args.beam}")


def cmd_caption(argv: Sequence[str]) -> int:
    from .writers import OUTPUT_FORMATS, check_targets, get_writer

    parser = argparse.ArgumentParser(
        prog="captioner", description="Caption videos: one YOLO pass per frame, an LSTM writes captions and "
        "predicts what happens next. Subcommands: features, train, eval (see `captioner SUBCOMMAND -h`).")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO", help="video files, folders or glob patterns")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to write outputs (default: .)")
    parser.add_argument("-f", "--output-format", default="all", choices=OUTPUT_FORMATS, help="default: all")
    parser.add_argument("--window", type=float, default=4.0, help="seconds per caption segment (default %(default)s)")
    parser.add_argument("--weights", default=None, help="caption model (default: weights/captioner.pt or $CAPTIONER_WEIGHTS)")
    parser.add_argument("--beam", type=int, default=4, help="beam size (1 = greedy; default %(default)s)")
    parser.add_argument("--annotate", action="store_true", help="also write VIDEO.annotated.mp4 with boxes, ids and captions")
    parser.add_argument("--show-next", action="store_true", help="add the what-happens-next line to subtitles")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines")
    add_perception_args(parser)
    args = parser.parse_args(argv)
    check_caption_options(parser, args)
    paths = expand_inputs(args.inputs)
    if not paths:
        parser.error("no video files found in the given inputs")
    from .pipeline import load_model

    model = load_model(args.yolo_weights, args.weights, imgsz=args.imgsz, conf=args.conf, device=args.device,
                       beam_size=args.beam)
    writer = get_writer(args.output_format, args.output_dir, show_next=args.show_next, overwrite=args.overwrite)

    def job(path: Path) -> str:
        from .annotate import render_annotated_video

        annotated = args.output_dir / f"{path.stem}.annotated.mp4"
        targets = list(getattr(writer, "output_paths", lambda p: [writer.output_path(p)])(path))
        check_targets(targets + ([annotated] if args.annotate else []), overwrite=args.overwrite)  # before the work
        start = time.perf_counter()
        update, close = progress_bar(path.name, args.quiet)
        try:
            result = model.caption(path, fps=args.fps, window_sec=args.window, progress=update,
                                   keep_detections=args.annotate)
        finally:
            close()
        written = writer(result, path)
        if args.annotate:
            update, close = progress_bar(f"{path.name} (annotating)", args.quiet)
            try:
                written.append(render_annotated_video(path, annotated, result, result.frame_detections,
                                                      overwrite=args.overwrite, progress=update))
            finally:
                close()
        lines = [f"{path}: {len(result.segments)} segments in {time.perf_counter() - start:.1f}s -> "
                 + ", ".join(str(p) for p in written)]
        for seg in result.segments[:3]:
            lines.append(f"  [{seg.start:6.1f} - {seg.end:6.1f}] {seg.caption}" + (f"  | next: {seg.next_text}" if seg.next_text else ""))
        if len(result.segments) > 3:
            lines.append(f"  ... {len(result.segments) - 3} more")
        return "\n".join(lines)

    return run_each(paths, job, args.quiet)


def cmd_eval(argv: Sequence[str]) -> int:
    import json

    from .dataset import captioned_clip_stems
    from .eval import format_table, run_eval
    from .pipeline import load_model
    from .train import TrainConfig, prepare_data

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner eval", description="Evaluate the caption model; prints one table.")
    parser.add_argument("--weights", default=None, help="caption model (default: weights/captioner.pt)")
    parser.add_argument("--videos", type=Path, default=data / "videos")
    parser.add_argument("--captions", type=Path, default=data / "captions")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report (with captions) as JSON")
    parser.add_argument("--beam", type=int, default=4)
    add_perception_args(parser)
    args = parser.parse_args(argv)
    for folder in (args.videos, args.captions):
        if not folder.is_dir():
            parser.error(f"{folder}: not a folder (eval needs the shared data: videos and captions)")
    model = load_model(args.yolo_weights, args.weights, imgsz=args.imgsz, conf=args.conf, device=args.device,
                       beam_size=args.beam)
    saved = model.captioner.training.get("config", {})
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    prepared = prepare_data(args.videos, args.captions, model.perception, cfg)
    report = run_eval(model, prepared.clips, prepared.text_pairs_test, captioned_clip_stems(args.captions / "clip_captions.json"))
    print(format_table(report))
    if "val_clips" in report:
        print()
        for name, item in report["val_clips"]["captions"].items():
            print(f"{name}: {item['caption']!r}  (refs: {'; '.join(item['references'][:3])})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return EXIT_OK
