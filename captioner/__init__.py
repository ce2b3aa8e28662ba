"""captioner: caption videos with one YOLO pass per frame and an LSTM that also says what happens next.

>>> import captioner
>>> model = captioner.load_model()
>>> result = model.caption("clip.mp4")          # a Result: segments with captions and forecasts
>>> for segment in result.segments:
...     print(segment.start, segment.end, segment.caption, segment.next_text)

The data path, one module each: video -> perception -> features -> events -> tokens -> model
-> grounding (what may be said) -> decoding (the search) -> windows (captions and forecasts of
windows) -> stream (one source's state) -> pipeline (this API) -> writers / annotate. ``captioner.training`` holds
the training kit; the runtime never imports it.

The names below are imported on first use (PEP 562), so ``captioner bad.mp4`` can check its
inputs and answer before torch is even imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import CaptionerError, ModelError, OptionsError, VideoError
from .options import CaptionOptions

__version__ = "0.1.0"

__all__ = [
    "CaptionOptions", "Captioner", "CaptionerError", "Evidence", "ModelError", "NextEvent", "OptionsError", "Result",
    "Segment", "Stream", "StreamUpdate", "VideoError", "VideoMeta", "__version__", "load_model",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .pipeline import Captioner, load_model
    from .result import Evidence, NextEvent, Result, Segment, VideoMeta
    from .stream import Stream, StreamUpdate


def __getattr__(name: str) -> Any:
    if name in ("Captioner", "load_model"):
        from . import pipeline as module
    elif name in ("Evidence", "NextEvent", "Result", "Segment", "VideoMeta"):
        from . import result as module
    elif name in ("Stream", "StreamUpdate"):
        from . import stream as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
