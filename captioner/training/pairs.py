"""Caption corpora -> (sentence, pseudo-detection) training pairs for the caption decoder.

``text_training_pairs`` keeps only sentences that name at least one COCO object and *no*
unseeable object, so the decoder learns human phrasing conditioned on what the detector can
see and never learns to name what it cannot. ``synthetic_tokens`` makes the detector-like
input for such a sentence. ``unseeable_nouns`` / ``object_noun_classes`` are the word lists
stored in a checkpoint, so inference needs no WordNet.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..coco import CLASS_INDEX, NOUN_TO_CLASS
from ..tokens import TokenLayout
from ..vocab import tokenize
from .corpora import CaptionRecord
from .lexicon import (_ALWAYS_UNSEEABLE, _MAX_COUNT, _PERSON_PARTS, MentionedObject, NounLexicon, _verbish,
                      default_lexicon, mentioned_objects)
from .person_words import neutral_person_words

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- training pairs


@dataclass
class TextPair:
    """A caption and the detector-visible objects it names: ``classes`` = COCO class -> count."""

    tokens: list[str]
    classes: dict[str, int]
    source: str
    video_id: str


@dataclass
class CorpusStats:
    """What ``text_training_pairs`` kept and why it rejected the rest (for the model card)."""

    records: Counter = field(default_factory=Counter)  # source -> sentences read
    kept: Counter = field(default_factory=Counter)  # source -> pairs kept
    rejected_unseeable: Counter = field(default_factory=Counter)  # names an object the detector can't see
    rejected_no_object: Counter = field(default_factory=Counter)  # names no COCO object
    rejected_length: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)  # same sentence again for the same video
    rejected_nouns: Counter = field(default_factory=Counter)  # unseeable noun -> sentences it rejected
    kept_classes: Counter = field(default_factory=Counter)  # COCO class -> kept sentences naming it
    seconds: float = 0.0

    def to_dict(self, top: int = 50) -> dict[str, Any]:
        """JSON-able summary (top ``top`` nouns/classes)."""
        return {
            "records": dict(self.records), "kept": dict(self.kept),
            "rejected_unseeable": dict(self.rejected_unseeable),
            "rejected_no_object": dict(self.rejected_no_object),
            "rejected_length": dict(self.rejected_length), "duplicates": dict(self.duplicates),
            "top_rejected_nouns": self.rejected_nouns.most_common(top),
            "top_kept_classes": self.kept_classes.most_common(top),
            "seconds": round(self.seconds, 2),
        }


def text_training_pairs(
    records: Iterable[CaptionRecord], seed: int = 0, *, min_tokens: int = 3, max_tokens: int = 30,
    lexicon: NounLexicon | None = None,
) -> tuple[list[TextPair], CorpusStats]:
    """Caption sentences -> (tokens, COCO class counts) pairs, shuffled with ``seed``.

    Kept: sentences of ``min_tokens``..``max_tokens`` tokens that name at least one COCO object
    and no unseeable object. Exact repeats of a sentence for the same video are dropped (MSVD
    has many), so common phrasings are not over-weighted.
    """
    lex = lexicon or default_lexicon()
    t0 = time.perf_counter()
    stats = CorpusStats()
    pairs: list[TextPair] = []
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for rec in records:
        stats.records[rec.source] += 1
        tokens = tokenize(rec.sentence)
        if not min_tokens <= len(tokens) <= max_tokens:
            stats.rejected_length[rec.source] += 1
            continue
        key = (rec.source, rec.video_id, tuple(tokens))
        if key in seen:
            stats.duplicates[rec.source] += 1
            continue
        seen.add(key)
        mentions = mentioned_objects(tokens, culinary=rec.source == "youcook2", lexicon=lex)
        unseeable = {m.noun for m in mentions if m.coco_class is None}
        if unseeable:
            stats.rejected_unseeable[rec.source] += 1
            stats.rejected_nouns.update(unseeable)
            continue
        classes = _class_counts(tokens, mentions)
        if not classes:
            stats.rejected_no_object[rec.source] += 1
            continue
        stats.kept[rec.source] += 1
        stats.kept_classes.update(classes.keys())
        pairs.append(TextPair(neutral_person_words(tokens), classes, rec.source, rec.video_id))
    random.Random(seed).shuffle(pairs)
    stats.seconds = time.perf_counter() - t0
    log.info("text pairs: kept %d of %d sentences in %.1f s", len(pairs), sum(stats.records.values()),
             stats.seconds)
    return pairs, stats


def _class_counts(tokens: Sequence[str], mentions: Sequence[MentionedObject]) -> dict[str, int]:
    """COCO class -> count. Different nouns add up ("a man and a woman" -> 2); the same noun
    again is taken to be the same object ("a man ... the man" -> 1) unless "another"/"other"
    precedes it."""
    per_noun: dict[tuple[str, str], int] = {}
    extra: Counter = Counter()
    named_people = any(m.coco_class == "person" and m.noun not in _PERSON_PARTS for m in mentions)
    for m in mentions:
        if m.coco_class is None or (named_people and m.noun in _PERSON_PARTS):
            continue  # "the man's hand", "he ... the man": the same person again
        key = (m.coco_class, m.noun)
        if key in per_noun and m.token_index > 0 and tokens[m.token_index - 1] in {"another", "other"}:
            extra[m.coco_class] += m.count
        per_noun[key] = max(per_noun.get(key, 0), m.count)
    totals: Counter = Counter()
    for (cls, _), count in per_noun.items():
        totals[cls] += count
    totals.update(extra)
    return {cls: min(count, _MAX_COUNT) for cls, count in totals.items()}


# --------------------------------------------------------------------------- vocabulary lists


def unseeable_nouns(vocab_tokens: Iterable[str], lexicon: NounLexicon | None = None) -> list[str]:
    """Vocabulary words that name a physical thing no COCO class covers ("guitar", "road").

    The decoder bans them at inference, so the list is judged out of context and errs toward
    letting words through where banning would cost real phrasing. A word is listed when its
    most frequent noun reading is such a thing and it is used mainly as a noun. Left out:
    words of two-word COCO nouns ("light" of "traffic light", "animal" of "stuffed animal") so
    those stay sayable (match ``object_noun_classes`` phrases first), and -s forms that are
    verbs about as often ("pans", "barks", "exits": "the camera pans").
    """
    lex = lexicon or default_lexicon()
    compound_words = {w for p in NOUN_TO_CLASS if " " in p for w in p.split()}
    out = []
    for word in vocab_tokens:
        info = lex.info(word)
        if info.kind != "unseeable" or word in compound_words:
            continue
        if word in _ALWAYS_UNSEEABLE or (info.noun_dominant and not (word.endswith("s") and _verbish(info, word))):
            out.append(word)
    return sorted(set(out))


def object_noun_classes(vocab_tokens: Iterable[str], lexicon: NounLexicon | None = None) -> dict[str, str]:
    """Vocabulary word -> COCO class, for grounding at decode time ("puppies" -> "dog").

    Two-word COCO nouns whose words are both in the vocabulary are included with a space
    ("stop sign" -> "stop sign"); match them before single words.
    """
    lex = lexicon or default_lexicon()
    words = list(dict.fromkeys(vocab_tokens))
    vocab = set(words)
    out: dict[str, str] = {}
    for word in words:
        info = lex.info(word)
        if info.kind == "coco" and info.coco_class is not None:
            out[word] = info.coco_class
    for phrase, cls in NOUN_TO_CLASS.items():
        parts = phrase.split()
        if len(parts) == 2 and all(p in vocab for p in parts):
            out[phrase] = cls
    return out


# ---- synthetic tokens for caption-corpus pairs (no video) ------------------------------------

def synthetic_tokens(classes: dict[str, int], embedding_dim: int, rng: random.Random, num_frames: int = 8,
                     distractor_pool: list[str] | None = None) -> np.ndarray:
    """Pseudo-detections for a sentence that mentions ``classes`` (name -> count).

    Noise is only *added* (extra low-salience distractor classes, jittered counts/confidence,
    brief drop-outs) and never removes a mentioned class from most frames, so the decoder is
    never taught to name an object the detector did not see.
    """
    layout = TokenLayout(embedding_dim)
    tokens = np.zeros((num_frames, layout.dim), np.float32)  # visual part zero, flag 0
    for name, count in classes.items():
        c = CLASS_INDEX[name]
        conf = rng.uniform(0.45, 0.95)
        area = rng.uniform(0.03, 0.35) if name == "person" else rng.uniform(0.01, 0.25)
        drop = rng.uniform(0.0, 0.2)
        for t in range(num_frames):
            if t > 0 and rng.random() < drop:
                continue  # detector flicker
            n = max(1, count + (rng.choice((-1, 0, 0, 1)) if count > 1 else 0))
            tokens[t, layout.counts.start + c] = math.log1p(n)
            tokens[t, layout.conf.start + c] = float(np.clip(conf + rng.gauss(0, 0.05), 0.25, 1.0))
            tokens[t, layout.area.start + c] = math.sqrt(min(1.0, area * n ** 0.5 * rng.uniform(0.8, 1.2)))
            tokens[t, layout.velocity.start + c] = rng.gauss(0, 0.05)
            tokens[t, layout.growth.start + c] = rng.gauss(0, 0.05)
    pool = [p for p in (distractor_pool or []) if p not in classes]
    for name in rng.sample(pool, k=min(len(pool), rng.choice((0, 0, 1, 1, 2)))):
        c = CLASS_INDEX[name]
        conf = rng.uniform(0.25, 0.5)
        for t in range(num_frames):
            if rng.random() < 0.5:
                tokens[t, layout.counts.start + c] = math.log1p(1)
                tokens[t, layout.conf.start + c] = conf
                tokens[t, layout.area.start + c] = math.sqrt(rng.uniform(0.001, 0.02))
    return tokens
