"""The public face of the runtime: ``load_model()`` and the ``Captioner`` it returns.

>>> import captioner
>>> model = captioner.load_model()                 # YOLO + caption model, loaded once
>>> result = model.caption("clip.mp4")             # -> Result (segments, forecasts, evidence)
>>> stream = model.new_live_stream((640, 480))     # live: push frames as they come
>>> update = stream.push(frame_bgr, t_sec)

``caption`` runs a file (or a still image, or an image array) through a ``stream.Stream`` in one
pass, dropping frames as soon as they are analysed, so memory stays flat however long the
video. ``new_live_stream`` / ``stream`` give the same ``Stream`` to live sources: each owns its
tracker, sampler, token and LSTM state; nothing is global.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .checkpoint import TrainedModel, check_backbone, load_checkpoint
from .errors import OptionsError
from .options import CaptionOptions, ProgressCallback
from .perception import Detections, Perception
from .result import Evidence, Result, Segment, VideoMeta, WordEvidence
from .stream import Stream, StreamUpdate
from .video import ReadAhead, open_source, too_long

log = logging.getLogger(__name__)



class Captioner:
    """A loaded YOLO and caption model. Load once (``load_model``); use for any number of files
    and streams. Not thread-safe: one call at a time per instance."""

    def __init__(self, perception: Perception, trained: TrainedModel, options: CaptionOptions | None = None):
        check_backbone(trained.backbone, perception.backbone)
        self.perception, self.trained = perception, trained
        self.options = options or CaptionOptions(imgsz=perception.imgsz, conf=perception.conf, backend=perception.backend)
        trained.network.eval()

    @property
    def analysis_fps(self) -> float:
        """Frames per second the caption model reads: the rate it was trained at."""
        return self.trained.analysis_fps

    def _options(self, options: CaptionOptions | None, overrides: dict[str, Any]) -> CaptionOptions:
        options = (options or self.options).replace(**overrides) if overrides else (options or self.options)
        loaded = self.options.perception()
        if options.perception() != loaded:
            differ = {k: v for k, v in options.perception().items() if loaded[k] != v}
            raise OptionsError(f"this model was loaded with {loaded}; {differ} needs another model: "
                               f"captioner.load_model({', '.join(f'{k}={v!r}' for k, v in differ.items())})")
        return options

    # ---- files and images ---------------------------------------------------------------------

    def caption(self, source: str | os.PathLike | np.ndarray, options: CaptionOptions | None = None, *,
                progress: ProgressCallback | None = None, keep_detections: bool = False, **overrides: Any) -> Result:
        """Caption a video file, a still image file, or an image array (H, W, 3 BGR uint8).

        ``options`` (default: the model's) may be adjusted by keyword (``window_sec=8``).
        ``progress(done_frames, total_frames)`` is called as it goes. With ``keep_detections``
        the result carries ``frame_detections`` [(t_sec, Detections)] for drawing an annotated
        video (small: boxes only). A still image gives one segment with start = end = 0.
        """
        options = self._options(options, overrides)
        if isinstance(source, np.ndarray):
            return self._caption_array(source, options)
        segments: list[Segment] = []
        frame_detections: list[tuple[float, Detections]] = []
        limit = options.max_duration_sec
        batch_size = self.frame_batch(options)
        with open_source(source, options.read_timeout_sec) as video:
            info = video.info
            if limit and not info.is_image:
                video.check_max_duration(limit)  # before any work, where the file is surely too long
            stream = self.new_stream(info.size, options, source_fps=info.fps, live=False)
            pending: list = []  # frames read, not yet pushed: up to batch_size of them analysed

            def push_pending() -> None:
                for update in stream.push_many(pending):
                    if update.segment is not None:
                        segments.append(update.segment)
                    if update.analysed and keep_detections:
                        frame_detections.append((update.t_sec, update.detections))
                pending.clear()

            # decoding runs ahead in a thread (converting only the frames the stream analyses)
            # while YOLO works on the frames before; its sampler decides as the stream's does
            with ReadAhead(video, self.analysis_fps, options.read_ahead, self.perception.decode_yields_to) as frames:
                analysed = 0
                for frame in frames:
                    if limit and frame.t_sec > limit:
                        raise too_long(video.name, limit)
                    if progress:
                        progress(frame.index + 1, info.frame_count)
                    pending.append(frame)
                    analysed += frame.image_bgr is not None
                    if analysed >= batch_size:
                        push_pending()
                        analysed = 0
                push_pending()
            if progress:
                progress(info.frame_count, info.frame_count)  # skipped tail frames count as done
            # the last segment ends where the video truly does (its last frame, not its header)
            last = stream.finish(video.end_sec)
            if last is not None:
                segments.append(last)
        meta = VideoMeta(str(source), round(video.end_sec, 3), round(info.fps, 3), info.width, info.height)
        return self._result(meta, segments, options, frame_detections)

    def frame_batch(self, options: CaptionOptions | None = None) -> int:
        """Sampled frames per YOLO call offline: ``options.frame_batch``, or when 0 (auto) what the
        backend runs fastest (``Perception.frames_per_pass``)."""
        return (options or self.options).frame_batch or self.perception.frames_per_pass

    def _caption_array(self, image: np.ndarray, options: CaptionOptions) -> Result:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise OptionsError(f"an image array must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        stream = self.new_stream((image.shape[1], image.shape[0]), options, live=False)
        stream.push(image, 0.0)
        meta = VideoMeta("<array>", 0.0, 0.0, image.shape[1], image.shape[0])
        return self._result(meta, [stream.finish(0.0)], options, [])

    def _result(self, meta: VideoMeta, segments: list[Segment], options: CaptionOptions,
                frame_detections: list[tuple[float, Detections]]) -> Result:
        settings = {"fps": self.analysis_fps, "window_sec": options.window_sec, "beam_size": options.beam_size,
                    "style": options.style, **self.perception.settings()}
        return Result(meta, merge_segments(segments), settings=settings, models=self.models(),
                      frame_detections=frame_detections)

    def models(self) -> dict:
        backbone = self.perception.backbone
        return {"yolo": {"name": backbone.weights_name, "sha256": backbone.weights_sha256,
                         "architecture": backbone.architecture},
                "captioner": {"name": Path(self.trained.path).name, "sha256": self.trained.sha256}}

    # ---- streams ------------------------------------------------------------------------------

    def new_stream(self, frame_size: tuple[int, int], options: CaptionOptions | None = None, *,
                   source_fps: float | None = None, live: bool = True, detect_every_frame: bool = False,
                   **overrides: Any) -> Stream:
        """A fresh stream for one source of ``frame_size`` (width, height) pixels."""
        return Stream(self.perception, self.trained, frame_size, self._options(options, overrides), self.analysis_fps,
                      source_fps=source_fps, live=live, detect_every_frame=detect_every_frame)

    def new_live_stream(self, frame_size: tuple[int, int], options: CaptionOptions | None = None, *,
                        source_fps: float | None = None, detect_every_frame: bool = True, **overrides: Any) -> Stream:
        """A live stream: a preview caption and a forecast with every analysed frame, boxes for
        every frame (``detect_every_frame``), and the closed windows as ``update.segment``."""
        return self.new_stream(frame_size, options, source_fps=source_fps, live=True,
                               detect_every_frame=detect_every_frame, **overrides)

    def stream(self, frames_with_timestamps: Iterable[tuple[np.ndarray, float]], options: CaptionOptions | None = None,
               **stream_options: Any) -> Iterator[StreamUpdate]:
        """Live captioning of (image_bgr, t_sec) pairs: one update per frame; at the end, one
        more update carrying the last (partial) window's segment, if any."""
        stream, last_t = None, 0.0
        for image, t_sec in frames_with_timestamps:
            if stream is None:
                stream = self.new_live_stream((image.shape[1], image.shape[0]), options, **stream_options)
            last_t = t_sec
            yield stream.push(image, t_sec)
        if stream is not None:
            segment = stream.finish()
            if segment is not None:
                yield StreamUpdate(last_t, Detections.empty(), False, stream.caption, stream.forecast, False, segment)


def merge_word_evidence(first: list[WordEvidence], second: list[WordEvidence]) -> list[WordEvidence]:
    """One caption's word evidence over two windows: each word's tracks joined, its best score,
    "supported" if either window supported it."""
    if len(first) != len(second):
        return first or second
    merged = []
    for a, b in zip(first, second):
        scores = [s for s in (a.score, b.score) if s is not None]
        best = a if a.verdict == "supported" or b.verdict != "supported" else b
        merged.append(WordEvidence(a.word, a.kind, sorted(set(a.track_ids) | set(b.track_ids)),
                                   max(scores) if scores else None, best.verdict, best.why))
    return merged


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Consecutive segments with the same caption become one (forecast of the last one)."""
    merged: list[Segment] = []
    for seg in segments:
        if merged and merged[-1].caption == seg.caption:
            prev = merged[-1]
            n_prev, n_seg = len(prev.evidence.frame_times_sec), len(seg.evidence.frame_times_sec)
            prev.confidence = round((prev.confidence * n_prev + seg.confidence * n_seg) / max(n_prev + n_seg, 1), 4)
            prev.end, prev.forecast = seg.end, seg.forecast
            prev.evidence = Evidence(sorted(set(prev.evidence.track_ids) | set(seg.evidence.track_ids)),
                                     list(dict.fromkeys(prev.evidence.classes + seg.evidence.classes)),
                                     prev.evidence.frame_times_sec + seg.evidence.frame_times_sec,
                                     {name: max(prev.evidence.class_counts.get(name, 0), n)
                                      for name, n in {**prev.evidence.class_counts, **seg.evidence.class_counts}.items()},
                                     merge_word_evidence(prev.evidence.words, seg.evidence.words))
        else:
            merged.append(seg)
    return merged


def load_model(options: CaptionOptions | None = None, *, yolo_weights: str | os.PathLike | None = None,
               weights: str | os.PathLike | None = None, **overrides: Any) -> Captioner:
    """Load YOLO (``model_files.resolve_yolo_weights``: argument, $CAPTIONER_YOLO_WEIGHTS, the shipped
    ``weights/yolo11n-coco-int8w.pt``) and the caption model (argument, $CAPTIONER_WEIGHTS,
    ``weights/captioner.pt``) once. ``options`` (or keywords such as ``imgsz=320``) set the
    defaults of every later call; the perception ones (imgsz, conf, device, backend) are fixed here."""
    options = (options or CaptionOptions()).replace(**overrides)
    trained = load_checkpoint(weights)  # first: the smaller file, and its errors are the likelier ones
    perception = Perception(yolo_weights, **options.perception())
    return Captioner(perception, trained, options)
