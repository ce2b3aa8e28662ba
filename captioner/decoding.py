"""Stage 6: greedy and beam search, grounded in what the detector saw; forecast sentences.

Grounding is enforced while decoding, not checked afterwards. ``EvidenceBar`` decides which
detected classes have enough evidence in a segment to be named (seen in enough frames, and
confident, tracked or large enough): one stray false detection must not become a named object.
At every step the words that name any other COCO class get probability zero. Beams are then
re-ranked by length-normalised log-probability plus a bonus for naming the segment's salient
objects. Forecast sentences name only classes that pass the same bar.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .coco import ANIMATE_CLASSES, COCO_CLASSES, HANDHELD_CLASSES, STATIC_CLASSES, class_word
from .colours import COLOUR_WORDS
from .events import DIRECTIONS
from .perception import box_overlaps
from .result import NextEvent
from .tokens import SLOT_AREA, SLOT_CONF, SLOT_SHARE, SLOT_TRACKED, WindowObjects
from .vocab import BOS_ID, EOS_ID, Vocabulary


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

    def to_dict(self) -> dict:
        # plain floats and strings: checkpoints load with weights_only
        data = {k: float(v) for k, v in asdict(self).items() if k != "class_min_conf"}
        return {**data, "class_min_conf": {str(k): float(v) for k, v in self.class_min_conf.items()}}

    @classmethod
    def from_dict(cls, data: dict | None) -> "EvidenceBar":
        data = dict(data or {})
        floors = {str(k): float(v) for k, v in (data.pop("class_min_conf", None) or {}).items()}
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}, class_min_conf=floors)


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


def _blocks_repeat(ids: list[int], candidate: int, function_words: frozenset[int] = frozenset(), n: int = 3,
                   once_words: frozenset[int] = frozenset()) -> bool:
    """True if adding ``candidate`` would repeat a word, an n-gram, a bigram ending in a content
    word already in ``ids`` (LSTM decoders loop: "black and white and white"), or any word of
    ``once_words`` (colours: "a brown and tan brown and brown dog"). Bigrams ending in a function
    word ("in a") may repeat: "a person in a hat and a child in a dress"."""
    if ids and ids[-1] == candidate:
        return True
    if candidate in once_words and candidate in ids:
        return True
    if ids and candidate not in function_words and any(
            ids[i] == ids[-1] and ids[i + 1] == candidate for i in range(len(ids) - 1)):
        return True
    if len(ids) < n - 1:
        return False
    tail = tuple(ids[-(n - 1):]) + (candidate,)
    return any(tuple(ids[i:i + n]) == tail for i in range(len(ids) - n + 1))


FUNCTION_WORDS = frozenset("""a an the and or of in on at to with by from for into onto over under near is are
his her their its while as""".split())


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
    bias: torch.Tensor | None = None,
) -> list[Hypothesis]:
    """Decode one segment (memory (1, M, H)); returns finished hypotheses, best first.
    ``beam_size=1`` is greedy search. ``bias`` (V,), when given, is added to the logits: words the
    window's evidence makes likelier than the decoder alone thinks."""
    h, c = decoder.init_state(memory, mask, torch.tensor([style]))
    beams = [(Hypothesis([], 0.0), h, c)]
    finished: list[Hypothesis] = []
    eos, bos = EOS_ID, BOS_ID
    function_words = frozenset(vocab.stoi[w] for w in FUNCTION_WORDS if w in vocab.stoi)
    colour_words = frozenset(vocab.stoi[w] for w in COLOUR_WORDS if w in vocab.stoi)
    for step in range(max_len):
        k = len(beams)
        words = torch.tensor([b[0].ids[-1] if b[0].ids else bos for b in beams])
        hs, cs = torch.cat([b[1] for b in beams]), torch.cat([b[2] for b in beams])
        logits, hs, cs, _ = decoder.step(words, hs, cs, memory.expand(k, -1, -1), memory_proj.expand(k, -1, -1),
                                         mask.expand(k, -1))
        if bias is not None:
            logits = logits + bias
        logp = torch.log_softmax(logits.masked_fill(banned, -1e9), dim=-1)
        if step == 0:
            logp[:, eos] = -1e9  # no empty captions
        candidates = []
        for b, (hyp, _, _) in enumerate(beams):
            top = torch.topk(logp[b], beam_size * 2 + 2)
            for lp, word in zip(top.values.tolist(), top.indices.tolist()):
                if lp < -1e8 or (word != eos and _blocks_repeat(hyp.ids, word, function_words,
                                                                    once_words=colour_words)):
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


# ---- scene phrases in video captions ---------------------------------------------------------------

# words that open a phrase which can be left out whole: "in a red shirt", "on the beach",
# "in front of a building", "wearing a hat", "with a dog in the grass"
PHRASE_OPENERS = frozenset("""in on at down through near by into onto over under across along around behind beside
past toward towards with wearing holding from of up off inside outside""".split())
PLACE_WORDS = frozenset("front top side middle edge back bottom center centre end corner".split())
MODIFIERS = frozenset("""a an the his her their its some two three four several many other another small large
big little tall young old black white red blue green yellow orange pink purple brown gray grey dark light
striped colorful bright long short and wooden snowy grassy sandy rocky busy city""".split())


def strip_scene_phrases(tokens: list[str], scene_words: set[str]) -> list[str] | None:
    """``tokens`` with every phrase that ends in a scene word left out ("a person in a blue shirt is
    standing in front of a building" -> "a person is standing"); None when a scene word is not in
    such a phrase (then the caption cannot be saved by cutting)."""
    out = list(tokens)
    i = len(out) - 1
    while i >= 0:
        if out[i] not in scene_words:
            i -= 1
            continue
        j = i - 1
        while j >= 0 and (out[j] in MODIFIERS or out[j] in scene_words):
            j -= 1
        if j < 0 or out[j] not in PHRASE_OPENERS:
            return None
        while j >= 2 and out[j - 1] in PLACE_WORDS and out[j - 2] in PHRASE_OPENERS:  # "in front of"
            j -= 2
        del out[j:i + 1]
        i = j - 1
    return out


def join_repeated_nouns(tokens: list[str], word_class: dict[str, int]) -> list[str]:
    """"a person and person are sitting" -> "two people are sitting": what the decoder learned from
    captions whose "a man and a woman" became neutral words; "a dog and a dog" likewise."""
    out = list(tokens)
    for i in range(len(out) - 3):
        if out[i] not in ("a", "an") or out[i + 1] not in word_class or out[i + 2] != "and":
            continue
        k = i + 4 if out[i + 3] in ("a", "an") else i + 3
        name = COCO_CLASSES[word_class[out[i + 1]]]
        if k < len(out) and out[k] == out[i + 1] == class_word(name):
            return out[:i] + ["two", class_word(name, 2)] + join_repeated_nouns(out[k + 1:], word_class)
    return out


# ---- captions that name their subject -----------------------------------------------------------

QUANTITY_NOUNS = frozenset("group crowd couple pair team family herd flock line bunch pack".split())
LINKING_VERBS = frozenset("is are was were".split())
SUPPORT_VERBS = frozenset("""sit sits sitting sat stand stands standing stood lie lies lying laying lay ride rides
riding rode jump jumps jumping climb climbs climbing""".split())


# Posture words: not said of a video window in which the people or animals named mostly walk
# (``events.mostly_walking``): "a person is sitting" of someone walking out.
STILL_VERBS = frozenset("""sit sits sitting sat seated stand stands standing stood lie lies lying laying lay pose
poses posing sleep sleeps sleeping""".split())
# ... and in such a window these are made likelier (``GAIT_BONUS`` nats): without it the decoder
# picks whatever verb is next ("a person is driving a car" of a man walking past one).
GAIT_VERBS = frozenset("walk walks walking run runs running".split())
GAIT_BONUS = 2.0
NOT_WALKED_WITH = frozenset({"car", "bus", "truck", "train", "airplane", "boat"})  # "walking with a car"
RIDE_VERBS = frozenset("ride rides riding rode".split())  # "riding a car": one rides in a car, or drives it
# A race is an event no detector output shows: every real-clip window captioned with these words
# was ordinary traffic or horses running free ("two cars are racing" on a highway). Not said of
# video windows; photos keep them (their human captions say "a dog races", and there is one frame).
RACE_WORDS = frozenset("race races racing raced racer racers".split())


DRIVE_VERBS = frozenset("drive drives driving drove".split())
ON_OR_IN_SHARE = 0.3  # of the smaller box inside the other: a board under the feet, a rider on a horse, a driver in a car


def rides_what_it_touches(tokens: list[str], word_class: dict[str, int],
                          frames_boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """False when the sentence says its subject rides or drives a thing ("a person is driving a
    car", "a person is riding a motorcycle") but no box of the subject's class ever overlaps a
    box of that thing by ``ON_OR_IN_SHARE`` of the smaller one: the person the detector saw walks
    past the car. ``frames_boxes``: per frame (box_xyxy (n, 4), class_id (n,)). True when the
    sentence says no such thing, names no subject, or no frame has boxes of both (nothing to
    check: e.g. inputs without boxes)."""
    verb = next((i for i, t in enumerate(tokens) if t in RIDE_VERBS or t in DRIVE_VERBS), None)
    if verb is None:
        return True
    subject = next((word_class[t] for t in reversed(tokens[:verb]) if t in word_class), None)
    ridden = next((word_class[t] for t in tokens[verb + 1:verb + 5] if t in word_class), None)
    if subject is None or ridden is None or subject == ridden:
        return True
    seen_together = False
    for boxes, classes in frames_boxes:
        riders, things = boxes[classes == subject], boxes[classes == ridden]
        if len(riders) == 0 or len(things) == 0:
            continue
        seen_together = True
        inter, rider_area, thing_area = box_overlaps(riders, things)
        smaller = np.maximum(np.minimum(rider_area[:, None], thing_area[None, :]), 1e-6)
        if (inter / smaller >= ON_OR_IN_SHARE).any():
            return True
    return not seen_together


def misplaces_an_object(tokens: list[str], word_class: dict[str, int]) -> bool:
    """True when the sentence pairs a real object with a phrase that is not true of it:
    - a hand-sized object (``coco.HANDHELD_CLASSES``) is sat, stood, lain, ridden, jumped or
      climbed on ("a person is sitting on a television");
    - someone walks or runs on or in any object, or with a vehicle ("walking on a table",
      "walk in a race car", "walking with a car");
    - someone rides a car ("riding a car": one rides in it, or drives it);
    - a thing sits, stands or lies ("two cars are standing");
    - a hand-sized object acts ("a bowl is preparing", "a tv is watching tv")."""
    def handheld(word: str) -> bool:
        cls = word_class.get(word)
        return cls is not None and COCO_CLASSES[cls] in HANDHELD_CLASSES

    for i, token in enumerate(tokens):
        if token in SUPPORT_VERBS:  # the next noun within a few words is what the action rests on
            for word in tokens[i + 1:i + 6]:
                if word in word_class:
                    if handheld(word):
                        return True
                    break
        if token in GAIT_VERBS and tokens[i + 1:i + 2] and tokens[i + 1] in ("on", "in", "into", "onto", "inside", "with"):
            noun = next((word for word in tokens[i + 2:i + 6] if word in word_class), None)
            if noun is not None and (tokens[i + 1] != "with" or COCO_CLASSES[word_class[noun]] in NOT_WALKED_WITH):
                return True
        if token in RIDE_VERBS and tokens[i + 1:i + 2] in (["a"], ["the"]):
            noun = next((word for word in tokens[i + 2:i + 4] if word in word_class), None)
            if noun is not None and COCO_CLASSES[word_class[noun]] == "car":
                return True
    subject = next((t for t in tokens if t in word_class), None)
    if subject is not None:
        after = tokens[tokens.index(subject) + 1:]
        if after[:1] and after[0] in LINKING_VERBS:
            if handheld(subject) and any(t.endswith("ing") for t in after[1:3]):
                return True
            if COCO_CLASSES[word_class[subject]] not in ANIMATE_CLASSES and after[1:2] and after[1] in STILL_VERBS:
                return True  # "two cars are standing": only people and animals sit, stand or lie
    return False


def is_complete(tokens: list[str]) -> bool:
    """False for a sentence cut short ("two cars are"): the decoder ended where the word it
    wanted next may not be said here."""
    return bool(tokens) and tokens[-1] not in FUNCTION_WORDS


def names_its_subject(tokens: list[str], nouns: set[str]) -> bool:
    """False when the first "is"/"are" comes before any noun ("a large black and white spotted is
    running"): what the decoder writes when the noun it wanted may not be said here."""
    for token in tokens:
        if token in nouns or token in QUANTITY_NOUNS:
            return True
        if token in LINKING_VERBS:
            return False
    return True


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def in_view_caption(counts: list[tuple[str, int]]) -> str:
    """A plain sentence of what passed the evidence bar, most salient first, for a window where
    no decoded sentence reads true: [("tv", 1)] -> "a television is in view"; [("person", 2), ("dog", 1)]
    -> "two people and a dog are in view"."""
    parts = [(_article(class_word(name)) if n <= 1 else f"{_NUMBER_WORDS.get(n, 'several')} {class_word(name, n)}")
             for name, n in counts[:2]]
    plural = len(parts) > 1 or (counts and counts[0][1] > 1)
    return f"{' and '.join(parts)} {'are' if plural else 'is'} in view"


# ---- what happens next ------------------------------------------------------------------------

def _likelihood_words(p: float) -> str:
    if p >= 0.85:
        return "will"
    if p >= 0.6:
        return "will probably"
    if p >= 0.4:
        return "may"
    return "might"


MIN_FORECAST_PROBABILITY = 0.3  # below this a forecast is noise, not information: not listed
# Kinds whose sentences came true far less often than they claimed (model card, forecast
# reliability): "might leave (0.33)" 24 % of the time on the training clips, 10 % on held-out
# ones; "a person will probably appear" of someone who just walked out, 15-33 % held-out at any
# probability below 0.85. Those are listed only from these probabilities on.
MIN_LEAVE_PROBABILITY = 0.4
MIN_APPEAR_PROBABILITY = 0.85
MIN_MOVE_PROBABILITY = 0.4


def forecast_events(
    presence: list[float], enter: list[float], leave: list[float], direction_probs: list[float],
    present_now: dict[int, int], leave_side: dict[int, str], moving: tuple[int, str] | None,
    horizon_sec: float, evidenced: set[int], max_events: int = 3,
) -> list[NextEvent]:
    """Turn next-event probabilities into sentences, most informative first.

    present_now: class id -> count visible now (only classes that pass the evidence bar);
    evidenced: classes that passed the bar anywhere in the recent history - the only ones a
    forecast may name; leave_side: class id -> the edge its tracks are heading to (from their
    current motion); moving: (class id, direction) of what moves now, measured on its tracks
    (None when nothing that can move does): "keeps moving" only that way, with the head's
    probability of that direction. Events below ``MIN_FORECAST_PROBABILITY`` (or their kind's
    higher floor) are not listed.
    """
    changes: list[NextEvent] = []
    steady: list[NextEvent] = []
    floor = MIN_FORECAST_PROBABILITY
    leaving = set()
    for c in present_now:
        p_leave = leave[c]
        if p_leave >= max(floor, MIN_LEAVE_PROBABILITY):
            leaving.add(c)
            side = leave_side.get(c)
            # a leave is any one of them leaving: "the cars will leave" would say all of them do
            noun = "the " + class_word(COCO_CLASSES[c]) if present_now[c] == 1 else \
                "one of the " + class_word(COCO_CLASSES[c], present_now[c])
            where = f" on the {side}" if side in ("left", "right") else (" at the top" if side == "top" else
                                                                         " at the bottom" if side == "bottom" else "")
            verb = "leave the view" if not where else "leave"
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_leave)} {verb}{where} ({p_leave:.2f})",
                                     round(p_leave, 4), "leave", COCO_CLASSES[c], side=side, horizon_sec=horizon_sec))
    for c in sorted(evidenced):
        p_enter = enter[c]
        if p_enter >= floor:
            noun = "another " + class_word(COCO_CLASSES[c]) if c in present_now else _article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_enter)} enter ({p_enter:.2f})",
                                     round(p_enter, 4), "enter", COCO_CLASSES[c], horizon_sec=horizon_sec))
        p = presence[c]
        if c not in present_now and p >= max(floor, MIN_APPEAR_PROBABILITY):
            noun = _article(class_word(COCO_CLASSES[c]))
            changes.append(NextEvent(f"{noun} {_likelihood_words(p)} appear ({p:.2f})", round(p, 4), "appear",
                                     COCO_CLASSES[c], horizon_sec=horizon_sec))
        elif c in present_now and not (present_now[c] == 1 and c in leaving):  # (staying = not leaving, turned round)
            if present_now[c] == 1:  # that one stays: it is there then, and does not leave first
                p = p * (1.0 - leave[c])
                text = f"the {class_word(COCO_CLASSES[c])} {_likelihood_words(p)} stay in view ({p:.2f})"
            else:  # of several, some are still there (a class's presence, which the head predicts)
                text = f"{class_word(COCO_CLASSES[c], present_now[c])} {_likelihood_words(p)} still be in view ({p:.2f})"
            if p >= floor:
                steady.append(NextEvent(text, round(p, 4), "stay", COCO_CLASSES[c], horizon_sec=horizon_sec))
    if moving is not None and moving[0] in present_now and COCO_CLASSES[moving[0]] not in STATIC_CLASSES:
        moving_class, name = moving
        p_dir = direction_probs[DIRECTIONS.index(name)]
        if p_dir >= max(floor, MIN_MOVE_PROBABILITY):
            phrase = "toward the camera" if name == "toward" else "away from the camera" if name == "away" else f"to the {name}"
            noun = "the " + class_word(COCO_CLASSES[moving_class], present_now[moving_class])
            changes.append(NextEvent(f"{noun} {_likelihood_words(p_dir)} keep moving {phrase} ({p_dir:.2f})", round(p_dir, 4),
                                     "move", COCO_CLASSES[moving_class], direction=name, horizon_sec=horizon_sec))
    changes.sort(key=lambda e: -e.probability)
    steady.sort(key=lambda e: -e.probability)
    confident_changes = [e for e in changes if e.probability >= 0.5]
    rest = [e for e in changes if e.probability < 0.5]
    return (confident_changes + steady + rest)[:max_events]


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
