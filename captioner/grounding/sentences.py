"""Rules on finished sentences: a ``SentenceRewrite`` turns a hypothesis into what is said (or
gives it up: None), a ``SentenceCheck`` accepts or rejects the result. ``true_sentence`` runs
every rule of ``SENTENCE_REWRITES`` and ``SENTENCE_CHECKS``; the first hypothesis that passes
is the caption."""

from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np

from ..boxes import box_overlaps
from ..coco import ANIMATE_CLASSES, COCO_CLASSES, HANDHELD_CLASSES, class_word
from ..colours import joined_colours_fit
from .window import Window
from .words import (COMPOUND_ONLY, DRIVE_VERBS, FUNCTION_WORDS, GAIT_VERBS, GAME_NAMES, LINKING_VERBS, MODIFIERS, NOT_WALKED_WITH,
                    PHRASE_OPENERS, PLACE_WORDS, QUANTITY_NOUNS, RIDE_VERBS, STILL_VERBS, SUPPORT_VERBS)

ON_OR_IN_SHARE = 0.3  # of the smaller box inside the other: a board under the feet, a rider on a horse, a driver in a car
# a driver seen through a closed vehicle's windows: their box within its box, and much shorter
CLOSED_VEHICLES = frozenset("car bus truck train".split())
INSIDE_SHARE = 0.6  # of the person's box
INSIDE_HEIGHT = 0.6  # of the vehicle box's height: a seated driver's head and shoulders, not a standing body
ON_BELOW = 0.1  # of an open vehicle box's height: how far below it a rider's box may end (feet on the pegs)
STANDING_ON_BELOW = 0.25  # of a vehicle box's height: feet on its roof or deck end above its lowest quarter
STAND_VERBS = frozenset("stand stands standing stood".split())


class SentenceRewrite(Protocol):
    def rewrite(self, window: Window, tokens: list[str]) -> list[str] | None:
        """``tokens`` as they may be said of ``window``; None (or nothing left): not at all."""


class SentenceCheck(Protocol):
    def accepts(self, window: Window, tokens: list[str]) -> bool:
        """Whether ``tokens`` read as a true sentence about ``window``."""


# ---- rewrites -----------------------------------------------------------------------------------

def strip_scene_phrases(tokens: list[str], scene_words: set[str]) -> list[str] | None:
    """``tokens`` with every phrase that ends in a scene word left out ("a person in a blue shirt is
    standing in front of a building" -> "a person is standing"); None when a scene word is not in
    such a phrase (then the caption cannot be saved by cutting)."""
    out = list(tokens)
    i = len(out) - 1
    while i >= 0:
        if out[i] not in scene_words:
            i -= 1
            continue
        j = i - 1
        while j >= 0 and (out[j] in MODIFIERS or out[j] in scene_words):
            j -= 1
        if j < 0 or out[j] not in PHRASE_OPENERS:
            return None
        while j >= 2 and out[j - 1] in PLACE_WORDS and out[j - 2] in PHRASE_OPENERS:  # "in front of"
            j -= 2
        del out[j:i + 1]
        i = j - 1
    return out


def join_repeated_nouns(tokens: list[str], word_class: dict[str, int]) -> list[str]:
    """"a person and person are sitting" -> "two people are sitting": what the decoder learned from
    captions whose "a man and a woman" became neutral words; "a dog and a dog" likewise."""
    out = list(tokens)
    for i in range(len(out) - 3):
        if out[i] not in ("a", "an") or out[i + 1] not in word_class or out[i + 2] != "and":
            continue
        k = i + 4 if out[i + 3] in ("a", "an") else i + 3
        name = COCO_CLASSES[word_class[out[i + 1]]]
        if k < len(out) and out[k] == out[i + 1] == class_word(name):
            return out[:i] + ["two", class_word(name, 2)] + join_repeated_nouns(out[k + 1:], word_class)
    return out


class ScenePhrasesWithEvidence:
    """Nouns no COCO class covers ("grass", "beach") only where the concept head supports them
    (``Window.unsupported_scene_words``): a phrase holding another is left out ("a person in a red
    shirt is standing on the beach" -> "a person is standing on the beach" when the head supports
    "beach" but not "shirt"); without a head, every such phrase of video (they were wrong too
    often there, model card)."""

    def rewrite(self, window: Window, tokens: list[str]) -> list[str] | None:
        unsupported = window.unsupported_scene_words
        return strip_scene_phrases(tokens, unsupported) if unsupported else tokens


class TwoNotRepeated:
    """"a person and person" reads "two people" (``join_repeated_nouns``)."""

    def rewrite(self, window: Window, tokens: list[str]) -> list[str] | None:
        return join_repeated_nouns(tokens, window.word_class)


# ---- checks -------------------------------------------------------------------------------------

def is_complete(tokens: list[str]) -> bool:
    """False for a sentence cut short ("two cars are", "playing with a soccer"): the decoder ended
    where the word it wanted next may not be said here."""
    if not tokens or tokens[-1] in FUNCTION_WORDS:
        return False
    return not (len(tokens) >= 2 and tokens[-2] in ("a", "an", "the") and tokens[-1] in GAME_NAMES)


def names_its_subject(tokens: list[str], nouns: set[str]) -> bool:
    """False when the first "is"/"are" comes before any noun ("a large black and white spotted is
    running"): what the decoder writes when the noun it wanted may not be said here."""
    for token in tokens:
        if token in nouns or token in QUANTITY_NOUNS:
            return True
        if token in LINKING_VERBS:
            return False
    return True


ON_OR_IN = frozenset("on in into onto inside upon atop".split())


def resting_on(tokens: list[str], i: int, word_class: dict[str, int]) -> str | None:
    """The object word the action at ``tokens[i]`` rests on or in: its direct object ("riding a
    horse"), or the noun after "on" / "in" / "into"... ("sitting on a bench", "walking on the top of
    a bottle"); None for a place beside it ("sitting in front of a television", "walking next to a
    car") or no object word within a few words."""
    j = i + 1
    if j < len(tokens) and tokens[j] in ON_OR_IN:
        j += 1
        k = j
        while k < len(tokens) and tokens[k] in ("a", "an", "the"):
            k += 1
        if k + 1 < len(tokens) and tokens[k] in PLACE_WORDS and tokens[k + 1] == "of":
            if tokens[k] != "top":
                return None  # "in front of", "on the side of": beside it, not on it
            j = k + 2
    elif j < len(tokens) and tokens[j] not in ("a", "an", "the") and tokens[j] not in word_class:
        return None  # "sitting next to", "standing near", "walking with": not what it rests on
    for word in tokens[j:j + 5]:
        if word in word_class:
            return word
        if word in PHRASE_OPENERS:  # another phrase: "sitting on a bench in front of a tv" rests on the bench
            return None
    return None


# hand-sized things a person sits or stands in front of: screens and appliances
FACED_THINGS = frozenset({"tv", "laptop", "microwave", "toaster", "clock", "keyboard"})
# hand-sized things something can be in: vessels, bags, appliances, a screen (shown in it), what is worn
HOLDS_THINGS = frozenset({"bottle", "wine glass", "cup", "bowl", "vase", "handbag", "backpack", "microwave", "toaster",
                          "tv", "tie", "baseball glove", "cake", "sandwich"})


def in_front_of(tokens: list[str], i: int, word_class: dict[str, int]) -> str | None:
    """The object word of "in front of ..." right after ``tokens[i]`` ("standing in front of a tv")."""
    if tokens[i + 1:i + 4] != ["in", "front", "of"]:
        return None
    return next((word for word in tokens[i + 4:i + 8] if word in word_class), None)


def misplaces_an_object(tokens: list[str], word_class: dict[str, int]) -> bool:
    """True when the sentence pairs a real object with a phrase that is not true of it:
    - a hand-sized object (``coco.HANDHELD_CLASSES``) is sat, stood, lain, ridden, jumped or
      climbed on ("a person is sitting on a television", ``resting_on``), or sat or stood in front
      of when it is not a screen or appliance ("standing in front of a handbag");
    - someone walks or runs on or in any object, or with a vehicle ("walking on a table",
      "walk in a race car", "walking with a car");
    - someone rides a car ("riding a car": one rides in it, or drives it);
    - a thing sits, stands, lies or rides ("two cars are standing", "a bike is riding on a dirt
      bike": the rider the detector missed);
    - a hand-sized object acts ("a bowl is preparing", "a tv is watching tv");
    - the subject is on or in a thing of its own kind ("a bowl is in a bowl" of one dish), or in a
      hand-sized thing that holds nothing ("a tennis racket is in a ball");
    - a word that names a thing only in one compound is said without it ("a potted bowl")."""
    def handheld(word: str) -> bool:
        cls = word_class.get(word)
        return cls is not None and COCO_CLASSES[cls] in HANDHELD_CLASSES

    for i, token in enumerate(tokens):
        if token in SUPPORT_VERBS:
            noun = resting_on(tokens, i, word_class)
            if noun is not None and handheld(noun):
                return True
            beside = in_front_of(tokens, i, word_class)
            if beside is not None and handheld(beside) and COCO_CLASSES[word_class[beside]] not in FACED_THINGS:
                return True  # "standing in front of a handbag": one faces a screen, not a bag
        if token in GAIT_VERBS and tokens[i + 1:i + 2] == ["with"]:
            noun = next((word for word in tokens[i + 2:i + 6] if word in word_class), None)
            if noun is not None and COCO_CLASSES[word_class[noun]] in NOT_WALKED_WITH:
                return True
        elif token in GAIT_VERBS and resting_on(tokens, i, word_class) is not None:
            return True
        if token in RIDE_VERBS and tokens[i + 1:i + 2] in (["a"], ["the"]):
            noun = next((word for word in tokens[i + 2:i + 4] if word in word_class), None)
            if noun is not None and COCO_CLASSES[word_class[noun]] == "car":
                return True
    if any(token in COMPOUND_ONLY and tokens[i + 1:i + 2] and tokens[i + 1] not in COMPOUND_ONLY[token]
           for i, token in enumerate(tokens)):
        return True
    subject = next((t for t in tokens if t in word_class), None)
    if subject is not None:
        start = tokens.index(subject) + 1
        for i in range(start, len(tokens)):
            if tokens[i] in LINKING_VERBS or tokens[i] in SUPPORT_VERBS:
                ground = resting_on(tokens, i, word_class)
                if ground is not None and word_class[ground] == word_class[subject]:
                    return True  # "a bowl is in a bowl": one dish, said twice
                if ground is not None and tokens[i] in LINKING_VERBS and tokens[i + 1:i + 2] in (["in"], ["inside"]) \
                        and handheld(ground) and COCO_CLASSES[word_class[ground]] not in HOLDS_THINGS:
                    return True  # "a tennis racket is in a ball"
        after = tokens[start:]
        if after[:1] and after[0] in LINKING_VERBS:
            if handheld(subject) and any(t.endswith("ing") for t in after[1:3]):
                return True
            if COCO_CLASSES[word_class[subject]] not in ANIMATE_CLASSES and after[1:2] and after[1] in STILL_VERBS | RIDE_VERBS:
                return True  # "two cars are standing", "a bike is riding": only people and animals sit, stand, lie or ride
        if COCO_CLASSES[word_class[subject]] not in ANIMATE_CLASSES and after[:1] and after[0] in RIDE_VERBS:
            return True  # "a bike rides through the air"
    return False


def rides_what_it_touches(tokens: list[str], word_class: dict[str, int],
                          frames_boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """False when the sentence says its subject rides or drives a thing ("a person is driving a
    car", "a person is riding a motorcycle") but no box of the subject's class ever overlaps a
    box of that thing by ``ON_OR_IN_SHARE`` of the smaller one: the person the detector saw walks
    past the car. ``frames_boxes``: per frame (box_xyxy (n, 4), class_id (n,)). True when the
    sentence says no such thing, names no subject, or no frame has boxes of both (nothing to
    check: e.g. inputs without boxes)."""
    verb = next((i for i, t in enumerate(tokens) if t in RIDE_VERBS or t in DRIVE_VERBS), None)
    if verb is None:
        return True
    subject = next((word_class[t] for t in reversed(tokens[:verb]) if t in word_class), None)
    ridden = next((word_class[t] for t in tokens[verb + 1:verb + 5] if t in word_class), None)
    if subject is None or ridden is None or subject == ridden:
        return True
    seen_together = False
    for boxes, classes in frames_boxes:
        riders, things = boxes[classes == subject], boxes[classes == ridden]
        if len(riders) == 0 or len(things) == 0:
            continue
        seen_together = True
        inter, rider_area, thing_area = box_overlaps(riders, things)
        smaller = np.maximum(np.minimum(rider_area[:, None], thing_area[None, :]), 1e-6)
        if (inter / smaller >= ON_OR_IN_SHARE).any():
            return True
    return not seen_together


def stands_on_what_holds_it(tokens: list[str], word_class: dict[str, int],
                            frames_boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """False when the sentence says its subject stands on a vehicle ("a person is standing on a
    car") but in no frame with boxes of both does a box of the subject end (its feet) inside the
    upper ``1 - STANDING_ON_BELOW`` of one of the vehicle's, across it: a person standing in front
    of a car has their feet at the car's own bottom edge or below. True when the sentence says no
    such thing or no frame has boxes of both."""
    verb = next((i for i, t in enumerate(tokens) if t in STAND_VERBS), None)
    if verb is None:
        return True
    ground = resting_on(tokens, verb, word_class)
    subject = next((word_class[t] for t in reversed(tokens[:verb]) if t in word_class), None)
    if ground is None or subject is None or COCO_CLASSES[word_class[ground]] not in NOT_WALKED_WITH:
        return True
    seen_together = False
    for boxes, classes in frames_boxes:
        people, vehicles = boxes[classes == subject], boxes[classes == word_class[ground]]
        if len(people) == 0 or len(vehicles) == 0:
            continue
        seen_together = True
        feet_x, feet_y = (people[:, None, 0] + people[:, None, 2]) / 2, people[:, None, 3]
        on_top = ((feet_x > vehicles[None, :, 0]) & (feet_x < vehicles[None, :, 2]) & (feet_y > vehicles[None, :, 1])
                  & (feet_y < vehicles[None, :, 3] - STANDING_ON_BELOW * (vehicles[None, :, 3] - vehicles[None, :, 1])))
        if on_top.any():
            return True
    return not seen_together


def drives_what_it_moves_with(tokens: list[str], word_class: dict[str, int], window: Window) -> bool:
    """Of a video window, False when the sentence says a person or animal drives a vehicle ("a
    person is driving a car") but no track of the subject's class moves with a moving track of the
    vehicle's class: a vehicle the drive evidence lists as moving whose box holds the person's in
    at least half of their frames (``TrackMotion.partners``), the person moving by the vehicles'
    own bar unless the camera moves, and seen in or on it (``seen_driving``). A box overlapping a
    car's in a frame is not enough: people walking past, or standing in front of, parked cars
    overlap them, and a parked car half hidden at the frame's edge can pass the vehicles' bar by
    its box's size jitter alone. True when the sentence says no such thing or the window is a
    still picture (one frame shows no motion: ``rides_what_it_touches`` decides)."""
    verb = next((i for i, t in enumerate(tokens) if t in DRIVE_VERBS), None)
    if verb is None or window.motion is None:
        return True
    subject = next((word_class[t] for t in reversed(tokens[:verb]) if t in word_class), None)
    # the vehicle is what is driven: the verb's object ("driving a red car"), not "driving past a truck"
    after = list(itertools.takewhile(lambda t: t in MODIFIERS or t in word_class, tokens[verb + 1:verb + 5]))
    vehicle = next((word_class[t] for t in after if t in word_class), None)
    if subject is None or vehicle is None or COCO_CLASSES[subject] not in ANIMATE_CLASSES:
        # "a car is driving"; "a person is driving" of a motorcyclist whose motorcycle the detector
        # missed (sj23patel_road_traffic_india): the drive evidence's call
        return True
    support = window.verb_support.get("drive")
    moving = set(support.track_ids) if support is not None and support.verdict == "supported" else set()
    vehicles = {t.track_id: t.class_id for t in window.motion.tracks if t.track_id in moving and t.class_id == vehicle}
    # the driver moves as the vehicle does (by the vehicles' own bar), unless the camera moves with both
    camera = window.verbs.camera_moves(window.motion)
    return any(t.class_id == subject and (camera or window.verbs.drives(t)) and
               any(seen_driving(window.frames, t.track_id, v, COCO_CLASSES[vehicles[v]] in CLOSED_VEHICLES)
                   for v in set(vehicles).intersection(t.partners))
               for t in window.motion.tracks)


def seen_driving(frames, person: int, vehicle: int, closed: bool) -> bool:
    """Whether track ``person`` is seen in or on track ``vehicle`` in at least half of the frames
    both are in. In a closed one (a car, bus, truck, train: a driver seen through its windows) the
    person's box lies >= ``INSIDE_SHARE`` within the vehicle's and is at most ``INSIDE_HEIGHT`` of
    its height; on an open one (a motorcycle, a bicycle) the person's feet are no lower than its
    wheels: their box ends at most ``ON_BELOW`` of the vehicle box's height below its bottom.
    Someone standing in front of a car (a presenter in a showroom, a pedestrian before a parked car)
    shows a whole body, as tall as the car or taller, standing on the floor before it."""
    seen = both = 0
    for f in frames:
        d = f.detections
        p, v = np.nonzero(d.track_id == person)[0], np.nonzero(d.track_id == vehicle)[0]
        if not len(p) or not len(v):
            continue
        both += 1
        a, b = d.box_xyxy[p[0]], d.box_xyxy[v[0]]
        height = b[3] - b[1]
        if closed:
            inter, area, _ = box_overlaps(a, b)
            seen += bool(inter[0, 0] >= INSIDE_SHARE * max(area[0], 1e-6) and a[3] - a[1] <= INSIDE_HEIGHT * height)
        else:
            seen += bool(a[3] <= b[3] + ON_BELOW * height)
    return both > 0 and 2 * seen >= both


class Complete:
    """Not cut short (``is_complete``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return is_complete(tokens)


class NamesItsSubject:
    """A noun before the first "is"/"are" (``names_its_subject``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return names_its_subject(tokens, window.nouns)


class JoinedColoursShown:
    """"black and white" only when one named box shows both (``colours.joined_colours_fit``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return joined_colours_fit(tokens, window.box_colours)


class ObjectsInPlace:
    """No object in a phrase that is not true of it (``misplaces_an_object``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return not misplaces_an_object(tokens, window.word_class)


class StandsOnWhatHoldsIt:
    """"standing on a car" only when the subject's feet are seen on it (``stands_on_what_holds_it``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return stands_on_what_holds_it(tokens, window.word_class, window.boxes)


class RidesWhatItTouches:
    """"riding" / "driving" a thing only when a box of the subject lies on or in one of that
    thing's in some frame (``rides_what_it_touches``); "driving" a vehicle in a video only when
    the subject moves with a moving one it is seen in or on (``drives_what_it_moves_with``)."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return rides_what_it_touches(tokens, window.word_class, window.boxes) and \
            drives_what_it_moves_with(tokens, window.word_class, window)


def grounded_in_the_air(tokens: list[str]) -> bool:
    """A walk, a posture or a drive said to happen "in / through the air" ("a bird is walking through
    the air" of hens on a ramp, once flying was ruled out): it cannot be true of anything."""
    return any(tokens[i:i + 2] == ["the", "air"] for i in range(len(tokens) - 1)) and \
        any(t in GAIT_VERBS or t in STILL_VERBS or t in DRIVE_VERBS for t in tokens)


class NothingGroundedAloft:
    """Of a video window, nothing walks, stands or drives "in the air" (``grounded_in_the_air``); a
    photo's "a dog running through the air" may be a leap the picture froze."""

    def accepts(self, window: Window, tokens: list[str]) -> bool:
        return not (window.is_video and grounded_in_the_air(tokens))


SENTENCE_REWRITES: list[SentenceRewrite] = [ScenePhrasesWithEvidence(), TwoNotRepeated()]
SENTENCE_CHECKS: list[SentenceCheck] = [Complete(), NamesItsSubject(), JoinedColoursShown(), ObjectsInPlace(),
                                        RidesWhatItTouches(), StandsOnWhatHoldsIt(), NothingGroundedAloft()]


def true_sentence(window: Window, tokens: list[str]) -> list[str] | None:
    """``tokens`` rewritten by every ``SENTENCE_REWRITES`` rule, if every ``SENTENCE_CHECKS`` rule
    accepts the result; else None."""
    for rule in SENTENCE_REWRITES:
        tokens = rule.rewrite(window, tokens)
        if not tokens:
            return None
    return tokens if all(check.accepts(window, tokens) for check in SENTENCE_CHECKS) else None
