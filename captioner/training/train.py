"""``captioner train``: reproduce the shipped caption model from scratch on a CPU.

One plain loop, nanoGPT style. Each step trains on
  * a batch of human-caption pairs (synthetic pseudo-detection tokens, "human" style), and
  * one real clip: the next-event head on every time step with a full future horizon, and the
    decoder on a few of its windows with event-template captions ("events" style).
Modality dropout hides the pooled YOLO features for a share of real clips so the decoder works
with and without them.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..model import STYLE_EVENTS, STYLE_HUMAN, CaptionModel, ModelConfig, next_event_loss
from ..tokens import SLOT_FEATURES, TokenLayout, segment_slots
from ..vocab import Vocabulary
from . import corpora, pairs
from .dataset import (CaptionWindow, ClipData, captioned_clip_stems, captioned_video_ids, distractor_pool, load_clips,
                      video_files)
from .pairs import synthetic_tokens

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 1500
    text_batch: int = 48
    windows_per_clip: int = 8
    clip_frames: int = 96  # longest span of a real clip per step (24 s at 4 fps)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    window_sec: float = 4.0
    window_stride_sec: float = 2.0
    caption_variants: int = 4
    min_word_count: int = 3
    max_vocab: int = 5000
    max_caption_tokens: int = 20
    modality_dropout: float = 0.3
    next_loss_weight: float = 1.0
    analysis_fps: float = 4.0
    text_frames: int = 8
    threads: int = 2


@dataclass
class TrainingData:
    clips: list[ClipData]
    text_pairs: list  # pairs.TextPair, train split
    text_pairs_test: list  # held-out split, for eval
    vocab: Vocabulary
    word_class: dict[str, str]
    unseeable: list[str]
    distractors: list[str]
    stats: dict = field(default_factory=dict)


def pad_tokens(seqs: Sequence[list[int]], max_len: int) -> torch.Tensor:
    out = torch.zeros(len(seqs), max_len, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = s[:max_len - 1] + [s[-1]] if len(s) > max_len else s  # keep <eos>
        out[i, :len(s)] = torch.tensor(s)
    return out


def slots_batch(token_list: Sequence[np.ndarray], embedding_dim: int):
    """Per-sequence object slots padded to K -> class ids (B, K), features (B, K, 4), mask (B, K)."""
    slots = [segment_slots(t, embedding_dim) for t in token_list]
    k = max(1, max(len(c) for c, _ in slots))
    classes = torch.zeros(len(slots), k, dtype=torch.long)
    feats = torch.zeros(len(slots), k, SLOT_FEATURES)
    mask = torch.zeros(len(slots), k, dtype=torch.bool)
    for i, (c, f) in enumerate(slots):
        classes[i, :len(c)] = torch.from_numpy(c)
        feats[i, :len(c)] = torch.from_numpy(f)
        mask[i, :len(c)] = True
    return classes, feats, mask


def text_batch(model: CaptionModel, pairs, vocab: Vocabulary, cfg: TrainConfig, rng: random.Random,
               distractors: list[str]) -> torch.Tensor:
    emb = model.cfg.embedding_dim
    tokens = [synthetic_tokens(p.classes, emb, rng, cfg.text_frames, distractors) for p in pairs]
    x = torch.from_numpy(np.stack(tokens))
    states, _ = model.encode(x)
    classes, feats, slot_mask = slots_batch(tokens, emb)
    captions = pad_tokens([vocab.encode(p.tokens) for p in pairs], cfg.max_caption_tokens + 2)
    state_mask = torch.ones(states.shape[:2], dtype=torch.bool)
    style = torch.full((len(pairs),), STYLE_HUMAN, dtype=torch.long)
    return model.caption_loss(states, state_mask, classes, feats, slot_mask, style, captions)


def clip_losses(model: CaptionModel, clip: ClipData, vocab: Vocabulary, cfg: TrainConfig,
                rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    # a random span of at most clip_frames: bounds the cost of a step on long clips
    lo = rng.randrange(max(1, len(clip.tokens) - cfg.clip_frames + 1))
    hi = min(len(clip.tokens), lo + cfg.clip_frames)
    tokens = clip.tokens[lo:hi].copy()
    if rng.random() < cfg.modality_dropout:
        tokens[:, TokenLayout(model.cfg.embedding_dim).flag] = 0.0  # hide the pooled YOLO features
    x = torch.from_numpy(tokens).unsqueeze(0)
    states, _ = model.encode(x)
    predicted = model.predict_next(states, x)
    targets = {k: torch.from_numpy(getattr(clip, k)[lo:hi]).unsqueeze(0) for k in ("presence", "enter", "leave")}
    targets["direction"] = torch.from_numpy(clip.direction[lo:hi]).unsqueeze(0)
    next_loss = next_event_loss(predicted, targets, torch.from_numpy(clip.valid[lo:hi]).unsqueeze(0))
    windows = [CaptionWindow(w.start - lo, w.end - lo, w.captions) for w in clip.windows
               if w.captions and w.start >= lo and w.end <= hi]
    if not windows:
        return next_loss, states.sum() * 0.0
    chosen = rng.sample(windows, k=min(cfg.windows_per_clip, len(windows)))
    t_max = max(w.end - w.start for w in chosen)
    seg_states = torch.zeros(len(chosen), t_max, states.shape[-1])
    seg_mask = torch.zeros(len(chosen), t_max, dtype=torch.bool)
    for i, w in enumerate(chosen):
        seg_states[i, : w.end - w.start] = states[0, w.start:w.end]
        seg_mask[i, : w.end - w.start] = True
    classes, feats, slot_mask = slots_batch([tokens[w.start:w.end] for w in chosen], model.cfg.embedding_dim)
    captions = pad_tokens([vocab.encode(rng.choice(w.captions)) for w in chosen], cfg.max_caption_tokens + 2)
    style = torch.full((len(chosen),), STYLE_EVENTS, dtype=torch.long)
    return next_loss, model.caption_loss(seg_states, seg_mask, classes, feats, slot_mask, style, captions)


def prepare_data(video_dir: Path, captions_dir: Path | None, perception, cfg: TrainConfig,
                 user_captions: Path | None = None, progress=None) -> TrainingData:
    """Everything training needs, from the shared data (or a user's folder + caption file)."""
    captioned = captioned_clip_stems(captions_dir / "clip_captions.json") if captions_dir else {}
    clips = load_clips(video_files(video_dir), perception, analysis_fps=cfg.analysis_fps, captioned=set(captioned),
                       window_sec=cfg.window_sec, stride_sec=cfg.window_stride_sec, variants=cfg.caption_variants,
                       seed=cfg.seed, progress=progress)
    records = []
    if captions_dir:
        held_out = captioned_video_ids(captions_dir / "clip_captions.json")
        records += [r for r in corpora.load_shared_corpora(captions_dir) if r.video_id not in held_out]
    if user_captions:
        records += corpora.read_user_captions(user_captions, video_dir)
    text_pairs, corpus_stats = pairs.text_training_pairs(records, seed=cfg.seed)
    train_pairs = [p for p in text_pairs if corpora.split_of(p.video_id) == "train"]
    test_pairs = [p for p in text_pairs if corpora.split_of(p.video_id) == "test"]
    train_clips = [c for c in clips if c.split == "train"]
    sentences = [p.tokens for p in train_pairs] + [c for clip in train_clips for w in clip.windows for c in w.captions]
    vocab = Vocabulary.build(sentences, min_count=cfg.min_word_count, max_size=cfg.max_vocab)
    words = [vocab.id_to_token(i) for i in range(len(vocab))]
    stats = {
        "clips": {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")},
        "clip_frames_train": int(sum(len(c.frames) for c in train_clips)),
        "caption_windows_train": int(sum(len(c.windows) for c in train_clips)),
        "text_pairs_train": len(train_pairs), "text_pairs_test": len(test_pairs),
        "corpus": corpus_stats.to_dict(top=25), "vocab_size": len(vocab),
    }
    return TrainingData(clips, train_pairs, test_pairs, vocab, pairs.object_noun_classes(words),
                        pairs.unseeable_nouns(words), distractor_pool(train_clips), stats)


def train_model(data: TrainingData, cfg: TrainConfig, embedding_dim: int, log_every: int = 100) -> tuple[CaptionModel, dict]:
    torch.manual_seed(cfg.seed)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train_loop(data, cfg, embedding_dim, log_every)
    finally:
        torch.set_num_threads(threads_before)  # leave the process as we found it


def _train_loop(data: TrainingData, cfg: TrainConfig, embedding_dim: int, log_every: int) -> tuple[CaptionModel, dict]:
    rng = random.Random(cfg.seed)
    model = CaptionModel(ModelConfig(embedding_dim=embedding_dim, vocab_size=len(data.vocab),
                                     max_caption_len=cfg.max_caption_tokens))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    train_clips = [c for c in data.clips if c.split == "train" and len(c.frames) >= 2]
    if not train_clips and not data.text_pairs:
        raise ValueError("no training data: no usable clips and no caption pairs")
    model.train()
    start, history = time.perf_counter(), []
    running = np.zeros(3)
    for step in range(1, cfg.steps + 1):
        loss = torch.zeros(())
        parts = np.zeros(3)
        if data.text_pairs:
            batch = [data.text_pairs[rng.randrange(len(data.text_pairs))] for _ in range(cfg.text_batch)]
            text_loss = text_batch(model, batch, data.vocab, cfg, rng, data.distractors)
            loss = loss + text_loss
            parts[0] = text_loss.item()
        if train_clips:
            next_loss, event_caption_loss = clip_losses(model, rng.choice(train_clips), data.vocab, cfg, rng)
            loss = loss + cfg.next_loss_weight * next_loss + event_caption_loss
            parts[1], parts[2] = next_loss.item(), event_caption_loss.item()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        running += parts
        if step % log_every == 0 or step == cfg.steps:
            mean = running / (log_every if step % log_every == 0 else step % log_every)
            history.append({"step": step, "text_caption": round(mean[0], 4), "next_event": round(mean[1], 4),
                            "event_caption": round(mean[2], 4)})
            log.info("step %d/%d  text %.3f  next %.3f  events %.3f  (%.0fs)", step, cfg.steps, *mean,
                     time.perf_counter() - start)
            running[:] = 0
    model.eval()
    return model, {"seconds": round(time.perf_counter() - start, 1), "loss_history": history}


def run_training(video_dir: Path, captions_dir: Path | None, out_path: Path, perception, cfg: TrainConfig,
                 user_captions: Path | None = None) -> Path:
    """The whole of ``captioner train``: data, loop, checkpoint."""
    from ..checkpoint import save_checkpoint

    t0 = time.perf_counter()
    data = prepare_data(video_dir, captions_dir, perception, cfg, user_captions)
    prep_sec = time.perf_counter() - t0
    log.info("data ready in %.0fs: %s", prep_sec, {k: v for k, v in data.stats.items() if k != "corpus"})
    model, history = train_model(data, cfg, perception.backbone.embedding_dim)
    training = {"config": asdict(cfg), "data": data.stats, "prepare_seconds": round(prep_sec, 1),
                "torch": str(torch.__version__), **history,
                "perception": perception.settings(), "video_dir": str(video_dir)}
    return save_checkpoint(out_path, model, data.vocab, data.word_class, data.unseeable, perception.backbone, training,
                           cfg.analysis_fps)
