"""Training and evaluation data from real clips, from ../shared/data or a user's own folder
(never copied).

A real clip gives per-frame tokens, next-event targets from the real future, and 4 s windows
(stride 2 s), each captioned from its grounded track events (template phrasing, several
variants) and, for the human-captioned clips, paired with the clip's human captions. (Photos
are in ``images.py``, caption corpora in ``corpora.py`` / ``pairs.py``.) Splits are by source
video (same-scene clips stay together), never by window or sentence.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..coco import NUM_CLASSES
from ..events import window_events
from ..features import FeatureCache, FrameFeatures, VideoFeatures, extract_features
from ..tokens import WindowObjects, tokens_for_frames, window_cells, window_objects
from ..track_slots import TrackSlots, track_slots
from ..video import is_video_file
from ..vocab import tokenize
from .describe import all_descriptions
from .forecast import HORIZON_SEC, targets_for_window
from .person_words import neutral_person_words

log = logging.getLogger(__name__)

# Clips that show the same scene or the same source footage (from data/SOURCES.md): they are
# always on the same side of a split.
SAME_SCENE_GROUPS = {
    "gutomadon_street": ("gutomadon_street_stopline", "gutomadon_street_crosswalk_cars"),
    "kartikeybihani_drive": ("kartikeybihani_dashcam1", "kartikeybihani_dashcam2"),
    "asiya_street_shoot": ("asiya_two_men_talking", "asiya_queue_sidewalk", "asiya_shoppers_street"),
    "overhead_pedestrians": ("diego_overhead_pedestrians", "pedestrians_overhead_vtest"),
    "msrvtt_236_4382": ("msrvtt_video236", "msrvtt_video4382"),
    "msrvtt_7202_9769": ("msrvtt_video7202", "msrvtt_video9769"),
}
PAST_SEC = 4.0  # how much history the targets' "now" looks at


def scene_group(stem: str) -> str:
    for group, members in SAME_SCENE_GROUPS.items():
        if stem in members:
            return group
    return stem


# Human-captioned clips kept for validation (never trained on): the MSR-VTT clip and two MSVD
# clips. The other seven MSVD clips train the decoder with their human captions.
VALIDATION_CLIPS = ("msrvtt_video8331", "msvd_3qqEKTPxLNs_1_15", "msvd_UXs3eq68ZjE_250_255")


def clip_split(stem: str, captioned: set[str], test_fraction: float = 0.25) -> str:
    """"val" for the validation clips, "train" for the other human-captioned clips, else "test"
    for a deterministic quarter of the scene groups, else "train"."""
    if stem in VALIDATION_CLIPS:
        return "val"
    if stem in captioned:
        return "train"
    digest = hashlib.sha1(f"captioner-split-v1:{scene_group(stem)}".encode()).digest()
    return "test" if digest[0] / 256.0 < test_fraction else "train"


@dataclass
class CaptionWindow:
    start: int  # first frame index (inclusive) into the clip's frames
    end: int  # last frame index (exclusive)
    captions: list[list[str]]  # tokenised template captions (variants)
    objects: WindowObjects | None = None  # every object seen (the evidence bar is applied at use)
    cells: np.ndarray | None = None  # (G, C) mean grid cells
    human: list[list[str]] = field(default_factory=list)  # the clip's human captions, tokenised
    tracks: TrackSlots | None = None  # every track with its motion (the evidence bar picks classes at use)


@dataclass
class ClipData:
    name: str
    split: str
    frame_size: tuple[int, int]
    frames: list[FrameFeatures]
    tokens: np.ndarray  # (T, F)
    presence: np.ndarray  # (T, C) targets for the next HORIZON_SEC
    enter: np.ndarray  # (T, C)
    leave: np.ndarray  # (T, C)
    direction: np.ndarray  # (T,) int
    valid: np.ndarray  # (T,) bool: a full future horizon exists
    windows: list[CaptionWindow] = field(default_factory=list)

    @property
    def times_sec(self) -> np.ndarray:
        return np.array([f.t_sec for f in self.frames])


def frame_window(times: np.ndarray, start_sec: float, end_sec: float) -> tuple[int, int]:
    """Indices [lo, hi) of frames with start_sec <= t < end_sec."""
    return int(np.searchsorted(times, start_sec, "left")), int(np.searchsorted(times, end_sec, "left"))


def build_clip(name: str, split: str, features: VideoFeatures, *, window_sec: float, stride_sec: float,
               variants: int, seed: int, horizon_sec: float = HORIZON_SEC, human: list[str] | None = None) -> ClipData:
    frames = features.frames
    size = (features.info.width, features.info.height)
    emb = len(frames[0].embedding) if frames else 0
    tokens = tokens_for_frames(frames, size, emb)
    times = np.array([f.t_sec for f in frames])
    n = len(frames)
    presence, enter, leave = (np.zeros((n, NUM_CLASSES), np.float32) for _ in range(3))
    direction, valid = np.zeros(n, np.int64), np.zeros(n, bool)
    end_t = times[-1] if n else 0.0
    for i, t in enumerate(times):
        if t + horizon_sec > end_t + 1e-6:
            continue
        lo, _ = frame_window(times, t - PAST_SEC, t)
        _, hi = frame_window(times, t, t + horizon_sec + 1e-6)
        future = frames[i + 1:hi]
        if not future:
            continue
        target = targets_for_window(frames[lo:i + 1], future, size)
        presence[i], enter[i], leave[i] = target.presence, target.enter, target.leave
        direction[i], valid[i] = target.direction, True
    windows = []
    start = times[0] if n else 0.0
    while n and start < end_t:
        lo, hi = frame_window(times, start, start + window_sec)
        if hi - lo >= 2:
            events = window_events(frames[lo:hi], size)
            texts = all_descriptions(events, variants, seed=seed + lo)
            objects = window_objects(tokens[lo:hi], emb, [f.detections for f in frames[lo:hi]])
            windows.append(CaptionWindow(lo, hi, [tokenize(t) for t in texts if t], objects,
                                         window_cells([f.cells for f in frames[lo:hi]]),
                                         human=[neutral_person_words(tokenize(h)) for h in human or []],
                                         tracks=track_slots(frames[lo:hi], size, emb)))
        start += stride_sec
    return ClipData(name, split, size, frames, tokens, presence, enter, leave, direction, valid, windows)


def load_clips(video_paths: Sequence[Path], perception, *, analysis_fps: float, captioned: dict[str, list[str]],
               window_sec: float, stride_sec: float, variants: int, seed: int,
               cache: FeatureCache | None = None, progress=None) -> list[ClipData]:
    """Features (cached) -> ClipData for every video; a video that fails is logged and skipped.
    ``captioned``: clip stem -> human captions; a training clip's windows get them."""
    clips = []
    for path in video_paths:
        try:
            features, _ = extract_features(path, perception, analysis_fps=analysis_fps, cache=cache or FeatureCache())
        except Exception as exc:  # one bad clip must not stop training on the rest
            log.warning("skipping %s: %s", path, exc)
            continue
        if len(features.frames) < 2:
            log.warning("skipping %s: fewer than 2 analysed frames", path)
            continue
        split = clip_split(path.stem, set(captioned))
        clips.append(build_clip(path.stem, split, features, window_sec=window_sec, stride_sec=stride_sec,
                                variants=variants, seed=seed, human=captioned.get(path.stem) if split == "train" else None))
        if progress:
            progress(path)
    return clips


def video_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_video_file(p))


def captioned_clip_stems(clip_captions_json: Path) -> dict[str, list[str]]:
    """clip stem -> human captions, from data/captions/clip_captions.json. An entry lists its
    captions, or gives their number and the corpus file (``source``) to join them from by video id."""
    import json

    from .corpora import read_captions

    if not clip_captions_json.exists():
        return {}
    data = json.loads(clip_captions_json.read_text())
    out: dict[str, list[str]] = {}
    corpora: dict[str, dict[str, list[str]]] = {}
    for key, value in data.items():
        captions = value.get("captions")
        if isinstance(captions, int) and value.get("source") and value.get("video_id"):
            source = clip_captions_json.parent / value.get("dataset", "").lower().replace("-", "") / value["source"].split()[0]
            if source not in corpora:
                by_video: dict[str, list[str]] = {}
                for record in read_captions(source) if source.is_file() else []:
                    by_video.setdefault(record.video_id, []).append(record.sentence)
                corpora[source] = by_video
            joined = corpora[source].get(value["video_id"], [])
            if len(joined) != captions:
                log.warning("%s: %d captions joined from %s, the index says %d", key, len(joined), source.name, captions)
            captions = joined
        if captions:
            out[Path(key).stem] = list(captions)
    return out


def captioned_video_ids(clip_captions_json: Path, clips: Sequence[str]) -> set[str]:
    """Corpus video ids of the given human-captioned clips (stems): the validation clips'
    sentences are their references, so they must never be training pairs."""
    import json

    if not clip_captions_json.exists():
        return set()
    return {value["video_id"] for key, value in json.loads(clip_captions_json.read_text()).items()
            if value.get("video_id") and Path(key).stem in clips}


def distractor_pool(clips: Sequence[ClipData], top: int = 20) -> list[str]:
    """Classes the detector reports often in real clips, weighted by how often: the realistic
    "extra" detections that text-derived pairs get as noise."""
    from ..coco import COCO_CLASSES

    counts = np.zeros(NUM_CLASSES)
    for clip in clips:
        for f in clip.frames:
            for c in set(f.detections.class_id.tolist()):
                counts[c] += 1
    order = np.argsort(-counts)[:top]
    return [COCO_CLASSES[i] for i in order if counts[i] > 0]

