"""``captioner eval``: one table of every claim the model card makes, measured the same way.

* Captioned validation clips (human references): BLEU-1..4, METEOR (NLTK + WordNet), ROUGE-L
  and CIDEr (pycocoevalcap), one caption per clip.
* Held-out text-derived pairs (test split of the corpora by source video): the same metrics.
* Held-out real clips (test split by scene): hallucination rate and salient-object recall of
  the window captions; next-event micro-F1 (future class presence, threshold 0.5) and AUROC
  (enter, leave), side by side with the persistence and constant-velocity baselines computed
  on the same time steps.
Everything is seeded; the same checkpoint and data give the same table.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..coco import COCO_CLASSES
from ..perception import Detections
from ..pipeline import Captioner
from ..stream import NOTHING_SEEN, AnalysedFrame, describe_window
from ..tokens import salient_classes, segment_slots
from .dataset import PAST_SEC, ClipData, frame_window
from .forecast import HORIZON_SEC, constant_velocity_baseline, persistence_baseline
from .pairs import synthetic_tokens

log = logging.getLogger(__name__)

# Typical extra detections in real footage, used as noise for text-derived eval inputs.
EVAL_DISTRACTORS = ["car", "chair", "handbag", "bottle", "tv", "cup", "truck", "dining table", "book", "tie"]


# ---- metrics ------------------------------------------------------------------------------------

def caption_metrics(hypotheses: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L, CIDEr (pycocoevalcap) and METEOR (NLTK) over lower-case
    space-tokenised strings; keys are item ids."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from .lexicon import _ensure_nltk_path

    ids = sorted(hypotheses)
    res = {i: [hypotheses[i]] for i in ids}
    gts = {i: references[i] for i in ids}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    _ensure_nltk_path()
    from nltk.translate.meteor_score import meteor_score

    meteor = float(np.mean([meteor_score([r.split() for r in gts[i]], res[i][0].split()) for i in ids]))
    return {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3], "METEOR": meteor,
            "ROUGE-L": float(rouge), "CIDEr": float(cider)}


def micro_f1(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    predicted = scores >= threshold
    truth = targets >= 0.5
    tp = float(np.sum(predicted & truth))
    fp, fn = float(np.sum(predicted & ~truth)), float(np.sum(~predicted & truth))
    return 2 * tp / max(2 * tp + fp + fn, 1e-9)


def auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN if one class only."""
    scores, targets = np.asarray(scores, float).ravel(), np.asarray(targets).ravel() >= 0.5
    n_pos, n_neg = int(targets.sum()), int((~targets).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks of ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[targets].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---- running the model the way the product does -------------------------------------------------

def stream_segments(model: Captioner, clip: ClipData, window_sec: float = 4.0) -> list:
    """The segments (unmerged) a ``Stream`` cuts from a clip's cached frames: the product's own
    path from perception on (the cache holds what ``PerceptionStream`` produced)."""
    stream = model.new_stream(clip.frame_size, model.options.replace(window_sec=window_sec), live=False)
    segments = [u.segment for u in map(stream.push_features, clip.frames) if u.segment is not None]
    last = stream.finish(clip.frames[-1].t_sec + 1.0 / model.analysis_fps) if clip.frames else None
    return segments + ([last] if last is not None else [])


def whole_clip_caption(model: Captioner, clip: ClipData) -> str:
    """One caption for a whole clip (as ``captioner --window`` of the clip's length gives it)."""
    duration = clip.frames[-1].t_sec + 1.0 / model.analysis_fps
    return stream_segments(model, clip, window_sec=min(max(duration + 1.0, 0.5), 600.0))[0].caption


def encode_tokens(model: Captioner, tokens: np.ndarray) -> list[AnalysedFrame]:
    """Analysed frames for a token sequence without video (text-derived pairs)."""
    with torch.no_grad():
        states, _ = model.trained.model.encode(torch.from_numpy(tokens)[None])
    return [AnalysedFrame(float(i), Detections.empty(), tokens[i], states[0, i]) for i in range(len(tokens))]


def caption_object_mentions(caption: str, model: Captioner) -> list[str | None]:
    """COCO class (or None = an object no COCO class covers) of every object noun in a caption.
    Uses the WordNet lexicon when available (independent of the decoder's ban list)."""
    from ..vocab import tokenize
    from . import lexicon

    tokens = tokenize(caption)
    if lexicon.wordnet_available():
        return [m.coco_class for m in lexicon.mentioned_objects(tokens)]
    vocab, grounding = model.trained.vocab, model.trained.grounding
    out: list[str | None] = []
    for t in tokens:
        i = vocab.stoi.get(t)
        if i in grounding.word_class:
            out.append(COCO_CLASSES[grounding.word_class[i]])
        elif i in grounding.unseeable:
            out.append(None)
    return out


@dataclass
class WindowCaption:
    clip: str
    start_sec: float
    end_sec: float
    caption: str
    detected: list[str]
    salient: list[str]
    mentions: list[str | None]


def real_window_captions(model: Captioner, clips: Sequence[ClipData], window_sec: float = 4.0) -> list[WindowCaption]:
    out = []
    emb = model.trained.model.cfg.embedding_dim
    for clip in clips:
        tokens = {round(t, 3): tok for t, tok in zip(clip.times_sec, clip.tokens)}
        for seg in stream_segments(model, clip, window_sec):
            window_tokens = np.stack([tokens[t] for t in seg.evidence.frame_times_sec])
            slots, feats = segment_slots(window_tokens, emb)
            salient = [COCO_CLASSES[c] for c in salient_classes(slots, feats)]
            mentions = [] if seg.caption == NOTHING_SEEN else caption_object_mentions(seg.caption, model)
            out.append(WindowCaption(clip.name, seg.start, seg.end, seg.caption, seg.evidence.classes, salient, mentions))
    return out


def grounding_scores(windows: Sequence[WindowCaption]) -> dict[str, float]:
    mentions = [(m, w) for w in windows for m in w.mentions]
    hallucinated = sum(1 for m, w in mentions if m is None or m not in w.detected)
    salient_total = sum(len(w.salient) for w in windows)
    salient_named = sum(len(set(w.salient) & {m for m in w.mentions if m}) for w in windows)
    return {"windows": len(windows), "object_mentions": len(mentions),
            "hallucination_rate": hallucinated / max(len(mentions), 1),
            "salient_objects": salient_total, "salient_recall": salient_named / max(salient_total, 1)}


def presence_gain_interval(per_clip: list[dict[str, np.ndarray]], baseline: str, n_boot: int = 2000,
                           seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of (model - baseline) presence micro-F1, resampling whole clips:
    time steps within a clip are far from independent, so clips are the unit of evidence."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(n_boot):
        chosen = [per_clip[i] for i in rng.integers(0, len(per_clip), len(per_clip))]
        target = np.concatenate([c["target"] for c in chosen])
        gains.append(micro_f1(np.concatenate([c["model"] for c in chosen]), target)
                     - micro_f1(np.concatenate([c[baseline] for c in chosen]), target))
    low, high = np.percentile(gains, [2.5, 97.5])
    return float(low), float(high)


def next_event_scores(model: Captioner, clips: Sequence[ClipData]) -> dict[str, dict[str, float]]:
    """Model vs baselines on every time step of held-out clips that has a full horizon. The model
    runs over the whole clip at once: at each step its inputs (the LSTM state, and presence
    statistics of the last ``HISTORY_FRAMES`` tokens) are exactly a stream's at that frame."""
    names = ("model", "persistence", "constant velocity")
    per_clip = []  # one {"target" | name: {"presence" | "enter" | "leave": (steps, C)}} per clip
    for clip in clips:
        x = torch.from_numpy(clip.tokens)[None]
        with torch.no_grad():
            states, _ = model.trained.model.encode(x)
            logits = model.trained.model.predict_next(states, x)
            predicted = {k: torch.sigmoid(getattr(logits, k)[0]).numpy() for k in ("presence", "enter", "leave")}
        times = clip.times_sec
        collected = defaultdict(lambda: defaultdict(list))
        for i in np.flatnonzero(clip.valid):
            lo, _ = frame_window(times, times[i] - PAST_SEC, times[i])
            past = clip.frames[lo:i + 1]
            baselines = {"persistence": persistence_baseline(past, clip.frame_size, HORIZON_SEC),
                         "constant velocity": constant_velocity_baseline(past, clip.frame_size, HORIZON_SEC)}
            for key in ("presence", "enter", "leave"):
                collected["target"][key].append(getattr(clip, key)[i])
                collected["model"][key].append(predicted[key][i])
                for name, scores in baselines.items():
                    collected[name][key].append(getattr(scores, key))
        if collected:
            per_clip.append({who: {k: np.stack(v) for k, v in arrays.items()} for who, arrays in collected.items()})
    if not per_clip:
        return {"steps": {"n": 0}}
    pooled = {who: {k: np.concatenate([c[who][k] for c in per_clip]) for k in ("presence", "enter", "leave")}
              for who in ("target", *names)}
    target = pooled["target"]
    out: dict[str, dict] = {name: {"presence micro-F1": micro_f1(pooled[name]["presence"], target["presence"]),
                                   "enter AUROC": auroc(pooled[name]["enter"], target["enter"]),
                                   "leave AUROC": auroc(pooled[name]["leave"], target["leave"])} for name in names}
    better = max(names[1:], key=lambda n: out[n]["presence micro-F1"])
    low, high = presence_gain_interval([{who: c[who]["presence"] for who in ("target", "model", better)} for c in per_clip],
                                       better)
    out["presence gain"] = {"over": better, "gain": out["model"]["presence micro-F1"] - out[better]["presence micro-F1"],
                            "ci95_low": low, "ci95_high": high, "clips": len(per_clip)}
    out["steps"] = {"n": int(len(target["presence"]))}
    return out


def text_heldout(model: Captioner, pairs, max_videos: int = 600, seed: int = 0):
    """Caption pseudo-detections of held-out corpus videos; references = that video's kept sentences."""
    by_video: dict[str, list] = defaultdict(list)
    for p in pairs:
        by_video[f"{p.source}/{p.video_id}"].append(p)
    keys = sorted(by_video)
    random.Random(seed).shuffle(keys)
    keys = keys[:max_videos]
    rng = random.Random(seed)
    hyps, refs, windows = {}, {}, []
    for key in keys:
        group = by_video[key]
        first = group[0]
        emb = model.trained.model.cfg.embedding_dim
        tokens = synthetic_tokens(first.classes, emb, rng, 8, EVAL_DISTRACTORS)
        caption, _, evidence = describe_window(model.trained, encode_tokens(model, tokens), model.options)
        hyps[key] = caption
        refs[key] = [" ".join(p.tokens) for p in group]
        slots, feats = segment_slots(tokens, emb)
        windows.append(WindowCaption(key, 0, 0, caption, evidence.classes,
                                     [COCO_CLASSES[c] for c in salient_classes(slots, feats)],
                                     caption_object_mentions(caption, model)))
    return hyps, refs, windows


def run_eval(model: Captioner, clips: Sequence[ClipData], text_pairs_test, clip_references: dict[str, list[str]],
             seed: int = 0) -> dict:
    from ..vocab import tokenize

    report: dict = {}
    val = [c for c in clips if c.split == "val" and c.name in clip_references]
    if val:
        hyps, refs = {}, {}
        for clip in val:
            hyps[clip.name] = whole_clip_caption(model, clip)
            refs[clip.name] = [" ".join(tokenize(r)) for r in clip_references[clip.name]]
        report["val_clips"] = {"n": len(val), "metrics": caption_metrics(hyps, refs),
                               "captions": {k: {"caption": hyps[k], "references": refs[k][:5]} for k in hyps}}
    if text_pairs_test:
        hyps, refs, windows = text_heldout(model, text_pairs_test, seed=seed)
        report["text_heldout"] = {"n": len(hyps), "metrics": caption_metrics(hyps, refs), **grounding_scores(windows),
                                  "examples": [{"caption": hyps[k], "references": refs[k][:3]} for k in list(hyps)[:8]]}
    test = [c for c in clips if c.split == "test"]
    if test:
        windows = real_window_captions(model, test)
        report["real_test_windows"] = grounding_scores(windows)
        report["real_test_windows"]["examples"] = [
            {"clip": w.clip, "start": w.start_sec, "caption": w.caption, "detected": w.detected} for w in windows[::7][:12]]
        report["next_event"] = next_event_scores(model, test)
    return report


def format_table(report: dict) -> str:
    """The model card's table, as Markdown."""
    lines = ["| evaluation set | n | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, label in (("val_clips", "captioned validation clips (human refs)"),
                       ("text_heldout", "held-out text-derived pairs")):
        if key in report:
            m = report[key]["metrics"]
            lines.append(f"| {label} | {report[key]['n']} | " + " | ".join(
                f"{m[k]:.3f}" for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")) + " |")
    lines += ["", "| grounding | windows | object mentions | hallucination rate | salient objects | salient-object recall |",
              "|---|---|---|---|---|---|"]
    for key, label in (("real_test_windows", "held-out real clips, 4 s windows"), ("text_heldout", "held-out text-derived pairs")):
        if key in report:
            g = report[key]
            lines.append(f"| {label} | {g['windows']} | {g['object_mentions']} | {100 * g['hallucination_rate']:.1f}% | "
                         f"{g['salient_objects']} | {100 * g['salient_recall']:.1f}% |")
    if "next_event" in report:
        ne = report["next_event"]
        lines += ["", f"| next event ({HORIZON_SEC:.0f} s ahead, {ne['steps']['n']} held-out time steps) | presence micro-F1 | enter AUROC | leave AUROC |",
                  "|---|---|---|---|"]
        for name in ("model", "persistence", "constant velocity"):
            if name in ne:
                r = ne[name]
                lines.append(f"| {name} | {r['presence micro-F1']:.3f} | {r['enter AUROC']:.3f} | {r['leave AUROC']:.3f} |")
        if "presence gain" in ne:
            g = ne["presence gain"]
            lines += ["", f"Presence micro-F1, model minus {g['over']} (the better baseline): {g['gain']:+.3f}; "
                          f"95% bootstrap interval over the {g['clips']} held-out clips [{g['ci95_low']:+.3f}, {g['ci95_high']:+.3f}]."]
    return "\n".join(lines)
