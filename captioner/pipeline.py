"""Stage 7: windows of analysed frames -> Segment(start, end, caption, next, evidence).

``load_model()`` loads YOLO and the caption model once. ``caption(path)`` runs a file through
the whole data path in one streaming pass (frames are dropped as soon as they are analysed,
so memory stays flat however long the video). ``new_session()`` / ``stream()`` serve live
sources: each session owns its tracker, token state and LSTM state; nothing is global.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .checkpoint import Captioner, check_backbone, load_checkpoint
from .coco import COCO_CLASSES
from .decoding import beam_search, forecast_events
from .errors import OptionsError
from .features import FrameFeatures, analyse_frames
from .model import HISTORY_FRAMES, STYLE_EVENTS, STYLE_HUMAN
from .perception import Detections, Perception
from .result import Evidence, NextEvent, Result, Segment, VideoMeta
from .tokens import FrameTokenizer, TokenLayout, salient_classes, segment_slots
from .video import DEFAULT_ANALYSIS_FPS, VideoSource, check_fps

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SEC = 4.0
NOTHING_SEEN = "no objects the detector knows are in view"
RECENT_SEC = 1.0  # what counts as "now" for the forecast's subject counts
MOVING_SPEED = 0.05  # frame-widths per second; slower is not "moving"


@dataclass
class AnalysedFrame:
    """What a window keeps of a frame after perception: small, no pixels."""

    t_sec: float
    detections: Detections
    token: np.ndarray  # (F,)
    state: torch.Tensor  # (H,) encoder output after this frame


@dataclass
class LiveUpdate:
    """One live frame's outcome: what to draw now and the current caption/forecast."""

    t_sec: float
    detections: Detections
    caption: str
    next: list[NextEvent]
    caption_changed: bool
    server_ms: float = 0.0


@dataclass
class StreamState:
    """Everything one stream remembers between frames (owned by one session)."""

    tokenizer: FrameTokenizer
    lstm_state: tuple[torch.Tensor, torch.Tensor] | None = None
    window: deque = field(default_factory=deque)


class CaptionPipeline:
    def __init__(self, perception: Perception, captioner: Captioner, *, beam_size: int = 4, style: str = "human"):
        check_backbone(captioner.backbone, perception.backbone)
        if style not in ("human", "events"):
            raise OptionsError(f"style must be 'human' or 'events', got {style!r}")
        self.perception, self.captioner = perception, captioner
        self.model = captioner.model.eval()
        self.layout = TokenLayout(self.model.cfg.embedding_dim)
        self.beam_size = beam_size
        self.style = STYLE_HUMAN if style == "human" else STYLE_EVENTS

    # ---- per-window work ------------------------------------------------------------------------

    def _encode(self, state: StreamState, frame: FrameFeatures) -> AnalysedFrame:
        token = state.tokenizer(frame)
        with torch.no_grad():
            out, state.lstm_state = self.model.encode(torch.from_numpy(token)[None, None], state.lstm_state)
        return AnalysedFrame(frame.t_sec, frame.detections, token, out[0, 0])

    @torch.no_grad()
    def _caption_window(self, frames: list[AnalysedFrame]) -> tuple[str, float, Evidence]:
        tokens = np.stack([f.token for f in frames])
        slot_classes, slot_feats = segment_slots(tokens, self.model.cfg.embedding_dim)
        times = [round(f.t_sec, 3) for f in frames]
        if len(slot_classes) == 0:
            return NOTHING_SEEN, 1.0, Evidence([], [], times)
        states = torch.stack([f.state for f in frames])[None]
        decoder = self.model.decoder
        memory, mask, memory_proj = decoder.memory(
            states, torch.ones(1, len(frames), dtype=torch.bool), torch.from_numpy(slot_classes)[None],
            torch.from_numpy(slot_feats)[None], torch.ones(1, len(slot_classes), dtype=torch.bool))
        vocab, grounding = self.captioner.vocab, self.captioner.grounding
        present = set(int(c) for c in slot_classes)
        banned = grounding.banned_mask(len(vocab), present, specials=[0, 1, 3])  # pad, bos, unk
        hyps = beam_search(decoder, memory, mask, memory_proj, self.style, vocab, banned, grounding,
                           salient_classes(slot_classes, slot_feats), beam_size=self.beam_size,
                           max_len=self.model.cfg.max_caption_len)
        best = hyps[0]
        named = best.named or present
        track_ids = sorted({int(t) for f in frames for c, t in zip(f.detections.class_id, f.detections.track_id)
                            if t >= 0 and int(c) in named})
        classes = [COCO_CLASSES[int(c)] for c in slot_classes]
        return vocab.decode(best.ids), round(best.confidence, 4), Evidence(track_ids, classes, times)

    @torch.no_grad()
    def _forecast(self, frames: list[AnalysedFrame]) -> list[NextEvent]:
        last = frames[-1]
        last_frames = frames_at_rate(frames, DEFAULT_ANALYSIS_FPS, HISTORY_FRAMES)
        tokens = torch.from_numpy(np.stack([f.token for f in last_frames]))[None]
        predicted = self.model.predict_next(torch.stack([f.state for f in last_frames])[None], tokens)
        probs = {k: torch.sigmoid(v[0, -1]).tolist() for k, v in predicted.items() if k != "direction"}
        direction = torch.softmax(predicted["direction"][0, -1], -1).tolist()
        recent = [f for f in frames if f.t_sec >= last.t_sec - RECENT_SEC]
        present_now: dict[int, int] = {}
        for f in recent:
            for c, n in zip(*np.unique(f.detections.class_id, return_counts=True)):
                present_now[int(c)] = max(present_now.get(int(c), 0), int(n))
        velocity = last.token[self.layout.velocity]
        leave_side = {c: ("right" if velocity[c] > 0 else "left") for c in present_now if abs(velocity[c]) >= MOVING_SPEED}
        moving = [c for c in present_now if abs(velocity[c]) >= MOVING_SPEED]
        moving_class = max(moving, key=lambda c: abs(velocity[c])) if moving else None
        return forecast_events(probs["presence"], probs["enter"], probs["leave"], direction, present_now, leave_side,
                               moving_class, self.model.cfg.horizon_sec)

    def _segment(self, frames: list[AnalysedFrame], start: float, end: float) -> Segment:
        caption, confidence, evidence = self._caption_window(frames)
        return Segment(round(start, 3), round(end, 3), caption, confidence, self._forecast(frames), evidence)

    # ---- files ------------------------------------------------------------------------------

    def caption(
        self,
        source: str | os.PathLike,
        *,
        fps: float = DEFAULT_ANALYSIS_FPS,
        window_sec: float = DEFAULT_WINDOW_SEC,
        progress: Callable[[int, int], None] | None = None,
        keep_detections: bool = False,
    ) -> Result:
        """Caption a video file. ``progress(done_frames, total_frames)`` is called as it goes.
        With ``keep_detections`` the result carries ``frame_detections`` [(t_sec, Detections)]
        for drawing an annotated video (small: boxes only)."""
        check_fps(fps)
        if not (0.5 <= window_sec <= 600):
            raise OptionsError(f"window must be between 0.5 and 600 seconds, got {window_sec!r}")
        segments: list[Segment] = []
        frame_detections: list[tuple[float, Detections]] = []
        with VideoSource(source, target_fps=fps) as video:
            info = video.info
            state = StreamState(FrameTokenizer(info.size, self.model.cfg.embedding_dim))

            def frames():
                for frame in video.frames():
                    if progress:
                        progress(frame.index + 1, info.frame_count)
                    yield frame

            window: list[AnalysedFrame] = []
            window_start = 0.0
            for frame in analyse_frames(frames(), self.perception, analysis_fps=fps):
                while frame.t_sec >= window_start + window_sec:
                    if window:
                        segments.append(self._segment(window, window_start, window_start + window_sec))
                        window = []
                    window_start += window_sec
                window.append(self._encode(state, frame))
                if keep_detections:
                    frame_detections.append((frame.t_sec, frame.detections))
            if progress:
                progress(info.frame_count, info.frame_count)  # skipped tail frames count as done
            if window:
                end = max(info.duration_sec, window[-1].t_sec + 1.0 / fps)
                segments.append(self._segment(window, window_start, min(end, window_start + window_sec)))
        result = Result(
            VideoMeta(str(source), round(info.duration_sec, 3), round(info.fps, 3), info.width, info.height),
            merge_segments(segments),
            settings={"fps": fps, "window_sec": window_sec, "beam_size": self.beam_size,
                      "style": "human" if self.style == STYLE_HUMAN else "events", **self.perception.settings()},
            models=self.models(),
            frame_detections=frame_detections,
        )
        return result

    def models(self) -> dict:
        backbone = self.perception.backbone
        return {"yolo": {"name": backbone.weights_name, "sha256": backbone.weights_sha256,
                         "architecture": backbone.architecture},
                "captioner": {"name": Path(self.captioner.path).name, "sha256": self.captioner.sha256}}

    # ---- live -------------------------------------------------------------------------------

    def new_session(self, frame_size: tuple[int, int], *, fps: float = DEFAULT_ANALYSIS_FPS,
                    window_sec: float = DEFAULT_WINDOW_SEC, caption_every_sec: float = 1.0) -> "LiveSession":
        return LiveSession(self, frame_size, fps=fps, window_sec=window_sec, caption_every_sec=caption_every_sec)

    def stream(self, frames_with_timestamps: Iterable[tuple[np.ndarray, float]], **session_options) -> Iterator[LiveUpdate]:
        """Live captioning of (image_bgr, t_sec) pairs; one update per frame."""
        session = None
        for image, t_sec in frames_with_timestamps:
            if session is None:
                session = self.new_session((image.shape[1], image.shape[0]), **session_options)
            yield session.push(image, t_sec)


class LiveSession:
    """One live stream: its own tracker, token state, LSTM state and recent-window buffer."""

    def __init__(self, pipeline: CaptionPipeline, frame_size: tuple[int, int], *, fps: float, window_sec: float,
                 caption_every_sec: float):
        self.pipeline = pipeline
        self.frame_size = frame_size
        self.window_sec, self.caption_every_sec = window_sec, caption_every_sec
        self.tracker = pipeline.perception.new_tracker(frame_rate=fps)
        self.state = StreamState(FrameTokenizer(frame_size, pipeline.model.cfg.embedding_dim))
        self.caption, self.next = "", []
        self._last_caption_t = -1e9

    def push(self, image_bgr: np.ndarray, t_sec: float) -> LiveUpdate:
        import time

        start = time.perf_counter()
        if (image_bgr.shape[1], image_bgr.shape[0]) != self.frame_size:
            raise OptionsError(f"live frame size changed from {self.frame_size} to {image_bgr.shape[1::-1]}; start a new session")
        (detections, embedding), = self.pipeline.perception.detect([image_bgr], self.tracker)
        analysed = self.pipeline._encode(self.state, FrameFeatures(t_sec, -1, detections, embedding))
        window = self.state.window
        window.append(analysed)
        while window and window[0].t_sec < t_sec - self.window_sec:
            window.popleft()  # keep only the last window: memory stays flat
        changed = False
        frames = list(window)
        if t_sec - self._last_caption_t >= self.caption_every_sec:
            caption, _, _ = self.pipeline._caption_window(frames)
            changed, self.caption, self._last_caption_t = caption != self.caption, caption, t_sec
        self.next = self.pipeline._forecast(frames)
        return LiveUpdate(t_sec, detections, self.caption, self.next, changed, (time.perf_counter() - start) * 1000)


def frames_at_rate(frames: list[AnalysedFrame], fps: float, count: int) -> list[AnalysedFrame]:
    """Up to ``count`` frames, oldest first: for each of the times last, last - 1/fps,
    last - 2/fps, ... the latest frame not after it (with a quarter step of slack). The next-event
    head's presence statistics count frames and were learned at the analysis rate, so a live
    stream running faster is thinned to that rate; at that rate or slower every frame is kept."""
    times = [f.t_sec for f in frames]
    picked: list[int] = []
    for k in range(count):
        latest_allowed = times[-1] - (k - 0.25) / fps if frames else 0.0
        before = picked[-1] if picked else len(frames)
        i = next((j for j in range(before - 1, -1, -1) if times[j] <= latest_allowed), None)
        if i is None:
            break
        picked.append(i)
    return [frames[i] for i in reversed(picked)]


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Consecutive segments with the same caption become one (forecast of the last one)."""
    merged: list[Segment] = []
    for seg in segments:
        if merged and merged[-1].caption == seg.caption:
            prev = merged[-1]
            n_prev, n_seg = len(prev.evidence.frame_times_sec), len(seg.evidence.frame_times_sec)
            prev.confidence = round((prev.confidence * n_prev + seg.confidence * n_seg) / max(n_prev + n_seg, 1), 4)
            prev.end, prev.next = seg.end, seg.next
            prev.evidence = Evidence(sorted(set(prev.evidence.track_ids) | set(seg.evidence.track_ids)),
                                     list(dict.fromkeys(prev.evidence.classes + seg.evidence.classes)),
                                     prev.evidence.frame_times_sec + seg.evidence.frame_times_sec)
        else:
            merged.append(seg)
    return merged


def load_model(yolo_weights: str | os.PathLike | None = None, weights: str | os.PathLike | None = None, *,
               imgsz: int = 640, conf: float = 0.25, device: str | None = None, beam_size: int = 4,
               style: str = "human") -> CaptionPipeline:
    """Load YOLO (see perception.resolve_weights) and the caption model (default
    ``weights/captioner.pt``) once; reuse the returned pipeline for every video and session."""
    perception = Perception(yolo_weights, imgsz=imgsz, conf=conf, device=device)
    return CaptionPipeline(perception, load_checkpoint(weights), beam_size=beam_size, style=style)
