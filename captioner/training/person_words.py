"""Neutral person words in training captions: the decoder is not taught to guess what it cannot see.

Human captions say "a man", "a little girl", "his" for nearly every person. Our perception gives
the decoder a detector's view of a person (box, class, pooled appearance). Measured on Flickr8k
dev: a classifier on exactly those features tells a man from a woman no better than always
saying "man" (0.62-0.64 accuracy against a 0.64 majority), the stop-15 decoder said a gender in
55 % of dev captions and 38 % of those claims had no support in any of the 5 references; trained
with gender removed, it then said "child" in 20 % of captions and 36 % of those had no support
(53 % of its person captions have a child word in some reference: barely better than chance).
A guessed gender or age is a false caption as surely as a guessed phone. So every training
sentence is rewritten with neutral person words before the vocabulary is built: the decoder
learns "a person in a red shirt", "people", "their", and, never having seen the gendered or
age words, cannot say them. ``captioner eval`` reports gender and age claims (``person_claims``).
"""

from __future__ import annotations

from typing import Sequence

# one word -> its neutral replacement (possibly several words); "" drops the word
NEUTRAL_WORDS: dict[str, str] = {
    **dict.fromkeys("man woman guy lady gentleman dude gal lad businessman businesswoman cowgirl".split(), "person"),
    **dict.fromkeys("men women guys ladies gentlemen dudes gals lads businessmen businesswomen cowgirls".split(), "people"),
    **dict.fromkeys("""boy girl child kid baby toddler infant teen teenager youngster youth adult
                       newborn""".split(), "person"),
    **dict.fromkeys("""boys girls children kids babies toddlers infants teens teenagers youngsters
                       adults""".split(), "people"),
    **dict.fromkeys("mother mom mum mommy mummy father dad daddy".split(), "parent"),
    **dict.fromkeys("mothers moms mums fathers dads".split(), "parents"),
    **dict.fromkeys("grandmother grandma granny grandfather grandpa".split(), "grandparent"),
    **dict.fromkeys("son daughter".split(), "family member"),
    **dict.fromkeys("sons daughters".split(), "family members"),
    **dict.fromkeys("brother sister".split(), "sibling"),
    **dict.fromkeys("brothers sisters".split(), "siblings"),
    **dict.fromkeys("wife husband boyfriend girlfriend bride groom".split(), "partner"),
    **dict.fromkeys("king queen prince princess".split(), "person"),
    "policeman": "police officer", "policewoman": "police officer", "policemen": "police officers",
    "fireman": "firefighter", "firemen": "firefighters", "fisherman": "person fishing", "fishermen": "people fishing",
    "cameraman": "camera operator", "cameramen": "camera operators", "spokesman": "spokesperson",
    "sportsman": "athlete", "sportsmen": "athletes", "chairman": "person",
    "actress": "actor", "actresses": "actors", "waitress": "server", "waiter": "server", "waitresses": "servers",
    "waiters": "servers",
    "he": "the person", "she": "the person", "him": "them", "his": "their", "hers": "theirs",
    "himself": "themselves", "herself": "themselves",
    "male": "", "female": "",  # "a female singer" -> "a singer"
}
# age adjectives right before a person word go with it: "a little girl" -> "a person", not "a little person"
_AGE_ADJECTIVES = frozenset("little young small tiny old older elderly younger baby teenage adult grown".split())
_PERSON_NOUNS = frozenset("person people".split())

# "her" is "their" before what it owns ("her dog") and "them" otherwise ("hugs her", "with her and")
_OBJECT_FOLLOWERS = frozenset("""and or but to in on at with for from while as up down out off back away over into onto
through around near by of is are was were a an the this that then""".split())


def neutral_person_words(tokens: Sequence[str]) -> list[str]:
    """``tokens`` with gendered and age-marked person words replaced by neutral ones:
    "a young girl in a red shirt hugs her dog" -> "a person in a red shirt hugs their dog"."""
    out: list[str] = []
    for i, word in enumerate(tokens):
        if word == "her":
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            out.append("them" if following is None or following in _OBJECT_FOLLOWERS else "their")
            continue
        replacement = NEUTRAL_WORDS.get(word)
        if replacement is None:
            out.append(word)
            continue
        words = replacement.split()
        if words and words[0] in _PERSON_NOUNS:
            while out and out[-1] in _AGE_ADJECTIVES:  # "a little girl" -> "a person"
                out.pop()
            if out and out[-1] in ("a", "an"):  # "an old man" -> "a person"
                out[-1] = "an" if words[0][0] in "aeiou" else "a"
        out.extend(words)
    return out


REWRITTEN_WORDS = frozenset(NEUTRAL_WORDS) | {"her"}  # no training sentence keeps one of these

# what a caption claims about a person, for ``person_claims`` (the eval's check of those claims)
MALE_WORDS = frozenset("""man men boy boys guy guys gentleman gentlemen he him his himself son sons father dad
brother husband boyfriend king prince policeman fireman fisherman cameraman""".split())
FEMALE_WORDS = frozenset("""woman women girl girls lady ladies she her hers herself daughter daughters mother mom
sister wife girlfriend bride queen princess actress waitress""".split())
CHILD_WORDS = frozenset("""child children kid kids boy boys girl girls baby babies toddler toddlers infant son
daughter youngster""".split())
ADULT_WORDS = frozenset("man men woman women guy guys lady ladies gentleman gentlemen adult adults".split())


def person_claims(captions: dict[str, list[str]], references: dict[str, list[list[str]]]) -> dict[str, float]:
    """How often a caption's gender and age words are unsupported: a claim is wrong when none of
    the item's human references uses a word of the same kind (a caption's "man" where the five
    references say "a girl", "a child", "a young girl"...). Tokenised captions and references."""
    said = dict.fromkeys(("gender", "age"), 0)
    wrong = dict.fromkeys(("gender", "age"), 0)
    for key, tokens in captions.items():
        words = set(tokens)
        refs = [set(r) for r in references[key]]
        for kind, groups in (("gender", (MALE_WORDS, FEMALE_WORDS)), ("age", (CHILD_WORDS, ADULT_WORDS))):
            claimed = [g for g in groups if words & g]
            if not claimed:
                continue
            said[kind] += 1
            wrong[kind] += any(not any(r & g for r in refs) for g in claimed)
    n = max(len(captions), 1)
    return {"captions": len(captions), "gender_claims": said["gender"] / n,
            "gender_wrong": wrong["gender"] / max(said["gender"], 1), "age_claims": said["age"] / n,
            "age_wrong": wrong["age"] / max(said["age"], 1)}
