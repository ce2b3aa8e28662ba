"""Training captions lose the gender and age the detector cannot see; the eval checks person claims."""

from captioner.training.person_words import REWRITTEN_WORDS, neutral_person_words, person_claims


def words(sentence: str) -> list[str]:
    return neutral_person_words(sentence.split())


def test_gendered_and_age_words_become_neutral():
    assert words("a man in a red shirt hugs his daughter") == "a person in a red shirt hugs their family member".split()
    assert words("two women and a boy walk their dog") == "two people and a person walk their dog".split()
    assert words("a little girl and two young boys") == "a person and two people".split()  # no "little person"
    assert words("an old man holds a baby") == "a person holds a person".split()  # the article follows
    assert words("she is talking to him") == "the person is talking to them".split()
    assert words("a policeman and a female singer") == "a police officer and a singer".split()
    assert words("a dog runs on the grass") == "a dog runs on the grass".split()  # nothing to change


def test_her_is_their_before_what_it_owns_and_them_otherwise():
    assert words("a woman holds her dog") == "a person holds their dog".split()
    assert words("a girl hugs her") == "a person hugs them".split()
    assert words("a dog runs to her and jumps") == "a dog runs to them and jumps".split()


def test_no_rewritten_sentence_keeps_a_gendered_or_age_word():
    sentences = ["a man and a woman", "the boys chase the girls", "his mother and her husband",
                 "a cameraman films a waitress", "ladies and gentlemen", "he hugs her brother",
                 "a toddler and two kids", "the children and a teenager"]
    for sentence in sentences:
        assert not set(words(sentence)) & REWRITTEN_WORDS, sentence


def test_person_claims_are_checked_against_every_reference():
    refs = {"a": [s.split() for s in ("a girl plays", "a young girl runs", "a child in a pool", "a kid", "a girl swims")],
            "b": [s.split() for s in ("a man rides a bike", "a person on a bike", "a cyclist", "a guy rides", "a man")]}
    report = person_claims({"a": "a man is swimming".split(), "b": "a man rides a bike".split()}, refs)
    assert report["gender_claims"] == 1.0 and report["gender_wrong"] == 0.5  # "man" for the girl is wrong
    assert report["age_claims"] == 1.0 and report["age_wrong"] == 0.5  # and so is "man" as an adult
    neutral = person_claims({"a": "a child is swimming".split(), "b": "a person rides a bike".split()}, refs)
    assert neutral["gender_claims"] == 0.0 and neutral["gender_wrong"] == 0.0
    assert neutral["age_claims"] == 0.5 and neutral["age_wrong"] == 0.0  # "child" is right; "person" claims nothing
