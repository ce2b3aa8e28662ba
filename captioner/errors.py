"""A small error hierarchy: every message names the file or setting at fault and what to do."""


class CaptionerError(Exception):
    """Base class for every error captioner raises on purpose."""


class VideoError(CaptionerError):
    """A video source cannot be opened or decoded (missing, empty, corrupt, no video stream...)."""


class ModelError(CaptionerError):
    """Model weights are missing, unreadable, or do not fit together."""


class OptionsError(CaptionerError, ValueError):
    """An option has a value that makes no sense (negative fps, absurd image size...)."""
