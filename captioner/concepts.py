"""Scene words with evidence: a multi-label concept head on the one YOLO pass.

Nouns no COCO class covers ("grass", "snow", "beach", "street", "stage") were learnt by the
decoder from photos, but nothing measured them: in video they were cut from every caption. The
concept head is a linear probe on what every analysed frame already carries (the pooled P3-P5
embedding and the mean of the P5 grid cells) with one logistic output per scene noun, fitted on
Flickr8k train photos (a noun is a photo's concept when at least two of its five captions say
it) and calibrated per noun like the COCO evidence bar: a noun passes when its probability reaches
its threshold, the one with the best F0.5 on held-out training photos among those right at least
``MIN_PRECISION`` of the time.

The same head also scores *kinds* (a person, an animal: ``coco.KIND_CLASSES``) from the pixels
alone, for a picture on which the detector named nothing: many Flickr8k photos the detector misses
(a dog in mid-leap, a biker upside down) still look like a dog or a biker to the pooled features.
A kind's bar is calibrated only on such photos, like the detector's kind floors
(``EvidenceBar.kinds_seen``), and holds for still pictures only.

And it scores the *content words* photos show (verbs, nouns, adjectives of the vocabulary, by
lemma: "jump" for "jumps" / "jumping"; ``ranked``): never a licence to say a word, they rank a
still picture's finished hypotheses, so that of "a dog is jumping over a hurdle" and "a dog is
running through the grass" the one the pixels bear out wins.
``training/concepts.py`` fits it; it is stored in the checkpoint under ``concepts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

MIN_PRECISION = 0.5  # a scene word is said when it was right at least this often at its threshold


@dataclass
class ConceptHead:
    """words: the scene nouns it scores; weight (K, D), bias (K,) of the logistic outputs over
    [embedding (E,); mean grid cell (C,)]; threshold (K,): the calibrated bar per word (inf:
    never reached the precision); imgsz: the YOLO input size of the features it was fitted and
    calibrated on (the pooled features shift with it: at 320 a blank grey frame scored "grass",
    so other sizes get no scene words); calibration: how it was fitted, and how well; kinds: the
    kinds it scores after the words (their rows follow the words' in weight, bias and threshold;
    empty in checkpoints fitted before kinds); ranked: the content-word lemmas it scores after the
    kinds (rows after theirs, threshold inf: they license nothing) and ranked_forms, each lemma's
    vocabulary words ("jump": jump, jumps, jumping, jumped)."""

    words: list[str]
    weight: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray
    imgsz: int
    calibration: dict = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    ranked: list[str] = field(default_factory=list)
    ranked_forms: list[list[str]] = field(default_factory=list)

    def probabilities(self, embeddings: np.ndarray, cells: np.ndarray | None) -> np.ndarray:
        """(K + J + R,) for one window (scene words, then kinds, then ranked lemmas): the mean embedding (F, E) or (E,) of its frames and their mean grid cells (G, C)."""
        emb = np.asarray(embeddings, np.float32)
        emb = emb.mean(axis=0) if emb.ndim == 2 else emb
        cell = np.zeros(self.weight.shape[1] - len(emb), np.float32) if cells is None else np.asarray(cells, np.float32).mean(axis=0)
        x = np.concatenate([emb, cell])
        return 1.0 / (1.0 + np.exp(-(self.weight @ x + self.bias)))

    def supported(self, probabilities: np.ndarray) -> dict[str, float]:
        """Scene word -> probability, for the words that pass their bar."""
        return {w: float(p) for w, p, t in zip(self.words, probabilities[:len(self.words)], self.threshold) if p >= t}

    def kinds_supported(self, probabilities: np.ndarray) -> dict[str, float]:
        """Kind -> probability, for the kinds that pass their bar (meant for a still picture on
        which no object passes the evidence bar and the detector is sure of no kind)."""
        k = len(self.words)
        return {kind: float(p) for kind, p, t in zip(self.kinds, probabilities[k:k + len(self.kinds)], self.threshold[k:])
                if p >= t}

    def ranked_probability(self, probabilities: np.ndarray) -> dict[str, float]:
        """Vocabulary word -> the probability that a caption of this picture says its lemma."""
        start = len(self.words) + len(self.kinds)
        return {form: float(p) for forms, p in zip(self.ranked_forms, probabilities[start:]) for form in forms}

    def kind_threshold(self, kind: str) -> float:
        return float(self.threshold[len(self.words) + self.kinds.index(kind)])

    def to_dict(self) -> dict:
        # tensors and plain types only: checkpoints load with weights_only
        return {"words": list(self.words), "weight": torch.from_numpy(self.weight.astype(np.float32)),
                "bias": torch.from_numpy(self.bias.astype(np.float32)),
                "threshold": torch.from_numpy(self.threshold.astype(np.float32)), "imgsz": int(self.imgsz),
                "calibration": dict(self.calibration), "kinds": list(self.kinds), "ranked": list(self.ranked),
                "ranked_forms": [list(forms) for forms in self.ranked_forms]}

    @classmethod
    def from_dict(cls, data: dict | None) -> "ConceptHead | None":
        if not data:
            return None
        return cls(list(data["words"]), np.asarray(data["weight"], np.float32), np.asarray(data["bias"], np.float32),
                   np.asarray(data["threshold"], np.float32), int(data["imgsz"]), dict(data.get("calibration") or {}),
                   list(data.get("kinds") or []), list(data.get("ranked") or []),
                   [list(forms) for forms in data.get("ranked_forms") or []])


@dataclass(frozen=True)
class SceneEvidence:
    """What the concept head says of one window: every scored word's probability, which pass,
    the kinds that pass their bar with their probability (said only of a still picture
    with nothing else to name), and for each vocabulary word of a ranked lemma the probability
    that a caption says it (ranks a still picture's hypotheses; licenses nothing)."""

    probability: dict[str, float]
    supported: frozenset[str]
    kinds: dict[str, float] = field(default_factory=dict)
    ranked: dict[str, float] = field(default_factory=dict)


def scene_evidence(head: ConceptHead | None, embeddings: Sequence[np.ndarray], cells: np.ndarray | None,
                   imgsz: int | None = None) -> SceneEvidence | None:
    """The concept head on a window's frames (their embeddings, their mean grid cells); None
    without a head (older checkpoints), without frames, or for features of another ``imgsz``
    than the head was calibrated on."""
    if head is None or not len(embeddings) or (imgsz is not None and imgsz != head.imgsz):
        return None
    probs = head.probabilities(np.stack(embeddings), cells)
    return SceneEvidence({w: float(p) for w, p in zip(head.words, probs)}, frozenset(head.supported(probs)),
                         head.kinds_supported(probs), head.ranked_probability(probs))
