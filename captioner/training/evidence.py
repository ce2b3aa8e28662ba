"""Calibrating the evidence bar (``grounding.EvidenceBar``): when a detected class may be named.

The reference for what is really there:
- photos: the COCO classes that the photo's human captions mention (Flickr8k, via the WordNet
  lexicon); a class the detector finds but no human mentions is background or a false detection,
  and a caption should not name it either;
- clips: the hand-checked presence lists in ``data/clip_presence.json`` (4 s windows).

The photo thresholds (confidence, size) are chosen on the Flickr8k *train* photos by F1; then
each class the detector often gets wrong (at least ``MIN_CLASS_SAMPLES`` labelled detections)
gets its own confidence floor, by F0.5 (precision counts twice as much as recall: naming a wrong
object is worse than leaving one out); the video thresholds (share of frames, tracking) are
chosen on the labelled clip windows by F0.5.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..coco import CLASS_INDEX, COCO_CLASSES, KIND_CLASSES
from ..grounding.evidence import EvidenceBar
from ..tokens import SLOT_CONF, WindowObjects, tokens_for_frames, window_objects
from .images import CaptionedPhoto
from .lexicon import mentioned_objects

log = logging.getLogger(__name__)

PRESENCE_FILE = Path(__file__).resolve().parent / "data" / "clip_presence.json"
MOTION_FILE = Path(__file__).resolve().parent / "data" / "clip_motion.json"
MIN_CLASS_SAMPLES = 30


@dataclass
class LabelledObjects:
    """A photo's or window's objects and, for each, whether it is really there."""

    objects: WindowObjects
    present: np.ndarray  # (K,) bool


def mentioned_classes(captions: Sequence[Sequence[str]]) -> set[int]:
    """COCO classes named by at least one of a photo's tokenised captions."""
    return {CLASS_INDEX[m.coco_class] for tokens in captions for m in mentioned_objects(tokens) if m.coco_class}


def photo_objects(photo: CaptionedPhoto, embedding_dim: int) -> WindowObjects:
    tokens = tokens_for_frames([photo.frame], photo.frame_size, embedding_dim)
    return window_objects(tokens, embedding_dim, [photo.frame.detections])


def label_photos(photos: Sequence[CaptionedPhoto], embedding_dim: int) -> list[LabelledObjects]:
    out = []
    for photo in photos:
        objects = photo_objects(photo, embedding_dim)
        named = mentioned_classes(photo.captions)
        out.append(LabelledObjects(objects, np.array([int(c) in named for c in objects.class_ids], bool)))
    return out


def load_presence(path: Path = PRESENCE_FILE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))["clips"]


def load_motion(path: Path = MOTION_FILE) -> dict[str, dict[str, str]]:
    """Hand-checked motion labels: clip -> window start (s, as text) -> moves | still | mixed | none."""
    return json.loads(path.read_text(encoding="utf-8"))["clips"]


def window_truth(presence: dict, clip: str, start_sec: float) -> dict | None:
    """The hand-checked lists for the 4 s window of ``clip`` starting at ``start_sec`` (None if unlabelled)."""
    entry = presence.get(clip)
    if entry is None:
        return None
    return entry.get("windows", {}).get(str(int(round(start_sec))), entry)


def label_clip_windows(clips, presence: dict, embedding_dim: int, window_sec: float = 4.0) -> list[LabelledObjects]:
    """Every 4 s window of the labelled clips, its objects and the truth for each."""
    out = []
    for clip in clips:
        if clip.name not in presence:
            continue
        times = clip.times_sec
        start = 0.0
        while start <= times[-1]:
            idx = np.flatnonzero((times >= start) & (times < start + window_sec))
            if len(idx):
                objects = window_objects(clip.tokens[idx], embedding_dim, [clip.frames[i].detections for i in idx])
                truth = {CLASS_INDEX[c] for c in window_truth(presence, clip.name, start)["objects"]}
                out.append(LabelledObjects(objects, np.array([int(c) in truth for c in objects.class_ids], bool)))
            start += window_sec
    return out


def pooled(labelled: Sequence[LabelledObjects]) -> LabelledObjects:
    """Every (item, detected class) in one array: the bar judges each on its own."""
    if isinstance(labelled, LabelledObjects):
        return labelled
    items = list(labelled)
    if not items:
        return LabelledObjects(WindowObjects(np.zeros(0, np.int64), np.zeros((0, 6), np.float32), np.zeros((0, 0))), np.zeros(0, bool))
    return LabelledObjects(WindowObjects(np.concatenate([i.objects.class_ids for i in items]),
                                         np.concatenate([i.objects.features for i in items]), np.zeros((0, 0))),
                           np.concatenate([i.present for i in items]))


def scores(bar: EvidenceBar, labelled: Sequence[LabelledObjects] | LabelledObjects, only_class: int | None = None) -> dict[str, float]:
    """Precision, recall, F1 and F0.5 of ``bar`` over every (item, detected class)."""
    flat = pooled(labelled)
    passed, present = bar.passes(flat.objects), flat.present
    if only_class is not None:
        keep = flat.objects.class_ids == only_class
        passed, present = passed[keep], present[keep]
    tp = int(np.sum(passed & present))
    fp = int(np.sum(passed & ~present))
    fn = int(np.sum(~passed & present))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)

    def f(beta: float) -> float:
        return (1 + beta ** 2) * precision * recall / max(beta ** 2 * precision + recall, 1e-9)

    return {"precision": precision, "recall": recall, "f1": f(1.0), "f0.5": f(0.5), "passed": tp + fp, "present": tp + fn}


def calibrate(photos: Sequence[LabelledObjects], windows: Sequence[LabelledObjects]) -> tuple[EvidenceBar, dict]:
    """The bar: photo thresholds on ``photos`` (F1), per-class floors (F0.5), then video ones on
    ``windows`` (F0.5)."""
    photos, windows = pooled(photos), pooled(windows) if windows else None
    best, best_f = EvidenceBar(), -1.0
    grid = [round(float(x), 2) for x in np.arange(0.25, 0.91, 0.05)]
    for min_conf, min_conf_weak, min_area in itertools.product(grid, grid, (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.1)):
        if min_conf_weak > min_conf:
            continue
        bar = EvidenceBar(min_share=0.0, min_conf=min_conf, min_tracked=1.1, min_area=min_area, min_conf_weak=min_conf_weak)
        f = scores(bar, photos)["f1"]
        if f > best_f:
            best, best_f = bar, f
    floors = {}
    for c, n in zip(*np.unique(photos.objects.class_ids, return_counts=True)):
        if n < MIN_CLASS_SAMPLES:
            continue
        c, name = int(c), COCO_CLASSES[int(c)]
        base = scores(best, photos, only_class=c)["f0.5"]
        for floor in grid:
            f = scores(replace(best, class_min_conf={name: floor}), photos, only_class=c)["f0.5"]
            if f > base + 1e-9:
                base, floors[name] = f, floor
    photo_bar = best = replace(best, class_min_conf=floors)
    if windows:
        best_f = -1.0
        for min_share, min_tracked in itertools.product((0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5), (0.25, 0.5, 0.75, 1.1)):
            bar = replace(photo_bar, min_share=min_share, min_tracked=min_tracked)
            f = scores(bar, windows)["f0.5"]
            if f > best_f:
                best, best_f = bar, f
    report = {"bar": best.to_dict(), "photos": scores(best, photos), "windows": scores(best, windows) if windows else {}}
    log.info("evidence bar %s: photos %s, windows %s", best.to_dict(), report["photos"], report["windows"])
    return best, report


def named_nothing(bar: EvidenceBar, objects: WindowObjects) -> bool:
    """A still picture on which no class passes ``bar`` and the detector is sure of no kind: where
    only the pixels (``concepts``) can say who or what is there."""
    return not bar.passes(objects).any() and not bar.kinds_seen(objects, still=True)


MIN_KIND_PRECISION = 0.9  # "an animal" must be right at least this often where it is said
MIN_KIND_SAID = 20  # ... over at least this many training photos


def lowest_sure_bar(values: np.ndarray, truth: np.ndarray, grid) -> tuple[float, dict]:
    """The lowest bar of ``grid`` (ascending) at which >= ``MIN_KIND_SAID`` photos score at least
    it and >= ``MIN_KIND_PRECISION`` of those are right (``truth``): (bar, {said, precision,
    recall}); (inf, {}) where none is. The detector's kind floors and the concept head's kinds
    are both set so."""
    for bar in grid:
        said = values >= bar
        if said.sum() >= MIN_KIND_SAID and truth[said].mean() >= MIN_KIND_PRECISION:
            return float(bar), {"said": int(said.sum()), "precision": round(float(truth[said].mean()), 3),
                                "recall": round(float((said & truth).sum() / max(truth.sum(), 1)), 3)}
    return float("inf"), {}


def calibrate_kinds(bar: EvidenceBar, photos: Sequence[CaptionedPhoto], embedding_dim: int) -> tuple[EvidenceBar, dict]:
    """``bar`` with its ``kind_min_conf``: for each kind (``coco.KIND_CLASSES``), on the training
    photos none of whose objects passes ``bar``, the lowest confidence of the kind's best
    detection at which the photo's captions name one of the
    kind's classes at least ``MIN_KIND_PRECISION`` of the time (a dog the detector calls a cow is
    still an animal); kinds no threshold makes that sure are left out (never said)."""
    # from the detector's own threshold up: fitted on photos, where nothing else being sure is
    # itself evidence (a Flickr8k photo shows somebody or something); a video window also needs the
    # bar's own confidence (``EvidenceBar.kinds_seen``)
    grid = [round(float(x), 2) for x in np.arange(0.25, 0.91, 0.05)]
    candidates: dict[str, list[tuple[float, bool]]] = {kind: [] for kind in KIND_CLASSES}
    for photo in photos:
        objects = photo_objects(photo, embedding_dim)
        if bar.passes(objects).any():
            continue
        named = mentioned_classes(photo.captions)
        for kind, names in KIND_CLASSES.items():
            members = {CLASS_INDEX[n] for n in names}
            conf = [float(f[SLOT_CONF]) for c, f in zip(objects.class_ids, objects.features) if int(c) in members]
            if conf:
                candidates[kind].append((max(conf), bool(named & members)))
    kinds, report = {}, {}
    for kind, rows in candidates.items():
        values = np.array([v for v, _ in rows]) if rows else np.zeros(0)
        truth = np.array([t for _, t in rows], bool)
        report[kind] = {"photos_with_a_detection": len(rows), "named_by_captions": int(truth.sum())}
        threshold, sure = lowest_sure_bar(values, truth, grid)
        if sure:
            kinds[kind] = threshold
            report[kind].update({"min_conf": threshold, **sure})
    log.info("kinds named when no class passes: %s", report)
    return replace(bar, kind_min_conf=kinds), report
