"""Stage 8: windows of analysed frames -> what is said of them: a caption with its evidence, and the
forecast of what happens next. The model (``model.py``) proposes, the search
(``decoding.beam_search``) looks, and the rules of ``grounding`` decide what may be said."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .checkpoint import TrainedModel
from .coco import COCO_CLASSES, KIND_PLURALS, class_word, with_article
from .concepts import scene_evidence
from .decoding import beam_search
from .grounding import SalientCoverage, Window, forecast_sentences, no_repeats, search_odds, true_sentence
from .grounding.forecast import Arrivals
from .grounding.verbs import is_verb_form, verb_class
from .grounding.words import MASS_NOUNS
from .model import HISTORY_FRAMES, STYLE_IDS, segment_inputs
from .options import CaptionOptions
from .result import Evidence, NextEvent, WordEvidence
from .tokens import SLOT_CONF, TokenLayout, WindowObjects, salient_classes, window_cells, window_objects
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
    parts = [KIND_PLURALS[kind] if several else with_article(kind)]
    if scene_words:
        parts.append(scene_words[0] if scene_words[0] in MASS_NOUNS or scene_words[0].endswith("s")
                     else with_article(scene_words[0]))
    return _in_view(parts, several or len(parts) > 1), words


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
    parts = [w if w in MASS_NOUNS or w.endswith("s") else with_article(w) for w in words]
    return _in_view(parts, len(parts) > 1 or (words[0].endswith("s") and words[0] not in MASS_NOUNS))


def class_counts(frames: Sequence, classes: np.ndarray) -> dict[str, int]:
    """For each of ``classes`` (COCO ids): the most detections of it in one frame of the window."""
    counts: dict[str, int] = {}
    for c in classes:
        name = COCO_CLASSES[int(c)]
        counts[name] = max((int(np.count_nonzero(f.detections.class_id == c)) for f in frames), default=0)
    return counts


def word_evidence(window: Window, tokens: list[str], track_ids: dict[int, list[int]]) -> list[WordEvidence]:
    """For each content word of a caption: what licensed it. Objects: their class's tracks and best
    confidence; verbs: the motion evidence of their class (``grounding.verbs``), or "unmeasured";
    scene nouns: the concept head's probability where it scores them, else the decoder alone. ``track_ids``: COCO class -> the window's track ids of it."""
    confidence = {int(c): float(f[SLOT_CONF]) for c, f in zip(window.named.class_ids, window.named.features)}
    out = []
    for i, token in enumerate(tokens):
        if token in window.word_class:
            cls = window.word_class[token]
            out.append(WordEvidence(token, "object", track_ids.get(cls, []), round(confidence.get(cls, 0.0), 3),
                                    why=f"detected as {COCO_CLASSES[cls]}"))
        elif token in window.scene_words:
            probability = window.scenes.probability.get(token) if window.scenes else None
            if probability is None:
                out.append(WordEvidence(token, "scene", why="the decoder's word: no detector class or scene score covers it"))
            else:
                supported = token in window.scenes.supported
                out.append(WordEvidence(token, "scene", [], round(probability, 3), "supported" if supported else "below its bar",
                                        "the concept head on the pixels" + ("" if supported else
                                                                            " (a picture's named objects carry it)")))
        elif is_verb_form(tokens, i):
            name = verb_class(token)
            support = window.verb_support.get(name) if name else None
            if support is None:
                out.append(WordEvidence(token, "verb", verdict="unmeasured",
                                        why="no motion measure covers this verb" if name is None or window.is_video
                                        else "a still picture: no motion"))
            else:
                out.append(WordEvidence(token, "verb", list(support.track_ids), round(support.score, 3),
                                        support.verdict, support.why))
    return out


@torch.no_grad()
def describe_window(trained: TrainedModel, frames: Sequence, options: CaptionOptions,
                    frame_size: tuple[int, int] | None = None) -> tuple[str, float, Evidence]:
    """Caption of a window of analysed frames (``stream.AnalysedFrame``): (caption, confidence,
    evidence). The decoder sees only the objects that pass the evidence bar; the search may use
    only the words ``grounding.WORD_FILTERS`` allow; the caption is the best hypothesis that every
    rule of ``grounding.sentences`` accepts, else a plain "X is in view". When no object has enough
    evidence, only a scene the concept head supports may be described ("a snowy mountain"), else
    ``NOTHING_SEEN``. ``frame_size``: (width, height) pixels, None for frames without a picture
    (whose motion cannot be checked)."""
    network = trained.network
    seen = seen_objects(trained, frames)
    named = seen.select(trained.evidence.passes(seen))
    times = [round(f.t_sec, 3) for f in frames]
    cells = window_cells([f.cells for f in frames])
    emb = network.cfg.embedding_dim
    scenes = scene_evidence(trained.concepts, [f.token[:emb] for f in frames], cells, options.imgsz)
    if len(named) == 0:  # no object with enough evidence: a sure kind, the scene the pixels support, else say so; never guess
        said = sorted(scenes.supported, key=lambda w: -scenes.probability[w])[:2] if scenes is not None else []
        scene_words = [WordEvidence(w, "scene", [], round(scenes.probability[w], 3), "supported", "the concept head on the pixels")
                       for w in said]
        kind = kind_caption(trained, frames, seen, said)
        if kind is not None:
            caption, words = kind
            return caption, 1.0, Evidence([], [], times, {}, words + scene_words[:1])
        if not said:
            return NOTHING_SEEN, 1.0, Evidence([], [], times)
        return scene_caption(said), 1.0, Evidence([], [], times, {}, scene_words)
    window = Window(frames, named, trained.vocab, trained.grounding, frame_size, trained.verbs, scenes)
    states = torch.stack([f.state for f in frames])
    tracks = (track_slots(frames, frame_size, emb).of_classes(named.class_ids, network.cfg.track_slots)
              if network.cfg.track_slots and frame_size is not None else None)
    inputs = segment_inputs([states], [named], [cells], network.cfg, [tracks])
    decoder = network.decoder
    memory, mask, memory_proj = decoder.memory(inputs)
    odds = search_odds(window)
    salient = salient_classes(named)
    hyps = beam_search(decoder, memory, mask, memory_proj, STYLE_IDS[options.style], banned=odds.banned,
                       bias=odds.bias, blocks=no_repeats(trained.vocab), rank=SalientCoverage(trained.grounding, salient).rank,
                       beam_size=options.beam_size, max_len=network.cfg.max_caption_len)
    counts = class_counts(frames, named.class_ids)
    surest = [COCO_CLASSES[c] for c in salient] or [COCO_CLASSES[int(named.class_ids[0])]]
    caption, confidence = in_view_caption([(c, counts[c]) for c in surest]), 1.0  # when no decoded sentence reads true
    tokens = caption.split()
    for hyp in hyps:  # the best hypothesis that reads as a true sentence about what is named
        said = true_sentence(window, trained.vocab.decode_tokens(hyp.ids))
        if said:
            tokens, caption, confidence = said, detokenize(said), hyp.confidence
            break
    by_class: dict[int, set[int]] = {}
    for f in frames:
        for c, t in zip(f.detections.class_id, f.detections.track_id):
            if t >= 0 and int(c) in window.present:
                by_class.setdefault(int(c), set()).add(int(t))
    track_ids = sorted(set().union(*by_class.values())) if by_class else []
    classes = [COCO_CLASSES[int(c)] for c in named.class_ids]
    words = word_evidence(window, tokens, {c: sorted(ids) for c, ids in by_class.items()})
    return caption, round(confidence, 4), Evidence(track_ids, classes, times, counts, words)


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
