"""Per-track motion slots (``track_slots``): what one tracked object did in a window, in the
decoder's memory beside the per-class slots."""

from __future__ import annotations

import numpy as np
import torch

from captioner.coco import CLASS_INDEX
from captioner.model import CaptionModel, ModelConfig, segment_inputs
from captioner.tokens import window_objects
from captioner.track_slots import RIDES_COLUMN, TRACK_FEATURES, track_slots
from frames import SIZE, W, box, frame

PERSON, CAR, BICYCLE, DOG = (CLASS_INDEX[n] for n in ("person", "car", "bicycle", "dog"))
EMB = 8
VX, VY, BODY_SPEED, PATH, GROWTH = 0, 1, 2, 3, 4
SHARE, FIRST, LAST, HAS_MOTION = 7, 8, 9, 14


def test_a_walker_crossing_and_a_bystander_get_their_own_motion():
    frames = [frame(i, (box(100 + 30 * i, 200, 80, 160), "person", 1), (box(500, 200, 80, 160), "person", 2))
              for i in range(12)]
    slots = track_slots(frames, SIZE, EMB)
    assert slots.features.shape == (2, TRACK_FEATURES) and list(slots.class_ids) == [PERSON, PERSON]
    by_id = {int(t): f for t, f in zip(slots.track_ids, slots.features)}
    walker, bystander = by_id[1], by_id[2]
    assert abs(walker[VX] - 30 * 4 / W) < 1e-4  # 30 px per frame at 4 fps, in frame widths/s, rightward
    assert walker[BODY_SPEED] > 0.5 and walker[PATH] > 1.0
    assert bystander[VX] == 0 and bystander[BODY_SPEED] == 0 and bystander[PATH] == 0
    assert walker[SHARE] == bystander[SHARE] == 1.0 and walker[FIRST] == walker[LAST] == 1.0
    assert walker[HAS_MOTION] == 1.0


def test_a_car_coming_toward_the_camera_grows_and_one_leaving_is_not_there_at_the_end():
    frames = [frame(i, *([(box(320, 200, 60 * 1.2 ** i, 40 * 1.2 ** i), "car", 5)] +
                         ([(box(100 + 40 * i, 250, 60, 120), "person", 6)] if i < 5 else [])))
              for i in range(8)]
    slots = track_slots(frames, SIZE, EMB)
    by_id = {int(t): f for t, f in zip(slots.track_ids, slots.features)}
    assert by_id[5][GROWTH] > 1.0  # log(1.44) per frame at 4 fps, clipped at 2
    assert by_id[6][LAST] == 0.0 and by_id[6][FIRST] == 1.0 and abs(by_id[6][SHARE] - 5 / 8) < 1e-6


def test_a_rider_on_a_bicycle_is_marked_and_unconfirmed_boxes_of_a_video_are_left_to_class_slots():
    frames = [frame(i, (box(200 + 20 * i, 180, 60, 120), "person", 1), (box(200 + 20 * i, 220, 100, 80), "bicycle", 2),
                    (box(600, 300, 30, 30), "dog", -1)) for i in range(6)]
    slots = track_slots(frames, SIZE, EMB)
    assert DOG not in slots.class_ids.tolist()
    by_id = {int(t): f for t, f in zip(slots.track_ids, slots.features)}
    assert by_id[1][RIDES_COLUMN] == 1.0 and by_id[2][RIDES_COLUMN] == 0.0


def test_a_photo_gives_one_still_slot_per_box_and_the_bar_picks_classes():
    photo = [frame(0, (box(200, 180, 60, 120), "person", -1), (box(400, 180, 60, 120), "person", -1),
                   (box(500, 300, 40, 30), "dog", -1))]
    slots = track_slots(photo, SIZE, EMB)
    assert len(slots) == 3 and (slots.features[:, HAS_MOTION] == 0).all() and (slots.track_ids == -1).all()
    assert (slots.features[:, :7] == 0).all()  # no motion measured of a still picture
    people = slots.of_classes([PERSON])
    assert list(people.class_ids) == [PERSON, PERSON]
    assert len(slots.of_classes([PERSON], limit=1)) == 1


def test_track_slots_join_the_decoder_memory_only_in_models_trained_with_them():
    frames = [frame(i, (box(100 + 30 * i, 200, 80, 160), "person", 1)) for i in range(6)]
    tokens = np.random.default_rng(0).random((6, ModelConfig(embedding_dim=EMB).token_dim)).astype(np.float32)
    objects = [window_objects(tokens, EMB)]
    slots = [track_slots(frames, SIZE, EMB)]
    for count, extra in ((0, 0), (4, 1)):
        cfg = ModelConfig(embedding_dim=EMB, vocab_size=30, hidden=16, word_dim=8, attention_dim=8, track_slots=count)
        model = CaptionModel(cfg).eval()
        states = [torch.rand(6, 16)]
        memory, mask, _ = model.decoder.memory(segment_inputs(states, objects, [None], cfg, slots))
        assert memory.shape[1] == 6 + len(objects[0]) + extra  # no cells given: none attended over
        assert mask.all()
    # the slot's motion reaches the memory: a still copy of the same track reads differently
    still = track_slots([frames[0]] * 6, SIZE, EMB)
    a, _, _ = model.decoder.memory(segment_inputs(states, objects, [None], cfg, slots))
    b, _, _ = model.decoder.memory(segment_inputs(states, objects, [None], cfg, [still]))
    assert not torch.allclose(a[0, -1], b[0, -1])
