"""Which words name objects, and when a detected class has enough evidence to be named."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..coco import CLASS_INDEX, COCO_CLASSES, KIND_CLASSES
from ..tokens import SLOT_AREA, SLOT_CONF, SLOT_SHARE, SLOT_TRACKED, WindowObjects

@dataclass
class Grounding:
    """Which vocabulary ids name objects. Built at training time (with WordNet) and stored in
    the checkpoint, so inference needs no NLTK data.

    word_class: vocab id -> COCO class id, for words that name a detectable object
    unseeable: vocab ids of object nouns no COCO class covers and too few training photos show:
               "piano" from a handful of clips is not learnt (always banned)
    scene_words: the other such nouns, which hundreds of photos taught ("grass", "snow", "shirt"):
               said of a photo; in a video window the phrase holding one is left out
               (``strip_scene_phrases``), since there they were measured to be wrong too often
    """

    word_class: dict[int, int]
    unseeable: set[int]
    scene_words: set[int] = field(default_factory=set)  # nouns no COCO class covers that photos taught ("grass")

    def banned_mask(self, vocab_size: int, present_classes: set[int], specials: list[int]) -> torch.Tensor:
        """(V,) bool: True where a word may not be generated for this segment: ``specials``, the
        ``unseeable`` nouns, and words naming a COCO class not in ``present_classes``."""
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[list(set(specials) | self.unseeable)] = True
        for word, cls in self.word_class.items():
            if cls not in present_classes:
                banned[word] = True
        return banned

    def named_classes(self, ids: list[int]) -> set[int]:
        return {self.word_class[i] for i in ids if i in self.word_class}


@dataclass
class EvidenceBar:
    """When a detected class may be named in a caption or a forecast.

    A class passes when it was seen in at least ``min_share`` of the window's frames (a photo is
    one frame: share 1) and either its best detection is confident (``min_conf``), or it is
    followed by a confirmed track in at least ``min_tracked`` of the frames, or it is large
    (mean sqrt area share ``min_area``), each of the last two with confidence ``min_conf_weak``.
    Calibrated by ``captioner train`` against the objects human captions mention (see the model
    card) and stored in the checkpoint.
    """

    min_share: float = 0.25
    min_conf: float = 0.5
    min_tracked: float = 0.5
    min_area: float = 0.25
    min_conf_weak: float = 0.3
    # classes the detector often reports wrongly (e.g. a dog as a horse) need this much confidence too
    class_min_conf: dict[str, float] = field(default_factory=dict)
    # when no class passes: a kind (``coco.KIND_CLASSES``) may be named if its classes' best
    # confidence reaches this (calibrated on photos; no entry: never)
    kind_min_conf: dict[str, float] = field(default_factory=dict)

    def passes(self, objects: WindowObjects) -> np.ndarray:
        """(K,) bool: which of a window's objects have enough evidence to be named."""
        f = objects.features
        if not len(f):
            return np.zeros(0, bool)
        conf, share = f[:, SLOT_CONF], f[:, SLOT_SHARE]
        weak = conf >= self.min_conf_weak
        floor = np.array([self.class_min_conf.get(COCO_CLASSES[int(c)], 0.0) for c in objects.class_ids])
        return (share >= self.min_share) & (conf >= floor) & (
            (conf >= self.min_conf) | (weak & (f[:, SLOT_TRACKED] >= self.min_tracked)) | (weak & (f[:, SLOT_AREA] >= self.min_area)))

    def kinds_seen(self, objects: WindowObjects, still: bool = False) -> list[tuple[str, np.ndarray]]:
        """The kinds (animal, vehicle, person) the detector is sure of although no class passes:
        among the objects seen in ``min_share`` of the frames, the kind's classes reach
        ``kind_min_conf``. [(kind, the COCO ids of its classes seen)], surest first; for a window
        none of whose objects passes (``passes``). The floors were fitted on photos, so they hold
        as they are for a ``still`` picture; a video window also needs the bar's own ``min_conf``
        (a kind there waives the per-class floors, not the doubt: a "bird 0.31" on a slide's
        question mark is no animal)."""
        f = objects.features
        found = []
        for kind, threshold in self.kind_min_conf.items():
            threshold = threshold if still else max(threshold, self.min_conf)
            members = np.isin(objects.class_ids, [CLASS_INDEX[n] for n in KIND_CLASSES[kind]]) & (f[:, SLOT_SHARE] >= self.min_share)
            if members.any() and f[members, SLOT_CONF].max() >= threshold:
                found.append((float(f[members, SLOT_CONF].max()), kind, objects.class_ids[members]))
        return [(kind, ids) for _, kind, ids in sorted(found, key=lambda x: -x[0])]

    def to_dict(self) -> dict:
        # plain floats and strings: checkpoints load with weights_only
        data = {k: float(v) for k, v in asdict(self).items() if k not in ("class_min_conf", "kind_min_conf")}
        return {**data, "class_min_conf": {str(k): float(v) for k, v in self.class_min_conf.items()},
                "kind_min_conf": {str(k): float(v) for k, v in self.kind_min_conf.items()}}

    @classmethod
    def from_dict(cls, data: dict | None) -> "EvidenceBar":
        data = dict(data or {})
        floors = {str(k): float(v) for k, v in (data.pop("class_min_conf", None) or {}).items()}
        kinds = {str(k): float(v) for k, v in (data.pop("kind_min_conf", None) or {}).items() if k in KIND_CLASSES}
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}, class_min_conf=floors,
                   kind_min_conf=kinds)
