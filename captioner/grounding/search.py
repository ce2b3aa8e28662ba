"""Rules that act during the search: which words a window may use, and how likely.

A ``WordFilter`` looks at the window once and bans words (``WordOdds.ban``) or makes them
likelier (``WordOdds.boost``); ``search_odds`` runs every filter in ``WORD_FILTERS``. The
``NoRepeats`` rule blocks a next word given a hypothesis's words, at every step; the
``SalientCoverage`` ranker orders the finished hypotheses. The search itself is
``decoding.beam_search``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from ..colours import COLOUR_WORDS, allowed_words, window_colours
from ..decoding import Hypothesis
from ..vocab import Vocabulary
from .evidence import Grounding
from .window import Window
from .verbs import VERB_CLASSES
from .words import FUNCTION_WORDS, RACE_WORDS

SPECIAL_IDS = [0, 1, 3]  # <pad>, <bos>, <unk>: never generated (<eos> ends a sentence)


@dataclass
class WordOdds:
    """What the search may say of one window: banned words, and nats added to some words' logits."""

    banned: torch.Tensor  # (V,) bool
    bias: torch.Tensor | None = None  # (V,) float, None: the decoder's own odds

    def ban(self, ids: list[int]) -> None:
        self.banned[ids] = True

    def boost(self, ids: list[int], nats: float) -> None:
        if self.bias is None:
            self.bias = torch.zeros(len(self.banned))
        self.bias[ids] = nats


class WordFilter(Protocol):
    def apply(self, window: Window, odds: WordOdds) -> None:
        """Ban or boost words of ``odds`` for ``window``."""


class NamedOnlyIfEvidenced:
    """A COCO class may be named only when it passes the evidence bar (``EvidenceBar``); nouns no
    class covers that training could not teach (``Grounding.unseeable``) never; nor special tokens."""

    def apply(self, window: Window, odds: WordOdds) -> None:
        odds.banned |= window.grounding.banned_mask(len(window.vocab), window.present, specials=SPECIAL_IDS)


class ColoursShown:
    """A colour word only when the named objects' boxes show that colour (``colours.py``)."""

    def apply(self, window: Window, odds: WordOdds) -> None:
        shown = allowed_words(window_colours(window.box_colours))
        odds.ban(window.ids(w for w in COLOUR_WORDS if w not in shown))


class NoRaceOnVideo:
    """No race of video (``words.RACE_WORDS``): every real-clip window that said one was traffic."""

    def apply(self, window: Window, odds: WordOdds) -> None:
        if window.is_video:
            odds.ban(window.ids(RACE_WORDS))


class VerbsWithEvidence:
    """Verbs by the window's motion (``grounding.verbs``): a verb class the measured motion
    contradicts is never said ("standing" of someone crossing a street, "driving" of parked cars),
    a supported one of ``VerbEvidence.boosted`` is ``support_bonus`` nats likelier (without it the
    decoder picks whatever verb is next). Photos and frames without a size: no motion, nothing judged."""

    def apply(self, window: Window, odds: WordOdds) -> None:
        for name, support in window.verb_support.items():
            if support.verdict == "contradicted":
                odds.ban(window.ids(VERB_CLASSES[name]))
            elif support.verdict == "supported" and name in window.verbs.boosted:
                odds.boost(window.ids(VERB_CLASSES[name]), window.verbs.support_bonus)


WORD_FILTERS: list[WordFilter] = [NamedOnlyIfEvidenced(), ColoursShown(), NoRaceOnVideo(), VerbsWithEvidence()]


def search_odds(window: Window) -> WordOdds:
    """Every filter of ``WORD_FILTERS`` applied to ``window``."""
    odds = WordOdds(torch.zeros(len(window.vocab), dtype=torch.bool))
    for word_filter in WORD_FILTERS:
        word_filter.apply(window, odds)
    return odds


# ---- at every step ------------------------------------------------------------------------------

def blocks_repeat(ids: list[int], candidate: int, function_words: frozenset[int] = frozenset(), n: int = 3,
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


def no_repeats(vocab: Vocabulary) -> Callable[[list[int], int], bool]:
    """``blocks(ids, candidate)`` for the search: ``blocks_repeat`` with this vocabulary's
    function words and colour words (each colour at most once)."""
    function_words = frozenset(vocab.stoi[w] for w in FUNCTION_WORDS if w in vocab.stoi)
    colour_words = frozenset(vocab.stoi[w] for w in COLOUR_WORDS if w in vocab.stoi)
    return lambda ids, candidate: blocks_repeat(ids, candidate, function_words, once_words=colour_words)


# ---- ranking the finished hypotheses ------------------------------------------------------------

@dataclass
class SalientCoverage:
    """Hypotheses ranked by length-normalised log-probability plus ``coverage_weight`` times the
    share of the window's salient objects they name, plus ``concept_weight`` times the log-odds the
    concept head gives each word it scores that they say (``concept_probability``: vocabulary id ->
    its probability on this picture, scene nouns and ranked lemmas; empty where no head scores the
    window: video)."""

    grounding: Grounding  # which words name which class
    salient: list[int]
    # both chosen on one half of Flickr8k dev (length 0.7-1.2, weight 0.025-0.2 tried), measured on the other:
    # "in the snow" of a lawn loses to "in the grass", "jumping over a hurdle" of a dog in a field to "running"
    length_alpha: float = 1.0
    coverage_weight: float = 1.0
    concept_probability: dict[int, float] = field(default_factory=dict)
    concept_weight: float = 0.05

    def rank(self, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        target = set(self.salient)
        for hyp in hypotheses:
            hyp.named = self.grounding.named_classes(hyp.ids)
            coverage = len(hyp.named & target) / len(target) if target else 0.0
            scored = [self.concept_probability[i] for i in set(hyp.ids) if i in self.concept_probability]
            hyp.score = (hyp.logprob / (len(hyp.ids) + 1) ** self.length_alpha + self.coverage_weight * coverage
                         + self.concept_weight * sum(_log_odds(p) for p in scored))
        return sorted(hypotheses, key=lambda x: -x.score)


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-4), 1.0 - 1e-4)
    return math.log(p / (1.0 - p))
