"""Caption corpora (training/corpora.py, lexicon.py, pairs.py): readers, video-level splits, and
grounding sentences in COCO classes.

Readers and splits need nothing outside the repo. Grounding needs NLTK's WordNet (the
``lexicon`` fixture skips without it); the real-corpus test needs ../shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from captioner.training import lexicon as lexicon_module
from captioner.training.corpora import (
    CaptionRecord, load_shared_corpora, read_captions, read_dense_json, read_didemo_tsv, read_msrvtt_csv,
    read_msrvtt_json, read_msvd_tsv, read_user_captions, split_of,
)
from captioner.training.lexicon import mentioned_objects
from captioner.training.pairs import object_noun_classes, text_training_pairs, unseeable_nouns
from captioner.errors import CaptionerError
from captioner.vocab import tokenize

# --------------------------------------------------------------------------- readers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_msvd_tsv_splits_joined_captions(tmp_path: Path) -> None:
    path = write(tmp_path / "MSVD_train.tsv",
                 "a man plays a guitar, a man is playing music, someone plays\tabc_1_10\n"
                 "\n"
                 "a cat eats, the cat is eating food\tdef_5_9\n")
    recs = read_msvd_tsv(path)
    assert [(r.video_id, r.sentence) for r in recs] == [
        ("abc_1_10", "a man plays a guitar"), ("abc_1_10", "a man is playing music"), ("abc_1_10", "someone plays"),
        ("def_5_9", "a cat eats"), ("def_5_9", "the cat is eating food")]
    assert all(r.source == "msvd" and r.t_start is None and r.t_end is None for r in recs)


def test_read_didemo_tsv_quoted_newlines_and_stems(tmp_path: Path) -> None:
    path = tmp_path / "DiDeMo_train.tsv"
    # as in the real files: a caption with a newline makes the whole field CSV-quoted
    path.write_bytes(b'"a dog runs up a ramp\n, The dog says ""hi""., "\t1234@N00_1_ab.mp4\r\n'
                     b'man waves at camera, \t99@N01_2_cd.mp4\r\n')
    recs = read_didemo_tsv(path)
    assert [(r.video_id, r.sentence) for r in recs] == [
        ("1234@N00_1_ab", "a dog runs up a ramp"), ("1234@N00_1_ab", 'The dog says "hi".'),
        ("99@N01_2_cd", "man waves at camera")]
    assert {r.source for r in recs} == {"didemo"}


def test_read_msrvtt_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "MSRVTT_JSFUSION_test.csv",
                 "key;vid_key;video_id;sentence\nret0;msr7;video7;a man talks; then he sits\nret1;msr8;video8;a dog\n")
    recs = read_msrvtt_csv(path)
    assert [(r.source, r.video_id, r.sentence) for r in recs] == [
        ("msrvtt", "video7", "a man talks; then he sits"), ("msrvtt", "video8", "a dog")]


def test_read_msrvtt_json(tmp_path: Path) -> None:
    data = {"videos": [{"video_id": "video1"}], "sentences": [
        {"caption": "a woman cooks", "video_id": "video1", "sen_id": 0},
        {"caption": "  ", "video_id": "video1", "sen_id": 1},
        {"caption": "people dance", "video_id": "video2", "sen_id": 2}]}
    recs = read_msrvtt_json(write(tmp_path / "videodatainfo.json", json.dumps(data)))
    assert [(r.video_id, r.sentence) for r in recs] == [("video1", "a woman cooks"), ("video2", "people dance")]


def test_read_dense_json_keeps_times(tmp_path: Path) -> None:
    data = {"v_abc": {"duration": 20.0, "timestamps": [[0, 5.5], [9, 4]],
                      "sentences": ["A man walks in.", " He sits down."]}}
    recs = read_dense_json(write(tmp_path / "train.json", json.dumps(data)), "activitynet")
    assert [(r.source, r.video_id, r.sentence, r.t_start, r.t_end) for r in recs] == [
        ("activitynet", "v_abc", "A man walks in.", 0.0, 5.5),
        ("activitynet", "v_abc", "He sits down.", 4.0, 9.0)]  # reversed interval put right


def test_read_captions_detects_format_and_source(tmp_path: Path) -> None:
    dense = {"vid": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["chop the onion"]}}
    msrvtt = {"sentences": [{"video_id": "video3", "caption": "a car drives"}]}
    yc2 = write(tmp_path / "youcook2" / "val.json", json.dumps(dense))
    anet = write(tmp_path / "activitynet" / "val_1.json", json.dumps(dense))
    mjson = write(tmp_path / "msrvtt" / "info.json", json.dumps(msrvtt))
    tsv = write(tmp_path / "didemo" / "x.tsv", "a bird flies\tv.mp4\n")
    assert read_captions(yc2)[0].source == "youcook2"
    assert read_captions(anet)[0].source == "activitynet"
    assert read_captions(mjson)[0] == CaptionRecord("msrvtt", "video3", "a car drives")
    assert read_captions(tsv)[0] == CaptionRecord("didemo", "v", "a bird flies")
    assert read_captions(tsv, source="mine")[0].source == "mine"


@pytest.mark.parametrize("name, text, needle", [
    ("bad.json", "{not json", "not valid JSON"),
    ("list.json", "[1, 2]", "unknown caption JSON layout"),
    ("dense.json", '{"v": {"timestamps": [[0, 1]], "sentences": ["a", "b"]}}', "timestamps"),
    ("stamp.json", '{"v": {"timestamps": [[0]], "sentences": ["a"]}}', "not [start, end]"),
    ("msrvtt.json", '{"sentences": [{"caption": "x"}]}', "lacks 'video_id'"),
    ("notab.tsv", "a man walks without a tab\n", "TAB"),
    ("empty.tsv", "\n\n", "no captions"),
    ("header.csv", "id,sentence\n1,a man\n", "JSFusion header"),
    ("short.csv", "key;vid_key;video_id;sentence\nret0;msr1\n", "4 ';'-separated"),
    ("caps.txt", "a man walks\n", "unknown caption file type"),
])
def test_malformed_files_raise_naming_the_file(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(CaptionerError) as err:
        read_captions(path)
    assert needle in str(err.value) and name in str(err.value)


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(CaptionerError, match="not found"):
        read_captions(tmp_path / "nope.tsv")
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("caf\xe9 man\tv1\n".encode("latin-1"))
    with pytest.raises(CaptionerError, match="latin1.tsv"):
        read_captions(bad)


def test_load_shared_corpora_layout(tmp_path: Path) -> None:
    write(tmp_path / "msvd" / "MSVD_test.tsv", "a cat, a kitten plays\tc1\n")
    write(tmp_path / "msrvtt" / "MSRVTT_JSFUSION_test.csv", "key;vid_key;video_id;sentence\nr;m;video1;a bus\n")
    write(tmp_path / "youcook2" / "val.json", json.dumps({"y1": {"timestamps": [[0, 1]], "sentences": ["mix"]}}))
    write(tmp_path / "clip_captions.json", json.dumps({"videos/x.avi": {"captions": ["dup"]}}))  # derived: skipped
    write(tmp_path / "README.md", "not captions")
    recs = load_shared_corpora(tmp_path)
    assert Counter(r.source for r in recs) == {"msvd": 2, "msrvtt": 1, "youcook2": 1}
    with pytest.raises(CaptionerError, match="not found"):
        load_shared_corpora(tmp_path / "missing")
    with pytest.raises(CaptionerError, match="no caption files"):
        load_shared_corpora(write(tmp_path / "empty" / "a.md", "x").parent)


def test_read_user_captions_matches_video_stems(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("street.mp4", "v_park.avi", "QOl.mkv", "notes.txt"):
        (videos / name).write_bytes(b"")
    caps = write(tmp_path / "caps.json", json.dumps({
        "street": {"timestamps": [[0, 2]], "sentences": ["a car passes"]},
        "park": {"timestamps": [[0, 2]], "sentences": ["a dog runs"]},  # file is v_park.avi
        "v_QOl": {"timestamps": [[1, 3]], "sentences": ["people walk"]},  # file is QOl.mkv
        "gone": {"timestamps": [[0, 1]], "sentences": ["no video"]}}))
    recs = read_user_captions(caps, video_dir=videos)
    assert [(r.video_id, r.sentence, r.source) for r in recs] == [
        ("street", "a car passes", "user"), ("v_park", "a dog runs", "user"), ("QOl", "people walk", "user")]
    tsv = write(tmp_path / "caps.tsv", "a man, a person\tclips/street.mp4\n")
    assert {r.video_id for r in read_user_captions(tsv)} == {"street"}
    with pytest.raises(CaptionerError, match="matches a video file"):
        read_user_captions(write(tmp_path / "other.tsv", "a man\tzzz\n"), video_dir=videos)


# --------------------------------------------------------------------------- splits


def test_split_of_is_deterministic_and_by_video() -> None:
    ids = [f"video{i}" for i in range(4000)]
    splits = [split_of(v) for v in ids]
    assert splits == [split_of(v) for v in ids]  # no hidden state, same every call
    share = Counter(splits)
    assert 0.035 < share["val"] / 4000 < 0.065 and 0.035 < share["test"] / 4000 < 0.065
    assert split_of("anything", val_fraction=0.0, test_fraction=0.0) == "train"
    assert {split_of(v, val_fraction=0.5, test_fraction=0.49) for v in ids[:200]} == {"train", "val", "test"}
    with pytest.raises(CaptionerError):
        split_of("x", val_fraction=0.6, test_fraction=0.5)


def test_split_pinned_values() -> None:
    # these must never change, or videos of earlier val/test splits move into training
    assert [split_of(v) for v in ("video7", "video8", "video36", "-4wsuPCjDBc_5_15", "v_QOlSCBRmfWY")] == [
        "train", "val", "test", "train", "train"]


# --------------------------------------------------------------------------- grounding (WordNet)


@pytest.fixture(scope="module")
def lexicon() -> lexicon_module.NounLexicon:
    if not lexicon_module.wordnet_available():
        pytest.skip("needs NLTK WordNet data: set NLTK_DATA (e.g. ../shared/data/nltk_data); not found")
    return lexicon_module.default_lexicon()


def objects(sentence: str, **kw) -> list[tuple[str, str | None, int]]:
    return [(m.noun, m.coco_class, m.count) for m in mentioned_objects(tokenize(sentence), **kw)]


def classes(sentence: str, **kw) -> dict[str | None, int]:
    out: Counter = Counter()
    for _, cls, count in objects(sentence, **kw):
        out[cls] += count
    return dict(out)


def test_brief_examples(lexicon) -> None:
    assert objects("a man is riding a horse") == [("man", "person", 1), ("horse", "horse", 1)]
    assert objects("two dogs play in the water") == [("dog", "dog", 2), ("water", None, 1)]
    assert objects("a woman is slicing an onion") == [("woman", "person", 1), ("onion", None, 1)]
    assert objects("a man is walking") == [("man", "person", 1)]
    [(noun, cls, count)] = objects("people are dancing")
    assert (noun, cls) == ("people", "person") and count >= 2


@pytest.mark.parametrize("sentence, expected", [
    ("a group of people dance on a stage", [("people", "person", 3), ("stage", None, 1)]),
    ("three men and a woman ride bikes", [("man", "person", 3), ("woman", "person", 1), ("bike", "bicycle", 2)]),
    ("several kittens sleep", [("kitten", "cat", 3)]),
    ("a crowd watches", [("crowd", "person", 5)]),
    ("a dog barks at a cat", [("dog", "dog", 1), ("cat", "cat", 1)]),  # "barks" is the verb
    ("the camera pans to a man", [("man", "person", 1)]),  # camera: the recording, not an object
    ("a stop sign and a traffic light", [("stop sign", "stop sign", 1), ("traffic light", "traffic light", 1)]),
    ("a man eats two hot dogs", [("man", "person", 1), ("hot dog", "hot dog", 2)]),
    ("the polar bears walk past each other", [("bear", "bear", 2)]),
    ("the moving train passes", [("train", "train", 1)]),
    ("a magician performs for a crowd", [("magician", "person", 1), ("crowd", "person", 5)]),  # WordNet person
    ("a woman brushes her hair", [("woman", "person", 1)]),  # body parts are neutral
    ("a man in an orange shirt", [("man", "person", 1), ("shirt", None, 1)]),  # orange: a colour
    ("a man drinks from a water bottle", [("man", "person", 1), ("bottle", "bottle", 1)]),  # water: modifier
    ("a man wearing glasses", [("man", "person", 1), ("glasses", None, 2)]),  # eyeglasses, not wine glasses
    ("she pours two glasses of wine", [("glass", "wine glass", 2), ("wine", None, 1), ("she", "person", 1)]),
    ("a cat chases a mouse", [("cat", "cat", 1), ("mouse", None, 1)]),  # COCO's mouse is a computer mouse
    ("a man uses a computer mouse", [("man", "person", 1), ("mouse", "mouse", 1)]),
    ("he is playing table tennis", [("he", "person", 1)]),  # a game, not a table
    ("they relax in the living room", [("living room", None, 1)]),
    ("a chicken walks around", [("chicken", "bird", 1)]),
    ("the man adds chicken to the pan", [("man", "person", 1), ("chicken", None, 1), ("pan", None, 1)]),
])
def test_mentioned_objects(lexicon, sentence: str, expected: list) -> None:
    assert objects(sentence) == expected


def test_culinary_meat_words(lexicon) -> None:
    assert objects("cut the chicken into pieces", culinary=True) == [("chicken", None, 1)]
    assert objects("a chicken pecks", culinary=False) == [("chicken", "bird", 1)]


@pytest.mark.parametrize("word", ["video", "game", "scene", "time", "way", "side", "front", "walking", "playing",
                                  "talking", "red", "he", "at", "screen", "ground"])
def test_abstract_and_verb_words_are_not_objects(lexicon, word: str) -> None:
    assert lexicon.info(word).kind in ("neutral", "none")
    assert objects(f"a man and the {word}") == [("man", "person", 1)]  # even in a noun slot


@pytest.mark.parametrize("word", ["road", "street", "room", "field", "beach", "water", "stage", "kitchen", "guitar",
                                  "onion", "shirt", "tree", "snow", "yard", "lettuce"])
def test_scene_and_thing_nouns_are_unseeable(lexicon, word: str) -> None:
    assert lexicon.info(word).kind == "unseeable"


def test_text_training_pairs(lexicon) -> None:
    recs = [
        CaptionRecord("msvd", "v1", "A man is riding a horse."),
        CaptionRecord("msvd", "v1", "a man is riding a horse"),  # duplicate for the same video
        CaptionRecord("msvd", "v2", "two dogs play in the water"),
        CaptionRecord("youcook2", "y1", "a woman is slicing an onion"),
        CaptionRecord("activitynet", "a1", "the video ends with a logo"),
        CaptionRecord("activitynet", "a2", "people are dancing"),
        CaptionRecord("didemo", "d1", "hi"),
    ]
    pairs, stats = text_training_pairs(recs, seed=3)
    assert sorted((p.video_id, tuple(p.tokens), tuple(sorted(p.classes.items()))) for p in pairs) == [
        ("a2", ("people", "are", "dancing"), (("person", 2),)),
        ("v1", ("a", "person", "is", "riding", "a", "horse"), (("horse", 1), ("person", 1))),  # no guessed gender
    ]
    assert stats.records == {"msvd": 3, "youcook2": 1, "activitynet": 2, "didemo": 1}
    assert stats.kept == {"msvd": 1, "activitynet": 1}
    assert stats.duplicates == {"msvd": 1}
    assert stats.rejected_unseeable == {"msvd": 1, "youcook2": 1}
    assert stats.rejected_no_object == {"activitynet": 1}
    assert stats.rejected_length == {"didemo": 1}
    assert stats.rejected_nouns == {"water": 1, "onion": 1}
    assert stats.kept_classes == {"person": 2, "horse": 1}
    json.dumps(stats.to_dict())  # model-card ready
    # same seed, same order; the order is a shuffle, not input order
    again, _ = text_training_pairs(recs, seed=3)
    assert [p.tokens for p in again] == [p.tokens for p in pairs]


def test_class_counts_merge_mentions(lexicon) -> None:
    def pair_classes(sentence: str) -> dict[str, int]:
        pairs, _ = text_training_pairs([CaptionRecord("x", "v", sentence)])
        return pairs[0].classes if pairs else {}

    assert pair_classes("a man and a woman walk a dog") == {"person": 2, "dog": 1}
    assert pair_classes("a man waves and then the man sits") == {"person": 1}  # same noun, same man
    assert pair_classes("a dog plays with another dog") == {"dog": 2}
    assert pair_classes("the man holds the baby in his hands") == {"person": 2}  # hands add nobody


def test_vocabulary_word_lists(lexicon) -> None:
    vocab = ["a", "man", "men", "puppies", "guitar", "road", "water", "walking", "video", "stop", "sign", "traffic",
             "light", "pans", "hair", "screen", "glasses"]
    banned = unseeable_nouns(vocab)
    assert {"guitar", "road", "water"} <= set(banned)
    # verbs, abstract words, body parts, parts of COCO compounds and verb-ish -s forms stay sayable
    assert not {"a", "walking", "video", "hair", "sign", "light", "pans", "screen", "man"} & set(banned)
    mapping = object_noun_classes(vocab)
    assert mapping["men"] == "person" and mapping["puppies"] == "dog"
    assert mapping["stop sign"] == "stop sign" and mapping["traffic light"] == "traffic light"
    assert "guitar" not in mapping and "screen" not in mapping
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


def test_missing_wordnet_raises_clear_error(tmp_path: Path) -> None:
    """In a fresh interpreter with no NLTK data anywhere, grounding says to set NLTK_DATA,
    while reading and tokenising still work."""
    code = (
        "import nltk; nltk.data.path[:] = []\n"
        "from captioner.training import lexicon as corpora\n"
        "from captioner.vocab import tokenize\n"
        "assert tokenize('a man') == ['a', 'man']\n"
        "assert corpora.wordnet_available() is False\n"
        "try:\n"
        "    corpora.mentioned_objects(['a', 'man'])\n"
        "except corpora.CaptionerError as exc:\n"
        "    print('ERR', exc)\n"
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code.replace("corpora.CaptionerError", "Exception")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and "NLTK_DATA" in out.stdout


# --------------------------------------------------------------------------- real corpora (../shared)


@pytest.mark.shared
def test_real_corpora(shared_dir: Path, lexicon) -> None:
    recs = load_shared_corpora(shared_dir / "data" / "captions")
    per_source = Counter(r.source for r in recs)
    assert set(per_source) == {"msvd", "msrvtt", "didemo", "activitynet", "youcook2"}
    assert per_source["msvd"] > 70_000 and per_source["activitynet"] > 70_000 and per_source["didemo"] > 40_000
    assert per_source["msrvtt"] == 998 and per_source["youcook2"] > 12_000
    assert all(r.sentence and "\t" not in r.sentence and "\n" not in r.sentence for r in recs)
    dense = [r for r in recs if r.source in ("activitynet", "youcook2")]
    assert all(r.t_start is not None and r.t_end is not None and r.t_start <= r.t_end for r in dense)
    # every caption of a video is on one side of the split
    sides: dict[str, set[str]] = {}
    for r in recs[::50]:
        sides.setdefault(r.video_id, set()).add(split_of(r.video_id))
    assert all(len(s) == 1 for s in sides.values())

    sample = recs[::40]  # ~5k sentences keep the test fast; the full run is in the model card
    pairs, stats = text_training_pairs(sample, seed=0)
    kept_share = len(pairs) / len(sample)
    assert 0.2 < kept_share < 0.5, stats.to_dict(10)
    assert stats.kept_classes.most_common(1)[0][0] == "person"
    assert {"dog", "car", "horse", "cat"} <= set(stats.kept_classes)
    top_rejected = {w for w, _ in stats.rejected_nouns.most_common(30)}
    assert {"water", "shirt"} <= top_rejected
    assert not top_rejected & {"video", "camera", "he", "she", "at", "side", "time", "game", "way", "front", "screen"}
    for p in pairs:
        assert p.classes and all(count >= 1 for count in p.classes.values())
        assert not set(p.tokens) & {"guitar", "onion", "road", "kitchen"} or all(
            m.coco_class for m in mentioned_objects(p.tokens, culinary=p.source == "youcook2"))
