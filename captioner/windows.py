"""Stage 8: windows of analysed frames -> what is said of them: a caption with its evidence, and the
forecast of what happens next. The model (``model.py``) proposes, the search
(``decoding.beam_search``) looks, and the rules of ``grounding`` decide what may be said."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .checkpoint import TrainedModel
from .coco import CLASS_INDEX, COCO_CLASSES, KIND_PLURALS, class_word, with_article
from .colours import BIT, COLOUR_WORDS, MIN_BOX_SHARE, MIN_PIXEL_SHARE
from .concepts import SceneEvidence, scene_evidence
from .decoding import beam_search
from .grounding import SalientCoverage, Window, forecast_sentences, no_repeats, search_odds, true_sentence
from .grounding.forecast import Arrivals
from .grounding.verbs import is_verb_form, verb_class
from .grounding.words import MASS_NOUNS
from .model import HISTORY_FRAMES, STYLE_IDS, segment_inputs
from .options import CaptionOptions
from .result import Evidence, NextEvent, WordEvidence
from .tokens import (SLOT_AREA, SLOT_CONF, SLOT_FEATURES, SLOT_SHARE, TokenLayout, WindowObjects, salient_classes,
                     window_cells, window_objects)
from .track_slots import track_slots
from .vocab import detokenize

NOTHING_SEEN = "no objects the detector knows are in view"
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def seen_objects(trained: TrainedModel, frames: Sequence) -> WindowObjects:
    """Every object class seen in the frames, with its evidence statistics."""
    return window_objects(np.stack([f.token for f in frames]), trained.network.cfg.embedding_dim,
                          [f.detections for f in frames])


def grounded_objects(trained: TrainedModel, frames: Sequence) -> WindowObjects:
    """The objects seen in the frames that have enough evidence to be named."""
    objects = seen_objects(trained, frames)
    return objects.select(trained.evidence.passes(objects))


def kind_caption(trained: TrainedModel, frames: Sequence, objects: WindowObjects,
                 scene_words: list[str]) -> tuple[str, list[WordEvidence]] | None:
    """For a window none of whose objects may be named: "an animal is in view" where the detector
    is sure of the kind, not of the class, and "a person is in view" for a person it scores below
    the bar on a picture where nothing else is sure (``EvidenceBar.kinds_seen``), with the surest
    scene word the concept head supports; None when no kind is sure enough."""
    still = len(frames) == 1
    kinds = trained.evidence.kinds_seen(objects, still=still)
    if not kinds:
        return None
    kind, class_ids = kinds[0]
    conf = {int(c): float(f[SLOT_CONF]) for c, f in zip(objects.class_ids, objects.features)}
    several = max((int(np.count_nonzero(np.isin(f.detections.class_id, class_ids))) for f in frames), default=0) > 1
    tracks = sorted({int(t) for f in frames for t, c in zip(f.detections.track_id, f.detections.class_id)
                     if t >= 0 and c in class_ids})
    detected = ", ".join(f"{COCO_CLASSES[int(c)]} ({conf[int(c)]:.2f})" for c in class_ids)
    floor = trained.evidence.kind_min_conf[kind]
    why = (f"detected as {detected}: below the bar, but on a picture where nothing else is sure a {kind} "
           f"scored >= {floor:.2f} is one" if kind == "person" else
           f"detected as {detected}: sure it is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not which one")
    words = [WordEvidence(KIND_PLURALS[kind] if several else kind, "object", tracks,
                          round(max(conf[int(c)] for c in class_ids), 3), "supported", why)]
    parts = [KIND_PLURALS[kind] if several else with_article(kind)] + [_scene_part(w) for w in scene_words[:1]]
    return _in_view(parts, several or len(parts) > 1), words


def pixel_kind_caption(trained: TrainedModel, scenes: SceneEvidence | None,
                       scene_words: list[str]) -> tuple[str, list[WordEvidence]] | None:
    """For a still picture with no object to name and no kind the detector is sure of: the kind the
    concept head sees in the pixels ("a person is in view": a biker upside down, a dog in mid-leap
    the detector scored below 0.25), with the surest supported scene word; None when no kind
    passes its bar (calibrated on photos like this one: ``training.concepts``)."""
    if scenes is None or not scenes.kinds:
        return None
    kind, probability = max(scenes.kinds.items(), key=lambda item: item[1])
    bar = trained.concepts.kind_threshold(kind)
    words = [WordEvidence(kind, "object", [], round(probability, 3), "supported",
                          f"the concept head on the pixels: {kind} {probability:.2f} >= its bar {bar:.2f} "
                          f"(the detector named nothing here)")]
    parts = [with_article(kind)] + [_scene_part(w) for w in scene_words[:1]]
    return _in_view(parts, len(parts) > 1), words


def _scene_part(word: str) -> str:
    return word if word in MASS_NOUNS or word.endswith("s") else with_article(word)


def in_view_caption(counts: list[tuple[str, int]]) -> str:
    """A plain sentence of what passed the evidence bar, most salient first, for a window where
    no decoded sentence reads true: [("tv", 1)] -> "a television is in view"; [("person", 2), ("dog", 1)]
    -> "two people and a dog are in view"."""
    parts = [(with_article(class_word(name)) if n <= 1 else f"{_NUMBER_WORDS.get(n, 'several')} {class_word(name, n)}")
             for name, n in counts[:2]]
    return _in_view(parts, len(parts) > 1 or bool(counts and counts[0][1] > 1))


def _in_view(parts: list[str], plural: bool) -> str:
    return f"{' and '.join(parts)} {'are' if plural else 'is'} in view"


def scene_caption(words: list[str]) -> str:
    """A plain sentence of the scene words the concept head supports, surest first, for a window
    with no object to name: ["snow", "hill"] -> "snow and a hill are in view"."""
    parts = [_scene_part(w) for w in words]
    return _in_view(parts, len(parts) > 1 or (words[0].endswith("s") and words[0] not in MASS_NOUNS))


def class_counts(frames: Sequence, classes: np.ndarray) -> dict[str, int]:
    """For each of ``classes`` (COCO ids): the most detections of it in one frame of the window."""
    counts: dict[str, int] = {}
    for c in classes:
        name = COCO_CLASSES[int(c)]
        counts[name] = max((int(np.count_nonzero(f.detections.class_id == c)) for f in frames), default=0)
    return counts


def colour_evidence(window: Window, word: str) -> WordEvidence:
    """A colour word's licence (``grounding.search.ColoursShown``): the share of the named objects'
    boxes whose central pixels show one of the colours the word may describe, and their tracks."""
    mask = sum(BIT[name] for name in COLOUR_WORDS[word])
    boxes = window.colour_boxes
    showing = [track for bits, track in boxes if bits & mask]
    share = len(showing) / len(boxes) if boxes else 0.0
    return WordEvidence(word, "colour", sorted({t for t in showing if t >= 0}), round(share, 3) if boxes else None,
                        "shown" if share >= MIN_BOX_SHARE else "not shown",
                        f"{len(showing)} of {len(boxes)} boxes of the named objects show {'/'.join(sorted(COLOUR_WORDS[word]))} "
                        f"(>= {MIN_PIXEL_SHARE:.0%} of their central pixels)")


PIXELS_RANKED = "the concept head's probability that a caption of this picture says it (it ranked the sentences)"


def word_evidence(window: Window, tokens: list[str], track_ids: dict[int, list[int]]) -> list[WordEvidence]:
    """For each content word of a caption: what licensed it. Objects: their class's tracks and best
    confidence; verbs: the motion evidence of their class (``grounding.verbs``), or "unmeasured";
    scene nouns: the concept head's probability where it scores them, else the decoder alone; on a
    still picture, a scene noun or verb the head ranks: that probability; colour words: the share
    of the named objects' boxes that show the colour. ``track_ids``: COCO class -> the window's
    track ids of it."""
    confidence = {int(c): float(f[SLOT_CONF]) for c, f in zip(window.named.class_ids, window.named.features)}
    ranked = window.scenes.ranked if window.scenes is not None and not window.is_video else {}  # a picture's words
    out = []
    for i, token in enumerate(tokens):
        if token in window.word_class:
            cls = window.word_class[token]
            out.append(WordEvidence(token, "object", track_ids.get(cls, []), round(confidence.get(cls, 0.0), 3),
                                    why=f"detected as {COCO_CLASSES[cls]}"))
        elif token in window.scene_words:
            probability = window.scenes.probability.get(token) if window.scenes else None
            if probability is None and token in ranked:
                out.append(WordEvidence(token, "scene", [], round(ranked[token], 3), "ranked", PIXELS_RANKED))
            elif probability is None:
                out.append(WordEvidence(token, "scene", why="the decoder's word: no detector class or scene score covers it"))
            else:
                supported = token in window.scenes.supported
                out.append(WordEvidence(token, "scene", [], round(probability, 3), "supported" if supported else "below its bar",
                                        "the concept head on the pixels" + ("" if supported else
                                                                            " (a picture's named objects carry it)")))
        elif token in COLOUR_WORDS:
            out.append(colour_evidence(window, token))
        elif is_verb_form(tokens, i):
            name = verb_class(token)
            support = window.verb_support.get(name) if name else None
            if support is None and token in ranked:  # a still picture: no motion, but the pixels rank it
                out.append(WordEvidence(token, "verb", [], round(ranked[token], 3), "ranked", "a still picture: no motion; "
                                        + PIXELS_RANKED))
            elif support is None:
                out.append(WordEvidence(token, "verb", verdict="unmeasured",
                                        why="no motion measure covers this verb" if name is None or window.is_video
                                        else "a still picture: no motion"))
            else:
                out.append(WordEvidence(token, "verb", list(support.track_ids), round(support.score, 3),
                                        support.verdict, support.why))
    return out


@dataclass(frozen=True)
class KindSubject:
    """Who or what a window shows when no class passes the evidence bar: a kind ("animal",
    "person"), the word for it as said, its evidence, and what the decoder may be shown for it:
    one slot of the kind's stand-in class (``KIND_STAND_IN``) carrying the kind's detections'
    statistics and appearance (or, where only the pixels say it, a bare slot), and the frames with
    the kind's boxes relabelled as the stand-in (their colours are the stand-in's); and the plain
    sentence for it ("an animal and a beach are in view") where nothing better reads true."""

    kind: str
    evidence: WordEvidence
    objects: WindowObjects
    frames: list
    in_view: str


# The class a kind is shown to the decoder as, so that it names it in words it learnt ("a dog
# runs", said as "an animal runs": ``as_kind``). A dog the detector calls "bear 0.62" is shown as
# the most common animal, never named as either.
KIND_STAND_IN = {"person": "person", "animal": "dog", "vehicle": "car"}


def kind_subject(trained: TrainedModel, frames: Sequence, seen: WindowObjects, scenes: SceneEvidence | None,
                 scene_words: list[str]) -> KindSubject | None:
    """The kind the detector is sure of (``kind_caption``), else on a still picture the kind the
    concept head sees in the pixels (``pixel_kind_caption``); None when neither."""
    detected = kind_caption(trained, frames, seen, scene_words)
    if detected is not None:
        kind, class_ids = trained.evidence.kinds_seen(seen, still=len(frames) == 1)[0]
        evidence = detected[1][0]
        stand_in = CLASS_INDEX[KIND_STAND_IN[kind]]
        objects = seen.select(np.flatnonzero(np.isin(seen.class_ids, class_ids))[:1])  # the most salient of them
        relabelled = [replace(f, detections=replace(f.detections, class_id=np.where(
            np.isin(f.detections.class_id, class_ids), stand_in, f.detections.class_id).astype(f.detections.class_id.dtype)))
            for f in frames]
        return KindSubject(kind, evidence, WindowObjects(np.array([stand_in], np.int64), objects.features, objects.appearance),
                           relabelled, detected[0])
    pixels = pixel_kind_caption(trained, scenes, scene_words) if len(frames) == 1 else None
    if pixels is None:
        return None
    evidence = pixels[1][0]
    slot = np.zeros((1, SLOT_FEATURES), np.float32)  # one of it, surely there, size and track unknown, no appearance
    slot[0, 0], slot[0, SLOT_CONF], slot[0, SLOT_AREA], slot[0, SLOT_SHARE] = np.log1p(1.0), evidence.score, 0.3, 1.0
    objects = WindowObjects(np.array([CLASS_INDEX[KIND_STAND_IN[evidence.word]]], np.int64), slot,
                            np.zeros((1, trained.network.cfg.embedding_dim), np.float32))
    return KindSubject(evidence.word, evidence, objects, list(frames), pixels[0])


def as_kind(tokens: list[str], subject: KindSubject, word_class: dict[str, int]) -> list[str]:
    """A caption decoded about the kind's stand-in classes, said of the kind: every noun of those
    classes becomes the kind word ("a brown dog is running" -> "a brown animal is running"),
    articles agreeing. A person is its own kind: its words stay."""
    if subject.kind == "person":
        return tokens
    classes = {int(c) for c in subject.objects.class_ids}
    out = list(tokens)
    for i, token in enumerate(tokens):
        if word_class.get(token) in classes:
            plural = token.endswith("s") and not token.endswith("ss")
            out[i] = KIND_PLURALS[subject.kind] if plural else subject.kind
            for j in range(i - 1, max(i - 4, -1), -1):  # "a dog", "a brown dog": the article agrees with what follows it
                if out[j] in ("a", "an"):
                    out[j] = "an" if out[j + 1][0] in "aeiou" else "a"
                    break
    return out


@torch.no_grad()
def describe_window(trained: TrainedModel, frames: Sequence, options: CaptionOptions,
                    frame_size: tuple[int, int] | None = None) -> tuple[str, float, Evidence]:
    """Caption of a window of analysed frames (``stream.AnalysedFrame``): (caption, confidence,
    evidence). The decoder sees only the objects that pass the evidence bar; the search may use
    only the words ``grounding.WORD_FILTERS`` allow; the caption is the best hypothesis that every
    rule of ``grounding.sentences`` accepts, else a plain "X is in view". When no object has enough
    evidence: a kind the detector is sure of, or on a still picture one the concept head sees in
    the pixels ("an animal": a picture is then described by the decoder, its nouns said as the
    kind; a video window gets "an animal is in view"), else the scene the concept head supports
    ("snow is in view"), else ``NOTHING_SEEN``; never a guess. ``frame_size``: (width, height)
    pixels, None for frames without a picture (whose motion cannot be checked)."""
    seen = seen_objects(trained, frames)
    named = seen.select(trained.evidence.passes(seen))
    times = [round(f.t_sec, 3) for f in frames]
    cells = window_cells([f.cells for f in frames])
    emb = trained.network.cfg.embedding_dim
    scenes = scene_evidence(trained.concepts, [f.token[:emb] for f in frames], cells, options.imgsz)
    if len(named) == 0:  # no object with enough evidence: a sure kind, the scene the pixels support, else say so
        said = sorted(scenes.supported, key=lambda w: -scenes.probability[w])[:2] if scenes is not None else []
        scene_words = [WordEvidence(w, "scene", [], round(scenes.probability[w], 3), "supported", "the concept head on the pixels")
                       for w in said]
        subject = kind_subject(trained, frames, seen, scenes, said)
        if subject is None:
            if not said:
                return NOTHING_SEEN, 1.0, Evidence([], [], times)
            return scene_caption(said), 1.0, Evidence([], [], times, {}, scene_words)
        if len(frames) == 1:  # a picture: the decoder describes the kind, as it would a named object
            tokens, confidence, window = _decoded(trained, subject.frames, subject.objects, cells, scenes, options, frame_size)
            if tokens:
                tokens = as_kind(tokens, subject, window.word_class)
                track_ids = sorted(set(subject.evidence.track_ids))
                kind_words = (subject.kind, KIND_PLURALS[subject.kind])
                words = [replace(subject.evidence, word=t) for t in dict.fromkeys(tokens) if t in kind_words]
                # the kind word's evidence is the kind's ("animal" is also a noun photos taught: not a second, scene entry)
                words = (words or [subject.evidence]) + [w for w in word_evidence(window, tokens, {})
                                                         if w.kind != "object" and w.word not in kind_words]
                return detokenize(tokens), round(confidence, 4), Evidence(track_ids, [], times, {}, words)
        return subject.in_view, 1.0, Evidence(sorted(set(subject.evidence.track_ids)), [], times, {},
                                      [subject.evidence] + scene_words[:1])
    tokens, confidence, window = _decoded(trained, frames, named, cells, scenes, options, frame_size)
    counts = class_counts(frames, named.class_ids)
    if not tokens:  # no decoded sentence reads true: what passed the bar, plainly
        salient = salient_classes(named)
        surest = [COCO_CLASSES[c] for c in salient] or [COCO_CLASSES[int(named.class_ids[0])]]
        caption, confidence = in_view_caption([(c, counts[c]) for c in surest]), 1.0
        tokens = caption.split()
    else:
        caption = detokenize(tokens)
    by_class: dict[int, set[int]] = {}
    for f in frames:
        for c, t in zip(f.detections.class_id, f.detections.track_id):
            if t >= 0 and int(c) in window.present:
                by_class.setdefault(int(c), set()).add(int(t))
    track_ids = sorted(set().union(*by_class.values())) if by_class else []
    classes = [COCO_CLASSES[int(c)] for c in named.class_ids]
    words = word_evidence(window, tokens, {c: sorted(ids) for c, ids in by_class.items()})
    return caption, round(confidence, 4), Evidence(track_ids, classes, times, counts, words)


def picture_word_probability(scenes: SceneEvidence, stoi: dict[str, int]) -> dict[int, float]:
    """Vocabulary id -> the concept head's probability of the word on a still picture: a scene
    noun's own output where it has one, else its lemma's (``ConceptHead.ranked``)."""
    words = {**scenes.ranked, **scenes.probability}
    return {stoi[w]: p for w, p in words.items() if w in stoi}


def _decoded(trained: TrainedModel, frames: Sequence, named: WindowObjects, cells, scenes: SceneEvidence | None,
             options: CaptionOptions, frame_size: tuple[int, int] | None) -> tuple[list[str] | None, float, Window]:
    """The beam search over what is named, through the grounding rules: (the best hypothesis that
    reads as a true sentence, or None; its confidence; the window the rules saw)."""
    network = trained.network
    window = Window(frames, named, trained.vocab, trained.grounding, frame_size, trained.verbs, scenes)
    states = torch.stack([f.state for f in frames])
    tracks = (track_slots(frames, frame_size, network.cfg.embedding_dim).of_classes(named.class_ids, network.cfg.track_slots)
              if network.cfg.track_slots and frame_size is not None else None)
    inputs = segment_inputs([states], [named], [cells], network.cfg, [tracks])
    decoder = network.decoder
    memory, mask, memory_proj = decoder.memory(inputs)
    odds = search_odds(window)
    # a picture's scene words are the decoder's (video keeps only supported ones), and so are its verbs
    # (no motion in one frame): rank every word the concept head scores by the pixels' evidence
    word_odds = (picture_word_probability(scenes, trained.vocab.stoi) if scenes is not None and not window.is_video
                 else {})
    hyps = beam_search(decoder, memory, mask, memory_proj, STYLE_IDS[options.style], banned=odds.banned,
                       bias=odds.bias, blocks=no_repeats(trained.vocab),
                       rank=SalientCoverage(trained.grounding, salient_classes(named), concept_probability=word_odds).rank,
                       beam_size=options.beam_size, max_len=network.cfg.max_caption_len)
    for hyp in hyps:  # the best hypothesis that reads as a true sentence about what is named
        said = true_sentence(window, trained.vocab.decode_tokens(hyp.ids))
        if said:
            return said, hyp.confidence, window
    return None, 1.0, window


@torch.no_grad()
def forecast_next(trained: TrainedModel, history: Sequence, frame_size: tuple[int, int],
                  arrivals: Arrivals | None = None) -> list[NextEvent]:
    """What happens in the next ``horizon_sec``, from the last ``HISTORY_FRAMES`` analysed frames
    (``frame_size``: (width, height) pixels): the next-event head's probabilities through the
    forecast rules (``grounding.forecast``); only classes with enough evidence in that history
    may be named."""
    network = trained.network
    frames = list(history)[-HISTORY_FRAMES:]
    tokens = torch.from_numpy(np.stack([f.token for f in frames]))[None]
    probs = network.predict_next(torch.stack([f.state for f in frames])[None], tokens).last_step()
    evidenced = set(int(c) for c in grounded_objects(trained, frames).class_ids)
    velocity_x = frames[-1].token[TokenLayout(network.cfg.embedding_dim).velocity]
    return forecast_sentences(probs.presence, probs.enter, probs.leave, probs.direction, frames, frame_size,
                              velocity_x, network.cfg.horizon_sec, evidenced, arrivals)
