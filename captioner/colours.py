"""What colours each detected object shows, read from its pixels, so a caption may say "a black
dog" or "a person in a red shirt" only when the box really holds that colour.

The decoder learnt colours from photo captions, but its features barely carry them: left free it
dressed most people "in a blue shirt" (see weights/MODEL_CARD.md). So colour words are checked
against the pixels, like class names against the evidence bar: for each box, the central part
(where the object, not the background, is) is named pixel by pixel with a coarse HSV rule, and
every colour that covers enough of it is recorded as one bit. A window may use a colour word
when enough of its named objects' boxes show that colour.
"""

from __future__ import annotations

import cv2
import numpy as np

COLOURS = ("black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
BIT = {name: 1 << i for i, name in enumerate(COLOURS)}
MIN_PIXEL_SHARE = 0.15  # of a box's central pixels, for the box to "show" a colour
MIN_BOX_SHARE = 0.2  # of a window's named boxes, for a colour to be said
SAMPLE = 24  # the central region is resized to at most SAMPLE x SAMPLE pixels before naming

# caption word -> the colours it may describe (a "tan" dog is brown, yellow or orange in pixels)
COLOUR_WORDS: dict[str, frozenset[str]] = {
    **{name: frozenset({name}) for name in COLOURS},
    "grey": frozenset({"gray"}), "tan": frozenset({"brown", "yellow", "orange"}),
    "golden": frozenset({"yellow", "orange", "brown"}), "blond": frozenset({"yellow", "brown", "orange", "white"}),
    "blonde": frozenset({"yellow", "brown", "orange", "white"}), "silver": frozenset({"gray", "white"}),
    "maroon": frozenset({"red", "brown", "purple"}), "beige": frozenset({"white", "brown", "yellow", "gray"}),
}


def _pixel_colours(hsv: np.ndarray) -> np.ndarray:
    """(N, 3) OpenCV HSV pixels (H in [0, 180)) -> (N,) index into COLOURS."""
    h, s, v = (hsv[:, i].astype(np.int32) for i in range(3))
    out = np.full(len(hsv), COLOURS.index("gray"))
    chromatic = (s >= 50) & (v >= 50)
    hue_names = np.select(
        [h < 8, h < 20, h < 33, h < 85, h < 130, h < 150, h < 165],
        [COLOURS.index(n) for n in ("red", "orange", "yellow", "green", "blue", "purple", "pink")],
        default=COLOURS.index("red"))
    # dark or dull reds, oranges and yellows are what people call brown
    brownish = (h < 33) & ((v < 150) | (s < 110)) & (hue_names != COLOURS.index("pink"))
    hue_names = np.where(brownish & ((h >= 8) | (v < 110)), COLOURS.index("brown"), hue_names)
    # light, soft reds are pink
    hue_names = np.where(((h < 8) | (h >= 165)) & (s < 150) & (v >= 150), COLOURS.index("pink"), hue_names)
    out = np.where(chromatic, hue_names, out)
    out = np.where(~chromatic & (v >= 180) & (s < 50), COLOURS.index("white"), out)
    out = np.where(v < 50, COLOURS.index("black"), out)
    return out


# _pixel_colours depends on S and V only through these thresholds, so one table over (H, S bin,
# V bin) names any pixel with three lookups (the rule itself stays the readable definition)
_S_EDGES, _V_EDGES = (50, 110, 150), (50, 110, 150, 180)
_S_BIN = np.searchsorted(_S_EDGES, np.arange(256), side="right").astype(np.intp)
_V_BIN = np.searchsorted(_V_EDGES, np.arange(256), side="right").astype(np.intp)


def _colour_table() -> np.ndarray:
    s_values, v_values = (0,) + _S_EDGES, (0,) + _V_EDGES  # one value inside each bin
    h, s, v = np.meshgrid(np.arange(180), s_values, v_values, indexing="ij")
    return _pixel_colours(np.stack([h.ravel(), s.ravel(), v.ravel()], axis=1)).reshape(180, len(s_values), len(v_values))


_COLOUR_TABLE = _colour_table()


def box_colours(image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N,) uint16 bit sets: the colours covering >= MIN_PIXEL_SHARE of each box's central region
    (the middle 60 % of its width and 70 % of its height)."""
    out = np.zeros(len(boxes_xyxy), np.uint16)
    if image_bgr is None or not len(boxes_xyxy):
        return out
    height, width = image_bgr.shape[:2]
    regions, owners = [], []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes_xyxy, np.float64)):
        w, h = x2 - x1, y2 - y1
        left, right = int(max(x1 + 0.2 * w, 0)), int(min(x2 - 0.2 * w, width))
        top, bottom = int(max(y1 + 0.15 * h, 0)), int(min(y2 - 0.15 * h, height))
        if right - left < 2 or bottom - top < 2:
            continue
        region = image_bgr[top:bottom, left:right]
        if max(region.shape[:2]) > SAMPLE:
            region = cv2.resize(region, (min(SAMPLE, region.shape[1]), min(SAMPLE, region.shape[0])),
                                interpolation=cv2.INTER_AREA)
        regions.append(region.reshape(-1, 3))
        owners.append(np.full(len(regions[-1]), k))
    if not regions:
        return out
    # every box's pixels named in one pass (a frame holds dozens of boxes; per box it cost ~0.1 ms each)
    pixels = np.concatenate(regions)[:, None]
    hsv = cv2.cvtColor(pixels, cv2.COLOR_BGR2HSV).reshape(-1, 3)
    names_ = _COLOUR_TABLE[hsv[:, 0], _S_BIN[hsv[:, 1]], _V_BIN[hsv[:, 2]]]
    owner = np.concatenate(owners)
    counts = np.bincount(owner * len(COLOURS) + names_, minlength=len(out) * len(COLOURS)).reshape(len(out), -1)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) >= MIN_PIXEL_SHARE
    out[:] = (shown * (1 << np.arange(len(COLOURS)))).sum(axis=1)
    return out


def names(bits: int) -> list[str]:
    return [name for name in COLOURS if int(bits) & BIT[name]]


def window_colours(box_bits: list[int]) -> set[str]:
    """The colours a window may name: those shown by >= MIN_BOX_SHARE of its named objects' boxes."""
    if not box_bits:
        return set()
    bits = np.asarray(box_bits, np.int64)
    return {name for name in COLOURS if np.mean((bits & BIT[name]) > 0) >= MIN_BOX_SHARE}


def allowed_words(colours: set[str]) -> set[str]:
    """Caption colour words that may describe one of ``colours``."""
    return {word for word, shown in COLOUR_WORDS.items() if shown & colours}


def joined_colours_fit(tokens: list[str], box_bits: list[int]) -> bool:
    """False when a caption joins colours ("a black and blue car") that no single named box shows
    together: each colour may be in the window (one black car, one blue car) without any one car
    being black and blue."""
    for i in range(len(tokens) - 2):
        if tokens[i] in COLOUR_WORDS and tokens[i + 1] == "and" and tokens[i + 2] in COLOUR_WORDS:
            wanted = [COLOUR_WORDS[tokens[i]], COLOUR_WORDS[tokens[i + 2]]]
            if not any(all(set(names(bits)) & colours for colours in wanted) for bits in box_bits):
                return False
    return True
