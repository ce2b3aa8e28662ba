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

from ..cli import add_caption_args, add_perception_args, caption_options, load
from ..errors import EXIT_OK

log = logging.getLogger("captioner")

# captioner train --disable NAME -> the TrainConfig switch it turns off
ABLATIONS = {"photos": "use_photos", "text": "use_text", "events": "use_events", "clip-captions": "use_clip_captions",
             "cells": "use_cells", "appearance": "use_appearance"}


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (or $CAPTIONER_SHARED/data)."""
    root = os.environ.get("CAPTIONER_SHARED") or Path(__file__).resolve().parents[3] / "shared"
    return Path(root) / "data"


def cmd_train(argv: Sequence[str]) -> int:
    from ..model_files import DEFAULT_CHECKPOINT
    from ..perception import Perception
    from .train import TrainConfig, run_training

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner train", description="Train the caption + next-event model from scratch.")
    parser.add_argument("--videos", type=Path, default=data / "videos", help="folder of training videos (default %(default)s)")
    parser.add_argument("--captions", type=Path, default=data / "captions",
                        help="caption corpora folder (MSVD/MSR-VTT/ActivityNet/DiDeMo/YouCook2; default %(default)s); 'none' to skip")
    parser.add_argument("--photos", type=Path, default=data / "images" / "flickr8k",
                        help="captioned photos (Flickr8k layout: captions.jsonl + images/; default %(default)s); 'none' to skip")
    parser.add_argument("--user-captions", type=Path, default=None,
                        help="captions for your own videos: MSVD-style TSV, MSR-VTT-style JSON or ActivityNet-style JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint to write (default %(default)s)")
    parser.add_argument("--disable", action="append", default=[], choices=sorted(ABLATIONS),
                        help="leave a training source or decoder input out (for ablations; repeatable)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--cell-grid", type=int, choices=(3, 6), default=TrainConfig.cell_grid,
                        help="grid cells per side the decoder attends over (default %(default)s)")
    parser.add_argument("--track-slots", type=int, default=TrainConfig.track_slots,
                        help="per-track motion slots in the decoder's memory, 0 for none (default %(default)s)")
    parser.add_argument("--hidden", type=int, default=TrainConfig.hidden,
                        help="LSTM width of the encoder and decoder; word and attention sizes are 3/4 of it (default %(default)s)")
    parser.add_argument("--photo-batch", type=int, default=TrainConfig.photo_batch,
                        help="captioned photos per step (default %(default)s)")
    parser.add_argument("--text-batch", type=int, default=TrainConfig.text_batch,
                        help="caption-corpus pairs per step (default %(default)s)")
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
    photos = None if str(args.photos) == "none" else args.photos
    if photos is not None and not (photos / "captions.jsonl").is_file():
        parser.error(f"--photos {args.photos}: no captions.jsonl there (use 'none' to train without photos)")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    logging.getLogger("captioner").setLevel(logging.INFO)
    if not 0 <= args.track_slots <= 16:
        parser.error("--track-slots must be between 0 and 16")
    if not 32 <= args.hidden <= 2048 or args.hidden % 4:
        parser.error("--hidden must be a multiple of 4 between 32 and 2048")
    if args.photo_batch < 1 or args.text_batch < 1:
        parser.error("--photo-batch and --text-batch must be at least 1")
    cfg = TrainConfig(steps=args.steps, seed=args.seed, analysis_fps=args.fps, cell_grid=args.cell_grid,
                      track_slots=args.track_slots, hidden=args.hidden, photo_batch=args.photo_batch,
                      text_batch=args.text_batch, **{ABLATIONS[name]: False for name in args.disable})
    start = time.perf_counter()
    perception = Perception(args.yolo_weights, imgsz=options.imgsz, conf=options.conf, device=options.device)
    path = run_training(args.videos, captions, photos, args.out, perception, cfg, args.user_captions)
    print(f"wrote {path} in {time.perf_counter() - start:.0f}s")
    return EXIT_OK


def cmd_eval(argv: Sequence[str]) -> int:
    from .eval import format_table, load_eval_data, run_eval
    from .train import TrainConfig

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner eval", description="Evaluate the caption model; prints one table.")
    parser.add_argument("--videos", type=Path, default=data / "videos")
    parser.add_argument("--captions", type=Path, default=data / "captions")
    parser.add_argument("--photos", type=Path, default=data / "images" / "flickr8k", help="Flickr8k (dev split is used)")
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
    data = load_eval_data(args.videos, args.captions, args.photos if args.photos.is_dir() else None, model.perception, cfg)
    report = run_eval(model, data.clips, data.text_pairs_test, data.clip_references, data.photos_dev)
    print(format_table(report))
    if "val_clips" in report:
        print()
        for name, item in report["val_clips"]["captions"].items():
            print(f"{name}: {item['caption']!r}  (refs: {'; '.join(item['references'][:3])})")
    if "photos_dev" in report:
        print()
        for item in report["photos_dev"]["with_bar"]["examples"]:
            print(f"{item['photo']}: {item['caption']!r}  (refs: {'; '.join(item['references'][:2])})")
    if args.json:
        from ..fileio import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=float))
    return EXIT_OK


def cmd_calibrate(argv: Sequence[str]) -> int:
    """Refit the evidence heads of an existing checkpoint: the verb evidence thresholds, the
    scene-word concept head and the evidence bar's kind thresholds (no retraining: the network,
    vocabulary and the rest of the evidence bar are kept byte for byte; only ``verb_evidence``,
    ``concepts`` and ``evidence_bar.kind_min_conf`` are replaced)."""
    import numpy as np
    import torch

    from ..fileio import atomic_output
    from ..model_files import DEFAULT_CHECKPOINT
    from ..perception import Perception
    from .dataset import load_clips, video_files
    from .verbs import calibrate_verbs, labelled_windows, load_verb_labels

    data = shared_data_dir()
    parser = argparse.ArgumentParser(prog="captioner calibrate",
                                     description="Refit a checkpoint's verb evidence thresholds (hand-labelled training "
                                                 "clips), its scene-word concept head and the confidence at which a kind "
                                                 "('an animal') may be named (Flickr8k train photos).")
    parser.add_argument("--videos", type=Path, default=data / "videos", help="folder of the labelled clips (default %(default)s)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint to update in place (default %(default)s)")
    parser.add_argument("--photos", type=Path, default=data / "images" / "flickr8k",
                        help="captioned photos for the concept head and the kind thresholds (default %(default)s); "
                             "'none' to keep the checkpoint's")
    add_perception_args(parser)
    args = parser.parse_args(argv)
    options = caption_options(parser, args)
    if not args.videos.is_dir():
        parser.error(f"--videos {args.videos}: not a folder")
    if not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    payload = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    labels = load_verb_labels()
    perception = Perception(args.yolo_weights, imgsz=options.imgsz, conf=options.conf, device=options.device)
    videos = [v for v in video_files(args.videos) if v.stem in labels and labels[v.stem]["split"] == "train"]
    config = payload.get("training", {}).get("config", {})
    clips = load_clips(videos, perception, analysis_fps=float(payload.get("analysis_fps") or 4.0), captioned={},
                       window_sec=float(config.get("window_sec", 4.0)), stride_sec=float(config.get("window_stride_sec", 2.0)),
                       variants=1, seed=0)
    for clip in clips:  # the labels, not the caption corpora, say which split a labelled clip is in
        clip.split = labels[clip.name]["split"]
    verbs = calibrate_verbs(labelled_windows(clips, labels))
    payload["verb_evidence"] = verbs.to_dict()
    if str(args.photos) != "none":
        if not (args.photos / "captions.jsonl").is_file():
            parser.error(f"--photos {args.photos}: no captions.jsonl there (use 'none' to keep the concept head)")
        from .concepts import fit_concepts
        from .images import load_photos

        photos = load_photos(args.photos, perception, splits=("train",))
        from ..grounding.evidence import EvidenceBar
        from .evidence import calibrate_kinds, named_nothing, photo_objects

        bar, kinds = calibrate_kinds(EvidenceBar.from_dict(payload.get("evidence_bar")), photos,
                                     int(payload["config"]["embedding_dim"]))
        payload["evidence_bar"] = bar.to_dict()
        print(f"kinds named when no class passes: {json.dumps(kinds)}")
        head = fit_concepts([p.name for p in photos], np.stack([p.frame.embedding for p in photos]),
                            [p.frame.cells for p in photos], [p.captions for p in photos],
                            payload["grounding"].get("scene_nouns", []), int(payload["config"]["cell_dim"]), perception.imgsz,
                            unnamed=np.array([named_nothing(bar, photo_objects(p, int(payload["config"]["embedding_dim"])))
                                              for p in photos]),
                            vocabulary=payload["vocab"]["itos"])
        payload["concepts"] = head.to_dict() if head is not None else None
        if head is not None:
            print(f"concept head: {len(head.words)} scene words, {head.calibration['words_with_a_bar']} with a bar; "
                  f"kinds from pixels: {json.dumps(head.calibration.get('kinds', {}).get('per_kind', {}))}; "
                  f"{len(head.ranked)} ranked lemmas (held-out AUC median "
                  f"{head.calibration.get('ranked', {}).get('held_out_auc_median')})")
    with atomic_output(args.checkpoint) as tmp:
        torch.save(payload, tmp)
    print(json.dumps(verbs.to_dict(), indent=1, default=float))
    print(f"updated {args.checkpoint}")
    return EXIT_OK
