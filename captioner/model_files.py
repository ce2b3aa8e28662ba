"""Where the two model files come from: the YOLO backbone and the caption model.

Both ship with captioner as package data (``captioner.weights``, the repository's ``weights/``
folder), so a checkout, an editable install and a plain ``pip install`` all caption offline.
YOLO: the argument / ``--yolo-weights``, then ``$CAPTIONER_YOLO_WEIGHTS``, then the shipped
``yolo11n-coco-int8w.pt`` (checked by sha256), then the Ultralytics name ``yolo11n.pt``, which
Ultralytics downloads where online (said in the log first; refused with ``YOLO_OFFLINE=1``).
Caption model: the argument / ``--weights``, then ``$CAPTIONER_WEIGHTS``, then the shipped
``captioner.pt``. A file that cannot be had is a ``ModelError`` that says what to do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import weights as _shipped
from .errors import ModelError
from .fileio import file_sha256

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(_shipped.__file__).resolve().parent  # package data: the repository's weights/
YOLO_WEIGHTS_ENV = "CAPTIONER_YOLO_WEIGHTS"
CAPTION_WEIGHTS_ENV = "CAPTIONER_WEIGHTS"
DEFAULT_YOLO_NAME = "yolo11n.pt"  # Ultralytics downloads it by this name where online
# The backbone the caption model was trained on (provenance in weights/MODEL_CARD.md); checked
# by content, not by name.
SHIPPED_YOLO_NAME = "yolo11n-coco-int8w.pt"
SHIPPED_YOLO_SHA256 = "3810b2717549c73d06ab6722cdb77f55d0b4b25b32c2396eb4db4d772f56870d"
DEFAULT_CHECKPOINT = SHIPPED_DIR / "captioner.pt"


def resolve_yolo_weights(explicit: str | os.PathLike | None = None) -> str:
    """The YOLO weights to load, in the order of the module notes: a path, or the bare
    Ultralytics name for Ultralytics to fetch."""
    if explicit:
        path = Path(explicit)
        if path.exists():
            return str(path)
        if path.name == str(explicit) and path.suffix == ".pt" and path.name.startswith("yolo"):
            return str(explicit)  # a bare Ultralytics model name: Ultralytics will fetch it
        raise ModelError(f"YOLO weights {explicit}: file not found")
    env = os.environ.get(YOLO_WEIGHTS_ENV)
    if env:
        if not Path(env).exists():
            raise ModelError(f"${YOLO_WEIGHTS_ENV}={env}: file not found; fix the variable or unset it")
        return env
    for directory in dict.fromkeys((SHIPPED_DIR, Path.cwd() / "weights")):
        shipped = directory / SHIPPED_YOLO_NAME
        if shipped.is_file():
            digest = file_sha256(shipped)
            if digest != SHIPPED_YOLO_SHA256:
                raise ModelError(f"YOLO weights {shipped}: not the shipped file (sha256 {digest[:12]}..., expected "
                                 f"{SHIPPED_YOLO_SHA256[:12]}...; damaged, or a Git LFS pointer): restore it with "
                                 f"`git checkout -- weights/{SHIPPED_YOLO_NAME}`, or pass --yolo-weights PATH")
            return str(shipped)
    return DEFAULT_YOLO_NAME


def check_download_allowed(weights: str) -> None:
    """The default never downloads silently, and not at all where the user said offline."""
    if Path(weights).exists():
        return
    if os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelError(f"YOLO weights {weights}: not found locally and $YOLO_OFFLINE is set, so it is not downloaded; "
                         f"pass --yolo-weights PATH or set ${YOLO_WEIGHTS_ENV}")
    log.warning("YOLO weights %s are not on this machine: Ultralytics will try to download them", weights)


def resolve_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """The caption model to load (argument, ``$CAPTIONER_WEIGHTS``, the shipped one)."""
    candidate = Path(path or os.environ.get(CAPTION_WEIGHTS_ENV) or DEFAULT_CHECKPOINT)
    if not candidate.exists():
        raise ModelError(f"caption model {candidate}: file not found. Train one with `captioner train` "
                         f"or pass --weights PATH (or set ${CAPTION_WEIGHTS_ENV})")
    return candidate


def model_files(yolo_weights: str | None, weights: str | None) -> dict[str, dict[str, str]]:
    """Name and sha256 of the two model files a run will load, resolved exactly as
    ``load_model`` resolves them (without loading them)."""
    yolo = resolve_yolo_weights(yolo_weights)
    caption_model = resolve_checkpoint(weights)
    return {"yolo": {"name": Path(yolo).name, "sha256": file_sha256(yolo) if Path(yolo).is_file() else ""},
            "captioner": {"name": caption_model.name, "sha256": file_sha256(caption_model)}}
