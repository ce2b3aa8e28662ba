"""One source's stream: the state that carries stages 2 to 8 from one frame to the next.
Frames in; captions, forecasts and segments out.

A ``Stream`` owns everything one source needs between frames: the frame sampler and the
tracker (``features.SourcePerception``), the token state (``tokens.FrameTokenizer``), the
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

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .checkpoint import TrainedModel
from .features import FrameFeatures, SourcePerception
from .grounding.forecast import Arrivals, forecast_lines
from .model import HISTORY_FRAMES
from .options import CaptionOptions
from .perception import Detections, Perception
from .result import NextEvent, Segment
from .tokens import FrameTokenizer
from .video import SampledFrame, end_of_frames
from .windows import describe_window, forecast_next


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
    forecast: list[NextEvent]  # what happens next, as of the latest analysed frame
    caption_changed: bool
    segment: Segment | None = None  # the window this frame closed, exactly as offline captioning writes it
    server_ms: float = 0.0


# ---- the stream ---------------------------------------------------------------------------------

# One worker thread, shared by every live stream, writes the live preview captions
# (``CaptionOptions.caption_in_background``): the beam search (25-65 ms on a 2-core CPU) then never
# holds up the frame that asked for it, so boxes and forecasts keep their pace; the caption shows
# with the first frame after it is written. A stream asks again only once its last preview is in.
# The segments a stream closes are written inline, as offline captioning writes them.
_PREVIEW_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="captioner-preview")


class Stream:
    """All the state of one source. Create it with ``Captioner.new_live_stream`` (live) or let
    ``Captioner.caption`` make one (offline); never share one between sources."""

    def __init__(self, perception: Perception, trained: TrainedModel, frame_size: tuple[int, int],
                 options: CaptionOptions, analysis_fps: float, *, source_fps: float | None = None,
                 live: bool = True, detect_every_frame: bool = False):
        self.trained, self.options = trained, options
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.analysis_fps = analysis_fps
        self.perception = SourcePerception(perception, analysis_fps, source_fps)
        self.tokenizer = FrameTokenizer(self.frame_size, trained.network.cfg.embedding_dim)
        self.lstm_state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.live, self.detect_every_frame = live, detect_every_frame
        self.window: list[AnalysedFrame] = []
        self.window_start = 0.0
        # enough analysed frames for the forecast and the live preview window
        self.recent: deque[AnalysedFrame] = deque()
        self.arrivals = Arrivals()
        self.caption, self.forecast = "", []
        self.last_analysed: AnalysedFrame | None = None
        self._preview_t = -float("inf")
        self._preview: Future | None = None  # the live preview caption being written
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
            changed = self._take_preview()
            updates.append(StreamUpdate(frame.t_sec, detections, False, self.caption, self.forecast, changed))
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
            self.forecast = forecast_lines(forecast_next(self.trained, list(self.recent), self.frame_size, self.arrivals),
                                           self.options.forecast_lines)
            changed = self._take_preview()
            if self._preview is None and frame.t_sec - self._preview_t >= self.options.caption_every_sec:
                preview = [f for f in self.recent if f.t_sec > frame.t_sec - self.options.window_sec]
                if self.options.caption_in_background and self.caption:  # the first one inline: shown at once
                    self._preview = _PREVIEW_WORKER.submit(describe_window, self.trained, preview, self.options,
                                                           self.frame_size)
                else:
                    caption, _, _ = describe_window(self.trained, preview, self.options, self.frame_size)
                    changed, self.caption = changed or caption != self.caption, caption
                self._preview_t = frame.t_sec
        return StreamUpdate(frame.t_sec, frame.detections, True, self.caption, self.forecast, changed, segment)

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

    def _take_preview(self, wait: bool = False) -> bool:
        """Take the live preview caption the worker wrote, if it is done (or once it is, with
        ``wait``); True when the caption changed. A failure in the worker is raised here."""
        if self._preview is None or not (wait or self._preview.done()):
            return False
        caption = self._preview.result()[0]
        self._preview = None
        changed, self.caption = caption != self.caption, caption
        return changed

    def settle(self) -> bool:
        """Wait for the preview caption being written (a live stream); True when the caption changed."""
        return self._take_preview(wait=True)

    def _saw(self, t_sec: float) -> None:
        if self.last_t is None or t_sec > self.last_t:
            self._prev_t, self.last_t = self.last_t, t_sec

    def _encode(self, frame: FrameFeatures) -> AnalysedFrame:
        token = self.tokenizer(frame)
        with torch.no_grad():
            out, self.lstm_state = self.trained.network.encode(torch.from_numpy(token)[None, None], self.lstm_state)
        return AnalysedFrame(frame.t_sec, frame.detections, token, out[0, 0], frame.cells)

    def _close(self, end_sec: float) -> Segment:
        caption, confidence, evidence = describe_window(self.trained, self.window, self.options, self.frame_size)
        # the forecast as of the window's last frame (live streams computed exactly this already)
        history = [f for f in self.recent if f.t_sec <= self.window[-1].t_sec]
        next_events = self.forecast if self.live else forecast_lines(
            forecast_next(self.trained, history, self.frame_size, self.arrivals), self.options.forecast_lines)
        segment = Segment(round(self.window_start, 3), round(end_sec, 3), caption, confidence, next_events, evidence)
        if not self.live:
            self.caption, self.forecast = caption, next_events
        self.window = []
        return segment
