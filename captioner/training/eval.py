"""``captioner eval``: one table of every claim the model card makes, measured the same way.

* Flickr8k dev photos (5 human captions each): BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap,
  PTB tokenizer; METEOR is the Java METEOR 1.5 it bundles), and object hallucination: CHAIR-i
  (share of COCO object mentions not among the objects the 5 captions mention), CHAIR-s (share of
  captions with such a mention) and object recall (share of objects that at least 2 of the 5
  captions mention which ours names), with the evidence bar and without it (any detected class
  may be named, as before the bar existed).
* Captioned validation clips (MSR-VTT video8331 and two MSVD clips): one caption per clip
  against its human references.
* Held-out and validation real clips, 4 s windows: hallucination against the hand-checked
  presence lists in ``data/clip_presence.json`` (what is really in the clip, not what the
  detector says; COCO objects and other nouns alike) and salient-object recall.
* Held-out text-derived pairs; next-event micro-F1 (future class presence, threshold 0.5) and
  AUROC (enter, leave) on held-out clips, beside the persistence and constant-velocity baselines
  computed on the same time steps; and the forecast sentences a live stream lists there, each
  checked against what happened (stated probability vs share that came true).
Captions come from the runtime's own ``Stream`` fed with the cached perception of each photo or
clip. Everything is seeded; the same checkpoint and data give the same table.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from ..coco import CLASS_INDEX
from ..grounding.evidence import EvidenceBar
from ..grounding.forecast import Arrivals, leave_with_exits
from ..grounding.verbs import VERB_BASE, is_verb_form
from ..grounding.words import GAIT_VERBS, STILL_VERBS
from ..events import DIRECTIONS, heading_out
from ..model import HISTORY_FRAMES
from ..perception import Detections
from ..pipeline import Captioner
from ..result import Segment
from ..stream import AnalysedFrame, Stream
from ..vocab import tokenize
from ..windows import NOTHING_SEEN, describe_window
from .dataset import PAST_SEC, ClipData, frame_window
from .evidence import load_motion, load_presence, window_truth
from .forecast import HORIZON_SEC, constant_velocity_baseline, persistence_baseline
from .images import CaptionedPhoto
from .pairs import synthetic_tokens
from .verbs import load_verb_labels
from .person_words import person_claims

log = logging.getLogger(__name__)

# Typical extra detections in real footage, used as noise for text-derived eval inputs.
EVAL_DISTRACTORS = ["car", "chair", "handbag", "bottle", "tv", "cup", "truck", "dining table", "book", "tie"]
NO_BAR = EvidenceBar(min_share=0.0, min_conf=0.0, min_tracked=0.0, min_area=0.0, min_conf_weak=0.0)  # any detection


# ---- metrics ------------------------------------------------------------------------------------

def caption_metrics(hypotheses: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr with pycocoevalcap, as published captioning results
    are computed: PTB-tokenised (Java), METEOR 1.5 (Java). Keys of the dicts are item ids."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(hypotheses)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": hypotheses[i]}] for i in ids})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()  # a Java subprocess, stopped when the scorer is collected
    meteor, _ = meteor_scorer.compute_score(gts, res)
    del meteor_scorer
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3], "METEOR": float(meteor),
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

def stream_segments(model: Captioner, clip: ClipData, window_sec: float = 4.0) -> list[Segment]:
    """The segments (unmerged) a ``Stream`` cuts from a clip's cached frames: the product's own
    path from perception on (the cache holds what ``SourcePerception`` produced)."""
    stream = model.new_stream(clip.frame_size, model.options.replace(window_sec=window_sec), live=False)
    segments = [u.segment for u in map(stream.push_features, clip.frames) if u.segment is not None]
    last = stream.finish(clip.frames[-1].t_sec + 1.0 / model.analysis_fps) if clip.frames else None
    return segments + ([last] if last is not None else [])


def whole_clip_caption(model: Captioner, clip: ClipData) -> str:
    """One caption for a whole clip (as ``captioner --window`` of the clip's length gives it)."""
    duration = clip.frames[-1].t_sec + 1.0 / model.analysis_fps
    return stream_segments(model, clip, window_sec=min(max(duration + 1.0, 0.5), 600.0))[0].caption


def photo_caption(model: Captioner, photo: CaptionedPhoto, evidence: EvidenceBar | None = None) -> Segment:
    """A photo's caption: a one-frame stream, as ``Captioner.caption(image)`` runs it (with
    another evidence bar when given)."""
    trained = model.trained if evidence is None else replace(model.trained, evidence=evidence)
    stream = Stream(model.perception, trained, photo.frame_size, model.options, model.analysis_fps, live=False)
    stream.push_features(photo.frame)
    return stream.finish(0.0)


def encode_tokens(model: Captioner, tokens: np.ndarray) -> list[AnalysedFrame]:
    """Analysed frames for a token sequence without video (text-derived pairs)."""
    with torch.no_grad():
        states, _ = model.trained.network.encode(torch.from_numpy(tokens)[None])
    return [AnalysedFrame(float(i), Detections.empty(), tokens[i], states[0, i]) for i in range(len(tokens))]


def mentions(caption: str) -> list:
    """The object mentions of a caption (WordNet lexicon, independent of the decoder's lists)."""
    from .lexicon import mentioned_objects

    return [] if caption == NOTHING_SEEN else mentioned_objects(tokenize(caption))


# ---- photos: Flickr8k dev -----------------------------------------------------------------------

def reference_objects(captions: Sequence[Sequence[str]]) -> dict[str, int]:
    """COCO class -> how many of the human captions mention it."""
    counts: dict[str, int] = defaultdict(int)
    for tokens in captions:
        from .lexicon import mentioned_objects

        for cls in {m.coco_class for m in mentioned_objects(tokens) if m.coco_class}:
            counts[cls] += 1
    return dict(counts)


def chair_scores(captions: dict[str, str], references: dict[str, dict[str, int]], min_refs: int = 2) -> dict[str, float]:
    """CHAIR-i, CHAIR-s (Rohrbach et al. 2018, with the human captions as the reference for what
    is present) and the recall of objects that at least ``min_refs`` captions mention."""
    mentioned = wrong = wrong_captions = salient = salient_named = 0
    for key, caption in captions.items():
        named = {m.coco_class for m in mentions(caption) if m.coco_class}
        present = references[key]
        bad = [c for c in named if c not in present]
        mentioned, wrong, wrong_captions = mentioned + len(named), wrong + len(bad), wrong_captions + bool(bad)
        target = {c for c, n in present.items() if n >= min_refs}
        salient, salient_named = salient + len(target), salient_named + len(target & named)
    return {"captions": len(captions), "object_mentions": mentioned, "CHAIR-i": wrong / max(mentioned, 1),
            "CHAIR-s": wrong_captions / max(len(captions), 1), "salient_objects": salient,
            "object_recall": salient_named / max(salient, 1)}


def photo_eval(model: Captioner, photos: Sequence[CaptionedPhoto], examples: int = 20) -> dict:
    refs = {p.name: p.raw_captions for p in photos}
    objects = {p.name: reference_objects(p.captions) for p in photos}
    report = {}
    for label, bar in (("with_bar", model.trained.evidence), ("without_bar", NO_BAR)):
        hyps = {p.name: photo_caption(model, p, bar).caption for p in photos}
        entry = {"chair": chair_scores(hyps, objects)}
        if label == "with_bar":
            entry["metrics"] = caption_metrics(hyps, refs)
            entry["n"] = len(hyps)
            entry["nothing_seen"] = sum(h == NOTHING_SEEN for h in hyps.values())
            entry["person_words"] = person_claims({k: tokenize(h) for k, h in hyps.items()},
                                                  {p.name: p.captions for p in photos})
            entry["examples"] = [{"photo": k, "caption": hyps[k], "references": refs[k]} for k in sorted(hyps)[:examples]]
        report[label] = entry
    return report


# ---- real clips against what is really in them -----------------------------------------------------

@dataclass
class WindowCaption:
    clip: str
    start_sec: float
    end_sec: float
    caption: str
    detected: list[str]
    salient: list[str]  # from the hand-checked list
    mentions: list[tuple[str, str | None]]  # (noun, COCO class or None)
    wrong: list[str]  # mentions that are not really in the window


def real_window_captions(model: Captioner, clips: Sequence[ClipData], window_sec: float = 4.0) -> list[WindowCaption]:
    presence = load_presence()
    out = []
    for clip in clips:
        if clip.name not in presence:
            continue
        for seg in stream_segments(model, clip, window_sec):
            truth = window_truth(presence, clip.name, seg.start)
            allowed_nouns = set(truth["scene"])
            found = [(m.noun, m.coco_class) for m in mentions(seg.caption)]
            wrong = [noun for noun, cls in found if (cls not in truth["objects"] if cls else noun not in allowed_nouns)]
            out.append(WindowCaption(clip.name, seg.start, seg.end, seg.caption, seg.evidence.classes, truth["salient"],
                                     found, wrong))
    return out


def grounding_scores(windows: Sequence[WindowCaption]) -> dict[str, float]:
    mentioned = sum(len(w.mentions) for w in windows)
    wrong = sum(len(w.wrong) for w in windows)
    salient_total = sum(len(w.salient) for w in windows)
    salient_named = sum(len(set(w.salient) & {c for _, c in w.mentions if c}) for w in windows)
    return {"windows": len(windows), "object_mentions": mentioned, "hallucination_rate": wrong / max(mentioned, 1),
            "captions_with_hallucination": sum(bool(w.wrong) for w in windows) / max(len(windows), 1),
            "salient_objects": salient_total, "salient_recall": salient_named / max(salient_total, 1)}


# what a caption may say of someone who moves: the decoder's gait words (``grounding.words.GAIT_VERBS``)
# and the rest of their family, which the decoder may also write
MOVING_WORDS = GAIT_VERBS | frozenset("walked ran jog jogs jogging stroll strolls strolling".split())


def posture_scores(windows: Sequence[WindowCaption], motion: dict[str, dict[str, str]]) -> dict[str, float]:
    """Captions whose posture or gait contradicts the hand-checked motion of the window
    (``data/clip_motion.json``): "sitting"/"standing"/"lying" while the people or animals walk,
    "walking"/"running" while they stay put. Only windows labelled moves or still count."""
    counted = contradicted = moving = still = 0
    examples = []
    for w in windows:
        label = motion.get(w.clip, {}).get(str(int(round(w.start_sec))))
        if label not in ("moves", "still"):
            continue
        words = set(tokenize(w.caption))
        wrong = bool(words & (STILL_VERBS if label == "moves" else MOVING_WORDS))
        counted += 1
        moving += label == "moves"
        still += label == "still"
        contradicted += wrong
        if wrong:
            examples.append(f"{w.clip} {w.start_sec:g} s ({label}): {w.caption}")
    return {"windows": counted, "moves": moving, "still": still, "contradicted": contradicted,
            "rate": contradicted / max(counted, 1), "examples": examples}


# verbs a caption uses that say no action: being, wearing, having
NOT_ACTIONS = frozenset({"be", "wear", "have"})


def caption_verbs(caption: str) -> list[str]:
    """The base forms of the action verbs of a caption (``grounding.verbs.is_verb_form``): the verb
    classes' own base ("riding" -> "ride"), else WordNet's lemma ("talking" -> "talk"). Needs NLTK's
    WordNet data (NLTK_DATA)."""
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()
    tokens = tokenize(caption)
    found = []
    for i, token in enumerate(tokens):
        if is_verb_form(tokens, i):
            base = VERB_BASE.get(token) or lemmatizer.lemmatize(token, "v")
            if base not in NOT_ACTIONS:
                found.append(base)
    return found


def verb_scores(windows: Sequence[WindowCaption], labels: dict[str, dict]) -> dict:
    """Captions against the hand-labelled verbs of their clips (``data/clip_verbs.json``):
    wrong-verb rate (captions with a verb not true of the clip), salient-verb recall (clips whose
    captions use one of their salient verbs) and captions with no verb, per split of the labels."""
    out: dict = {}
    for split in ("val", "test", "held back"):
        rows = [w for w in windows if w.clip in labels and (labels[w.clip]["split"] == split or
                                                            (split == "held back" and labels[w.clip]["split"] != "train"))]
        if not rows:
            continue
        clips = sorted({w.clip for w in rows})
        verbs = {id(w): caption_verbs(w.caption) for w in rows}
        wrong = [w for w in rows if any(v not in labels[w.clip]["true"] for v in verbs[id(w)])]
        named_salient = [c for c in clips if any(set(verbs[id(w)]) & set(labels[c]["salient"]) for w in rows if w.clip == c)]
        out[split] = {"clips": len(clips), "captions": len(rows), "wrong_verb_rate": len(wrong) / len(rows),
                      "no_verb_rate": sum(not verbs[id(w)] for w in rows) / len(rows),
                      "salient_verb_recall": len(named_salient) / len(clips),
                      "wrong": [f"{w.clip} {w.start_sec:g} s: {w.caption}" for w in wrong],
                      "clips_missing_salient": [c for c in clips if c not in named_salient]}
    return out


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
    names = ("model", "model as a stream lists it", "persistence", "constant velocity")
    per_clip = []  # one {"target" | name: {"presence" | "enter" | "leave": (steps, C)}} per clip
    for clip in clips:
        x = torch.from_numpy(clip.tokens)[None]
        with torch.no_grad():
            states, _ = model.trained.network.encode(x)
            logits = model.trained.network.predict_next(states, x)
            predicted = {k: torch.sigmoid(getattr(logits, k)[0]).numpy() for k in ("presence", "enter", "leave")}
        times = clip.times_sec
        collected = defaultdict(lambda: defaultdict(list))
        arrivals, blended = Arrivals(), []  # what a stream lists: enter weighed by this clip's pace, leave by
        # tracks heading out (``windows.forecast_next``)
        for i, frame in enumerate(clip.frames):
            arrivals.add(frame)
            blended.append(arrivals.blend(predicted["enter"][i].tolist(), HORIZON_SEC))
        for i in np.flatnonzero(clip.valid):
            lo, _ = frame_window(times, times[i] - PAST_SEC, times[i])
            past = clip.frames[lo:i + 1]
            baselines = {"persistence": persistence_baseline(past, clip.frame_size, HORIZON_SEC),
                         "constant velocity": constant_velocity_baseline(past, clip.frame_size, HORIZON_SEC)}
            exiting = heading_out(clip.frames[max(0, i + 1 - HISTORY_FRAMES):i + 1], clip.frame_size, HORIZON_SEC)
            listed = {"presence": predicted["presence"][i], "enter": np.asarray(blended[i], np.float32),
                      "leave": np.asarray(leave_with_exits(predicted["leave"][i], exiting), np.float32)}
            for key in ("presence", "enter", "leave"):
                collected["target"][key].append(getattr(clip, key)[i])
                collected["model"][key].append(predicted[key][i])
                collected[names[1]][key].append(listed[key])
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
    better = max(names[2:], key=lambda n: out[n]["presence micro-F1"])
    low, high = presence_gain_interval([{who: c[who]["presence"] for who in ("target", "model", better)} for c in per_clip],
                                       better)
    out["presence gain"] = {"over": better, "gain": out["model"]["presence micro-F1"] - out[better]["presence micro-F1"],
                            "ci95_low": low, "ci95_high": high, "clips": len(per_clip)}
    out["steps"] = {"n": int(len(target["presence"]))}
    return out


FORECAST_KINDS = ("stay", "still in view", "leave", "enter", "appear", "move")


def forecast_reliability(model: Captioner, clips: Sequence[ClipData]) -> dict[str, dict[str, float]]:
    """Every forecast sentence the rules let a live stream list (``forecast_lines=0``), at every analysed frame of ``clips`` with a
    full horizon, checked against what happened in the next ``HORIZON_SEC`` (the next-event
    targets): "the person will stay in view" = the class is present then and none of its tracks
    left; "cars will still be in view" (several) and "appear" = the class is present then;
    "enter" / "leave" = a track of it enters / leaves; "keep moving left" = the future's dominant
    motion is left. Per kind: how many were said, the mean probability they stated, and the share
    that came true; for a calibrated forecast the last two agree."""
    said: dict[str, list[tuple[float, bool]]] = {kind: [] for kind in FORECAST_KINDS}
    for clip in clips:
        # every line the forecast rules allow, not only the two a user sees by default
        stream = model.new_stream(clip.frame_size, model.options.replace(forecast_lines=0), live=True)
        for i, frame in enumerate(clip.frames):
            update = stream.push_features(frame)
            if not clip.valid[i]:
                continue
            for event in update.forecast:
                c = CLASS_INDEX[event.class_name]
                present, entered, left = clip.presence[i][c] > 0, clip.enter[i][c] > 0, clip.leave[i][c] > 0
                kind = "still in view" if event.kind == "stay" and not event.text.startswith("the ") else event.kind
                came_true = {"stay": present and not left, "still in view": present, "appear": present, "enter": entered,
                             "leave": left, "move": DIRECTIONS[int(clip.direction[i])] == event.direction}[kind]
                said[kind].append((event.probability, bool(came_true)))
    return {kind: {"n": len(v), "stated": float(np.mean([p for p, _ in v])) if v else 0.0,
                   "came_true": float(np.mean([t for _, t in v])) if v else 0.0} for kind, v in said.items()}


def text_heldout(model: Captioner, pairs, max_videos: int = 600, seed: int = 0):
    """Caption pseudo-detections of held-out corpus videos; references = that video's kept sentences."""
    by_video: dict[str, list] = defaultdict(list)
    for p in pairs:
        by_video[f"{p.source}/{p.video_id}"].append(p)
    keys = sorted(by_video)
    random.Random(seed).shuffle(keys)
    keys = keys[:max_videos]
    rng = random.Random(seed)
    emb = model.trained.network.cfg.embedding_dim
    hyps, refs, objects = {}, {}, {}
    for key in keys:
        group = by_video[key]
        tokens = synthetic_tokens(group[0].classes, emb, rng, 8, EVAL_DISTRACTORS)
        caption, _, _ = describe_window(model.trained, encode_tokens(model, tokens), model.options)
        hyps[key] = caption
        refs[key] = [" ".join(p.tokens) for p in group]
        objects[key] = {c: 2 for c in group[0].classes}  # the classes the sentence names, as the reference
    return hyps, refs, objects


@dataclass
class EvalData:
    clips: list[ClipData]  # validation and held-out clips
    text_pairs_test: list
    photos_dev: list[CaptionedPhoto]
    clip_references: dict[str, list[str]]


def load_eval_data(video_dir, captions_dir, photos_dir, perception, cfg) -> EvalData:
    """What ``captioner eval`` measures on, built the way training builds it (same splits)."""
    from pathlib import Path

    from . import corpora, pairs
    from .dataset import captioned_clip_stems, clip_split, load_clips, video_files
    from .images import load_photos

    references = captioned_clip_stems(Path(captions_dir) / "clip_captions.json")
    videos = [v for v in video_files(video_dir) if clip_split(v.stem, set(references)) != "train"]
    clips = load_clips(videos, perception, analysis_fps=cfg.analysis_fps, captioned=references, window_sec=cfg.window_sec,
                       stride_sec=cfg.window_stride_sec, variants=cfg.caption_variants, seed=cfg.seed)
    records = corpora.load_shared_corpora(captions_dir)
    text_pairs, _ = pairs.text_training_pairs(records, seed=cfg.seed)
    photos = load_photos(photos_dir, perception, splits=("dev",)) if photos_dir else []
    return EvalData(clips, [p for p in text_pairs if corpora.split_of(p.video_id) == "test"], photos, references)


def run_eval(model: Captioner, clips: Sequence[ClipData], text_pairs_test, clip_references: dict[str, list[str]],
             photos_dev: Sequence[CaptionedPhoto] = (), seed: int = 0) -> dict:
    report: dict = {}
    if photos_dev:
        report["photos_dev"] = photo_eval(model, photos_dev)
    val = [c for c in clips if c.split == "val" and c.name in clip_references]
    if val:
        hyps, refs = {}, {}
        for clip in val:
            hyps[clip.name] = whole_clip_caption(model, clip)
            refs[clip.name] = [" ".join(tokenize(r)) for r in clip_references[clip.name]]
        report["val_clips"] = {"n": len(val), "metrics": caption_metrics(hyps, refs),
                               "captions": {k: {"caption": hyps[k], "references": refs[k][:5]} for k in hyps}}
    if text_pairs_test:
        hyps, refs, objects = text_heldout(model, text_pairs_test, seed=seed)
        report["text_heldout"] = {"n": len(hyps), "metrics": caption_metrics(hyps, refs), "chair": chair_scores(hyps, objects),
                                  "examples": [{"caption": hyps[k], "references": refs[k][:3]} for k in list(hyps)[:8]]}
    labelled = [c for c in clips if c.split in ("val", "test")]
    if labelled:
        windows = real_window_captions(model, labelled)
        report["real_windows"] = grounding_scores(windows)
        report["real_windows"]["posture"] = posture_scores(windows, load_motion())
        report["real_windows"]["verbs"] = verb_scores(windows, load_verb_labels())
        report["real_windows"]["captions"] = [
            {"clip": w.clip, "start": w.start_sec, "caption": w.caption, "wrong": w.wrong, "salient": w.salient}
            for w in windows]
    test = [c for c in clips if c.split == "test"]
    if test:
        report["next_event"] = next_event_scores(model, test)
        report["forecast_sentences"] = forecast_reliability(model, test)
    return report


def format_table(report: dict) -> str:
    """The model card's tables, as Markdown."""
    keys = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
    lines = ["| evaluation set | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    rows = []
    if "photos_dev" in report:
        rows.append(("Flickr8k dev photos (5 refs each)", report["photos_dev"]["with_bar"]))
    rows += [(label, report[key]) for key, label in (("val_clips", "captioned validation clips (human refs)"),
                                                     ("text_heldout", "held-out text-derived pairs")) if key in report]
    for label, entry in rows:
        m = entry["metrics"]
        lines.append(f"| {label} | {entry['n']} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    if "photos_dev" in report:
        lines += ["", "| object hallucination, Flickr8k dev | captions | object mentions | CHAIR-i | CHAIR-s | object recall |",
                  "|---|---|---|---|---|---|"]
        for key, label in (("without_bar", "any detected class may be named"), ("with_bar", "calibrated evidence bar")):
            c = report["photos_dev"][key]["chair"]
            lines.append(f"| {label} | {c['captions']} | {c['object_mentions']} | {100 * c['CHAIR-i']:.1f}% | "
                         f"{100 * c['CHAIR-s']:.1f}% | {100 * c['object_recall']:.1f}% |")
        with_bar = report["photos_dev"]["with_bar"]
        if "nothing_seen" in with_bar:
            lines += ["", f"Flickr8k dev captions \"{NOTHING_SEEN}\": {with_bar['nothing_seen']} of {with_bar['n']} "
                          f"({100 * with_bar['nothing_seen'] / max(with_bar['n'], 1):.1f}%)."]
        people = report["photos_dev"]["with_bar"].get("person_words")
        if people:
            lines += ["", "| person words, Flickr8k dev | captions | say a gender | of those, no reference agrees | "
                          "say an age | of those, no reference agrees |", "|---|---|---|---|---|---|",
                      f"| calibrated evidence bar | {people['captions']} | {100 * people['gender_claims']:.1f}% | "
                      f"{100 * people['gender_wrong']:.1f}% | {100 * people['age_claims']:.1f}% | {100 * people['age_wrong']:.1f}% |"]
    if "real_windows" in report:
        g = report["real_windows"]
        lines += ["", "| real clips vs hand-checked presence | windows | object mentions | hallucination | captions with one | "
                      "salient objects | salient-object recall |", "|---|---|---|---|---|---|---|",
                  f"| validation + held-out clips, 4 s windows | {g['windows']} | {g['object_mentions']} | "
                  f"{100 * g['hallucination_rate']:.1f}% | {100 * g['captions_with_hallucination']:.1f}% | {g['salient_objects']} | "
                  f"{100 * g['salient_recall']:.1f}% |"]
        if g.get("verbs"):
            lines += ["", "| real clips vs hand-labelled verbs (4 s windows) | clips | captions | wrong verb | "
                          "no verb | salient-verb recall (clips) |", "|---|---|---|---|---|---|"]
            for split, v in g["verbs"].items():
                lines.append(f"| {split} | {v['clips']} | {v['captions']} | {100 * v['wrong_verb_rate']:.1f}% | "
                             f"{100 * v['no_verb_rate']:.1f}% | {100 * v['salient_verb_recall']:.0f}% |")
        if "posture" in g:
            p = g["posture"]
            lines += ["", "| real clips vs hand-checked motion | windows (moves / still) | posture or gait contradicted |",
                      "|---|---|---|", f"| validation + held-out clips, 4 s windows | {p['windows']} ({p['moves']} / {p['still']}) | "
                      f"{p['contradicted']} ({100 * p['rate']:.1f}%) |"]
    if "next_event" in report:
        ne = report["next_event"]
        lines += ["", f"| next event ({HORIZON_SEC:.0f} s ahead, {ne['steps']['n']} held-out time steps) | presence micro-F1 | enter AUROC | leave AUROC |",
                  "|---|---|---|---|"]
        for name in ("model", "model as a stream lists it", "persistence", "constant velocity"):
            if name in ne:
                r = ne[name]
                lines.append(f"| {name} | {r['presence micro-F1']:.3f} | {r['enter AUROC']:.3f} | {r['leave AUROC']:.3f} |")
        if "presence gain" in ne:
            g = ne["presence gain"]
            lines += ["", f"Presence micro-F1, model minus {g['over']} (the better baseline): {g['gain']:+.3f}; "
                          f"95% bootstrap interval over the {g['clips']} held-out clips [{g['ci95_low']:+.3f}, {g['ci95_high']:+.3f}]."]
    if "forecast_sentences" in report:
        lines += ["", "| forecast sentences, every analysed frame of the held-out clips | said | mean stated probability | "
                      "came true |", "|---|---|---|---|"]
        for kind, r in report["forecast_sentences"].items():
            lines.append(f"| {kind} | {r['n']} | {r['stated']:.2f} | {100 * r['came_true']:.1f}% |" if r["n"] else
                         f"| {kind} | 0 | - | - |")
    return "\n".join(lines)
