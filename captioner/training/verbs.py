"""Calibrating the verb evidence (``grounding.verbs.VerbEvidence``) on hand-labelled training clips.

The labels (``data/clip_verbs.json``) say, per clip, which verbs are true of it, as seen by a
person looking at frames. Only clips of the training split are used, so the validation and test
clips stay unseen. Each clip's analysed frames are cut into 4 s windows and every window inherits
its clip's kind:

- "moves": the clip's true verbs include walking or running and no posture ("walk", "cross",
  "gallop"; not "stand", "wait", "sit");
- "still": a posture and no gait;
- "in place": a ``in_place`` verb (play, dance, jump) and no gait;
- vehicles: "drive" clips' vehicle tracks move, "park" ones stay; "camera": the clip's camera label;
- sitting: windows of clips where someone sits vs clips where nobody does, by the share of the
  whole (uncut) person boxes that stand upright: the two bars that ban "sitting" in the most windows
  of clips where nobody sits while banning it in at most ``MAX_SITTERS_CALLED_UPRIGHT`` of those
  where someone does (an audience seated around a dancer: the dancer is the one seen whole);
- flying: no labelled clip shows a bird in flight, so its bar is set above every person or animal
  of the labelled clips that does not fly (the lowest ``FLY_GRID`` value none of them reaches):
  whatever walks, runs or gallops there is not said to fly.

Each threshold is the grid value with the best balanced accuracy on those windows (ties: the
middle of the best run, so a threshold does not sit on a training example); the accuracies and
window counts are stored with the thresholds. A signal no threshold separates (balanced accuracy
below ``MIN_USEFUL``) is switched off (threshold = inf) rather than trusted. The camera check is
held to more: calling a still camera moving throws away the evidence of every track in the window
(walking and standing become unknown, parked cars "drive"), so its threshold is the lowest that
calls at most ``MAX_STILL_CALLED_MOVING`` of the still-camera windows moving, and it is used only
if that still finds ``MIN_CAMERA_FOUND`` of the moving-camera windows.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..grounding.verbs import JUDGED_FRAMES, VERB_CLASS_OF, VERB_CLASSES, VerbEvidence, upright_people, verb_support
from ..motion import ANIMATE_IDS, VEHICLE_IDS, WindowMotion, measure_motion

log = logging.getLogger(__name__)

VERBS_FILE = Path(__file__).parent / "data" / "clip_verbs.json"
WINDOW_FRAMES = 16  # 4 s at the 4 fps analysis rate
MIN_USEFUL = 0.75  # balanced accuracy under which a signal is not used
MAX_STILL_CALLED_WALKING = 0.1
MAX_STILL_CALLED_MOVING = 0.1  # the camera check may call at most this share of still-camera windows moving
MAX_SITTERS_CALLED_UPRIGHT = 0.15  # the upright check may ban "sitting" in at most this share of windows of seated clips
MIN_CAMERA_FOUND = 0.5  # the camera check must find at least this share of the moving-camera windows
MIN_SUPPORT_PRECISION = 0.8  # a class is made likelier where supported only if it was true this often...
MIN_SUPPORTED = 3  # ... over at least this many supported windows
# Classes whose support says nothing about which of its words is true: staying put is sitting OR
# standing OR lying, so boosting the class made the decoder say "sitting" of people standing at a
# table (held-back wrong verbs 2.2 % -> 4.5 % when the fit first boosted it). Only ever banned.
NEVER_BOOSTED = frozenset({"still", "sit"})
FLY_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # body heights/s
UPRIGHT_ASPECTS = (1.4, 1.6, 1.8, 2.0, 2.2, 2.5)  # box height / width
UPRIGHT_SHARES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_verb_labels(path: Path = VERBS_FILE) -> dict[str, dict]:
    return json.loads(Path(path).read_text())["clips"]


def verb_base(word: str) -> str | None:
    """The verb class of a label verb (labels are base forms: "walk" -> "gait")."""
    return VERB_CLASS_OF.get(word)


def label_classes(true_verbs) -> set[str]:
    """The verb classes of a clip's true verbs; sitting is also staying put."""
    classes = {verb_base(v) for v in true_verbs} - {None}
    return classes | {"still"} if "sit" in classes else classes


def clip_kind(label: dict) -> set[str]:
    """The window kinds a clip's labels give its windows (see the module docstring)."""
    classes = label_classes(label["true"])
    kinds = set()
    if "gait" in classes and "still" not in classes:
        kinds.add("moves")
    if "still" in classes and "gait" not in classes:
        kinds.add("still")
    if "in_place" in classes and "gait" not in classes:
        kinds.add("in_place")
    if "drive" in classes:
        kinds.add("drive")
    if "parked" in classes and "drive" not in classes:
        kinds.add("parked")
    return kinds


@dataclass
class LabelledWindow:
    clip: str
    kinds: set[str]
    camera: str | None
    motion: WindowMotion
    classes: set[str]  # the verb classes of the clip's true verbs


def labelled_windows(clips: Sequence, labels: dict[str, dict], split: str = "train") -> list[LabelledWindow]:
    """4 s windows of the labelled clips of ``split`` (``dataset.ClipData``), with their motion."""
    out = []
    for clip in clips:
        label = labels.get(clip.name)
        if label is None or label.get("split") != split:
            continue
        frames = clip.frames
        for start in range(0, max(len(frames) - WINDOW_FRAMES // 2, 1), WINDOW_FRAMES):
            window = frames[start:start + WINDOW_FRAMES]
            if len(window) >= 3:
                out.append(LabelledWindow(clip.name, clip_kind(label), label.get("camera"),
                                          measure_motion(window, clip.frame_size),
                                          label_classes(label["true"])))
    return out


def _balanced_accuracy(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mean of the hit rate on positives (True = said positive) and the rejection rate on negatives."""
    if not len(positive) or not len(negative):
        return float("nan")
    return 0.5 * (float(np.mean(positive)) + float(np.mean(~negative)))


def _fit(grid: Sequence[float], positive_values, negative_values) -> tuple[float, float]:
    """The threshold on ``grid`` that best separates the values (positive when >= threshold)."""
    pos, neg = np.asarray(positive_values, float), np.asarray(negative_values, float)
    if not len(pos) or not len(neg):
        return math.nan, math.nan  # nothing to fit on: the caller keeps its default
    scores = [_balanced_accuracy(pos >= g, neg >= g) for g in grid]
    best = max(scores)
    run = [g for g, s in zip(grid, scores) if s == best]
    return float(run[len(run) // 2]), float(best)


def _share_walking(motion: WindowMotion, walks) -> float | None:
    tracks = [t for t in motion.tracks if t.class_id in ANIMATE_IDS and t.n_frames >= JUDGED_FRAMES]
    total = sum(t.n_frames for t in tracks)
    return sum(t.n_frames for t in tracks if walks(t)) / total if total else None


def calibrate_verbs(windows: Sequence[LabelledWindow]) -> VerbEvidence:
    """``VerbEvidence`` fitted on labelled windows (see the module docstring)."""
    defaults = VerbEvidence()
    report: dict = {"windows": len(windows), "clips": len({w.clip for w in windows})}
    moves = [w for w in windows if "moves" in w.kinds and w.camera != "moving"]
    still = [w for w in windows if "still" in w.kinds and w.camera != "moving"]

    # walking: three thresholds searched together on whether most track-frames walk. Saying
    # someone walks bans every posture word, so a still window must rarely pass (at most
    # ``MAX_STILL_CALLED_WALKING``); among those settings, the one that finds the most walkers.
    best = (-1.0, 1.0, defaults.walk_body_speed, defaults.walk_limb_motion, defaults.walk_path, defaults.walk_scale_rate)
    for body in (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7):
        for limb in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.7, math.inf):
            for path in (0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
                for growth in (0.1, 0.15, 0.2, 0.3, 0.5, math.inf):
                    trial = VerbEvidence(walk_body_speed=body, walk_limb_motion=limb, walk_path=path, walk_scale_rate=growth)
                    hit, false = ([(s := _share_walking(w.motion, trial.walks)) is not None and s >= 0.5 for w in group]
                                  for group in (moves, still))
                    hit_rate, false_rate = float(np.mean(hit)) if hit else 0.0, float(np.mean(false)) if false else 0.0
                    if false_rate <= MAX_STILL_CALLED_WALKING and hit_rate > best[0]:
                        best = (hit_rate, false_rate, body, limb, path, growth)
    hit_rate, false_rate, body, limb, path, growth = best
    report["walk"] = {"moves_windows": len(moves), "still_windows": len(still), "moves_found": round(hit_rate, 3),
                      "still_called_walking": round(false_rate, 3)}

    # moving in place: the busiest tracked body's limb motion, in-place clips vs still ones
    def busiest(w: LabelledWindow) -> float:
        return max((t.limb_motion for t in w.motion.tracks if t.class_id in ANIMATE_IDS and t.n_frames >= JUDGED_FRAMES), default=0.0)
    in_place = [busiest(w) for w in windows if "in_place" in w.kinds]
    active, active_score = _fit((0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2), in_place, [busiest(w) for w in still])
    report["in_place"] = {"windows": len(in_place), "balanced_accuracy": round(active_score, 3)}
    if math.isnan(active_score):
        active = defaults.active_limb_motion

    # vehicles: the fastest tracked vehicle, drive clips vs parked ones (a still camera)
    def fastest(w: LabelledWindow, attribute: str) -> float:
        return max((getattr(t, attribute) for t in w.motion.tracks if t.class_id in VEHICLE_IDS and t.n_frames >= JUDGED_FRAMES),
                   default=math.nan)
    driving = [w for w in windows if "drive" in w.kinds and w.camera != "moving"]
    parked = [w for w in windows if "parked" in w.kinds or (w.kinds and not w.kinds & {"drive"} and w.camera == "static")]
    lateral, lateral_score = _fit((0.01, 0.02, 0.03, 0.05, 0.08, 0.1),
                                  [v for w in driving if not math.isnan(v := fastest(w, "lateral_speed"))],
                                  [v for w in parked if not math.isnan(v := fastest(w, "lateral_speed"))])
    scale, scale_score = _fit((0.05, 0.1, 0.15, 0.2, 0.3),
                              [v for w in driving if not math.isnan(v := fastest(w, "scale_rate"))],
                              [v for w in parked if not math.isnan(v := fastest(w, "scale_rate"))])
    report["drive"] = {"drive_windows": len(driving), "parked_windows": len(parked),
                       "balanced_accuracy_lateral": lateral_score, "balanced_accuracy_scale": scale_score}
    if math.isnan(lateral_score) or math.isnan(scale_score):
        lateral, scale = defaults.drive_lateral_speed, defaults.drive_scale_rate
        report["drive"]["note"] = "no labelled parked vehicles: the event thresholds (events.MOVE_MIN_*) are kept"

    # the camera: background change of clips filmed moving vs from a still camera; few false alarms
    camera_values = {kind: np.array([w.motion.background_change for w in windows
                                     if w.camera == kind and w.motion.background_change is not None])
                     for kind in ("moving", "static")}
    moving_values, static_values = camera_values["moving"], camera_values["static"]
    camera, found, false_alarms = math.inf, 0.0, 0.0
    if len(moving_values) and len(static_values):
        for threshold in (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08):
            false_alarms = float(np.mean(static_values >= threshold))
            if false_alarms <= MAX_STILL_CALLED_MOVING:
                camera, found = threshold, float(np.mean(moving_values >= threshold))
                break
    report["camera"] = {"moving_windows": len(moving_values), "static_windows": len(static_values),
                        "threshold_at_most_10pct_still_called_moving": camera, "moving_found": round(found, 3),
                        "still_called_moving": round(false_alarms, 3),
                        "moving_median": round(float(np.median(moving_values)), 4) if len(moving_values) else None,
                        "still_median": round(float(np.median(static_values)), 4) if len(static_values) else None}
    if not found >= MIN_CAMERA_FOUND:
        report["camera"]["note"] = ("the background change of the grid cells no box touches does not separate the "
                                    "training clips' moving cameras from still ones: switched off")
        camera = math.inf
    # flying: above the fastest body that does not fly (a still camera: a moving one's image motion says nothing)
    grounded = [t.body_speed for w in windows if "flight" not in w.classes and w.camera != "moving"
                for t in w.motion.tracks if t.class_id in ANIMATE_IDS and t.n_frames >= JUDGED_FRAMES]
    fastest_grounded = max(grounded, default=math.nan)
    fly = next((g for g in FLY_GRID if g > fastest_grounded), FLY_GRID[-1]) if grounded else defaults.fly_body_speed
    report["flight"] = {"tracks": len(grounded), "fastest_not_flying": round(fastest_grounded, 3) if grounded else None,
                        "fly_body_speed": fly}
    # sitting: whole people standing upright, clips where nobody sits vs clips where someone does
    upright = _fit_upright([w for w in windows if w.camera != "moving"], defaults)
    report["sit"] = upright
    fitted = VerbEvidence(walk_body_speed=body, walk_limb_motion=limb, walk_path=path, walk_scale_rate=growth,
                          drive_lateral_speed=lateral, drive_scale_rate=scale, camera_change=camera,
                          active_limb_motion=active, fly_body_speed=fly, upright_aspect=upright["upright_aspect"],
                          upright_share=upright["upright_share"])

    # which classes' support to trust: how often "supported" was true of the clip, per class
    boosted, verdicts = [], {}
    for name in VERB_CLASSES:
        said = [(w, verb_support(w.motion, _named(w.motion), fitted)[name].verdict) for w in windows]
        supported = [name in w.classes for w, verdict in said if verdict == "supported"]
        contradicted = [name not in w.classes for w, verdict in said if verdict == "contradicted"]
        precision = float(np.mean(supported)) if supported else math.nan
        verdicts[name] = {"supported": len(supported), "supported_true": round(precision, 3),
                          "contradicted": len(contradicted),
                          "contradicted_right": round(float(np.mean(contradicted)), 3) if contradicted else None}
        if len(supported) >= MIN_SUPPORTED and precision >= MIN_SUPPORT_PRECISION and name not in NEVER_BOOSTED:
            boosted.append(name)
    report["verdicts"] = verdicts
    fitted.boosted, fitted.calibration = tuple(boosted), json.loads(json.dumps(report))
    log.info("verb evidence calibrated: %s", json.dumps(report))
    return fitted


def _upright_share(motion: WindowMotion, aspect: float) -> float | None:
    """``upright_people`` of the window's tracks that verb support judges (``JUDGED_FRAMES``)."""
    upright = upright_people([t for t in motion.tracks if t.n_frames >= JUDGED_FRAMES], aspect)
    return None if upright is None else upright[0]


def _fit_upright(windows: Sequence[LabelledWindow], defaults: VerbEvidence) -> dict:
    """The upright bars (``VerbEvidence.upright_aspect``, ``upright_share``) that ban "sitting" in the
    most windows of clips where nobody sits, in at most ``MAX_SITTERS_CALLED_UPRIGHT`` of those where
    someone does, also at the next lower aspect of the grid (so the bar does not sit on the edge of
    the seated examples); the defaults (and a report saying so) where either kind has no whole people."""
    rates: dict[tuple[float, float], tuple[float, float, int, int]] = {}
    for aspect in UPRIGHT_ASPECTS:
        shares = [(s, "sit" in w.classes) for w in windows if (s := _upright_share(w.motion, aspect)) is not None]
        seated = np.array([s for s, sits in shares if sits])
        standing = np.array([s for s, sits in shares if not sits])
        if not len(seated) or not len(standing):
            return {"upright_aspect": defaults.upright_aspect, "upright_share": defaults.upright_share,
                    "note": "no labelled seated or standing windows with people seen whole"}
        for share in UPRIGHT_SHARES:
            rates[aspect, share] = (float(np.mean(seated >= share)), float(np.mean(standing >= share)), len(seated),
                                    len(standing))
    best = {"upright_aspect": defaults.upright_aspect, "upright_share": math.inf, "standing_banned": 0.0}
    for lower, aspect in zip(UPRIGHT_ASPECTS, UPRIGHT_ASPECTS[1:]):
        for share in UPRIGHT_SHARES:
            seated_banned, standing_banned, n_seated, n_standing = rates[aspect, share]
            if max(seated_banned, rates[lower, share][0]) <= MAX_SITTERS_CALLED_UPRIGHT and \
                    standing_banned > best["standing_banned"]:
                best = {"upright_aspect": aspect, "upright_share": share, "standing_banned": round(standing_banned, 3),
                        "seated_banned": round(seated_banned, 3), "seated_windows": n_seated,
                        "standing_windows": n_standing}
    return best


def _named(motion: WindowMotion) -> set[int]:
    """Every class tracked in the window (calibration judges all of them)."""
    return {t.class_id for t in motion.tracks}
