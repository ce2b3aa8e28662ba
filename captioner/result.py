"""The values a captioning run produces: segments with captions, forecasts and evidence.

These cross from ``pipeline.py`` to ``writers.py``, the CLI and the web app, so they are plain
dataclasses with a stable JSON form (``Result.to_dict``; see ``SCHEMA_VERSION``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = "1.1"  # 1.1: evidence.words (what licensed each content word)


@dataclass
class NextEvent:
    """One prediction about the next ``horizon_sec`` seconds.

    kind: "appear" | "stay" | "enter" | "leave" | "move"; side: "left" | "right" | "top" |
    "bottom" (where it enters/leaves) or None; direction: "left" | "right" | "toward" | "away"
    (for "move") or None.
    """

    text: str  # e.g. "a car will probably enter from the left (0.72)"
    probability: float
    kind: str
    class_name: str
    side: str | None = None
    direction: str | None = None
    horizon_sec: float = 3.0


@dataclass
class WordEvidence:
    """What licensed one content word of a caption.

    kind: "object" (a detected class: its tracks and best confidence; or a kind such as "animal"
    the detector is sure of, not of its class: the classes it saw in ``why``), "verb" (motion evidence:
    ``verdict`` "supported" / "unknown" / "unmeasured" - a verb no motion measure covers, such as
    "talking" - with the tracks that show it and the share of tracks that do as ``score``), or
    "scene" (a noun no detector class covers: the concept head's probability as ``score``, verdict
    "supported" / "below its bar", where the head scores it; else the decoder's word alone). On a
    still picture a verb or scene noun the concept head ranks has verdict "ranked" and that
    probability as ``score``: the pixels chose among the sentences, nothing measured it as a licence.
    "colour": the share of the named objects' boxes whose central pixels show it as ``score``,
    the tracks of those boxes, verdict "shown".
    """

    word: str
    kind: str
    track_ids: list[int] = field(default_factory=list)
    score: float | None = None
    verdict: str | None = None  # verbs, scene words and kinds
    why: str = ""


@dataclass
class Evidence:
    """What the detector saw in a segment, which the caption is grounded in."""

    track_ids: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # distinct class names seen
    frame_times_sec: list[float] = field(default_factory=list)
    # for each class in ``classes``: the most objects of it seen at once in one analysed frame
    # (robust to track id switches); {} in outputs written before it was recorded
    class_counts: dict[str, int] = field(default_factory=dict)
    # for each content word of the caption, in order: what licensed it; [] in older outputs
    words: list[WordEvidence] = field(default_factory=list)


@dataclass
class Segment:
    start: float  # seconds
    end: float  # seconds
    caption: str
    confidence: float  # mean token probability of the caption, in [0, 1]
    forecast: list[NextEvent] = field(default_factory=list)  # what happens next; "next" in the JSON
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def next_text(self) -> str:
        """The most likely forecast as one line ("" when there is none)."""
        return self.forecast[0].text if self.forecast else ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the forecast under its schema key, "next")."""
        return {("next" if key == "forecast" else key): value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Segment":
        return cls(start=data["start"], end=data["end"], caption=data["caption"], confidence=data["confidence"],
                   forecast=[NextEvent(**n) for n in data.get("next", [])],
                   evidence=_evidence_from_dict(data.get("evidence", {})))


def _evidence_from_dict(data: dict[str, Any]) -> Evidence:
    data = dict(data)
    words = [WordEvidence(**w) for w in data.pop("words", [])]
    return Evidence(**data, words=words)


@dataclass
class VideoMeta:
    path: str
    duration_sec: float
    fps: float  # 0 for a still image
    width: int
    height: int

    @property
    def is_image(self) -> bool:
        """A still image: one frame, no timeline (fps and duration are 0)."""
        return self.fps == 0 and self.duration_sec == 0


@dataclass
class Result:
    video: VideoMeta
    segments: list[Segment]
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)  # {"yolo": {"name", "sha256"}, "captioner": {...}}
    # [(t_sec, Detections)] per analysed frame, only when asked for (to draw an annotated
    # video); not part of the JSON form
    frame_detections: list = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "video": asdict(self.video),
            "settings": self.settings,
            "models": self.models,
            "segments": [s.to_dict() for s in self.segments],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        segments = [Segment.from_dict(s) for s in data["segments"]]
        return cls(VideoMeta(**data["video"]), segments, data.get("settings", {}), data.get("models", {}))
