"""Grounded template captions built from window events: training targets for real-video windows.

Every object noun a caption uses is ``coco.class_word`` of a class present in the events, so a
decoder trained on these sentences never learns to name what the detector did not see. Phrasing
is varied with a caller-owned ``random.Random`` (verbs per class family, number words, clause
connectives), so one window can give several distinct targets.
"""

from __future__ import annotations

import logging
import random
from typing import Sequence

from ..coco import class_word
from ..events import Event

log = logging.getLogger(__name__)

VEHICLES = frozenset({"bicycle", "car", "motorcycle", "bus", "train", "truck", "boat", "airplane"})
ANIMALS = frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"})
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
TRACK_KINDS = ("enters", "moves", "stops", "leaves")  # also the order in which merged predicates read
MAX_TRIES_PER_VARIANT = 30  # all_descriptions gives up after this many draws per wanted variant
EMPTY_SCENE = ("the scene is empty", "nothing is in view", "an empty scene", "nothing happens")

# Verb phrases as (singular, plural), by family (person, vehicle, animal, object) or by class
# name where the family verb would read wrong (a bird flies).
_MOVE = {
    "person": [("walks", "walk"), ("is walking", "are walking"), ("moves", "move")],
    "vehicle": [("drives", "drive"), ("is driving", "are driving"), ("moves", "move")],
    "animal": [("runs", "run"), ("is running", "are running"), ("moves", "move")],
    "object": [("moves", "move"), ("is moving", "are moving")],
}
_MOVE_OVERRIDE = {  # classes whose family verb would read wrong
    "bicycle": [("rolls", "roll"), ("moves", "move")], "airplane": [("flies", "fly"), ("moves", "move")],
    "boat": [("sails", "sail"), ("moves", "move")], "train": [("moves", "move"), ("travels", "travel")],
    "bird": [("flies", "fly"), ("moves", "move")],
}
_PASS = {"vehicle": [("passes", "pass"), ("goes by", "go by")], "person": [("goes by", "go by")]}  # lateral only
_ENTER = {
    "person": [("enters", "enter"), ("walks in", "walk in"), ("comes in", "come in")],
    "vehicle": [("enters", "enter"), ("comes in", "come in"), ("enters the frame", "enter the frame")],
    "animal": [("enters", "enter"), ("runs in", "run in"), ("comes in", "come in")],
    "object": [("enters", "enter"), ("comes in", "come in")],
    "bird": [("flies in", "fly in"), ("enters", "enter")],
}
_LEAVE = {
    "person": [("leaves", "leave"), ("exits", "exit"), ("walks out", "walk out")],
    "vehicle": [("leaves", "leave"), ("drives off", "drive off"), ("goes out of view", "go out of view")],
    "animal": [("leaves", "leave"), ("runs off", "run off"), ("goes out of view", "go out of view")],
    "object": [("leaves", "leave"), ("goes out of view", "go out of view")],
    "bird": [("flies off", "fly off"), ("leaves", "leave")],
}
_STOP = {
    "person": [("stops", "stop"), ("stops walking", "stop walking"), ("comes to a stop", "come to a stop")],
    "vehicle": [("stops", "stop"), ("comes to a stop", "come to a stop"), ("comes to a halt", "come to a halt")],
    "animal": [("stops", "stop"), ("stops running", "stop running"), ("comes to a stop", "come to a stop")],
    "object": [("stops", "stop"), ("stops moving", "stop moving")],
}
_STILL = {"person": [("is standing", "are standing"), ("stands", "stand")],
          "animal": [("is standing", "are standing")]}
_NEUTRAL = [("is visible", "are visible"), ("is in view", "are in view"), ("can be seen", "can be seen")]
_LATERAL = {"left": ["to the left", "from right to left", "toward the left"],
            "right": ["to the right", "from left to right", "toward the right"]}
_DEPTH = {"toward": ["toward the camera", "closer to the camera"],
          "away": ["away from the camera", "into the distance"]}
_FROM_SIDE = {"left": "from the left", "right": "from the right", "top": "from the top", "bottom": "from the bottom"}
_TO_SIDE = {"left": ["to the left", "on the left"], "right": ["to the right", "on the right"],
            "top": ["at the top"], "bottom": ["at the bottom"]}
_JOIN = (" while ", " and ", " as ")


def _family(name: str) -> str:
    if name == "person":
        return "person"
    return "vehicle" if name in VEHICLES else "animal" if name in ANIMALS else "object"


def _verb(table: dict, name: str, count: int, rng: random.Random) -> str:
    options = table.get(name) or table[_family(name)]
    singular, plural = rng.choice(options)
    return singular if count == 1 else plural


def noun_phrase(name: str, count: int, rng: random.Random) -> str:
    """"a person", "an umbrella", "three cars", "several people" / "many people" (> ten), or
    sometimes the bare plural ("cars") for two or more."""
    if count <= 1:
        word = class_word(name, 1)
        return ("an " if word[0] in "aeiou" else "a ") + word
    plural = class_word(name, count)
    if rng.random() < 0.25:
        return plural
    quantity = NUMBER_WORDS[count] if count <= 10 else rng.choice(("several", "many"))
    return f"{quantity} {plural}"


def _predicate(event: Event, rng: random.Random) -> str:
    """The verb phrase of a track event (subject left out), agreeing with ``event.count``."""
    name, n = event.class_name, event.count
    if event.kind == "enters":
        return f"{_verb(_ENTER, name, n, rng)} {_FROM_SIDE[event.side or 'left']}"
    if event.kind == "leaves":
        return f"{_verb(_LEAVE, name, n, rng)} {rng.choice(_TO_SIDE[event.side or 'left'])}"
    if event.kind == "stops":
        return _verb(_STOP, name, n, rng)
    if event.direction in _LATERAL:
        table = _MOVE_OVERRIDE if name in _MOVE_OVERRIDE else _MOVE
        if _family(name) in _PASS and rng.random() < 0.3:
            table = _PASS
        return f"{_verb(table, name, n, rng)} {rng.choice(_LATERAL[event.direction])}"
    verb = _verb(_MOVE_OVERRIDE if name in _MOVE_OVERRIDE else _MOVE, name, n, rng)
    return f"{verb} {rng.choice(_DEPTH.get(event.direction or '', ['']))}".strip()


def _present_clause(event: Event, rng: random.Random, moving_classes: set[str]) -> str:
    np_ = noun_phrase(event.class_name, event.count, rng)
    if rng.random() < 0.35:
        return f"there {'is' if event.count == 1 else 'are'} {np_}"
    # say "standing" only when no event of this window has the class moving
    table = _STILL if event.class_name not in moving_classes and _family(event.class_name) in _STILL else None
    options = (table[_family(event.class_name)] if table else []) + _NEUTRAL
    singular, plural = rng.choice(options)
    return f"{np_} {singular if event.count == 1 else plural}"


def _together_clause(event: Event, other_count: int, rng: random.Random) -> str:
    a = noun_phrase(event.class_name, event.count, rng)
    b = noun_phrase(event.other_class or "", other_count, rng)
    template = rng.randrange(4)
    if template == 0:
        return f"{a} and {b} are together"
    if template == 1:
        return f"{a} and {b} are in the scene"
    if template == 2:
        return f"there {'is' if event.count == 1 else 'are'} {a} and {b}"
    return f"{a} {'is' if event.count == 1 else 'are'} with {b}"


def _same_subject(a: Event, b: Event) -> bool:
    return (a.kind in TRACK_KINDS and b.kind in TRACK_KINDS and a.class_name == b.class_name
            and a.count == b.count and bool(set(a.track_ids) & set(b.track_ids)))


def _select(events: Sequence[Event], max_clauses: int) -> list[list[Event]]:
    """Pick up to ``max_clauses`` events, most salient first, as groups sharing one subject.

    A track event about the same tracks as an already chosen one joins its group ("a person
    enters from the left and walks to the right"); anything else about an already named class
    is skipped, so a caption never names the same class twice.
    """
    groups: list[list[Event]] = []
    named: set[str] = set()
    used = 0
    for event in sorted(events, key=lambda e: -e.salience):  # stable: keeps the events' tie order
        if used >= max_clauses:
            break
        classes = {event.class_name} | ({event.other_class} if event.other_class else set())
        group = next((g for g in groups if _same_subject(g[0], event)), None)
        if group is not None and all(e.kind != event.kind for e in group):
            group.append(event)
        elif classes & named:
            continue
        else:
            groups.append([event])
        named |= classes
        used += 1
    return groups


def describe_events(events: Sequence[Event], rng: random.Random, max_clauses: int = 2) -> str:
    """One lowercase caption without a final period, naming only classes in ``events``.

    ``max_clauses``: how many events at most the caption states (>= 1).
    """
    if max_clauses < 1:
        raise ValueError(f"max_clauses must be >= 1, got {max_clauses}")
    if not events:
        return rng.choice(EMPTY_SCENE)
    moving = {e.class_name for e in events if e.kind in ("moves", "enters", "leaves")}
    counts = {e.class_name: e.count for e in events if e.kind == "present"}
    clauses = []
    for group in _select(events, max_clauses):
        first = group[0]
        if first.kind == "present":
            clauses.append(_present_clause(first, rng, moving))
        elif first.kind == "together":
            clauses.append(_together_clause(first, counts.get(first.other_class or "", 1), rng))
        else:
            group = sorted(group, key=lambda e: TRACK_KINDS.index(e.kind))
            predicates = " and ".join(_predicate(e, rng) for e in group)
            clauses.append(f"{noun_phrase(first.class_name, first.count, rng)} {predicates}")
    text = clauses[0]
    for clause in clauses[1:]:
        text += rng.choice(_JOIN) + clause
    return text.lower().strip().rstrip(".")


def all_descriptions(events: Sequence[Event], n: int, seed: int, max_clauses: int = 2) -> list[str]:
    """Up to ``n`` distinct captions of the same events, reproducible from ``seed``.

    Fewer than ``n`` come back when the templates cannot make that many different sentences
    (e.g. an empty window has only ``len(EMPTY_SCENE)``).
    """
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(max(n, 0) * MAX_TRIES_PER_VARIANT):
        if len(out) >= n:
            break
        text = describe_events(events, rng, max_clauses)
        if text not in seen:
            seen.add(text)
            out.append(text)
    if len(out) < n:
        log.debug("only %d distinct descriptions of %d events (asked for %d)", len(out), len(events), n)
    return out
