"""A WordNet noun lexicon: which words of a caption name objects, and which COCO class each is.

``mentioned_objects`` finds the object nouns of a tokenised sentence and maps each to a COCO
class, or to ``None`` when it names a physical thing the COCO detector cannot see (a guitar, a
shirt, a road, water, an onion). ``pairs.text_training_pairs`` uses it to keep sentences whose
objects the detector can see; evaluation uses it to find object mentions in captions.

How a word is judged (``NounLexicon.info``, cached per word), first match wins:

1. ``coco.NOUN_TO_CLASS`` (the word or its singular) -> that class.
2. Hand lists, each checked against the real corpora: function words (WordNet has "he" =
   helium, "at" = astatine); words that are never objects *in* a caption - the recording and
   positions ("video", "camera", "screen", "side", "front", "ground", "air", "game", "time") -
   and body words ("hair", "fur", "beard": part of the box the detector draws) -> neutral;
   concrete words whose most frequent WordNet sense is abstract ("stage" = a period,
   "snow" = precipitation, "yard" = a length) -> unseeable.
3. WordNet noun senses, weighted by tagged frequency (``Lemma.count()``) with sense order as
   tie-breaker. A sense is
     - a person (under ``person.n.01``: "magician", "referee") -> ``person``, and under an
       animal / vehicle / ball anchor ("poodle" -> dog, "limousine" -> car) -> that class;
       such a class must win on tagged counts (or, for untagged words, hold the first sense
       and most concrete senses), because WordNet has rare person senses for "tiger",
       "shrimp", "stroller"...;
     - a body part -> neutral;
     - physical: under ``object.n.01`` (artifacts, organisms, natural objects, places and
       landforms: "road", "room", "field", "beach"), ``matter.n.03`` (substances, food:
       "water", "onion", "flour"), ``body_of_water.n.01`` or ``part.n.03`` -> unseeable;
       senses that are also events ("movie") or art forms ("dance") are not;
     - anything else (acts, events, attributes, communication, measures) -> neutral.
   The roots are deliberately not ``physical_entity.n.01``, which also holds processes
   ("wind") and causal agents. An untagged word with any concrete sense ("lettuce",
   "javelin") counts as concrete: caption words name things.

Context (``mentioned_objects``) then decides whether a word is used as a noun, without a POS
tagger (none ships without data): after a determiner (also across adjectives: "the moving
train") or a preposition it is a noun; after an auxiliary, "to", a subject pronoun, or a
subject noun ("a dog barks", "people exit") a verb-capable word is a verb; otherwise it is a
noun when its WordNet noun senses are at least as frequent as its verb/adjective/adverb
senses ("walking", "plays", "red" are not). A singular noun right before another noun is a
modifier ("dog food", "tennis player", "water bottle"): the head noun names the object.
Two-word nouns are looked up first ("stop sign", "hot dog"; WordNet's "living room",
"table tennis").

WordNet is needed only to *build* pairs and word lists; ``unseeable_nouns`` and
``object_noun_classes`` are stored in the checkpoint so inference needs no NLTK data. When
WordNet is missing those functions raise ``CaptionerError`` saying to set ``NLTK_DATA``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Sequence

from ..coco import NOUN_TO_CLASS
from ..errors import CaptionerError

log = logging.getLogger(__name__)

NLTK_DATA_ENV = "NLTK_DATA"

# --------------------------------------------------------------------------- WordNet


def _ensure_nltk_path() -> None:
    """NLTK reads NLTK_DATA only when it is first imported; honour a value set later (tests)."""
    import nltk

    for entry in os.environ.get(NLTK_DATA_ENV, "").split(os.pathsep):
        if entry and entry not in nltk.data.path:
            nltk.data.path.insert(0, entry)


@lru_cache(maxsize=1)
def _load_wordnet() -> Any:
    _ensure_nltk_path()
    try:
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
        return wn
    except (LookupError, OSError) as exc:
        raise CaptionerError(
            "NLTK's WordNet data was not found; it is needed to ground caption corpora. Set "
            f"{NLTK_DATA_ENV} to a folder holding corpora/wordnet.zip (e.g. ../shared/data/nltk_data)"
        ) from exc


def wordnet_available() -> bool:
    """True when WordNet can be loaded (used to skip tests and to choose code paths)."""
    try:
        _load_wordnet()
        return True
    except CaptionerError:
        _load_wordnet.cache_clear()  # let a later NLTK_DATA fix take effect
        return False


# --------------------------------------------------------------------------- noun lexicon

# Synsets whose hyponyms name a COCO class. Only animals, vehicles and balls: their hyponyms are
# kinds of the same visible thing ("poodle", "limousine"). Furniture/kitchenware hyponyms are
# left out on purpose: WordNet puts "counter" under table and "wheelchair" under chair.
_ANCHORS: dict[str, str] = {
    "person.n.01": "person",
    "dog.n.01": "dog", "domestic_cat.n.01": "cat", "horse.n.01": "horse", "bird.n.01": "bird",
    "cattle.n.01": "cow", "sheep.n.01": "sheep", "bear.n.01": "bear", "elephant.n.01": "elephant",
    "zebra.n.01": "zebra", "giraffe.n.01": "giraffe",
    "car.n.01": "car", "bus.n.01": "bus", "truck.n.01": "truck", "motorcycle.n.01": "motorcycle",
    "bicycle.n.01": "bicycle", "airplane.n.01": "airplane", "train.n.01": "train", "boat.n.01": "boat",
    "ball.n.01": "sports ball",
}
_PHYSICAL_ROOTS = ("object.n.01", "matter.n.03", "body_of_water.n.01", "part.n.03")
_NEUTRAL_ROOTS = ("body_part.n.01",)
# Senses WordNet also files under artifact (via creation/art, or "computer") that are not
# things in a scene: a movie is an event too, a dance an art form, a web site a service.
_ABSTRACT_FIRST = ("event.n.01", "dance.n.01", "web_site.n.01")
_FOOD_ROOTS = ("food.n.01", "food.n.02", "foodstuff.n.02")

# Never an object in a caption: the recording itself, positions and directions, generic
# "thing" words, and the ground/air that every scene has. WordNet files several of these under
# object.n.01 (location senses of "side", "front", "place"; "video recording" artifacts).
_NEVER_OBJECTS = frozenset("""
video videos clip clips footage film camera cameras lens shot shots frame frames picture pictures
image images photo photos screenshot view views scene scenes title titles logo logos intro outro credits
text words word caption subtitles slideshow montage
side sides front back top bottom end ends middle center centre left right edge edges corner corners
place places area areas spot spots point points position positions direction directions distance
background foreground inside outside surface surfaces part parts piece pieces way ways line lines
space here there somewhere everywhere anywhere nowhere halfway
ground air thing things stuff something anything everything nothing object objects item items
time times game games angle angles upside closeup close-up movie movies website websites
section sections tip tips portion half match matches cricket fencing dance dances round rounds
location locations art arts
""".split())
# Two-word nouns that are about the recording, not in it.
_NEVER_COMPOUNDS = frozenset({"slow motion", "close up", "time lapse", "split screen", "black screen",
                              "camera angle", "music video"})

# Parts of a person or animal (WordNet files some as natural objects, not body parts): they
# belong to the box the detector draws, so naming them claims nothing unseen.
_BODY_WORDS = frozenset("""
body bodies hair hairs hairstyle haircut skin fur beard beards mustache moustache feather feathers
wing wings horn horns mane whiskers nail nails fingernail fingernails tooth teeth
""".split())

# Function words: some have WordNet noun senses ("he" = helium, "at" = astatine, "can", "will").
_FUNCTION_WORDS = frozenset("""
a an the this that these those he she it they we you i me him her us them his hers its their theirs
our ours my mine your yours himself herself itself themselves ourselves yourself myself who whom whose
which what where when why how there here
at in on of to for from by with without about above below under over into onto off up down out
through across along around behind beside between beyond near past toward towards upon within via
and or but nor so yet as than if while because although though until unless then also too very
is are was were be been being am do does did done have has had having will would shall should can
could may might must ought not no yes all any some each every both either neither other another
such only just even still again already always never ever once twice
one two three four five six seven eight nine ten eleven twelve first second third last next
's 're 've 'll 'm 'd n't ok okay longer more most less least much th st nd rd ca wo
""".split())

# Words whose WordNet person/animal sense is rare next to the thing they name in captions
# ("a tiger", "a baby stroller", "a bear cub"): never mapped through an anchor synset.
_NOT_ANCHORED = frozenset("""
tiger tigers whale whales cub cubs skunk bunny bunnies shrimp shrimps hood dummy pacifier rake shaver
coaster washer crane macaroni badger stroller strollers trailer poms mohawk lion lions fox giant shaker
""".split())

# "screen" is a NOUN_TO_CLASS word for tv, but captions mostly mean the video frame ("a logo
# appears on the screen"): never an object mention.
_SCREEN_WORDS = frozenset({"screen", "screens"})

# Places and things the detector cannot see although WordNet's most frequent sense is abstract.
_ALWAYS_UNSEEABLE = frozenset("""
stage stages fire smoke light lights beef pork veal mutton venison steak steaks snow yard yards
board boards beam beams branch branches church churches soil target targets shower showers package
packages painting paintings rake rakes cable cables lid lids arena arenas card cards obstacle obstacles
hurdle hurdles bundle bundles spike spikes bolt bolts swing swings slide slides ramp ramps
""".split())

# Quantities that precede a noun. Group words count as "3 or more".
_NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12, "both": 2, "twin": 2, "twins": 2,
    "a": 1, "an": 1, "another": 1, "single": 1, "lone": 1, "each": 1, "every": 1,
    "several": 3, "many": 3, "multiple": 3, "numerous": 3, "various": 3, "few": 3, "some": 3, "lots": 3,
    "dozens": 5, "hundreds": 5, "thousands": 5, "crowds": 5,
}
# "<word> of <noun>": a quantity, not an object mention of its own.
_QUANTIFIER_NOUNS: dict[str, int] = {
    "couple": 2, "pair": 2, "group": 3, "groups": 3, "bunch": 3, "team": 3, "teams": 3, "herd": 3,
    "flock": 3, "pack": 3, "lot": 3, "lots": 3, "number": 3, "line": 3, "row": 3, "family": 3,
    "crowd": 5, "crowds": 5, "audience": 5, "dozen": 12, "dozens": 5, "hundreds": 5, "set": 2,
}
# Person nouns that are groups by themselves.
_COLLECTIVE_COUNTS: dict[str, int] = {
    "crowd": 5, "audience": 5, "spectators": 5, "crowds": 5, "group": 3, "team": 3, "family": 3,
    "band": 3, "couple": 2, "people": 2, "twins": 2,
}
# A word right after these sits in a noun slot ("a building", "the cook").
_DETERMINERS = frozenset("""
a an the this that these those his her their its my your our another some any each every
one two three four five six seven eight nine ten several many few both
""".split())
# A verb-capable word right after these is a verb ("is cooking", "to cook", "can swim").
_VERB_CONTEXT = frozenset("""
is are was were be been being am 's 're 'm to will would can could should must may might
does do did n't not who then and also begins starts continues keeps stops tries
""".split())
# Words that end the backward search for a quantity.
_COUNT_BOUNDARY = frozenset("""
the this that these those his her their its my your our and or with without in on at to from by
for into onto over under near behind while is are was were be being of as than
""".split())
_PREPOSITIONS = frozenset("""
of in on at from by with without into onto over under near behind beside across through along around
inside outside toward towards past between among beneath above below like
""".split())
_SUBJECT_PRONOUNS = frozenset({"i", "we", "you", "they", "he", "she", "it", "who"})
_PRE_VERB_ADVERBS = frozenset({"both", "all", "then", "also", "still", "now", "finally", "again", "slowly",
                               "quickly", "together", "just", "often", "repeatedly", "carefully"})
# Person words that never add a person to the count when a person noun is named.
_PERSON_PARTS = frozenset({"hand", "hands", "he", "she", "him", "his", "her", "himself", "herself"})
_PRONOUNS_PERSON = frozenset({"he", "she", "him", "his", "her", "himself", "herself"})
_MAX_COUNT = 10


@dataclass(frozen=True)
class MentionedObject:
    """One object noun in a sentence. ``coco_class`` None = a physical thing the detector
    cannot see. ``noun`` may be two words ("stop sign"); ``token_index`` is its first token."""

    token_index: int
    noun: str
    coco_class: str | None
    count: int


@dataclass(frozen=True)
class WordInfo:
    """What the lexicon knows about one word, independent of context."""

    word: str
    lemma: str  # singular noun form ("dogs" -> "dog"); the word itself when not a noun
    plural: bool
    kind: Literal["coco", "unseeable", "neutral", "none"]  # as a noun; "none" = no noun senses
    coco_class: str | None
    noun_dominant: bool  # noun senses are at least as frequent as verb/adjective/adverb senses
    verb_capable: bool
    adj_dominant: bool
    food: bool  # has a food sense (chicken, lamb, turkey)
    noun_score: float = 0.0  # tagged-corpus frequency as a noun / as a verb (see _pos_score)
    verb_score: float = 0.0


def _singular_guesses(word: str) -> list[str]:
    """Candidate singulars of a word WordNet does not know ("bikers" -> "biker")."""
    if len(word) < 4 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return []
    guesses = [word[:-1]]
    if word.endswith("ies"):
        guesses.insert(0, word[:-3] + "y")
    elif word.endswith("es"):
        guesses.append(word[:-2])
    return guesses


def _ing_or_ed(word: str) -> bool:
    return len(word) > 4 and (word.endswith("ing") or word.endswith("ed"))


class NounLexicon:
    """Context-free facts about words (cached per word), built on WordNet."""

    def __init__(self) -> None:
        self.wn = _load_wordnet()
        self._words: dict[str, WordInfo] = {}
        self._synset_cat: dict[str, tuple[str, str | None]] = {}
        self._compounds: dict[tuple[str, str], tuple[str, str | None] | None] = {}

    # -- synsets
    def synset_category(self, synset: Any) -> tuple[str, str | None]:
        """("coco", class) | ("neutral", None) | ("food", None) | ("physical", None) | ("abstract", None)."""
        key = synset.name()
        cached = self._synset_cat.get(key)
        if cached is not None:
            return cached
        ancestors = {s.name() for s in synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}
        ancestors.add(key)
        result: tuple[str, str | None] = ("abstract", None)
        if "person.n.01" in ancestors:  # before the other anchors: "cowboy" is not a cow
            result = ("coco", "person")
        else:
            for anchor, cls in _ANCHORS.items():
                if anchor in ancestors:
                    result = ("coco", cls)
                    break
            else:
                if any(r in ancestors for r in _ABSTRACT_FIRST):
                    result = ("abstract", None)
                elif any(r in ancestors for r in _NEUTRAL_ROOTS):
                    result = ("neutral", None)
                elif any(r in ancestors for r in _FOOD_ROOTS):
                    result = ("food", None)
                elif any(r in ancestors for r in _PHYSICAL_ROOTS):
                    result = ("physical", None)
        self._synset_cat[key] = result
        return result

    def _pos_score(self, word: str, pos: str) -> tuple[float, list[Any], set[str]]:
        """Frequency of ``word`` as ``pos``: tagged-corpus counts of its lemmas, plus a small
        per-sense term so untagged words still count."""
        forms = set(self.wn._morphy(word, pos)) if pos != "s" else set(self.wn._morphy(word, "a"))
        synsets = self.wn.synsets(word, pos=pos)
        score = 0.0
        for s in synsets:
            for lemma in s.lemmas():
                if lemma.name().lower() in forms:
                    score += lemma.count()
        return score + 0.1 * len(synsets), synsets, forms

    def _noun_category(self, synsets: Sequence[Any], forms: set[str], allow_anchor: bool = True,
                       prefer_physical: bool = False) -> tuple[str, str | None]:
        """Category of the word's noun senses, weighted by sense frequency (sense order breaks ties).

        A COCO class reached through a WordNet anchor (not ``NOUN_TO_CLASS``) must be earned:
        WordNet has rare person senses for many animals and things ("tiger", "stroller",
        "shrimp"), so the class needs strictly more tagged uses than every other reading, or -
        for untagged words - the first sense and most of the concrete senses.
        """
        weights: dict[tuple[str, str | None], float] = defaultdict(float)
        counts: dict[tuple[str, str | None], int] = defaultdict(int)
        senses: dict[tuple[str, str | None], int] = defaultdict(int)
        first: tuple[str, str | None] | None = None
        for rank, s in enumerate(x for x in synsets if not x.instance_hypernyms()):  # no proper names
            count = sum(l.count() for l in s.lemmas() if l.name().lower() in forms)
            cat = self.synset_category(s)
            key = ("physical", None) if cat[0] == "food" else cat  # food is physical here
            first = first or key
            weights[key] += count + 1.0 / (rank + 1)
            counts[key] += count
            senses[key] += 1
        if not weights:
            return ("abstract", None)
        if prefer_physical and not any(counts.values()) and ("physical", None) in weights and not any(
                k[0] == "coco" for k in weights):
            # Untagged words ("lettuce", "javelin", "escalator"): sense order alone would let a
            # figurative first sense win; a caption word with a concrete sense means the thing.
            return ("physical", None)
        concrete = sum(n for k, n in senses.items() if k[0] != "abstract")
        for key in sorted(weights, key=lambda k: -weights[k]):
            if key[0] != "coco":
                return key
            others = [c for k, c in counts.items() if k != key]
            if allow_anchor and (
                (counts[key] > 0 and all(counts[key] > c for c in others))
                or (not any(counts.values()) and first == key and senses[key] * 2 > concrete)):
                return key
        return ("abstract", None)

    # -- words
    def info(self, word: str) -> WordInfo:
        cached = self._words.get(word)
        if cached is None:
            cached = self._words[word] = self._analyse(word)
        return cached

    def _analyse(self, word: str) -> WordInfo:
        wn = self.wn
        if not re.fullmatch(r"[a-z][a-z-]*", word) or len(word) == 1:
            return WordInfo(word, word, False, "none", None, False, False, False, False)  # digits, "'s"
        n_score, n_synsets, n_forms = self._pos_score(word, "n")
        v_score, v_synsets, _ = self._pos_score(word, "v")
        a_score = self._pos_score(word, "a")[0]
        r_score = self._pos_score(word, "r")[0]
        # Plural when WordNet knows a different base form ("men" -> "man", "glasses" -> "glass"),
        # even if the plural is a lemma itself ("arms", "glasses").
        forms = wn._morphy(word, "n")
        bases = sorted((f for f in forms if f != word), key=len)
        if not bases:  # WordNet lacks the singular ("bikers" is only a gang there): English rules
            bases = [b for b in _singular_guesses(word) if b in NOUN_TO_CLASS or (not forms and wn._morphy(b, "n"))]
        lemma = bases[0] if bases else word
        plural = bool(bases) or word in {"people", "police", "cattle", "folks"}
        food = any(self.synset_category(s)[0] == "food" for s in n_synsets)
        coco = NOUN_TO_CLASS.get(word) or NOUN_TO_CLASS.get(lemma)
        noun_dom = bool(n_synsets) and n_score >= max(v_score, a_score, r_score)
        common = dict(noun_dominant=noun_dom or coco is not None and not v_synsets and a_score <= n_score,
                      verb_capable=bool(v_synsets), adj_dominant=a_score > max(n_score, v_score), food=food,
                      noun_score=n_score, verb_score=v_score)
        if coco is not None and word not in _SCREEN_WORDS:
            return WordInfo(word, lemma, plural, "coco", coco, **common)
        if word in _FUNCTION_WORDS:
            return WordInfo(word, word, False, "none", None, **{**common, "noun_dominant": False})
        if word in _SCREEN_WORDS or {word, lemma} & (_NEVER_OBJECTS | _BODY_WORDS):
            return WordInfo(word, lemma, plural, "neutral", None, **common)
        if word in _ALWAYS_UNSEEABLE or lemma in _ALWAYS_UNSEEABLE:
            return WordInfo(word, lemma, plural, "unseeable", None, **common)
        if not n_synsets:
            return WordInfo(word, word, False, "none", None, **common)
        allow_anchor = word not in _NOT_ANCHORED and lemma not in _NOT_ANCHORED and not common["adj_dominant"]
        cat, cls = self._noun_category(n_synsets, n_forms | {lemma}, allow_anchor,
                                       prefer_physical=not common["adj_dominant"])
        kind = {"coco": "coco", "physical": "unseeable"}.get(cat, "neutral")
        return WordInfo(word, lemma, plural, kind, cls, **common)  # type: ignore[arg-type]

    def compound(self, first: str, second: str) -> tuple[str, str | None] | None:
        """A two-word noun: ("coco", class) from NOUN_TO_CLASS, or WordNet's category of
        ``first_second`` ("living room" -> physical, "table tennis" -> abstract); else None."""
        key = (first, second)
        if key in self._compounds:
            return self._compounds[key]
        result: tuple[str, str | None] | None = None
        second_lemma = self.info(second).lemma
        for phrase in (f"{first} {second}", f"{first} {second_lemma}"):
            if phrase in _NEVER_COMPOUNDS:
                result = ("abstract", None)
                break
            if phrase in NOUN_TO_CLASS:
                result = ("coco", NOUN_TO_CLASS[phrase])
                break
        else:
            # A COCO head noun wins over WordNet's compound ("black cat", "police car"), and
            # function words never start one.
            if (self.info(second).kind != "coco" and first.isalpha() and second.isalpha()
                    and first not in _FUNCTION_WORDS):
                name = f"{first}_{second_lemma}"
                synsets = [s for s in self.wn.synsets(name, pos="n")
                           if any(l.name().lower() == name for l in s.lemmas())]
                # A compound with a person/animal sense ("big fish" = important person) is left
                # to its words: WordNet's compound senses there are mostly figurative.
                if synsets and not any(self.synset_category(x)[0] == "coco" for x in synsets):
                    cat = self._noun_category(synsets, {name}, allow_anchor=False)
                    result = ("physical", None) if cat[0] == "food" else cat
        self._compounds[key] = result
        return result


@lru_cache(maxsize=1)
def default_lexicon() -> NounLexicon:
    """The process-wide lexicon (WordNet is loaded once; word facts are cached in it)."""
    return NounLexicon()


def _quantity(tokens: Sequence[str], index: int, plural: bool, lemma: str) -> int:
    """How many things the noun at ``index`` names, from the words before it."""
    j = index - 1
    while j >= max(0, index - 4):
        tok = tokens[j]
        if tok == "of" and j >= 1 and tokens[j - 1] in _QUANTIFIER_NOUNS:
            return _QUANTIFIER_NOUNS[tokens[j - 1]] if plural or tokens[j - 1] != "lot" else 1
        if tok.isdigit():
            return max(1, min(int(tok), _MAX_COUNT))
        if tok in _NUMBER_WORDS:
            n = _NUMBER_WORDS[tok]
            if n == 1 and plural:  # "a few", "a lot", "a couple": not one
                break
            if n == 1 and tok in ("a", "an") and (tokens[index] in _COLLECTIVE_COUNTS or lemma in _COLLECTIVE_COUNTS):
                break  # "a crowd", "a team": the group word's own count
            return n if (plural or n == 1) else 1
        if tok in _COUNT_BOUNDARY:
            break
        j -= 1
    collective = _COLLECTIVE_COUNTS.get(tokens[index]) or _COLLECTIVE_COUNTS.get(lemma)
    if collective:
        return collective
    return 2 if plural else 1


def _verbish(info: WordInfo, word: str) -> bool:
    """Could be a verb here: it has verb senses used at least a fifth as often as its noun
    senses, or it looks inflected ("cooking", "parked")."""
    return info.verb_capable and (info.verb_score >= 0.2 * info.noun_score or _ing_or_ed(word))


def _after_subject(lex: NounLexicon, tokens: Sequence[str], j: int) -> bool:
    """``tokens[j]`` follows a subject that wants a verb: a pronoun ("we pan"), a singular noun
    before an -s word ("a dog barks", "the camera pans"), a plural noun before a base form
    ("people exit", "players skate"), or an adverb ("they both stand")."""
    if j < 1:
        return False
    prev_tok = tokens[j - 1]
    if prev_tok in _SUBJECT_PRONOUNS or prev_tok in _PRE_VERB_ADVERBS:
        return True
    prev = lex.info(prev_tok)
    if prev.kind == "none" or not prev.noun_dominant:
        return False
    return prev.plural != tokens[j].endswith("s")


def _in_noun_slot(lex: NounLexicon, tokens: Sequence[str], i: int) -> bool:
    """A determiner or possessive before ``tokens[i]``, possibly across up to two adjectives,
    adverbs or participles ("the moving train", "a very tall building")."""
    j = i - 1
    while j >= 0 and i - j <= 3:
        tok = tokens[j]
        if tok in _DETERMINERS or tok in {"'s", "s"}:
            return True
        info = lex.info(tok)
        adjective_like = info.adj_dominant or _ing_or_ed(tok) or tok in {"very", "really", "pretty"}
        if not adjective_like or info.noun_dominant:
            return False
        j -= 1
    return False


def _is_noun_here(lex: NounLexicon, tokens: Sequence[str], i: int, info: WordInfo) -> bool:
    """Part-of-speech guess for ``tokens[i]`` from its neighbours (no tagger data needed)."""
    tok = tokens[i]
    prev = tokens[i - 1] if i > 0 else ""
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if _in_noun_slot(lex, tokens, i):
        return True  # "a building", "the cook", "the man's bike", "the polar bears"
    if prev in _PREPOSITIONS and not _ing_or_ed(tok) and info.kind != "none":
        return True  # "the side of train", "on horse": after a preposition, not a gerund
    verbish = _verbish(info, tok)
    if verbish and prev in _VERB_CONTEXT:
        return False  # "is cooking", "to plant", "and cook"
    if verbish and _after_subject(lex, tokens, i):
        return False  # "a dog barks", "people exit"
    if info.verb_capable and (i == 0 or prev in {"and", "then"}) and nxt in _DETERMINERS and not info.plural:
        return False  # imperative recipe steps: "cook the onions", "then plant the seeds"
    if info.adj_dominant and prev in {"is", "are", "was", "were", "looks", "very", "so", "too"}:
        return False  # "the sky is orange"
    return info.noun_dominant


def _modifies_next(lex: NounLexicon, tokens: Sequence[str], i: int, info: WordInfo) -> bool:
    """True when ``tokens[i]`` modifies a following noun ("dog food", "tennis player",
    "orange shirt"): the head noun, not the modifier, names the object."""
    if i + 1 >= len(tokens) or info.plural:
        return False  # plural nouns rarely modify; "dogs play" is subject + verb
    nxt_tok = tokens[i + 1]
    nxt = lex.info(nxt_tok)
    if nxt.kind == "none" or not nxt.noun_dominant:
        return False
    # "a dog barks", "a man styles": a singular noun then an -s word that can be a verb is
    # subject + verb in captions far more often than a compound ("car keys").
    return not (nxt.verb_capable and nxt_tok.endswith("s") and not nxt_tok.endswith("ss"))


def mentioned_objects(tokens: Sequence[str], *, culinary: bool = False,
                      lexicon: NounLexicon | None = None) -> list[MentionedObject]:
    """The object nouns of a tokenised sentence, in order, with COCO class (None = unseeable)
    and a count guessed from the words before each ("two dogs" -> 2, "people" -> 2).

    ``culinary`` (recipe corpora): meat words that are also animals ("chicken", "lamb") mean
    the food. Outside recipes a bare singular ("adds chicken") also means the food. A person
    pronoun ("he", "her") counts as one person when no person noun is named.
    """
    lex = lexicon or default_lexicon()
    tokens = list(tokens)
    out: list[MentionedObject] = []
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        # Two-word nouns first: "stop sign", "hot dog", "living room", "table tennis".
        if i + 1 < n:
            comp = lex.compound(tok, tokens[i + 1])
            head = lex.info(tokens[i + 1])
            if comp is not None and not (i + 2 < n and _modifies_next(lex, tokens, i + 1, head)):
                kind, cls = comp
                if kind in ("coco", "physical"):
                    out.append(MentionedObject(i, f"{tok} {head.lemma}", cls,
                                               _quantity(tokens, i, head.plural, head.lemma)))
                i += 2
                continue
        info = lex.info(tok)
        i += 1
        if info.kind in ("none", "neutral") or tok in _QUANTIFIER_NOUNS and i < n and tokens[i] == "of":
            continue
        idx = i - 1
        if not _is_noun_here(lex, tokens, idx, info) or _modifies_next(lex, tokens, idx, info):
            continue
        cls = info.coco_class
        prev = tokens[idx - 1] if idx > 0 else ""
        if info.lemma in _MEAT_ANIMALS and (culinary or (not info.plural and prev not in _DETERMINERS)):
            cls = None  # "chicken", "lamb": meat in a recipe, or without an article ("adds chicken")
        noun = info.lemma
        if cls is not None and not _coco_sense_ok(tokens, idx, info):
            if tok == "orange":
                continue  # the colour
            cls, noun = None, tok  # eyeglasses, the animal mouse: things the detector can't see
        out.append(MentionedObject(idx, noun, cls, _quantity(tokens, idx, info.plural, info.lemma)))
    if not any(m.coco_class == "person" for m in out):
        for idx, tok in enumerate(tokens):
            if tok in _PRONOUNS_PERSON:
                out.append(MentionedObject(idx, tok, "person", 1))
                break
    return out


# Animal words that are also the meat.
_MEAT_ANIMALS = frozenset({"chicken", "turkey", "duck", "lamb", "goose", "hen", "rooster", "calf", "veal",
                           "quail", "pheasant", "rabbit", "fish", "salmon", "tuna", "shrimp", "crab"})


def _coco_sense_ok(tokens: Sequence[str], i: int, info: WordInfo) -> bool:
    """Caption senses of COCO synonyms that are not the COCO object: eyeglasses, the animal
    mouse (COCO's is a computer mouse), the colour orange."""
    tok = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    prev = tokens[i - 1] if i > 0 else ""
    if tok == "glasses":
        return nxt == "of"  # "glasses of wine" vs "a man wearing glasses"
    if info.lemma == "mouse":
        return prev == "computer"
    if tok == "orange":
        return prev in _DETERMINERS or nxt in {"slices", "juice"}
    return True


