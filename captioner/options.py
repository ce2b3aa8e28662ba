"""``CaptionOptions``: every setting of a captioning run, its default and its check, in one place.

The CLI, the web app and batch runs build one from their inputs; ``load_model`` takes the
perception part (fixed once YOLO is loaded), ``Captioner.caption`` / ``Captioner.stream`` the
rest. A bad value raises ``OptionsError`` naming the option and what is allowed, before any
model is loaded or any file is read.

The analysis frame rate is not an option: the caption model reads frames at the rate it was
trained at, which its checkpoint records (``Captioner.analysis_fps``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable

from .errors import OptionsError

STYLES = ("human", "events")  # phrasing learned from human captions / from event templates
# where YOLO runs: PyTorch (the features the caption model was trained on, bit for bit), or the
# same network exported once to ONNX and run by ONNX Runtime (fp32) or OpenVINO (the CPU's
# fastest precision: bf16 where the CPU has it), or, experimental, OpenVINO with the network
# quantised to int8 (post-training, NNCF, calibrated on frames of real clips; measured less
# truthful, README Performance); see perception.py and export.py
BACKENDS = ("torch", "onnx", "openvino", "openvino-int8")
PERCEPTION_FIELDS = ("imgsz", "conf", "device", "backend")
MAX_FRAME_BATCH = 64
ProgressCallback = Callable[[int, int], None]  # progress(done, total): frames, or seconds of video
DEFAULT_READ_TIMEOUT_SEC = 30.0


def check_device(device: str | None, backend: str = "torch") -> None:
    """The one check of a device name and a backend, and that the two go together
    (``OptionsError`` naming what is allowed); whether a GPU is there is ``perception.select_device``'s."""
    if device not in (None, "", "auto", "cpu", "mps") and not (
            isinstance(device, str) and (device.isdigit() or device == "cuda" or
                                         (device.startswith("cuda:") and device[5:].isdigit()))):
        raise OptionsError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto")
    if backend not in BACKENDS:
        raise OptionsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "torch" and device not in (None, "", "auto", "cpu"):
        raise OptionsError(f"backend {backend!r} runs on the CPU; use --device cpu, or --backend torch for "
                           f"device {device!r}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class CaptionOptions:
    # perception: fixed when the model is loaded
    imgsz: int = 640  # YOLO input size, pixels
    conf: float = 0.25  # detection confidence threshold
    device: str | None = None  # "cpu", "cuda", "cuda:N", "mps"; None or "auto": a GPU when there is one
    backend: str = "torch"  # see BACKENDS; the export backends run on the CPU
    # offline files: sampled frames per YOLO call (the tracker still sees them one by one, in
    # order); 0 = auto: 8 on a GPU; on the CPU 1 (batches are no faster there), but with ONNX
    # Runtime one frame per core, run side by side (Perception.frames_per_pass)
    frame_batch: int = 0
    # offline files: converted frames a background thread decodes ahead of YOLO; 0 = decode in
    # the calling thread (on a machine whose cores the network already fills, that may be as fast),
    # which only a run without a read time bound (read_timeout_sec=None) can do: a bound needs the thread
    read_ahead: int = 3
    # captions
    window_sec: float = 4.0  # length of a caption segment
    beam_size: int = 4  # 1 = greedy
    style: str = "human"  # see STYLES
    # "what happens next" lines per segment (and per live update), the furthest from "everything
    # stays as it is now" first, never one that only restates the present with certainty;
    # 0 = every line the forecast rules allow (grounding.forecast.forecast_lines)
    forecast_lines: int = 2
    # live streams
    caption_every_sec: float = 1.0  # how often the live caption of the last window is refreshed
    # write that caption on a worker thread, so no frame waits for the beam search (live p95 at
    # imgsz 320 on 2 cores: 57-60 ms vs 70-73 inline); inline is better where YOLO already fills
    # every core (imgsz 640 on 2 cores: p95 107-141 ms inline vs 136-166 ms), see the README
    caption_in_background: bool = True
    # limits
    max_duration_sec: float | None = None  # refuse a longer video (``VideoError``); None = no limit
    # an input that delivers no data this long (opening it, or between frames: a stalled mount,
    # a pipe or a server that sends nothing) fails with a ``VideoError``; None = wait forever
    read_timeout_sec: float | None = DEFAULT_READ_TIMEOUT_SEC

    def __post_init__(self) -> None:
        if not isinstance(self.imgsz, int) or isinstance(self.imgsz, bool) or not (32 <= self.imgsz <= 4096):
            raise OptionsError(f"image size must be an integer between 32 and 4096 pixels, got {self.imgsz!r}")
        if not _number(self.conf) or not (0.0 < self.conf < 1.0):
            raise OptionsError(f"confidence threshold must be in (0, 1), got {self.conf!r}")
        check_device(self.device, self.backend)
        if not isinstance(self.frame_batch, int) or isinstance(self.frame_batch, bool) or \
                not (0 <= self.frame_batch <= MAX_FRAME_BATCH):
            raise OptionsError(f"frame batch must be an integer between 0 (auto) and {MAX_FRAME_BATCH}, "
                               f"got {self.frame_batch!r}")
        if not isinstance(self.read_ahead, int) or isinstance(self.read_ahead, bool) or not (0 <= self.read_ahead <= 64):
            raise OptionsError(f"read-ahead must be an integer between 0 (no decoding thread) and 64 frames, "
                               f"got {self.read_ahead!r}")
        if not _number(self.window_sec) or not (0.5 <= self.window_sec <= 600):
            raise OptionsError(f"window must be between 0.5 and 600 seconds, got {self.window_sec!r}")
        if not isinstance(self.beam_size, int) or isinstance(self.beam_size, bool) or not (1 <= self.beam_size <= 16):
            raise OptionsError(f"beam size must be an integer between 1 and 16, got {self.beam_size!r}")
        if self.style not in STYLES:
            raise OptionsError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if not isinstance(self.forecast_lines, int) or isinstance(self.forecast_lines, bool) or \
                not (0 <= self.forecast_lines <= 16):
            raise OptionsError(f"forecast lines must be an integer between 0 (all) and 16, got {self.forecast_lines!r}")
        if not isinstance(self.caption_in_background, bool):
            raise OptionsError(f"caption_in_background must be True or False, got {self.caption_in_background!r}")
        if not _number(self.caption_every_sec) or not (0.05 <= self.caption_every_sec <= 60):
            raise OptionsError(f"live caption refresh must be between 0.05 and 60 seconds, got {self.caption_every_sec!r}")
        if self.max_duration_sec is not None and (not _number(self.max_duration_sec) or self.max_duration_sec <= 0):
            raise OptionsError(f"maximum video duration must be a positive number of seconds, got {self.max_duration_sec!r}")
        if self.read_timeout_sec is not None and (not _number(self.read_timeout_sec) or
                                                  not (0 < self.read_timeout_sec <= 3600)):
            raise OptionsError(f"read timeout must be between 0 and 3600 seconds (or None: no limit), "
                               f"got {self.read_timeout_sec!r}")

    def replace(self, **changes: Any) -> "CaptionOptions":
        """A copy with ``changes`` (validated); unknown names are an ``OptionsError``."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise OptionsError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def perception(self) -> dict[str, Any]:
        """The settings YOLO is loaded with."""
        return {name: getattr(self, name) for name in PERCEPTION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
