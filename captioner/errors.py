"""A small error hierarchy: every message names the file or setting at fault and what to do; and
the exit codes of every command."""

# Exit codes (the CLI, `captioner batch`, `captioner live`, the training commands):
EXIT_OK = 0  # every input done
EXIT_SOME_FAILED = 1  # some inputs failed (each reported by name); the others were done
EXIT_USAGE = 2  # bad options, or missing / unfit model files: nothing was done
EXIT_INTERRUPTED = 130  # Ctrl-C


class CaptionerError(Exception):
    """Base class for every error captioner raises on purpose."""


class VideoError(CaptionerError):
    """A video source cannot be opened or decoded (missing, empty, corrupt, no video stream...)."""


class ModelError(CaptionerError):
    """Model weights are missing, unreadable, or do not fit together."""


class OptionsError(CaptionerError, ValueError):
    """An option has a value that makes no sense (negative fps, absurd image size...)."""
