"""captioner: caption videos with one YOLO pass per frame and an LSTM that also says what happens next."""

from .errors import CaptionerError, ModelError, OptionsError, VideoError

__version__ = "0.1.0"

__all__ = ["CaptionerError", "ModelError", "OptionsError", "VideoError", "__version__"]
