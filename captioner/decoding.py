"""Stage 6: greedy and beam search, grounded in what the detector saw; forecast sentences.

Grounding is enforced while decoding, not checked afterwards: at every step the words that
name a COCO class absent from the segment, and the object nouns the detector cannot see at
all (``unseeable``), get probability zero. Beams are then re-ranked by length-normalised
log-probability plus a bonus for naming the segment's salient objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .coco import COCO_CLASSES, class_word
from .events import DIRECTIONS
from .result import NextEvent
from .vocab import BOS_ID, EOS_ID, Vocabulary


@dataclass
class Grounding:
    """Which vocabulary ids name objects. Built at training time (with WordNet) and stored in
    the checkpoint, so inference needs no NLTK data.

    word_class: vocab id -> COCO class id, for words that name a detectable object
    unseeable: vocab ids of object nouns no COCO class covers (never allowed)
    """

    word_class: dict[int, int]
    unseeable: set[int]

    def banned_mask(self, vocab_size: int, present_classes: set[int], specials: list[int]) -> torch.Tensor:
        """(V,) bool: True where a word may not be generated for this segment."""
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[list(self.unseeable | set(specials))] = True
        for word, cls in self.word_class.items():
            if cls not in present_classes:
                banned[word] = True
        return banned

    def named_classes(self, ids: list[int]) -> set[int]:
        return {self.word_class[i] for i in ids if i in self.word_class}


@dataclass
class Hypothesis:
    ids: list[int]  # generated words, without <bos>/<eos>
    logprob: float
    score: float = 0.0
    named: set[int] = field(default_factory=set)

    @property
    def confidence(self) -> float:
        """Geometric-mean word probability, in [0, 1]."""
        return math.exp(self.logprob / max(len(self.ids) + 1, 1))


def _blocks_repeat(ids: list[int], candidate: int, n: int = 3) -> bool:
    """True if adding ``candidate`` would repeat an n-gram already in ``ids`` (LSTM decoders loop)."""
    if ids and ids[-1] == candidate:
        return True
    if len(ids) < n - 1:
        return False
    tail = tuple(ids[-(n - 1):]) + (candidate,)
    return any(tuple(ids[i:i + n]) == tail for i in range(len(ids) - n + 1))


@torch.no_grad()
def beam_search(
    decoder,
    memory: torch.Tensor,
    mask: torch.Tensor,
    memory_proj: torch.Tensor,
    style: int,
    vocab: Vocabulary,
    banned: torch.Tensor,
    grounding: Grounding,
    salient: list[int],
    *,
    beam_size: int = 4,
    max_len: int = 20,
    length_alpha: float = 0.7,
    coverage_weight: float = 1.0,
) -> list[Hypothesis]:
    """Decode one segment (memory (1, M, H)); returns finished hypotheses, best first.
    ``beam_size=1`` is greedy search."""
    h, c = decoder.init_state(memory, mask, torch.tensor([style]))
    beams = [(Hypothesis([], 0.0), h, c)]
    finished: list[Hypothesis] = []
    eos, bos = EOS_ID, BOS_ID
    for step in range(max_len):
        k = len(beams)
        words = torch.tensor([b[0].ids[-1] if b[0].ids else bos for b in beams])
        hs, cs = torch.cat([b[1] for b in beams]), torch.cat([b[2] for b in beams])
        logits, hs, cs, _ = decoder.step(words, hs, cs, memory.expand(k, -1, -1), memory_proj.expand(k, -1, -1),
                                         mask.expand(k, -1))
        logp = torch.log_softmax(logits.masked_fill(banned, -1e9), dim=-1)
        if step == 0:
            logp[:, eos] = -1e9  # no empty captions
        candidates = []
        for b, (hyp, _, _) in enumerate(beams):
            top = torch.topk(logp[b], beam_size * 2 + 2)
            for lp, word in zip(top.values.tolist(), top.indices.tolist()):
                if lp < -1e8 or (word != eos and _blocks_repeat(hyp.ids, word)):
                    continue
                candidates.append((hyp.logprob + lp, b, word))
        candidates.sort(key=lambda x: -x[0])
        next_beams = []
        for total, b, word in candidates:
            hyp = beams[b][0]
            if word == eos:
                finished.append(Hypothesis(hyp.ids, total))
            else:
                next_beams.append((Hypothesis(hyp.ids + [word], total), hs[b:b + 1], cs[b:b + 1]))
            if len(next_beams) >= beam_size:
                break
        beams = next_beams
        if not beams or len(finished) >= beam_size * 2:
            break
    if not finished:  # ran out of length: keep the best unfinished
        finished = [b[0] for b in beams]
    target = set(salient)
    for hyp in finished:
        hyp.named = grounding.named_classes(hyp.ids)
        coverage = len(hyp.named & target) / len(target) if target else 0.0
        hyp.score = hyp.logprob / (len(hyp.ids) + 1) ** length_alpha + coverage_weight * coverage
    return sorted(finished, key=lambda x: -x.score)


# ---- what happens next ------------------------------------------------------------------------

def _likelihood_words(p: float) -> str:
    if p >= 0.85:
        return "will"
    if p >= 0.6:
        return "will probably"
    if p >= 0.4:
        return "may"
    return "might"


def forecast_events(
    presence: list[float], enter: list[float], leave: list[float], direction_probs: list[float],
    present_now: dict[int, int], leave_side: dict[int, str], moving_class: int | None,
    horizon_sec: float, max_events: int = 3,
) -> list[NextEvent]:
    """Turn next-event probabilities into sentences, most informative first.

    present_now: class id -> count visible now; leave_side: class id -> the edge its tracks
    are heading to (from their current motion); moving_class: the class whose motion decides
    the dominant direction (None when nothing moves).
    """
    changes: list[NextEvent] = []
    steady: list[NextEvent] = []
    for c, p_leave in enumerate(leave):
        if c in present_now and p_leave >= 0.3:
            side = leave_side.get(c)
            noun = ("the " + class_word(COCO_CLASSES[c], present_now[c]))
            where = f" on the {side}" if side in ("left", "right") else (" at the top" if side == "top" else
                                                                         " at the bottom" if side == "bottom" else "")
            verb = "leave the view" if not where else "leave"
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_leave)} {verb}{where} ({p_leave:.2f})",
                                     round(p_leave, 4), "leave", COCO_CLASSES[c], side=side, horizon_sec=horizon_sec))
    for c, p_enter in enumerate(enter):
        if p_enter >= 0.3:
            noun = "another " + class_word(COCO_CLASSES[c]) if c in present_now else _article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_enter)} enter ({p_enter:.2f})",
                                     round(p_enter, 4), "enter", COCO_CLASSES[c], horizon_sec=horizon_sec))
    for c, p in enumerate(presence):
        if c not in present_now and p >= 0.3:
            noun = _article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p)} appear ({p:.2f})", round(p, 4), "appear",
                                     COCO_CLASSES[c], horizon_sec=horizon_sec))
        elif c in present_now:
            noun = "the " + class_word(COCO_CLASSES[c], present_now[c])
            steady.append(NextEvent(f"{noun} {_likelihood_words(p)} stay in view ({p:.2f})", round(p, 4), "stay",
                                    COCO_CLASSES[c], horizon_sec=horizon_sec))
    best_dir = max(range(1, len(DIRECTIONS)), key=lambda i: direction_probs[i])
    p_dir = direction_probs[best_dir]
    if moving_class is not None and p_dir >= 0.4:
        name = DIRECTIONS[best_dir]
        phrase = "toward the camera" if name == "toward" else "away from the camera" if name == "away" else f"to the {name}"
        noun = "the " + class_word(COCO_CLASSES[moving_class], present_now.get(moving_class, 1))
        changes.append(NextEvent(f"{noun} {_likelihood_words(p_dir)} keep moving {phrase} ({p_dir:.2f})",
                                 round(p_dir, 4), "move", COCO_CLASSES[moving_class], direction=name, horizon_sec=horizon_sec))
    changes.sort(key=lambda e: -e.probability)
    steady.sort(key=lambda e: -e.probability)
    confident_changes = [e for e in changes if e.probability >= 0.5]
    rest = [e for e in changes if e.probability < 0.5]
    return (confident_changes + steady + rest)[:max_events]


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
