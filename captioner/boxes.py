"""Box maths on (N, 4) arrays of xyxy boxes in pixels (as supervision keeps ``detection/utils/boxes.py``)."""

from __future__ import annotations

import numpy as np


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(N,) areas; a box with a negative side has area 0."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_centres(boxes: np.ndarray, width: float = 1.0, height: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) centres, each (N,), divided by ``width`` and ``height`` (1: pixels)."""
    return (boxes[:, 0] + boxes[:, 2]) / (2 * width), (boxes[:, 1] + boxes[:, 3]) / (2 * height)


def box_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas (len(a), len(b)) of two sets of xyxy boxes, and the areas of
    ``a`` (len(a),) and of ``b`` (len(b),)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = (np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
             * np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None))
    return inter, (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def share_of_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) for paired rows of two (N, 4) xyxy arrays: the intersection over the smaller box's area
    (1 when one box lies inside the other: a rider on a bicycle, a hand on a cup)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = np.prod(np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None), axis=1)
    smaller = np.minimum(np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1))
    return inter / np.maximum(smaller, 1e-6)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union."""
    inter, area_a, area_b = box_overlaps(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
