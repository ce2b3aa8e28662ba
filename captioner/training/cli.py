"""``captioner train`` and ``captioner eval``, registered with the runtime's CLI through the
``captioner.commands`` entry points (see pyproject.toml), so the runtime never imports them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ..cli import EXIT_OK, add_caption_args, add_perception_args, caption_options, load

log = logging.getLogger("captioner")


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (or $CAPTIONER_SHARED/data)."""
    root = os.environ.get("CAPTIONER_SHARED") or Path(__file__).resolve().parents[3] / "shared"
    return Path(root) / "data"


def cmd_train(argv: Sequence[str]) -> int:
    from ..checkpoint import DEFAULT_CHECKPOINT
    from ..perception import Perception
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
    parser.add_argument("--fps", type=float, default=TrainConfig.analysis_fps,
                        help="analysis frames per second the model is trained at, and will read (default %(default)s)")
    add_perception_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
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
    perception = Perception(args.yolo_weights, imgsz=options.imgsz, conf=options.conf, device=options.device)
    path = run_training(args.videos, captions, args.out, perception, cfg, args.user_captions)
    print(f"wrote {path} in {time.perf_counter() - start:.0f}s")
    return EXIT_OK


def cmd_eval(argv: Sequence[str]) -> int:
    from .dataset import captioned_clip_stems
    from .eval import format_table, run_eval
    from .train import TrainConfig, prepare_data

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner eval", description="Evaluate the caption model; prints one table.")
    parser.add_argument("--videos", type=Path, default=data / "videos")
    parser.add_argument("--captions", type=Path, default=data / "captions")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report (with captions) as JSON")
    add_caption_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    for folder in (args.videos, args.captions):
        if not folder.is_dir():
            parser.error(f"{folder}: not a folder (eval needs the shared data: videos and captions)")
    model = load(args, options)
    saved = model.trained.training.get("config", {})
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    prepared = prepare_data(args.videos, args.captions, model.perception, cfg)
    report = run_eval(model, prepared.clips, prepared.text_pairs_test, captioned_clip_stems(args.captions / "clip_captions.json"))
    print(format_table(report))
    if "val_clips" in report:
        print()
        for name, item in report["val_clips"]["captions"].items():
            print(f"{name}: {item['caption']!r}  (refs: {'; '.join(item['references'][:3])})")
    if args.json:
        from ..fileio import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=float))
    return EXIT_OK
