"""Stage 6: what may be said. Every rule that decides whether a word, a sentence or a forecast
may be said of a window lives in this package, as small named pieces with one interface each
(in the spirit of whisper's ``LogitFilter`` / ``SequenceRanker``):

- ``search``: ``WordFilter``s act during the search: each bans words for a window or makes them
  likelier (evidence bar, unseeable nouns, colour words, no race on video, verbs by their
  motion evidence), registered in ``WORD_FILTERS``; ``no_repeats`` blocks looping words at every step;
  ``SalientCoverage`` ranks the finished hypotheses.
- ``sentences``: ``SentenceRewrite``s and ``SentenceCheck``s accept or reject a finished
  hypothesis (scene phrases of video, "two people", cut-short sentences, a subject, joined
  colours, misplaced objects, riding what it touches), registered in ``SENTENCE_REWRITES`` /
  ``SENTENCE_CHECKS``.
- ``forecast``: the rules that turn next-event probabilities into sentences.
- ``verbs``: which verbs a window's measured motion supports or contradicts (``VerbEvidence``,
  calibrated by ``captioner train`` / ``captioner calibrate``, stored in the checkpoint).
- ``evidence``: which words name objects (``Grounding``) and when a class may be named
  (``EvidenceBar``, calibrated by ``captioner train`` and stored in the checkpoint).

A new rule is one new class in ``search`` or ``sentences`` plus its test, added to one list.
The search itself is ``decoding.beam_search``; ``windows`` puts model, search and rules together.
"""

from .evidence import EvidenceBar, Grounding
from .forecast import Arrivals, forecast_sentences
from .search import WORD_FILTERS, SalientCoverage, WordOdds, no_repeats, search_odds
from .sentences import SENTENCE_CHECKS, SENTENCE_REWRITES, true_sentence
from .window import TimedDetections, Window

__all__ = ["Arrivals", "EvidenceBar", "Grounding", "SENTENCE_CHECKS", "SENTENCE_REWRITES", "SENTENCE_IDS_NEVER_SAID",
           "SalientCoverage", "TimedDetections", "WORD_FILTERS", "Window", "WordOdds", "forecast_sentences",
           "no_repeats", "search_odds", "true_sentence"]
