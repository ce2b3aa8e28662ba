"""Verbs with evidence: which actions the one YOLO pass supports or contradicts in a video window.

Every verb the decoder may say belongs to at most one ``VERB_CLASSES`` class (walking, staying
put, sitting, driving, being parked, riding, moving in place, flying). For each class
``verb_support`` weighs the window's measured motion (``motion.measure_motion``) against thresholds (``VerbEvidence``,
calibrated by ``captioner train`` on hand-labelled training clips and stored in the checkpoint):

- supported: the search makes the class's words likelier (``VerbEvidence.support_bonus`` nats);
- contradicted: its words are never said of the window ("standing" of a woman crossing a
  crosswalk, "driving" of parked cars, "sitting" of shoppers pushing carts);
- unknown: neither (the camera moves, so image motion says nothing). A person's or animal's
  action where none was tracked long enough (``JUDGED_FRAMES``) has no evidence at all, and is
  not said either ("contradicted").

A verb outside every class ("talking", "cooking") has no motion evidence either way; the output
marks it so (``result.WordEvidence``). Photos are one frame: no motion, no verb is judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..coco import CLASS_INDEX
from ..motion import ANIMATE_IDS, RIDDEN_IDS, VEHICLE_IDS, TrackMotion, WindowMotion

BIRD, PERSON = CLASS_INDEX["bird"], CLASS_INDEX["person"]
# things that fly while nearly still in the image (a plane far off, a kite on its line) or too small
# and fast to track (a ball, a frisbee): their motion says nothing of flying
AIRBORNE_THINGS = frozenset(CLASS_INDEX[name] for name in ("airplane", "kite", "frisbee", "sports ball"))
JUDGED_FRAMES = 3  # a track seen in fewer analysed frames (one shot) shows nothing of how it moves


# every form of a ``VERB_CLASSES`` verb -> its base ("riding" -> "ride", where WordNet says "rid")
VERB_BASE: dict[str, str] = {}


def _forms(*stems: str) -> frozenset[str]:
    """Each "base:3rd:ing:past" entry's forms ("walk:walks:walking:walked"), their bases noted in ``VERB_BASE``."""
    for stem in stems:
        forms = [word for word in stem.split(":") if word]
        VERB_BASE.update({word: forms[0] for word in forms})
    return frozenset(word for stem in stems for word in stem.split(":") if word)


VERB_CLASSES: dict[str, frozenset[str]] = {
    "gait": _forms("walk:walks:walking:walked", "run:runs:running:ran", "jog:jogs:jogging", "stroll:strolls:strolling",
                   "cross:crosses:crossing:crossed", "march:marches:marching", "hike:hikes:hiking",
                   "approach:approaches:approaching", "gallop:gallops:galloping", "chase:chases:chasing",
                   "trot:trots:trotting"),
    "still": _forms("stand:stands:standing:stood", "lie:lies:lying:laying:lay", "pose:poses:posing",
                    "sleep:sleeps:sleeping", "wait:waits:waiting", "rest:rests:resting"),
    # staying put seated: what staying put allows, unless the people seen whole stand upright
    "sit": _forms("sit:sits:sitting:sat:seated"),
    "drive": _forms("drive:drives:driving:drove", "travel:travels:traveling:travelling", "speed:speeds:speeding",
),
    "parked": _forms("park:parks:parked"),
    "ride": _forms("ride:rides:riding:rode", "cycle:cycles:cycling", "bike:bikes:biking"),
    "in_place": _forms("dance:dances:dancing:danced", "play:plays:playing:played", "jump:jumps:jumping:jumped",
                       "kick:kicks:kicking", "swing:swings:swinging", "throw:throws:throwing", "catch:catches:catching",
                       "fight:fights:fighting", "wrestle:wrestles:wrestling", "skate:skates:skating",
                       "surf:surfs:surfing", "climb:climbs:climbing", "perform:performs:performing"),
    "flight": _forms("fly:flies:flying:flew:flown", "soar:soars:soaring", "glide:glides:gliding",
                     "hover:hovers:hovering"),
}
VERB_CLASS_OF: dict[str, str] = {word: name for name, words in VERB_CLASSES.items() for word in words}


@dataclass
class VerbEvidence:
    """Thresholds that turn measured motion into support for a verb class.

    A tracked person or animal walks when its speed is at least ``walk_body_speed`` body heights/s,
    or it comes toward or goes away from the camera (its box grows or shrinks ``walk_scale_rate``
    per s: a rider heading at the camera barely moves across the image), or its limbs move
    (``walk_limb_motion`` per s) while it gets somewhere (net ``walk_path`` body heights); it stays
    put when neither. People do not sit when at least ``upright_share`` of the track-frames of those
    seen whole (no frame edge cuts their box) are at least ``upright_aspect`` times as tall as wide:
    shoppers standing at a shelf or pushing carts. A bird flies when it crosses ``fly_body_speed``
    body heights/s (faster than any walking or running track of the labelled clips). A vehicle
    drives when it crosses ``drive_lateral_speed`` frame widths/s or grows/shrinks
    ``drive_scale_rate`` per s. The camera moves when the grid cells no box touches (the
    background) change ``camera_change`` (1 - cosine) per analysed frame: then image motion says
    nothing of walking or standing, and vehicles in view are driving (a dashcam, a car filmed from
    the next lane). Something moves in place when its limbs move ``active_limb_motion``.
    """

    walk_body_speed: float = 0.2
    walk_limb_motion: float = 0.3
    walk_path: float = 0.25
    walk_scale_rate: float = float("inf")  # |d log box area|/s: coming toward or going away (inf: not used)
    drive_lateral_speed: float = 0.05
    drive_scale_rate: float = 0.15
    camera_change: float = 0.02
    active_limb_motion: float = 0.6
    fly_body_speed: float = 2.0
    upright_aspect: float = 2.0
    upright_share: float = 0.8
    support_bonus: float = 2.0  # nats added to a supported class's words
    # the classes whose "supported" was right often enough on the labelled training clips to be
    # made likelier (the others are only ever banned when contradicted)
    boosted: tuple[str, ...] = ("gait", "drive", "ride")
    calibration: dict = field(default_factory=dict)  # what the thresholds were fitted on, and how well

    def walks(self, track: TrackMotion) -> bool:
        return track.body_speed >= self.walk_body_speed or track.scale_rate >= self.walk_scale_rate or (
            track.limb_motion >= self.walk_limb_motion and track.path >= self.walk_path)

    def flies(self, track: TrackMotion) -> bool:
        return track.body_speed >= self.fly_body_speed

    def drives(self, track: TrackMotion) -> bool:
        return track.lateral_speed >= self.drive_lateral_speed or track.scale_rate >= self.drive_scale_rate

    def camera_moves(self, motion: WindowMotion) -> bool:
        return motion.background_change is not None and motion.background_change >= self.camera_change

    def to_dict(self) -> dict:
        # plain floats and strings: checkpoints load with weights_only
        return {**{k: float(v) for k, v in asdict(self).items() if k not in ("calibration", "boosted")},
                "boosted": [str(name) for name in self.boosted], "calibration": dict(self.calibration)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "VerbEvidence":
        data = dict(data or {})
        calibration = data.pop("calibration", None) or {}
        boosted = tuple(str(name) for name in data.pop("boosted", cls.boosted))
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}, boosted=boosted,
                   calibration=calibration)


@dataclass(frozen=True)
class VerbSupport:
    """The evidence for one verb class in one window: "supported" | "contradicted" | "unknown",
    a score in [0, 1] (share of the subject tracks that show it), the tracks, and why."""

    verdict: str
    score: float
    track_ids: tuple[int, ...] = ()
    why: str = ""


def _share(tracks: list[TrackMotion], test) -> tuple[float, tuple[int, ...]]:
    """Share of the track-frames of ``tracks`` that pass ``test`` (long tracks count more), and their ids."""
    total = sum(t.n_frames for t in tracks)
    passing = [t for t in tracks if test(t)]
    return (sum(t.n_frames for t in passing) / total if total else 0.0), tuple(t.track_id for t in passing)


def verb_support(motion: WindowMotion, named: set[int], thresholds: VerbEvidence) -> dict[str, VerbSupport]:
    """For every ``VERB_CLASSES`` class: its support in a window of ``motion``, judging only the
    tracks of ``named`` classes (those that passed the evidence bar, the only ones a caption names)."""
    tracks = [t for t in motion.tracks if t.class_id in named and t.n_frames >= JUDGED_FRAMES]
    animate = [t for t in tracks if t.class_id in ANIMATE_IDS]
    vehicles = [t for t in tracks if t.class_id in VEHICLE_IDS]
    camera = thresholds.camera_moves(motion)
    out: dict[str, VerbSupport] = {}
    unknown = VerbSupport("unknown", 0.0)

    if not animate and not any(t.class_id in ANIMATE_IDS and t.n_frames >= JUDGED_FRAMES for t in motion.tracks):
        # no action of a person or animal has any evidence: what the decoder would say there ("a person
        # is standing" of a motorcyclist glimpsed in 2 frames) is invented, so the caption says who is there
        out["gait"] = out["still"] = out["sit"] = out["in_place"] = VerbSupport(
            "contradicted", 0.0, (), "no person or animal tracked long enough to show what it does")
    elif not animate:  # tracked, but its class may not be named (a kind may be: "an animal")
        out["gait"] = out["still"] = out["sit"] = out["in_place"] = VerbSupport("unknown", 0.0, (), "no person or animal named")
    elif camera:
        out["gait"] = out["still"] = out["sit"] = VerbSupport("unknown", 0.0, (), "the camera moves")
    else:
        walking, walkers = _share(animate, thresholds.walks)
        staying, stayers = _share(animate, lambda t: not thresholds.walks(t))
        out["gait"] = VerbSupport("supported" if walking >= 0.5 else "contradicted" if walking == 0 else "unknown",
                                  walking, walkers, f"{walking:.0%} of the tracked people/animals walk or run")
        out["still"] = VerbSupport("supported" if staying > 0.5 else "contradicted" if walking >= 0.5 else "unknown",
                                   staying, stayers, f"{staying:.0%} stay where they are")
        out["sit"] = _seated(animate, out["still"], thresholds)
    if animate:
        active, movers = _share(animate, lambda t: t.limb_motion >= thresholds.active_limb_motion or thresholds.walks(t))
        out["in_place"] = VerbSupport("supported" if active >= 0.5 and len(movers) >= 2 else
                                      "contradicted" if active == 0 and not camera else "unknown",
                                      active, movers, f"{active:.0%} move their limbs or body")
    if not vehicles:
        none = VerbSupport("contradicted", 0.0, (), "no vehicle tracked")
        out["drive"] = none if not (named & VEHICLE_IDS) else unknown
        out["parked"] = none if not (named & VEHICLE_IDS) else unknown
    elif camera:
        out["drive"] = VerbSupport("supported", 1.0, tuple(t.track_id for t in vehicles), "the camera moves with the traffic")
        out["parked"] = VerbSupport("contradicted", 0.0, (), "the camera moves")
    else:
        moving, drivers = _share(vehicles, thresholds.drives)
        out["drive"] = VerbSupport("supported" if moving > 0 else "contradicted", moving, drivers,
                                   f"{moving:.0%} of the tracked vehicles move")
        out["parked"] = VerbSupport("supported" if moving == 0 else "contradicted" if moving >= 0.5 else "unknown",
                                    1.0 - moving, tuple(t.track_id for t in vehicles if not thresholds.drives(t)),
                                    f"{1 - moving:.0%} of the tracked vehicles stay put")
    out["flight"] = _flight(tracks, named, camera, thresholds)
    riders = [t for t in animate if any(p in {u.track_id for u in tracks if u.class_id in RIDDEN_IDS} for p in t.partners)]
    if riders:
        out["ride"] = VerbSupport("supported", 1.0, tuple(t.track_id for t in riders), "on what they ride in most frames")
    elif not (named & (RIDDEN_IDS | VEHICLE_IDS)):
        out["ride"] = VerbSupport("contradicted", 0.0, (), "nothing to ride in view")
    else:
        out["ride"] = unknown
    return out


def upright_people(tracks: list[TrackMotion], aspect: float) -> tuple[float, tuple[int, ...]] | None:
    """Of the people seen whole (``TrackMotion.upright``), the share of track-frames whose boxes are
    at least ``aspect`` times as tall as wide, and those tracks; None when no person is seen whole."""
    whole = [t for t in tracks if t.class_id == PERSON and t.upright is not None]
    return _share(whole, lambda t: t.upright >= aspect) if whole else None


def _seated(animate: list[TrackMotion], still: VerbSupport, thresholds: VerbEvidence) -> VerbSupport:
    """Sitting: what staying put says, except that people seen whole and standing upright do not sit."""
    if still.verdict == "contradicted":
        return still
    upright = upright_people(animate, thresholds.upright_aspect)
    if upright is not None and upright[0] >= thresholds.upright_share:
        share, standers = upright
        return VerbSupport("contradicted", 1.0 - share, standers, f"{share:.0%} of the people seen whole stand upright "
                                                                  f"(box >= {thresholds.upright_aspect:g}x as tall as wide)")
    return still


def _flight(tracks: list[TrackMotion], named: set[int], camera: bool, thresholds: VerbEvidence) -> VerbSupport:
    """Flying: only a bird, a plane, a kite, a ball or a frisbee flies ("a bird flies through the air"
    of hens walking up a ramp, "a person is flying" of a jump: contradicted); a bird only when it
    crosses the view faster than anything walks."""
    if not named & (AIRBORNE_THINGS | {BIRD}):
        return VerbSupport("contradicted", 0.0, (), "nothing that flies is in view")
    birds = [t for t in tracks if t.class_id == BIRD]
    if named & AIRBORNE_THINGS or camera or not birds:
        return VerbSupport("unknown", 0.0, (), "the camera moves" if camera else "its motion says nothing of flying")
    flying, fliers = _share(birds, thresholds.flies)
    return VerbSupport("supported" if flying >= 0.5 else "contradicted" if flying == 0 else "unknown", flying, fliers,
                       f"{flying:.0%} of the tracked birds cross the view faster than walking")


def verb_class(word: str) -> str | None:
    return VERB_CLASS_OF.get(word)



# -ing words that are nouns in captions ("a building", "a painting")
ING_NOUNS = frozenset("building clothing ceiling something anything nothing evening morning wedding ring string king "
                      "swing thing spring painting railing sibling awning".split())


def is_verb_form(tokens: list[str], i: int) -> bool:
    """Whether ``tokens[i]`` is a verb of the caption: a form ``VERB_CLASSES`` knows, another "-ing"
    word that is not a noun nor right after an article ("a parking meter", "a boxing match"), or
    "...ed" after "is"/"are" ("is parked"). The output's word evidence and the eval's verb table
    use this one rule."""
    token = tokens[i]
    return (token in VERB_CLASS_OF or (token.endswith("ing") and len(token) > 4 and token not in ING_NOUNS
                                       and not (i > 0 and tokens[i - 1] in ("a", "an", "the")))
            or (i > 0 and tokens[i - 1] in ("is", "are") and token.endswith("ed")))
