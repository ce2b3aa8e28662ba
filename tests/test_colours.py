"""Colour words are checked against the pixels of the named objects' boxes."""

import numpy as np

from captioner.colours import COLOUR_WORDS, allowed_words, box_colours, names, window_colours

BGR = {"red": (0, 0, 220), "green": (0, 180, 0), "blue": (220, 60, 0), "yellow": (0, 220, 230),
       "black": (10, 10, 10), "white": (245, 245, 245), "gray": (128, 128, 128), "brown": (30, 60, 110),
       "orange": (0, 130, 250), "pink": (180, 120, 250), "purple": (160, 40, 120)}


def test_each_colour_is_named_from_a_box_of_it():
    image = np.zeros((100, 100 * len(BGR), 3), np.uint8)
    boxes = []
    for k, bgr in enumerate(BGR.values()):
        image[:, 100 * k:100 * (k + 1)] = bgr
        boxes.append([100 * k, 0, 100 * (k + 1), 100])
    bits = box_colours(image, np.array(boxes, np.float32))
    assert [names(b) for b in bits] == [[name] for name in BGR]


def test_only_the_middle_of_a_box_counts():
    """A red shirt on a green lawn: the box's border (background) is left out."""
    image = np.full((200, 200, 3), BGR["green"], np.uint8)
    image[40:160, 60:140] = BGR["red"]
    assert names(box_colours(image, np.array([[40, 20, 160, 180]], np.float32))[0]) == ["red"]
    assert box_colours(image, np.zeros((0, 4), np.float32)).shape == (0,)
    assert names(box_colours(image, np.array([[500, 500, 600, 600]], np.float32))[0]) == []  # off the image


def test_a_window_names_colours_enough_boxes_show():
    red, blue = 1 << 3, 1 << 7
    assert window_colours([red, red, red, red | blue]) == {"red", "blue"}  # blue in 1 of 4 boxes: 25 %
    assert window_colours([red] * 9 + [blue]) == {"red"}  # blue in 1 of 10: too few
    assert window_colours([]) == set()
    assert "grey" in allowed_words({"gray"}) and "tan" in allowed_words({"brown"}) and "red" not in allowed_words({"brown"})
    assert set(COLOUR_WORDS) >= {"black", "white", "red", "blue", "green", "brown", "grey"}


def test_a_caption_uses_only_colours_the_boxes_show(model):
    """Whatever the decoder would like to say, colour words outside what the named boxes show
    are banned; with no colour read at all, no colour word is said."""
    from captioner.coco import CLASS_INDEX
    from captioner.features import FrameFeatures
    from captioner.perception import Detections
    from captioner.vocab import tokenize

    person, dog = CLASS_INDEX["person"], CLASS_INDEX["dog"]
    cfg = model.trained.network.cfg
    for shown, expect in ((1 << 3, {"red", "maroon"}), (None, set())):
        rng = np.random.default_rng(1)
        stream = model.new_stream((640, 360), live=False)
        det = Detections(np.array([[100, 60, 220, 350], [300, 200, 420, 350]], np.float32), np.array([0.9, 0.85], np.float32),
                         np.array([person, dog], np.int32), np.array([1, 2], np.int32),
                         rng.normal(size=(2, cfg.embedding_dim)).astype(np.float32),
                         None if shown is None else np.array([shown, shown], np.uint16))
        stream.push_features(FrameFeatures(0.0, 0, det, rng.normal(size=cfg.embedding_dim).astype(np.float32),
                                           rng.normal(size=(9, cfg.cell_dim)).astype(np.float32)))
        caption = stream.finish(0.0).caption
        said = {w for w in tokenize(caption) if w in COLOUR_WORDS}
        assert said <= expect, caption


def test_joined_colours_must_be_shown_by_one_box():
    from captioner.colours import BIT, joined_colours_fit

    black_car, blue_car = BIT["black"], BIT["blue"]
    assert not joined_colours_fit("a small black and blue car is driving".split(), [black_car, blue_car])
    assert joined_colours_fit("a black and white dog runs".split(), [BIT["black"] | BIT["white"]])
    assert joined_colours_fit("a black car and a blue car".split(), [black_car, blue_car])  # not joined: each is checked alone
    assert joined_colours_fit("a tan and white dog".split(), [BIT["brown"] | BIT["white"]])  # "tan" is brown in pixels
    assert not joined_colours_fit("a black and white dog".split(), [])  # colours not read: nothing shows them


def test_the_colour_table_names_pixels_as_the_rule_does():
    """box_colours looks pixels up in a table built from _pixel_colours: the same name for any HSV."""
    from captioner.colours import _COLOUR_TABLE, _S_BIN, _V_BIN, _pixel_colours

    hue, sat, val = np.meshgrid(np.arange(180), np.arange(256), np.arange(256), indexing="ij")
    hsv = np.stack([hue.ravel(), sat.ravel(), val.ravel()], axis=1)
    assert np.array_equal(_COLOUR_TABLE[hsv[:, 0], _S_BIN[hsv[:, 1]], _V_BIN[hsv[:, 2]]], _pixel_colours(hsv))
