"""Scene words with evidence: the concept head (``concepts``), its fit (``training.concepts``) and
where it lets a scene word be said (``grounding``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner.concepts import ConceptHead, SceneEvidence, scene_evidence
from captioner.tokens import WindowObjects
from captioner.training.concepts import MIN_PHOTOS, concept_targets, fit_concepts

E, C = 6, 4  # embedding and cell sizes of the toy features


def toy_photos(n: int = 400, seed: int = 0):
    """Photos whose embedding's first value says "snow" and whose cells' first channel says
    "beach"; "shirt" is said at random (nothing in the pixels shows it)."""
    rng = np.random.default_rng(seed)
    names, embeddings, cells, captions = [], [], [], []
    for i in range(n):
        snow, beach = rng.random() < 0.3, rng.random() < 0.3
        emb = rng.normal(size=E).astype(np.float32)
        emb[0] += 3.0 if snow else -3.0
        grid = rng.normal(size=(9, C)).astype(np.float32)
        grid[:, 0] += 3.0 if beach else -3.0
        words = (["snow"] if snow else []) + (["beach"] if beach else []) + (["shirt"] if rng.random() < 0.3 else [])
        names.append(f"{i}.jpg")
        embeddings.append(emb)
        cells.append(grid)
        said = [t for w in words for t in ("near", "the", w)]
        captions.append([["a", "dog", *said]] * 2 + [["a", "dog"]] * 3)
    return names, np.stack(embeddings), cells, captions


@pytest.fixture(scope="module")
def wordnet():
    """Targets count noun uses, which the WordNet lexicon reads."""
    from captioner.training.lexicon import wordnet_available

    if not wordnet_available():
        pytest.skip("needs NLTK's WordNet (set NLTK_DATA, e.g. ../shared/data/nltk_data)")


def test_targets_need_two_captions(wordnet):
    captions = [[["a", "snowy", "snow"], ["snow", "here"], ["a", "dog"]], [["snow"], ["a", "dog"], ["dog"]]]
    assert concept_targets(captions, ["snow", "dog"]).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # only a noun use counts: people who stand make no "stand" (a word that once got a bar so)
    standing = [[["people", "stand", "in", "the", "park"]] * 3, [["a", "person", "at", "a", "stand"]] * 3]
    assert concept_targets(standing, ["stand", "park"]).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_the_head_learns_what_the_pixels_show_and_bars_what_they_do_not(wordnet):
    names, embeddings, cells, captions = toy_photos()
    head = fit_concepts(names, embeddings, cells, captions, ["snow", "beach", "shirt", "piano"], C, imgsz=640)
    assert head.words == ["snow", "beach", "shirt"]  # "piano": fewer than MIN_PHOTOS photos
    assert MIN_PHOTOS > 0 and head.calibration["photos_calibrate"] > 0
    bars = dict(zip(head.words, head.threshold))
    assert np.isfinite(bars["snow"]) and np.isfinite(bars["beach"])
    per_word = head.calibration["per_word"]
    assert per_word["snow"]["held_out_precision"] >= 0.9 and per_word["beach"]["held_out_recall"] >= 0.8
    assert not np.isfinite(bars["shirt"]) or per_word["shirt"]["held_out_precision"] >= 0.5
    snowy = embeddings[0].copy()
    snowy[0] = 4.0
    said = scene_evidence(head, [snowy], -np.ones((9, C), np.float32) * 3)
    assert "snow" in said.supported and "beach" not in said.supported and "shirt" not in said.supported
    assert said.probability["snow"] > said.probability["beach"]
    assert scene_evidence(None, [snowy], None) is None
    assert scene_evidence(head, [snowy], None, imgsz=320) is None  # calibrated at 640 only


def test_the_head_round_trips_through_a_weights_only_checkpoint(tmp_path):
    head = ConceptHead(["snow"], np.ones((1, E + C), np.float32), np.zeros(1, np.float32),
                       np.array([np.inf], np.float32), 640, {"words": 1})
    path = tmp_path / "c.pt"
    torch.save({"concepts": head.to_dict()}, path)
    again = ConceptHead.from_dict(torch.load(path, weights_only=True)["concepts"])
    assert again.words == ["snow"] and np.array_equal(again.weight, head.weight) and np.isinf(again.threshold[0])
    assert ConceptHead.from_dict(None) is None
    assert again.supported(np.array([0.99])) == {}  # an infinite bar is never passed


def test_scene_words_need_support_on_video_and_on_pictures_without_objects(model):
    """The grounding rules with a concept head: a video window may keep "on the beach" only when
    the head supports "beach"; without a head every scene phrase of video is cut (as before)."""
    from captioner.grounding import Window, true_sentence
    from captioner.tokens import WindowObjects
    from frames import frame

    trained = model.trained
    vocab = trained.vocab
    assert "beach" in vocab.stoi and "shirt" in vocab.stoi
    frames = [frame(i, ((100, 50, 200, 300), "person", 1)) for i in range(4)]
    person = WindowObjects(np.array([0]), np.ones((1, 6), np.float32), np.zeros((1, trained.network.cfg.embedding_dim), np.float32))
    beach = SceneEvidence({"beach": 0.9, "shirt": 0.1}, frozenset({"beach"}))
    sentence = "a person in a red shirt is walking on the beach".split()

    def said(frames_, named, scenes):
        return true_sentence(Window(frames_, named, vocab, trained.grounding, (640, 360), scenes=scenes), list(sentence))

    assert said(frames, person, beach) == "a person is walking on the beach".split()
    assert said(frames, person, None) == "a person is walking".split()
    assert said(frames[:1], person, beach) == sentence  # a picture with a named person: the decoder's words


def test_with_no_object_to_name_the_supported_scene_is_said():
    from captioner.windows import scene_caption

    assert scene_caption(["snow", "hill"]) == "snow and a hill are in view"
    assert scene_caption(["beach"]) == "a beach is in view" and scene_caption(["water"]) == "water is in view"
    assert scene_caption(["mountains"]) == "mountains are in view"


def test_a_sure_kind_is_named_when_no_class_passes():
    """A dog the detector calls "cow 0.79" fails the cow floor, but an animal it surely is: the
    caption says so, with the detections that license it; a kind without a calibrated threshold,
    or below it, is never said."""
    from types import SimpleNamespace

    from captioner.coco import CLASS_INDEX
    from captioner.grounding.evidence import EvidenceBar
    from captioner.tokens import SLOT_CONF, SLOT_SHARE, WindowObjects
    from captioner.windows import kind_caption
    from frames import frame

    cow, horse = CLASS_INDEX["cow"], CLASS_INDEX["horse"]
    features = np.zeros((2, 6), np.float32)
    features[:, SLOT_SHARE] = 1.0
    features[:, SLOT_CONF] = (0.79, 0.4)
    objects = WindowObjects(np.array([cow, horse]), features, np.zeros((2, 4), np.float32))
    bar = EvidenceBar(min_conf=0.45, class_min_conf={"cow": 0.9, "horse": 0.85}, kind_min_conf={"animal": 0.6, "vehicle": 0.5})
    assert not bar.passes(objects).any()
    assert [(k, list(ids)) for k, ids in bar.kinds_seen(objects)] == [("animal", [cow, horse])]
    frames = [frame(0, ((100, 50, 300, 300), "cow", 4))]
    trained = SimpleNamespace(evidence=bar)
    caption, words = kind_caption(trained, frames, objects, [])
    assert caption == "an animal is in view"
    assert words[0].word == "animal" and words[0].track_ids == [4] and words[0].score == 0.79
    assert "cow (0.79)" in words[0].why
    assert kind_caption(trained, frames, objects, ["snow"])[0] == "an animal and snow are in view"
    two = [frame(0, ((100, 50, 300, 300), "cow", 4), ((350, 50, 600, 300), "horse", 5))]
    assert kind_caption(trained, two, objects, [])[0] == "animals are in view"
    assert kind_caption(SimpleNamespace(evidence=EvidenceBar(min_conf=0.45, class_min_conf={"cow": 0.9})), frames, objects, []) is None
    below = SimpleNamespace(evidence=EvidenceBar(class_min_conf={"cow": 0.9}, kind_min_conf={"animal": 0.8}))
    assert kind_caption(below, frames, objects, []) is None
    # stored in the checkpoint with the rest of the bar
    assert EvidenceBar.from_dict(bar.to_dict()).kind_min_conf == {"animal": 0.6, "vehicle": 0.5}
    assert EvidenceBar.from_dict({"min_conf": 0.5}).kind_min_conf == {}


def test_a_person_below_the_bar_is_named_on_a_still_picture_only():
    """Kind floors are fitted on photos, where nothing else being sure is itself evidence; a video
    window also needs the bar's own confidence."""
    from types import SimpleNamespace

    from captioner.coco import CLASS_INDEX
    from captioner.grounding.evidence import EvidenceBar
    from captioner.tokens import SLOT_CONF, SLOT_SHARE, WindowObjects
    from captioner.windows import kind_caption
    from frames import frame

    person = CLASS_INDEX["person"]
    features = np.zeros((1, 6), np.float32)
    features[:, SLOT_SHARE], features[:, SLOT_CONF] = 1.0, 0.38
    objects = WindowObjects(np.array([person]), features, np.zeros((1, 4), np.float32))
    bar = EvidenceBar(min_conf=0.45, kind_min_conf={"person": 0.35})
    assert not bar.passes(objects).any()
    assert [k for k, _ in bar.kinds_seen(objects, still=True)] == ["person"]
    assert bar.kinds_seen(objects, still=False) == []  # a video window: 0.38 < the bar's 0.45
    trained = SimpleNamespace(evidence=bar)
    one = [frame(0, ((100, 50, 300, 300), "person", 4))]
    caption, words = kind_caption(trained, one, objects, [])
    assert caption == "a person is in view" and words[0].word == "person" and "below the bar" in words[0].why
    two = [frame(0, ((100, 50, 300, 300), "person", 4), ((350, 50, 600, 300), "person", 5))]
    caption, words = kind_caption(trained, two, objects, ["beach"])
    assert caption == "people and a beach are in view" and words[0].word == "people"  # the word the caption says
    video = one + [frame(0.25, ((100, 50, 300, 300), "person", 4))]
    assert kind_caption(trained, video, objects, []) is None


def kind_photos(n: int = 600, seed: int = 1):
    """Photos whose embedding's second value says "a person is there"; on the ones the detector
    "named nothing" (every third) only the pixels can tell."""
    rng = np.random.default_rng(seed)
    names, embeddings, cells, captions, unnamed = [], [], [], [], []
    for i in range(n):
        person = rng.random() < 0.5
        emb = rng.normal(size=E).astype(np.float32)
        emb[1] += 3.0 if person else -3.0
        names.append(f"k{i}.jpg")
        embeddings.append(emb)
        cells.append(rng.normal(size=(9, C)).astype(np.float32))
        subject = ["a", "man"] if person else ["a", "rock"]
        captions.append([[*subject, "near", "the", "snow"]] * 5)
        unnamed.append(i % 3 == 0)
    return names, np.stack(embeddings), cells, captions, np.array(unnamed)


def test_kinds_are_scored_from_the_pixels_and_barred_on_pictures_the_detector_named_nothing_on(wordnet, tmp_path):
    from captioner.coco import KIND_CLASSES
    from captioner.training.concepts import kind_targets

    assert kind_targets([[["a", "man", "runs"], ["a", "person"], ["a", "rock"]], [["a", "dog"], ["a", "rock"]] * 2]).tolist() == [
        [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]  # animal, vehicle, person; two captions must name it
    names, embeddings, cells, captions, unnamed = kind_photos()
    head = fit_concepts(names, embeddings, cells, captions, ["snow"], C, imgsz=640, unnamed=unnamed)
    assert head.kinds == list(KIND_CLASSES) and len(head.threshold) == len(head.words) + len(head.kinds)
    report = head.calibration["kinds"]
    assert report["photos_calibrate"] == int(unnamed.sum())
    person = report["per_kind"]["person"]
    assert np.isfinite(head.kind_threshold("person")) and person["precision"] >= 0.9 and person["recall"] >= 0.8
    assert not np.isfinite(head.kind_threshold("animal")) and not np.isfinite(head.kind_threshold("vehicle"))  # no photo shows one
    someone, nobody = embeddings[0].copy(), embeddings[0].copy()
    someone[1], nobody[1] = 4.0, -4.0
    seen = scene_evidence(head, [someone], cells[0])
    assert set(seen.kinds) == {"person"} and "person" not in seen.supported and "person" not in seen.probability
    assert scene_evidence(head, [nobody], cells[0]).kinds == {}
    assert "person" not in head.supported(head.probabilities(someone, cells[0]))  # kinds are no scene words
    # the kinds travel with the head in a weights_only checkpoint; heads fitted before kinds have none
    torch.save({"concepts": head.to_dict()}, tmp_path / "c.pt")
    again = ConceptHead.from_dict(torch.load(tmp_path / "c.pt", weights_only=True)["concepts"])
    assert again.kinds == head.kinds and again.kinds_supported(again.probabilities(someone, cells[0])).keys() == {"person"}
    assert fit_concepts(names, embeddings, cells, captions, ["snow"], C, imgsz=640).kinds == []


def test_a_kind_the_pixels_show_is_said_of_a_still_picture_with_nothing_named(model):
    """No detection at all (a biker upside down, a dog in mid-leap): the concept head's kind is the
    caption's subject on a still picture, with its evidence; a video window says no such thing."""
    from dataclasses import replace

    from captioner.options import CaptionOptions
    from captioner.perception import Detections
    from captioner.stream import AnalysedFrame
    from captioner.windows import NOTHING_SEEN, describe_window, pixel_kind_caption

    net = model.trained.network.cfg
    d = net.embedding_dim + net.cell_dim
    bias = np.array([-9.0, -9.0, -9.0, 9.0], np.float32)  # "snow" never; animal, vehicle never; person surely
    head = ConceptHead(["snow"], np.zeros((4, d), np.float32), bias, np.array([np.inf, 0.8, 0.8, 0.8], np.float32), 640,
                       {}, ["animal", "vehicle", "person"])
    trained = replace(model.trained, concepts=head)
    empty = AnalysedFrame(0.0, Detections.empty(), np.zeros(net.token_dim, np.float32), torch.zeros(net.hidden),
                          np.zeros((36, net.cell_dim), np.float32))
    options = CaptionOptions(imgsz=640)
    caption, _, evidence = describe_window(trained, [empty], options)
    assert caption.startswith("a person ")  # described by the decoder, as a detected person would be
    assert evidence.words[0].word == "person" and evidence.words[0].score > 0.99 and "concept head" in evidence.words[0].why
    assert not [w for w in evidence.words[1:] if w.kind == "object"]  # only the head licensed the person
    animal_head = replace(head, bias=np.array([-9.0, 9.0, -9.0, -9.0], np.float32))
    caption, _, evidence = describe_window(replace(model.trained, concepts=animal_head), [empty], options)
    assert "animal" in caption.split() and "dog" not in caption.split()  # the stand-in's nouns said as the kind
    assert [w.word for w in evidence.words].count("animal") == 1 and "concept head" in evidence.words[0].why
    later = replace(empty, t_sec=0.25)
    assert describe_window(trained, [empty, later], options)[0] == NOTHING_SEEN  # calibrated on stills only
    no_kinds = ConceptHead(["snow"], np.zeros((1, d), np.float32), bias[:1], np.array([np.inf], np.float32), 640)
    assert describe_window(replace(trained, concepts=no_kinds), [empty], options)[0] == NOTHING_SEEN  # a head fitted before kinds
    scenes = SceneEvidence({"snow": 0.9}, frozenset({"snow"}), {"person": 0.85, "animal": 0.95})
    assert pixel_kind_caption(trained, scenes, ["snow"])[0] == "an animal and snow are in view"  # the surest kind
    assert pixel_kind_caption(trained, SceneEvidence({}, frozenset()), []) is None


def test_a_kind_is_described_in_the_words_of_its_stand_in_and_said_as_the_kind():
    from captioner.coco import CLASS_INDEX
    from captioner.result import WordEvidence
    from captioner.windows import KindSubject, as_kind

    dog = CLASS_INDEX["dog"]
    animal = KindSubject("animal", WordEvidence("animal", "object"), WindowObjects(
        np.array([dog]), np.zeros((1, 6), np.float32), np.zeros((1, 4), np.float32)), [], "an animal is in view")
    words = {"dog": dog, "dogs": dog, "puppy": dog, "person": CLASS_INDEX["person"]}
    assert as_kind("a dog is running through the grass".split(), animal, words) == "an animal is running through the grass".split()
    assert as_kind("a brown puppy chases two dogs".split(), animal, words) == "a brown animal chases two animals".split()
    person = KindSubject("person", WordEvidence("person", "object"), WindowObjects(
        np.array([CLASS_INDEX["person"]]), np.zeros((1, 6), np.float32), np.zeros((1, 4), np.float32)), [],
        "a person is in view")
    assert as_kind("a person rides a wave".split(), person, words) == "a person rides a wave".split()


def test_a_pictures_scene_words_are_ranked_by_the_pixels_evidence():
    """Two sentences the decoder finds about as likely; the concept head sees grass, not snow: the
    grass one wins. Without the head's probabilities (video, or no head) the ranking is as before."""
    from captioner.decoding import Hypothesis
    from captioner.grounding import Grounding, SalientCoverage

    snow, grass = 7, 8  # vocabulary ids of the sentences' scene words
    def hyps():
        return [Hypothesis([4, 5, 6, snow], logprob=-4.0), Hypothesis([4, 5, 6, grass], logprob=-4.2)]

    plain = SalientCoverage(Grounding({}, set()), [])
    assert plain.rank(hyps())[0].ids[-1] == snow
    seen = SalientCoverage(Grounding({}, set()), [], concept_probability={snow: 0.02, grass: 0.7})
    ranked = seen.rank(hyps())
    assert ranked[0].ids[-1] == grass and ranked[0].score > ranked[1].score


def jumping_photos(n: int = 300, seed: int = 1):
    """Photos whose embedding's second value says a dog jumps ("jumps" in some captions, "jumping"
    in others: one lemma); the rest run."""
    rng = np.random.default_rng(seed)
    names, embeddings, cells, captions = [], [], [], []
    for i in range(n):
        jumps = rng.random() < 0.4
        emb = rng.normal(size=E).astype(np.float32)
        emb[1] += 3.0 if jumps else -3.0
        verbs = (["a", "dog", "jumps"], ["a", "red", "dog", "is", "jumping"]) if jumps else (["a", "dog", "runs"],) * 2
        names.append(f"{i}.jpg")
        embeddings.append(emb)
        cells.append(rng.normal(size=(9, C)).astype(np.float32))
        place = [["a", "dog", "in", "the", "snow"]] * 2 if i % 3 == 0 else [["a", "dog"]] * 2  # a scene noun at random
        captions.append([*verbs, *place, ["the", "dog"]])
    return names, np.stack(embeddings), cells, captions


def test_content_words_are_scored_by_lemma_and_license_nothing(wordnet, tmp_path):
    """With the decoder's vocabulary the head also scores its content words by lemma ("jumps" and
    "jumping" are one output), never function or colour words; their bars are inf (they only rank
    a picture's sentences), and they survive a weights-only checkpoint."""
    from captioner.training.concepts import lemma_forms

    vocabulary = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "the", "is", "dog", "jumps", "jumping", "runs", "red", "piano"]
    assert lemma_forms(vocabulary) == {"dog": ["dog"], "jump": ["jumps", "jumping"], "run": ["runs"], "piano": ["piano"]}
    names, embeddings, cells, captions = jumping_photos()
    head = fit_concepts(names, embeddings, cells, captions, ["snow"], C, imgsz=640, vocabulary=vocabulary)
    assert head.words == ["snow"]
    assert head.ranked == ["dog", "jump", "run"]  # "piano": no photo says it
    assert head.ranked_forms == [["dog"], ["jumps", "jumping"], ["runs"]]
    assert np.isinf(head.threshold[-3:]).all() and len(head.threshold) == len(head.words) + len(head.kinds) + 3
    assert head.calibration["ranked"]["held_out_auc"]["jump"] > 0.95
    leaping = embeddings[0].copy()
    leaping[1] = 4.0
    scenes = scene_evidence(head, [leaping], None)
    assert scenes.ranked["jumping"] == scenes.ranked["jumps"] > 0.9 > 0.1 > scenes.ranked["runs"]
    assert not scenes.supported  # a ranked word is no licence
    path = tmp_path / "c.pt"
    torch.save({"concepts": head.to_dict()}, path)
    again = ConceptHead.from_dict(torch.load(path, weights_only=True)["concepts"])
    assert again.ranked == head.ranked and again.ranked_forms == head.ranked_forms
    assert scene_evidence(again, [leaping], None).ranked == scenes.ranked


def test_a_pictures_verbs_are_ranked_and_shown_with_the_pixels_evidence(model):
    """On a still picture, every word the head scores ranks the sentences (a scene noun by its own
    output, else by its lemma's) and a verb's JSON evidence is that probability ("ranked"); a video
    window's verbs keep their motion evidence."""
    from captioner.grounding import Window
    from captioner.windows import picture_word_probability, word_evidence
    from frames import frame

    trained = model.trained
    stoi = trained.vocab.stoi
    scenes = SceneEvidence({"grass": 0.7}, frozenset(), ranked={"grass": 0.2, "jumping": 0.8, "running": 0.1})
    odds = picture_word_probability(scenes, stoi)
    assert odds == {stoi["grass"]: 0.7, stoi["jumping"]: 0.8, stoi["running"]: 0.1}
    person = WindowObjects(np.array([0]), np.ones((1, 6), np.float32), np.zeros((1, trained.network.cfg.embedding_dim), np.float32))
    tokens = "a person is jumping in the grass".split()
    picture = Window([frame(0, ((100, 50, 200, 300), "person", 1))], person, trained.vocab, trained.grounding, (640, 360),
                     scenes=scenes)
    verb = {w.word: w for w in word_evidence(picture, tokens, {0: [1]})}["jumping"]
    assert verb.kind == "verb" and verb.verdict == "ranked" and verb.score == 0.8 and "still picture" in verb.why
    video = Window([frame(i, ((100, 50, 200, 300), "person", 1)) for i in range(4)], person, trained.vocab,
                   trained.grounding, (640, 360), scenes=scenes)
    assert {w.word: w for w in word_evidence(video, tokens, {0: [1]})}["jumping"].verdict != "ranked"
    from captioner.webapp import word_title

    assert word_title(verb).endswith(": 0.80") and "motion evidence" not in word_title(verb)  # the page's hover text


def test_a_colour_word_shows_the_boxes_that_show_it(model):
    """A colour word's evidence is the share of the named objects' boxes whose pixels show it, with
    their tracks ("tan" may describe a brown box)."""
    from dataclasses import replace

    from captioner.colours import BIT
    from captioner.grounding import Window
    from captioner.windows import word_evidence
    from frames import frame

    trained = model.trained
    dog = WindowObjects(np.array([16]), np.ones((1, 6), np.float32), np.zeros((1, trained.network.cfg.embedding_dim), np.float32))
    frames = []
    for i in range(4):
        f = frame(i, ((100, 50, 200, 300), "dog", 1), ((300, 50, 400, 300), "dog", 2))
        frames.append(replace(f, detections=replace(f.detections, colours=np.array(
            [BIT["brown"] | BIT["white"], BIT["black"]], np.uint16))))
    window = Window(frames, dog, trained.vocab, trained.grounding, (640, 360))
    said = {w.word: w for w in word_evidence(window, "a brown and tan dog is running".split(), {16: [1, 2]})}
    brown = said["brown"]
    assert brown.kind == "colour" and brown.score == 0.5 and brown.track_ids == [1] and brown.verdict == "shown"
    assert "4 of 8 boxes" in brown.why and said["tan"].track_ids == [1]
    from captioner.webapp import word_title

    assert "track 1" in word_title(brown)
