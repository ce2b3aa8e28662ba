"""``captioner train``: reproduce the shipped caption model from scratch on a CPU.

One plain loop, nanoGPT style. Each step trains on
  * a batch of captioned photos (Flickr8k train: our own YOLO features and detections of the real
    pixels, one of the 5 human captions), the decoder's main teacher: what the features show;
  * a batch of human-caption corpus pairs (synthetic pseudo-detection tokens, no pixels);
  * one real clip: the next-event head on every time step with a full future horizon, and the
    decoder on a few of its 4 s windows, with event-template captions ("events" style) and, for
    the human-captioned MSVD clips, their human captions.
Decoder inputs only ever show the objects that pass the evidence bar (calibrated first, from the
photos and the labelled clips), as at inference. Modality dropout hides the pixels' features
for a share of real clips so the decoder works with and without them. ``use_*`` switches turn
sources and inputs off for the ablations in the model card.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..grounding.evidence import EvidenceBar
from ..grounding.verbs import VerbEvidence
from ..model import STYLE_EVENTS, STYLE_HUMAN, CaptionModel, ModelConfig, next_event_loss, segment_inputs
from ..tokens import TokenLayout, WindowObjects, tokens_for_frames, window_objects
from ..track_slots import TrackSlots, track_slots
from ..vocab import Vocabulary
from . import corpora, evidence, pairs
from .dataset import (VALIDATION_CLIPS, ClipData, captioned_clip_stems, captioned_video_ids, distractor_pool, load_clips,
                      video_files)
from .images import CaptionedPhoto, load_photos
from .person_words import neutral_person_words
from .pairs import synthetic_tokens
from .concepts import fit_concepts
from .verbs import calibrate_verbs, labelled_windows, load_verb_labels

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 5000
    text_batch: int = 32
    photo_batch: int = 32
    windows_per_clip: int = 8
    clip_frames: int = 96  # longest span of a real clip per step (24 s at 4 fps)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    window_sec: float = 4.0
    window_stride_sec: float = 2.0
    caption_variants: int = 4
    min_word_count: int = 3
    max_vocab: int = 7000
    max_caption_tokens: int = 20
    modality_dropout: float = 0.3
    next_loss_weight: float = 1.0
    analysis_fps: float = 4.0
    text_frames: int = 8
    threads: int = 2
    min_photos_per_noun: int = 25  # a non-COCO noun ("grass") may be said if this many training photos show it
    still_frames: tuple[int, ...] = (1, 4, 8, 16)  # a photo also trains as a still clip of this many frames
    clip_caption_weight: float = 0.3  # human captions of only 7 clips: a light touch, or they are memorised
    # what the decoder learns from, and what it sees (switches for the ablations)
    use_photos: bool = True
    use_text: bool = True
    use_events: bool = True
    use_clip_captions: bool = True
    use_cells: bool = True
    use_appearance: bool = True
    # the decoder's memory: grid cells per side it attends over (3: 3x3 block means of the 6x6
    # cells; 6: every cell) and per-track motion slots (0: class slots only). The shipped model
    # is 3 / 0: 6 / 6 was trained and measured no better (model card, "Tried: 6x6 cells and per-track motion slots")
    cell_grid: int = 3
    track_slots: int = 0
    hidden: int = 256  # LSTM width of encoder and decoder (word and attention sizes: 3/4 of it)


@dataclass
class PhotoExample:
    """A training photo, ready for the decoder: its token (F,), objects (all; the bar is applied
    at use), grid cells and tokenised captions."""

    name: str
    token: np.ndarray
    objects: WindowObjects
    cells: np.ndarray | None
    captions: list[list[str]]
    tracks: TrackSlots | None = None  # one still slot per box


@dataclass
class TrainingData:
    clips: list[ClipData]
    text_pairs: list  # pairs.TextPair, train split
    text_pairs_test: list  # held-out split, for eval
    photos: list[PhotoExample]  # Flickr8k train
    photos_dev: list[CaptionedPhoto]  # Flickr8k dev, for eval
    vocab: Vocabulary
    word_class: dict[str, str]
    unseeable: list[str]
    distractors: list[str]
    evidence: EvidenceBar = field(default_factory=EvidenceBar)
    stats: dict = field(default_factory=dict)
    scene_nouns: list[str] = field(default_factory=list)  # non-COCO nouns photos taught (said of photos only)
    verbs: VerbEvidence = field(default_factory=VerbEvidence)  # motion thresholds, fitted on labelled training clips


def pad_tokens(seqs: Sequence[list[int]], max_len: int) -> torch.Tensor:
    out = torch.zeros(len(seqs), max_len, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = s[:max_len - 1] + [s[-1]] if len(s) > max_len else s  # keep <eos>
        out[i, :len(s)] = torch.tensor(s)
    return out


def named(objects: WindowObjects, bar: EvidenceBar) -> WindowObjects:
    """What the decoder is shown: the objects with enough evidence (as at inference)."""
    return objects.select(bar.passes(objects))


def shown_tracks(tracks: TrackSlots | None, shown: WindowObjects, hide_pixels: bool = False) -> TrackSlots | None:
    """The track slots the decoder is shown: tracks of the classes that passed the bar (as at inference)."""
    if tracks is None:
        return None
    tracks = tracks.of_classes(shown.class_ids)
    return tracks.without_appearance() if hide_pixels else tracks


def caption_loss(model: CaptionModel, states: list[torch.Tensor], objects: list[WindowObjects], cells: list,
                 captions: list[list[str]], vocab: Vocabulary, cfg: TrainConfig, style: int,
                 tracks: list | None = None) -> torch.Tensor:
    inputs = segment_inputs(states, objects, cells, model.cfg, tracks)
    ids = pad_tokens([vocab.encode(c) for c in captions], cfg.max_caption_tokens + 2)
    return model.caption_loss(inputs, torch.full((len(captions),), style, dtype=torch.long), ids)


def text_batch(model: CaptionModel, text_pairs, vocab: Vocabulary, cfg: TrainConfig, rng: random.Random,
               distractors: list[str], bar: EvidenceBar) -> torch.Tensor:
    emb = model.cfg.embedding_dim
    tokens = [synthetic_tokens(p.classes, emb, rng, cfg.text_frames, distractors) for p in text_pairs]
    states, _ = model.encode(torch.from_numpy(np.stack(tokens)))
    objects = [named(window_objects(t, emb), bar) for t in tokens]
    return caption_loss(model, list(states), objects, [None] * len(tokens), [p.tokens for p in text_pairs], vocab, cfg,
                        STYLE_HUMAN)


def photo_batch(model: CaptionModel, photos: Sequence[PhotoExample], vocab: Vocabulary, cfg: TrainConfig,
                rng: random.Random, bar: EvidenceBar) -> torch.Tensor:
    """A photo is also shown as a still clip (its token repeated for 1 to ``still_frames`` steps),
    so what the photos teach carries over to video windows, which have many encoder states."""
    frames = rng.choice(cfg.still_frames)
    tokens = torch.from_numpy(np.stack([p.token for p in photos]))[:, None].expand(-1, frames, -1).contiguous()
    states, _ = model.encode(tokens)
    objects = [named(p.objects, bar) for p in photos]
    return caption_loss(model, list(states), objects, [p.cells for p in photos],
                        [rng.choice(p.captions) for p in photos], vocab, cfg, STYLE_HUMAN,
                        [shown_tracks(p.tracks, o) for p, o in zip(photos, objects)])


def clip_losses(model: CaptionModel, clip: ClipData, vocab: Vocabulary, cfg: TrainConfig, rng: random.Random,
                bar: EvidenceBar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next-event loss, event-template caption loss, human caption loss) on a random span."""
    lo = rng.randrange(max(1, len(clip.tokens) - cfg.clip_frames + 1))  # bounds the cost of a step on long clips
    hi = min(len(clip.tokens), lo + cfg.clip_frames)
    tokens = clip.tokens[lo:hi].copy()
    hide_pixels = rng.random() < cfg.modality_dropout
    if hide_pixels:
        tokens[:, TokenLayout(model.cfg.embedding_dim).flag] = 0.0  # hide the pooled YOLO features
    x = torch.from_numpy(tokens).unsqueeze(0)
    states, _ = model.encode(x)
    predicted = model.predict_next(states, x)
    targets = {k: torch.from_numpy(getattr(clip, k)[lo:hi]).unsqueeze(0) for k in ("presence", "enter", "leave")}
    targets["direction"] = torch.from_numpy(clip.direction[lo:hi]).unsqueeze(0)
    next_loss = next_event_loss(predicted, targets, torch.from_numpy(clip.valid[lo:hi]).unsqueeze(0))
    zero = states.sum() * 0.0
    windows = [w for w in clip.windows if w.start >= lo and w.end <= hi]
    losses = []
    for style, texts in ((STYLE_EVENTS, lambda w: w.captions if cfg.use_events else []),
                         (STYLE_HUMAN, lambda w: w.human if cfg.use_clip_captions else [])):
        usable = [w for w in windows if texts(w)]
        if not usable:
            losses.append(zero)
            continue
        chosen = rng.sample(usable, k=min(cfg.windows_per_clip, len(usable)))
        objects = [named(w.objects, bar) for w in chosen]
        if hide_pixels:  # no appearance either
            objects = [WindowObjects(o.class_ids, np.concatenate([o.features[:, :-1], np.zeros((len(o), 1), np.float32)], 1),
                                     np.zeros_like(o.appearance)) for o in objects]
        losses.append(caption_loss(model, [states[0, w.start - lo:w.end - lo] for w in chosen], objects,
                                   [None if hide_pixels else w.cells for w in chosen],
                                   [rng.choice(texts(w)) for w in chosen], vocab, cfg, style,
                                   [shown_tracks(w.tracks, o, hide_pixels) for w, o in zip(chosen, objects)]))
    return next_loss, losses[0], losses[1]


def other_nouns(vocab_words: Sequence[str], photo_captions: Sequence[Sequence[str]], clip_captions: Sequence[Sequence[str]],
                photo_words: Sequence[set[str]], min_photos: int) -> tuple[list[str], list[str]]:
    """(unseeable, scene nouns): vocabulary words that name things no COCO class covers, split by
    whether at least ``min_photos`` training photos' captions say them."""
    from .lexicon import mentioned_objects

    vocab = set(vocab_words)
    found = set(pairs.unseeable_nouns(vocab_words))
    for tokens in list(photo_captions) + list(clip_captions):
        found.update(tokens[m.token_index] for m in mentioned_objects(tokens) if m.coco_class is None and " " not in m.noun)
    shown_in = Counter(w for words in photo_words for w in words)
    found &= vocab
    return (sorted(w for w in found if shown_in[w] < min_photos), sorted(w for w in found if shown_in[w] >= min_photos))


def photo_examples(photos: Sequence[CaptionedPhoto], embedding_dim: int) -> list[PhotoExample]:
    """Training photos for the decoder, their captions in neutral person words (``person_words.py``)."""
    out = []
    for p in photos:
        token = tokens_for_frames([p.frame], p.frame_size, embedding_dim)
        out.append(PhotoExample(p.name, token[0], window_objects(token, embedding_dim, [p.frame.detections]),
                                p.frame.cells, [neutral_person_words(c) for c in p.captions],
                                track_slots([p.frame], p.frame_size, embedding_dim)))
    return out


def prepare_data(video_dir: Path, captions_dir: Path | None, photos_dir: Path | None, perception, cfg: TrainConfig,
                 user_captions: Path | None = None, progress=None) -> TrainingData:
    """Everything training needs, from the shared data (or a user's folders + caption file)."""
    emb = perception.backbone.embedding_dim
    captioned = captioned_clip_stems(captions_dir / "clip_captions.json") if captions_dir else {}
    clips = load_clips(video_files(video_dir), perception, analysis_fps=cfg.analysis_fps, captioned=captioned,
                       window_sec=cfg.window_sec, stride_sec=cfg.window_stride_sec, variants=cfg.caption_variants,
                       seed=cfg.seed, progress=progress)
    photos = load_photos(photos_dir, perception, splits=("train", "dev")) if photos_dir else []
    photos_train = [p for p in photos if p.split == "train"]
    records = []
    if captions_dir:
        # the validation clips' own sentences are their references: never training pairs
        held_out = captioned_video_ids(captions_dir / "clip_captions.json", VALIDATION_CLIPS)
        records += [r for r in corpora.load_shared_corpora(captions_dir) if r.video_id not in held_out]
    if user_captions:
        records += corpora.read_user_captions(user_captions, video_dir)
    text_pairs, corpus_stats = pairs.text_training_pairs(records, seed=cfg.seed)
    train_pairs = [p for p in text_pairs if corpora.split_of(p.video_id) == "train"]
    test_pairs = [p for p in text_pairs if corpora.split_of(p.video_id) == "test"]
    train_clips = [c for c in clips if c.split == "train"]
    examples = photo_examples(photos_train, emb)
    sentences = [p.tokens for p in train_pairs] + [c for clip in train_clips for w in clip.windows for c in w.captions + w.human] \
        + [c for p in examples for c in p.captions]
    vocab = Vocabulary.build(sentences, min_count=cfg.min_word_count, max_size=cfg.max_vocab)
    words = [vocab.id_to_token(i) for i in range(len(vocab))]
    bar, bar_report = evidence.calibrate(evidence.label_photos(photos_train, emb),
                                         evidence.label_clip_windows([c for c in clips if c.split != "train"],
                                                                     evidence.load_presence(), emb))
    bar, bar_report["kinds"] = evidence.calibrate_kinds(bar, photos_train, emb)
    stats = {
        "clips": {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")},
        "clip_frames_train": int(sum(len(c.frames) for c in train_clips)),
        "caption_windows_train": int(sum(len(c.windows) for c in train_clips)),
        "human_caption_windows_train": int(sum(bool(w.human) for c in train_clips for w in c.windows)),
        "photos_train": len(photos_train), "photos_dev": sum(p.split == "dev" for p in photos),
        "text_pairs_train": len(train_pairs), "text_pairs_test": len(test_pairs),
        "corpus": corpus_stats.to_dict(top=25), "vocab_size": len(vocab), "evidence_bar": bar_report,
    }
    # nouns no COCO class covers may be said (of a photo) only if enough photos taught what they
    # look like ("scene nouns"); the rest never. Found in context, as the captions use them
    # ("a building", not the verb), and out of context in the vocabulary.
    unseeable, scene_nouns = other_nouns(words, [c for p in examples for c in p.captions],
                                         [c for clip in train_clips for w in clip.windows for c in w.human],
                                         [{w for c in p.captions for w in c} for p in examples], cfg.min_photos_per_noun)
    stats["scene_nouns"], stats["unseeable_nouns"] = len(scene_nouns), len(unseeable)
    return TrainingData(clips, train_pairs, test_pairs, examples,
                        [p for p in photos if p.split == "dev"], vocab, pairs.object_noun_classes(words),
                        unseeable, distractor_pool(train_clips), bar, stats, scene_nouns,
                        calibrate_verbs(labelled_windows(clips, load_verb_labels())))


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
    model = CaptionModel(ModelConfig(embedding_dim=embedding_dim, vocab_size=len(data.vocab), hidden=cfg.hidden,
                                     word_dim=cfg.hidden * 3 // 4, attention_dim=cfg.hidden * 3 // 4,
                                     max_caption_len=cfg.max_caption_tokens, use_cells=cfg.use_cells,
                                     use_appearance=cfg.use_appearance, track_slots=int(cfg.track_slots),
                                     cell_count=cfg.cell_grid ** 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    train_clips = [c for c in data.clips if c.split == "train" and len(c.frames) >= 2]
    text_pairs = data.text_pairs if cfg.use_text else []
    photos = data.photos if cfg.use_photos else []
    if not train_clips and not text_pairs and not photos:
        raise ValueError("no training data: no usable clips, photos or caption pairs")
    model.train()
    start, history = time.perf_counter(), []
    names = ("photo_caption", "text_caption", "next_event", "event_caption", "clip_caption")
    running = np.zeros(len(names))
    for step in range(1, cfg.steps + 1):
        parts = [torch.zeros(()) for _ in names]
        if photos:
            parts[0] = photo_batch(model, [photos[rng.randrange(len(photos))] for _ in range(cfg.photo_batch)],
                                   data.vocab, cfg, rng, data.evidence)
        if text_pairs:
            batch = [text_pairs[rng.randrange(len(text_pairs))] for _ in range(cfg.text_batch)]
            parts[1] = text_batch(model, batch, data.vocab, cfg, rng, data.distractors, data.evidence)
        if train_clips:
            parts[2], parts[3], parts[4] = clip_losses(model, rng.choice(train_clips), data.vocab, cfg, rng, data.evidence)
        loss = parts[0] + parts[1] + cfg.next_loss_weight * parts[2] + parts[3] + cfg.clip_caption_weight * parts[4]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        running += [p.item() for p in parts]
        if step % log_every == 0 or step == cfg.steps:
            mean = running / (log_every if step % log_every == 0 else step % log_every)
            history.append({"step": step, **{n: round(float(m), 4) for n, m in zip(names, mean)}})
            log.info("step %d/%d  %s  (%.0fs)", step, cfg.steps, "  ".join(f"{n} {m:.3f}" for n, m in zip(names, mean)),
                     time.perf_counter() - start)
            running[:] = 0
    model.eval()
    return model, {"seconds": round(time.perf_counter() - start, 1), "loss_history": history}


def run_training(video_dir: Path, captions_dir: Path | None, photos_dir: Path | None, out_path: Path, perception,
                 cfg: TrainConfig, user_captions: Path | None = None) -> Path:
    """The whole of ``captioner train``: data, loop, checkpoint."""
    from ..checkpoint import save_checkpoint

    t0 = time.perf_counter()
    data = prepare_data(video_dir, captions_dir, photos_dir, perception, cfg, user_captions)
    prep_sec = time.perf_counter() - t0
    log.info("data ready in %.0fs: %s", prep_sec, {k: v for k, v in data.stats.items() if k != "corpus"})
    model, history = train_model(data, cfg, perception.backbone.embedding_dim)
    emb = perception.backbone.embedding_dim
    concepts = fit_concepts([p.name for p in data.photos], np.stack([p.token[:emb] for p in data.photos]),
                            [p.cells for p in data.photos], [p.captions for p in data.photos], data.scene_nouns,
                            model.cfg.cell_dim, perception.imgsz, cfg.seed,
                            np.array([evidence.named_nothing(data.evidence, p.objects) for p in data.photos]),
                            data.vocab.itos) if data.photos else None
    training = {"config": asdict(cfg), "data": data.stats, "prepare_seconds": round(prep_sec, 1),
                "torch": str(torch.__version__), **history,
                "perception": perception.settings(), "video_dir": str(video_dir)}
    return save_checkpoint(out_path, model, data.vocab, data.word_class, data.unseeable, perception.backbone, training,
                           cfg.analysis_fps, data.evidence, data.scene_nouns, data.verbs, concepts)
