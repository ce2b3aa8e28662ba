"""captioner: caption videos with one YOLO pass per frame and an LSTM that also says what happens next.

>>> import captioner
>>> model = captioner.load_model()
>>> result = model.caption("clip.mp4")          # a Result: segments with captions and forecasts
>>> for segment in result.segments:
...     print(segment.start, segment.end, segment.caption, segment.next_text)

The data path, one module each: video -> perception -> features -> tokens -> model ->
decoding -> stream -> pipeline (this API) -> writers / annotate. ``captioner.training`` holds
the training kit; the runtime never imports it.
"""

from .errors import CaptionerError, ModelError, OptionsError, VideoError
from .options import CaptionOptions
from .pipeline import Captioner, load_model
from .result import Evidence, NextEvent, Result, Segment, VideoMeta
from .stream import Stream, StreamUpdate

__version__ = "0.1.0"

__all__ = [
    "CaptionOptions", "Captioner", "CaptionerError", "Evidence", "ModelError", "NextEvent", "OptionsError", "Result",
    "Segment", "Stream", "StreamUpdate", "VideoError", "VideoMeta", "__version__", "load_model",
]
