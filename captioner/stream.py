"""Stage 7: one source's stream. Frames in; captions, forecasts and segments out.

A ``Stream`` owns everything one source needs between frames: the frame sampler and the
tracker (``features.PerceptionStream``), the token state (``tokens.FrameTokenizer``), the
encoder LSTM state and the open caption window. Offline captioning is a stream fed from a file;
a live session is the same stream fed frame by frame, so both analyse the same frames (those at
the analysis rate the model was trained at) and cut the same windows:

    push(image, t_sec) -> the sampler takes it? -> YOLO + tracker -> FrameFeatures
                       -> token -> LSTM step -> window [k * window_sec, (k + 1) * window_sec)
                       -> when a window closes: Segment(caption, next events, evidence)

Frames pushed faster than the analysis rate are not analysed; a live view may still ask for
their boxes (``detect_every_frame``). A live stream also keeps a preview caption of its last
``window_sec`` of analysed frames, refreshed every ``caption_every_sec``, and a forecast at every
analysed frame; the segments it closes are the ones offline captioning writes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .checkpoint import TrainedModel
from .coco import ANIMATE_CLASSES, CLASS_INDEX, COCO_CLASSES, STATIC_CLASSES
from .colours import COLOUR_WORDS, allowed_words, joined_colours_fit, window_colours
from .decoding import (GAIT_BONUS, GAIT_VERBS, RACE_WORDS, STILL_VERBS, beam_search, forecast_events,
                       in_view_caption, is_complete, join_repeated_nouns, misplaces_an_object, names_its_subject,
                       rides_what_it_touches, strip_scene_phrases)
from .events import dominant_motion, heading_out, mostly_walking
from .features import FrameFeatures, PerceptionStream
from .model import HISTORY_FRAMES, STYLE_IDS, segment_inputs
from .options import CaptionOptions
from .perception import Detections, Perception
from .result import Evidence, NextEvent, Segment
from .tokens import FrameTokenizer, TokenLayout, WindowObjects, salient_classes, window_cells, window_objects
from .video import SampledFrame, end_of_frames
from .vocab import detokenize

NOTHING_SEEN = "no objects the detector knows are in view"
ANIMATE_IDS = frozenset(CLASS_INDEX[name] for name in ANIMATE_CLASSES)
MOTION_SEC = 2.0  # "moving left now": the tracks of the last 2 s (8 analysed frames)
PRIOR_HORIZONS = 10.0  # the head's enter probability counts as this many horizons of observation
EXIT_WEIGHT = 0.5  # leave = 1 - (1 - head) x (1 - this) for a class heading out of the frame
MOVING_SPEED = 0.05  # frame-widths per second; slower is not "moving"


@dataclass
class AnalysedFrame:
    """What a stream keeps of an analysed frame: small, no pixels."""

    t_sec: float
    detections: Detections
    token: np.ndarray  # (F,)
    state: torch.Tensor  # (H,) encoder output after this frame
    cells: np.ndarray | None = None  # (G, C) grid cells of the last neck map


@dataclass
class StreamUpdate:
    """The outcome of pushing one frame."""

    t_sec: float
    detections: Detections  # boxes to draw on this frame
    analysed: bool  # the frame went through the tracker, the tokenizer and the LSTM
    caption: str  # the caption now (live: of the last window_sec; offline: of the last closed window)
    next: list[NextEvent]  # what happens next, as of the latest analysed frame
    caption_changed: bool
    segment: Segment | None = None  # the window this frame closed, exactly as offline captioning writes it
    server_ms: float = 0.0


# ---- windows -> captions and forecasts ----------------------------------------------------------

def grounded_objects(trained: TrainedModel, frames: list[AnalysedFrame]) -> WindowObjects:
    """The objects seen in the frames that have enough evidence to be named."""
    objects = window_objects(np.stack([f.token for f in frames]), trained.model.cfg.embedding_dim,
                             [f.detections for f in frames])
    return objects.select(trained.evidence.passes(objects))


@torch.no_grad()
def describe_window(trained: TrainedModel, frames: list[AnalysedFrame], options: CaptionOptions,
                    frame_size: tuple[int, int] | None = None) -> tuple[str, float, Evidence]:
    """Caption of a window of analysed frames: (caption, confidence, evidence). What may be said:
    - a COCO class only when it passes the evidence bar (the decoder sees only those);
    - other nouns ("grass", "shirt") only those real photos taught, and only of a still picture:
      in a video window the phrase holding one is left out ("a person in a red shirt is standing
      on the beach" -> "a person is standing"): they were wrong too often on video (model card);
    - a colour word only when the named objects' boxes show that colour, and "black and white"
      only when one box shows both (``colours.py``);
    - of video, no race (``decoding.RACE_WORDS``), and no posture ("sitting", "standing") of
      people or animals who mostly walk (``events.mostly_walking``; ``frame_size``: (width,
      height) pixels, None for frames without a picture, whose motion cannot be checked);
    - "riding" / "driving" a thing only when a box of the subject lies on or in one of that
      thing's in some frame (``decoding.rides_what_it_touches``);
    - "a person and person" reads "two people" (``decoding.join_repeated_nouns``).
    """
    model = trained.model
    named = grounded_objects(trained, frames)
    times = [round(f.t_sec, 3) for f in frames]
    if len(named) == 0:  # nothing with enough evidence: say so rather than guess from the scene alone
        return NOTHING_SEEN, 1.0, Evidence([], [], times)
    states = torch.stack([f.state for f in frames])
    inputs = segment_inputs([states], [named], [window_cells([f.cells for f in frames])], model.cfg)
    decoder = model.decoder
    memory, mask, memory_proj = decoder.memory(inputs)
    vocab, grounding = trained.vocab, trained.grounding
    present = set(int(c) for c in named.class_ids)
    banned = grounding.banned_mask(len(vocab), present, specials=[0, 1, 3])  # pad, bos, unk
    box_bits = named_box_colours(frames, present)
    shown = allowed_words(window_colours(box_bits))
    banned[[vocab.stoi[w] for w in COLOUR_WORDS if w in vocab.stoi and w not in shown]] = True
    bias = None
    if len(frames) > 1:
        banned[[vocab.stoi[w] for w in RACE_WORDS if w in vocab.stoi]] = True
        if frame_size is not None and mostly_walking(frames, frame_size, present & ANIMATE_IDS):
            banned[[vocab.stoi[w] for w in STILL_VERBS if w in vocab.stoi]] = True
            bias = torch.zeros(len(vocab))  # and gait words likelier: else "driving a car" of a man walking past one
            bias[[vocab.stoi[w] for w in GAIT_VERBS if w in vocab.stoi]] = GAIT_BONUS
    hyps = beam_search(decoder, memory, mask, memory_proj, STYLE_IDS[options.style], vocab, banned, grounding,
                       salient_classes(named), beam_size=options.beam_size, max_len=model.cfg.max_caption_len, bias=bias)
    scene = {vocab.itos[i] for i in grounding.scene_words}
    word_class = {vocab.itos[i]: c for i, c in grounding.word_class.items()}
    nouns = scene | set(word_class)
    counts = class_counts(frames, named.class_ids)
    surest = [COCO_CLASSES[c] for c in salient_classes(named)] or [COCO_CLASSES[int(named.class_ids[0])]]
    caption, confidence = in_view_caption([(c, counts[c]) for c in surest]), 1.0  # when no decoded sentence reads true
    boxes = [(f.detections.box_xyxy, f.detections.class_id) for f in frames]
    for hyp in hyps:  # the best hypothesis that reads as a true sentence about what is named
        tokens = vocab.decode_tokens(hyp.ids)
        if len(frames) > 1:  # scene words ("beach", "shirt") only of a still picture: on video their phrases go
            tokens = strip_scene_phrases(tokens, scene)
        tokens = join_repeated_nouns(tokens, word_class) if tokens else tokens
        if (tokens and is_complete(tokens) and names_its_subject(tokens, nouns) and joined_colours_fit(tokens, box_bits)
                and not misplaces_an_object(tokens, word_class) and rides_what_it_touches(tokens, word_class, boxes)):
            caption, confidence = detokenize(tokens), hyp.confidence
            break
    track_ids = sorted({int(t) for f in frames for c, t in zip(f.detections.class_id, f.detections.track_id)
                        if t >= 0 and int(c) in present})
    classes = [COCO_CLASSES[int(c)] for c in named.class_ids]
    return caption, round(confidence, 4), Evidence(track_ids, classes, times, counts)


def named_box_colours(frames: list[AnalysedFrame], classes: set[int]) -> list[int]:
    """The colour bit sets of every box of ``classes`` in the window (colour words are checked
    against these; a box whose colours were not read shows none)."""
    return [int(bits) for f in frames if f.detections.colours is not None
            for c, bits in zip(f.detections.class_id, f.detections.colours) if int(c) in classes]


def class_counts(frames: list[AnalysedFrame], classes: np.ndarray) -> dict[str, int]:
    """For each of ``classes`` (COCO ids): the most detections of it in one frame of the window."""
    counts: dict[str, int] = {}
    for c in classes:
        name = COCO_CLASSES[int(c)]
        counts[name] = max((int(np.count_nonzero(f.detections.class_id == c)) for f in frames), default=0)
    return counts


@torch.no_grad()
def forecast_next(trained: TrainedModel, history: list[AnalysedFrame], frame_size: tuple[int, int],
                  arrivals: Arrivals | None = None) -> list[NextEvent]:
    """What happens in the next ``horizon_sec``, from the last ``HISTORY_FRAMES`` analysed frames
    (``frame_size``: (width, height) pixels). Only classes with enough evidence in that history
    may be named; "the X will stay / leave" only of what is in view now (``visible_now``); "the X
    will keep moving left" only where X's tracks move left now (``events.dominant_motion``)."""
    model = trained.model
    frames = history[-HISTORY_FRAMES:]
    last = frames[-1]
    tokens = torch.from_numpy(np.stack([f.token for f in frames]))[None]
    probs = model.predict_next(torch.stack([f.state for f in frames])[None], tokens).last_step()
    named = grounded_objects(trained, frames)
    evidenced = set(int(c) for c in named.class_ids)
    present_now = visible_now(frames, evidenced)
    velocity = last.token[TokenLayout(model.cfg.embedding_dim).velocity]
    leave_side = {c: ("right" if velocity[c] > 0 else "left") for c in present_now if abs(velocity[c]) >= MOVING_SPEED}
    movers = {c for c in present_now if COCO_CLASSES[c] not in STATIC_CLASSES}
    # the head's own direction was right only 18 % of the time on held-out clips when it was
    # sure (>= 0.4); said only where it agrees with the motion measured now, 78 % (model card)
    moving = dominant_motion([f for f in frames if f.t_sec >= last.t_sec - MOTION_SEC], frame_size, movers)
    enter = arrivals.blend(probs.enter, model.cfg.horizon_sec) if arrivals is not None else probs.enter
    # the head rarely sees an exit coming; a track whose steady motion takes it out of the frame
    # within the horizon is half of a leave on its own (model card: leave AUROC of what is in view)
    leave = leave_with_exits(probs.leave, heading_out(frames, frame_size, model.cfg.horizon_sec))
    return forecast_events(probs.presence, enter, leave, probs.direction, present_now, leave_side,
                           moving, model.cfg.horizon_sec, evidenced)


def leave_with_exits(leave: Sequence[float], exiting: set[int]) -> list[float]:
    """The head's leave probabilities, with ``EXIT_WEIGHT`` of a leave added for each class
    heading out of the frame (``events.heading_out``)."""
    return [1.0 - (1.0 - p) * (1.0 - EXIT_WEIGHT) if c in exiting else float(p) for c, p in enumerate(leave)]


class Arrivals:
    """How often new objects of each class have arrived in this source so far: new confirmed
    track ids (what the next-event targets count as "enter") since the stream's first frame.

    The head's enter probability is learned from the training clips' pace; a source has its own
    ("another person may enter (0.5)" every frame of an office where one person arrives a
    minute). ``blend`` weighs the head's probability against this source's observed rate as
    ``PRIOR_HORIZONS`` horizons against the horizons watched so far."""

    FORGET_SEC = 60.0  # a track id unseen this long is gone for good (the tracker drops lost tracks in seconds)

    def __init__(self) -> None:
        self.first_t: float | None = None
        self.last_t = 0.0
        self.seen: dict[int, float] = {}  # track id -> when last seen (bounded: a webcam may run for days)
        self.count: dict[int, int] = {}

    def add(self, frame: AnalysedFrame) -> None:
        self.first_t = frame.t_sec if self.first_t is None else self.first_t
        self.last_t = frame.t_sec
        det = frame.detections
        for tid, c in zip(det.track_id.tolist(), det.class_id.tolist()):
            if tid >= 0:
                if tid not in self.seen and frame.t_sec > self.first_t:  # what is there at the start did not arrive
                    self.count[c] = self.count.get(c, 0) + 1
                self.seen[tid] = frame.t_sec
        if len(self.seen) > 1000:
            self.seen = {tid: t for tid, t in self.seen.items() if t >= frame.t_sec - self.FORGET_SEC}

    def blend(self, enter: list[float], horizon_sec: float) -> list[float]:
        watched = 0.0 if self.first_t is None else (self.last_t - self.first_t) / horizon_sec
        if watched <= 0:
            return list(enter)
        out = []
        for c, p_head in enumerate(enter):
            rate = self.count.get(c, 0) / (watched * horizon_sec)  # arrivals per second
            p_seen = 1.0 - math.exp(-rate * horizon_sec)  # at least one in a horizon, at that rate
            out.append((PRIOR_HORIZONS * p_head + watched * p_seen) / (PRIOR_HORIZONS + watched))
        return out


def visible_now(recent: list[AnalysedFrame], classes: set[int]) -> dict[int, int]:
    """Class id -> how many are in view now, for each of ``classes`` detected in either of the
    last two analysed frames: one missed detection is not a leave, but someone last seen half a
    second ago has usually walked out (on held-out clips, "stays in view" said of a class missing
    from the last frame was wrong 70 % of the time)."""
    counts: dict[int, int] = {}
    for f in recent[-2:]:
        for c, n in zip(*np.unique(f.detections.class_id, return_counts=True)):
            if int(c) in classes:
                counts[int(c)] = max(counts.get(int(c), 0), int(n))
    return counts


# ---- the stream ---------------------------------------------------------------------------------

class Stream:
    """All the state of one source. Create it with ``Captioner.new_session`` (live) or let
    ``Captioner.caption`` make one (offline); never share one between sources."""

    def __init__(self, perception: Perception, trained: TrainedModel, frame_size: tuple[int, int],
                 options: CaptionOptions, analysis_fps: float, *, source_fps: float | None = None,
                 live: bool = True, detect_every_frame: bool = False):
        self.trained, self.options = trained, options
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.analysis_fps = analysis_fps
        self.perception = PerceptionStream(perception, analysis_fps, source_fps)
        self.tokenizer = FrameTokenizer(self.frame_size, trained.model.cfg.embedding_dim)
        self.lstm_state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.live, self.detect_every_frame = live, detect_every_frame
        self.window: list[AnalysedFrame] = []
        self.window_start = 0.0
        # enough analysed frames for the forecast and the live preview window
        self.recent: deque[AnalysedFrame] = deque()
        self.arrivals = Arrivals()
        self.caption, self.next = "", []
        self.last_analysed: AnalysedFrame | None = None
        self._preview_t = -float("inf")
        self.source_fps = source_fps
        self.last_t: float | None = None  # the latest frame pushed (analysed or not), and the one before
        self._prev_t: float | None = None

    # ---- input --------------------------------------------------------------------------------

    def wants(self, t_sec: float) -> bool:
        """Whether a frame at ``t_sec`` will be analysed (a decoder may skip converting the others)."""
        return self.perception.wants(t_sec)

    def push(self, image_bgr: np.ndarray | None, t_sec: float, frame_index: int = -1) -> StreamUpdate:
        """One frame of the source, in order. ``image_bgr`` may be None for a frame ``wants`` refused."""
        start = time.perf_counter()
        update, = self.push_many([SampledFrame(frame_index, t_sec, image_bgr)])
        update.server_ms = (time.perf_counter() - start) * 1000.0
        return update

    def push_many(self, frames: Sequence[SampledFrame]) -> list[StreamUpdate]:
        """Consecutive frames of the source, in order (offline files): the analysed ones go
        through YOLO in one batch, then the tracker, the tokenizer and the LSTM one by one; one
        update per frame, as ``push`` gives them."""
        for frame in frames:
            image = frame.image_bgr
            if image is not None and (image.shape[1], image.shape[0]) != self.frame_size:
                from .errors import OptionsError

                raise OptionsError(f"frame size changed from {self.frame_size[0]}x{self.frame_size[1]} to "
                                   f"{image.shape[1]}x{image.shape[0]}; start a new stream")
            self._saw(frame.t_sec)
        updates = []
        for frame, features in zip(frames, self.perception.push_many(frames)):
            if features is not None:
                updates.append(self.push_features(features))
                continue
            if self.detect_every_frame and frame.image_bgr is not None:
                detections = self.perception.display_detections(frame.image_bgr)
            else:
                detections = self.last_analysed.detections if self.last_analysed else Detections.empty()
            updates.append(StreamUpdate(frame.t_sec, detections, False, self.caption, self.next, False))
        return updates

    def push_features(self, frame: FrameFeatures) -> StreamUpdate:
        """An analysed frame whose perception is already done (e.g. from the feature cache)."""
        self._saw(frame.t_sec)
        segment = None
        while frame.t_sec >= self.window_start + self.options.window_sec:
            if self.window:
                segment = self._close(self.window_start + self.options.window_sec)
            self.window_start += self.options.window_sec
        analysed = self._encode(frame)
        self.arrivals.add(analysed)
        self.window.append(analysed)
        self.recent.append(analysed)
        keep_sec = max(self.options.window_sec, HISTORY_FRAMES / self.analysis_fps)
        while len(self.recent) > HISTORY_FRAMES and self.recent[0].t_sec < frame.t_sec - keep_sec:
            self.recent.popleft()
        self.last_analysed = analysed
        changed = False
        if self.live:
            self.next = forecast_next(self.trained, list(self.recent), self.frame_size, self.arrivals)
            if frame.t_sec - self._preview_t >= self.options.caption_every_sec:
                preview = [f for f in self.recent if f.t_sec > frame.t_sec - self.options.window_sec]
                caption, _, _ = describe_window(self.trained, preview, self.options, self.frame_size)
                changed, self.caption, self._preview_t = caption != self.caption, caption, frame.t_sec
        return StreamUpdate(frame.t_sec, frame.detections, True, self.caption, self.next, changed, segment)

    def finish(self, end_sec: float | None = None) -> Segment | None:
        """Close the open window (the end of a file, or of a live session); its end is ``end_sec``
        (default: when the last pushed frame stops showing, ``video.end_of_frames``: one frame
        period after it, never later), at most the window's end."""
        if not self.window:
            return None
        if end_sec is None:
            end_sec = end_of_frames(self.last_t, self._prev_t, self.source_fps or 0.0)
        return self._close(min(end_sec, self.window_start + self.options.window_sec))

    # ---- internals ----------------------------------------------------------------------------

    def _saw(self, t_sec: float) -> None:
        if self.last_t is None or t_sec > self.last_t:
            self._prev_t, self.last_t = self.last_t, t_sec

    def _encode(self, frame: FrameFeatures) -> AnalysedFrame:
        token = self.tokenizer(frame)
        with torch.no_grad():
            out, self.lstm_state = self.trained.model.encode(torch.from_numpy(token)[None, None], self.lstm_state)
        return AnalysedFrame(frame.t_sec, frame.detections, token, out[0, 0], frame.cells)

    def _close(self, end_sec: float) -> Segment:
        caption, confidence, evidence = describe_window(self.trained, self.window, self.options, self.frame_size)
        # the forecast as of the window's last frame (live streams computed exactly this already)
        history = [f for f in self.recent if f.t_sec <= self.window[-1].t_sec]
        next_events = self.next if self.live else forecast_next(self.trained, history, self.frame_size, self.arrivals)
        segment = Segment(round(self.window_start, 3), round(end_sec, 3), caption, confidence, next_events, evidence)
        if not self.live:
            self.caption, self.next = caption, next_events
        self.window = []
        return segment
