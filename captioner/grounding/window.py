"""``Window``: what the grounding rules see of one caption window."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np

from ..concepts import SceneEvidence
from ..events import TimedDetections
from ..motion import WindowMotion, measure_motion
from ..tokens import WindowObjects
from ..vocab import Vocabulary
from .evidence import Grounding
from .verbs import VerbEvidence, VerbSupport, verb_support


@dataclass
class Window:
    """One window of analysed frames, what in it passed the evidence bar, and the words.

    frames:     the analysed frames, in order (one for a photo)
    named:      the objects with enough evidence to be named (``EvidenceBar.passes``)
    frame_size: (width, height) pixels; None for frames without a picture (motion unknown)
    verbs:      the thresholds that turn measured motion into evidence for verbs (from the checkpoint)
    scenes:     what the concept head says of the window's pixels; None without a head (then
                scene words are said of photos only, as the decoder learnt them)
    """

    frames: Sequence[TimedDetections]
    named: WindowObjects
    vocab: Vocabulary
    grounding: Grounding
    frame_size: tuple[int, int] | None = None
    verbs: VerbEvidence = field(default_factory=VerbEvidence)
    scenes: SceneEvidence | None = None

    @property
    def is_video(self) -> bool:
        """Several frames: a video window (a photo, or one frame, is a still picture)."""
        return len(self.frames) > 1

    @cached_property
    def motion(self) -> WindowMotion | None:
        """How the window's tracks moved; None for a photo or frames without a size."""
        return measure_motion(self.frames, self.frame_size) if self.is_video and self.frame_size is not None else None

    @cached_property
    def verb_support(self) -> dict[str, VerbSupport]:
        """Verb class -> its evidence in this window (``grounding.verbs``); {} where motion is unknown."""
        return verb_support(self.motion, self.present, self.verbs) if self.motion is not None else {}

    @cached_property
    def present(self) -> set[int]:
        """COCO class ids that may be named."""
        return set(int(c) for c in self.named.class_ids)

    @cached_property
    def word_class(self) -> dict[str, int]:
        """Word -> COCO class id, for the words that name a detectable object."""
        return {self.vocab.itos[i]: c for i, c in self.grounding.word_class.items()}

    @cached_property
    def scene_words(self) -> set[str]:
        return {self.vocab.itos[i] for i in self.grounding.scene_words}

    @cached_property
    def unsupported_scene_words(self) -> set[str]:
        """Scene words that may not be said here. Of a video window: with a concept head, those it
        does not support (a word it does not score at all included); without one, all of them. Of a
        picture: none (the decoder learnt them from photos; the head scores them in the output)."""
        if not self.is_video:
            return set()
        return set(self.scene_words) - (self.scenes.supported if self.scenes is not None else frozenset())

    @cached_property
    def nouns(self) -> set[str]:
        return self.scene_words | set(self.word_class)

    @cached_property
    def colour_boxes(self) -> list[tuple[int, int]]:
        """(colour bit set, track id) of every box of the named classes whose colours were read
        (colour words are checked against these)."""
        return [(int(bits), int(track)) for f in self.frames if f.detections.colours is not None
                for c, bits, track in zip(f.detections.class_id, f.detections.colours, f.detections.track_id)
                if int(c) in self.present]

    @cached_property
    def box_colours(self) -> list[int]:
        """The colour bit sets of ``colour_boxes``."""
        return [bits for bits, _ in self.colour_boxes]

    @cached_property
    def boxes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: (box_xyxy (n, 4), class_id (n,))."""
        return [(f.detections.box_xyxy, f.detections.class_id) for f in self.frames]

    def ids(self, words) -> list[int]:
        """The vocabulary ids of those of ``words`` the vocabulary has."""
        return [self.vocab.stoi[w] for w in words if w in self.vocab.stoi]
