"""Tokenizer and vocabulary: no NLTK data needed, ids stable, checkpoint-safe storage."""

from __future__ import annotations

import json

import pytest

from captioner.errors import CaptionerError
from captioner.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocabulary, detokenize, tokenize


@pytest.mark.parametrize("sentence, tokens", [
    ("A man is riding a horse.", ["a", "man", "is", "riding", "a", "horse"]),
    ("The Dog's ball!!", ["the", "dog", "'s", "ball"]),
    ("She doesn't stop; they're happy, aren't they?",
     ["she", "does", "n't", "stop", "they", "'re", "happy", "are", "n't", "they"]),
    ("He can't and won't", ["he", "ca", "n't", "and", "wo", "n't"]),
    ("a man in a t-shirt walks (slowly) at 5 o'clock", ["a", "man", "in", "a", "t-shirt", "walks", "slowly", "at",
                                                          "5", "o'clock"]),
    ("the man reaches. then he turns", ["the", "man", "reaches", "then", "he", "turns"]),
    ("girl gives a 'peace sign.' \"no\"", ["girl", "gives", "a", "peace", "sign", "no"]),
    ("1,000 people and 3.5 km", ["1,000", "people", "and", "3.5", "km"]),
    ("the kids' toys \u2014 a man\u2019s hat", ["the", "kids", "toys", "a", "man", "'s", "hat"]),
    ("  ...  ", []),
])
def test_tokenize(sentence: str, tokens: list[str]) -> None:
    assert tokenize(sentence) == tokens


def test_tokenize_needs_no_nltk_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])  # no data anywhere: a regex needs none
    assert tokenize("Two dogs can't swim.") == ["two", "dogs", "ca", "n't", "swim"]


def test_detokenize_glues_clitics() -> None:
    assert detokenize(tokenize("The man's dog doesn't bark")) == "the man's dog doesn't bark"


def build() -> Vocabulary:
    corpus = [["a", "man", "rides", "a", "horse"], ["a", "dog", "runs"], ["a", "man", "'s", "dog", "runs"]]
    return Vocabulary.build(corpus, min_count=2)


def test_build_orders_by_count_then_alphabet() -> None:
    vocab = build()
    assert vocab.itos[:4] == list(SPECIALS) and (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    # a:4, then dog/man/runs:2 alphabetically; singletons ('s, horse, rides) dropped
    assert vocab.itos[4:] == ["a", "dog", "man", "runs"]
    assert vocab.counts[4:] == [4, 2, 2, 2]
    assert len(vocab) == 8 and "dog" in vocab and "horse" not in vocab


def test_build_max_size_counts_specials() -> None:
    vocab = Vocabulary.build([["x", "x", "y", "z"]], min_count=1, max_size=6)
    assert len(vocab) == 6 and vocab.itos[4:] == ["x", "y"]
    with pytest.raises(CaptionerError):
        Vocabulary.build([["x"]], max_size=3)
    with pytest.raises(CaptionerError):
        Vocabulary.build([["x"]], min_count=0)


def test_build_ignores_special_tokens_in_corpus() -> None:
    vocab = Vocabulary.build([["<eos>", "<unk>", "cat"]] * 3, min_count=1)
    assert vocab.itos == [*SPECIALS, "cat"]


def test_encode_decode_round_trip() -> None:
    vocab = build()
    ids = vocab.encode(["a", "man", "rides", "a", "dog"])
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert ids[3] == UNK_ID  # "rides" was below min_count
    assert vocab.encode(["dog"], add_bos_eos=False) == [vocab.token_to_id("dog")]
    assert vocab.decode(ids) == "a man a dog"  # <unk> and <bos>/<eos> skipped
    # stops at the first <eos>; <pad> skipped anywhere
    assert vocab.decode([BOS_ID, vocab.stoi["dog"], PAD_ID, vocab.stoi["runs"], EOS_ID, vocab.stoi["man"]]) == \
        "dog runs"


def test_decode_glues_clitics_and_rejects_bad_ids() -> None:
    vocab = Vocabulary.build([["man", "'s", "dog"]], min_count=1)
    assert vocab.decode(vocab.encode(["man", "'s", "dog"])) == "man's dog"
    with pytest.raises(CaptionerError):
        vocab.decode([len(vocab)])


def test_to_dict_is_plain_json_and_round_trips() -> None:
    vocab = build()
    data = vocab.to_dict()
    again = Vocabulary.from_dict(json.loads(json.dumps(data)))
    assert again.itos == vocab.itos and again.counts == vocab.counts and again.stoi == vocab.stoi


def test_to_dict_survives_torch_weights_only(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    torch.save({"vocab": build().to_dict()}, path)
    loaded = torch.load(path, weights_only=True)
    assert Vocabulary.from_dict(loaded["vocab"]).itos == build().itos


@pytest.mark.parametrize("bad", [
    None, {}, {"itos": "abc"}, {"itos": ["a", "b"]}, {"format": 99, "itos": list(SPECIALS)},
    {"itos": [*SPECIALS, "x", "x"]}, {"itos": [*SPECIALS, "x"], "counts": [1]},
])
def test_from_dict_rejects_malformed(bad) -> None:
    with pytest.raises(CaptionerError):
        Vocabulary.from_dict(bad)
