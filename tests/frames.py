"""Hand-made FrameFeatures for tests whose truth is known (no YOLO involved)."""

from __future__ import annotations

import numpy as np

from captioner.coco import CLASS_INDEX
from captioner.features import FrameFeatures
from captioner.perception import Detections

W, H = 640, 360
SIZE = (W, H)
FPS = 4.0


def box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    """A box centred at (cx, cy) pixels, cut by the frame border as a detector's would be."""
    return (max(cx - w / 2, 0.0), max(cy - h / 2, 0.0), min(cx + w / 2, W), min(cy + h / 2, H))


def frame(i: int, *objects: tuple) -> FrameFeatures:
    """objects: (box_xyxy, class name, track id) at frame i of a 4 fps clip."""
    det = Detections(
        box_xyxy=np.array([o[0] for o in objects], np.float32).reshape(-1, 4),
        confidence=np.full(len(objects), 0.9, np.float32),
        class_id=np.array([CLASS_INDEX[o[1]] for o in objects], np.int32),
        track_id=np.array([o[2] for o in objects], np.int32),
    )
    return FrameFeatures(t_sec=i / FPS, frame_index=i, detections=det, embedding=np.zeros(8, np.float32))
