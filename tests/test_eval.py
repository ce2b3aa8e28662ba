"""The metrics behind the model card: hand-checked values, not just "it runs"."""

import math

import numpy as np
import pytest

from captioner.training.eval import auroc, format_table, micro_f1, presence_gain_interval


def test_micro_f1_pools_every_step_and_class():
    scores = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]])
    targets = np.array([[1, 0, 0], [1, 1, 0]])
    # predicted present at 0.5: (0,0) tp, (0,2) fp, (1,1) tp, (1,0) fn -> 2*2 / (2*2 + 1 + 1)
    assert micro_f1(scores, targets) == pytest.approx(4 / 6)
    assert micro_f1(scores, targets, threshold=0.35) == pytest.approx(6 / 7)  # (1,0) becomes tp
    assert micro_f1(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0


def test_auroc_counts_ties_as_half():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    assert auroc([0.9, 0.1], [1, 0]) == 1.0
    assert math.isnan(auroc([0.2, 0.3], [1, 1]))


def _clip(n, model_right: bool, seed: int):
    rng = np.random.default_rng(seed)
    target = (rng.random((n, 80)) < 0.1).astype(np.float32)
    wrong = 1.0 - target
    return {"target": target, "model": target if model_right else wrong, "persistence": wrong if model_right else target}


def test_presence_gain_interval_resamples_clips():
    better = [_clip(20, True, s) for s in range(6)]
    low, high = presence_gain_interval(better, "persistence", n_boot=200)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    mixed = [_clip(20, s % 2 == 0, s) for s in range(6)]
    low, high = presence_gain_interval(mixed, "persistence", n_boot=200)
    assert low < 0 < high  # half the clips each way: no claim either way


def test_format_table_states_the_gain_over_the_better_baseline():
    ne = {"model": {"presence micro-F1": 0.84, "enter AUROC": 0.9, "leave AUROC": 0.95},
          "persistence": {"presence micro-F1": 0.83, "enter AUROC": 0.79, "leave AUROC": 0.81},
          "constant velocity": {"presence micro-F1": 0.81, "enter AUROC": 0.8, "leave AUROC": 0.64},
          "presence gain": {"over": "persistence", "gain": 0.01, "ci95_low": 0.002, "ci95_high": 0.02, "clips": 10},
          "steps": {"n": 1000}}
    table = format_table({"next_event": ne})
    assert "| model | 0.840 | 0.900 | 0.950 |" in table
    assert "model minus persistence (the better baseline): +0.010" in table
    assert "[+0.002, +0.020]" in table


def test_format_table_reports_person_word_claims():
    metrics = dict.fromkeys(("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"), 0.1)
    chair = {"captions": 10, "object_mentions": 8, "CHAIR-i": 0.125, "CHAIR-s": 0.1, "object_recall": 0.5}
    people = {"captions": 10, "gender_claims": 0.5, "gender_wrong": 0.4, "age_claims": 0.2, "age_wrong": 0.5}
    report = {"photos_dev": {"with_bar": {"metrics": metrics, "n": 10, "chair": chair, "person_words": people},
                             "without_bar": {"chair": chair}}}
    assert "| calibrated evidence bar | 10 | 50.0% | 40.0% | 20.0% | 50.0% |" in format_table(report)


@pytest.fixture(scope="module")
def wordnet():
    from captioner.training.lexicon import wordnet_available

    if not wordnet_available():
        pytest.skip("needs NLTK's WordNet (set NLTK_DATA, e.g. ../shared/data/nltk_data)")


def test_chair_counts_wrong_object_mentions_against_the_references(wordnet):
    from captioner.training.eval import chair_scores

    captions = {"a": "a dog runs on the grass", "b": "a man rides a horse near a car", "c": "two people walk"}
    references = {"a": {"dog": 5}, "b": {"person": 5, "horse": 4}, "c": {"person": 3, "bicycle": 2}}
    scores = chair_scores(captions, references)
    # mentions: dog | person, horse, car | person -> 5 mentions, car is wrong; 1 of 3 captions
    assert scores["object_mentions"] == 5 and scores["CHAIR-i"] == pytest.approx(1 / 5)
    assert scores["CHAIR-s"] == pytest.approx(1 / 3)
    # objects at least 2 references mention: dog, person, horse, person, bicycle -> 4 of 5 named
    assert scores["salient_objects"] == 5 and scores["object_recall"] == pytest.approx(4 / 5)


def test_real_windows_count_nouns_that_are_not_really_there(wordnet):
    from captioner.training.eval import WindowCaption, grounding_scores

    windows = [WindowCaption("c", 0, 4, "a man walks on the beach", ["person"], ["person"],
                             [("man", "person"), ("beach", None)], ["beach"]),
               WindowCaption("c", 4, 8, "cars drive on a road", ["car"], ["car", "truck"], [("cars", "car"), ("road", None)], [])]
    scores = grounding_scores(windows)
    assert scores["object_mentions"] == 4 and scores["hallucination_rate"] == pytest.approx(1 / 4)
    assert scores["captions_with_hallucination"] == pytest.approx(1 / 2)
    assert scores["salient_objects"] == 3 and scores["salient_recall"] == pytest.approx(2 / 3)


def test_posture_and_gait_are_checked_against_the_hand_checked_motion():
    from captioner.training.eval import WindowCaption, posture_scores

    def window(start: float, caption: str) -> WindowCaption:
        return WindowCaption("c", start, start + 4, caption, ["person"], ["person"], [], [])

    motion = {"c": {"0": "moves", "4": "still", "8": "mixed", "12": "none", "16": "still"}}
    windows = [window(0, "a person is sitting"), window(4, "a person is walking"), window(8, "a person is standing"),
               window(12, "a person is sitting"), window(16, "a person is standing"), window(20, "a person is sitting")]
    scores = posture_scores(windows, motion)  # mixed, none and unlabelled windows do not count
    assert (scores["windows"], scores["moves"], scores["still"], scores["contradicted"]) == (3, 1, 2, 2)
    assert scores["rate"] == pytest.approx(2 / 3)
    assert scores["examples"] == ["c 0 s (moves): a person is sitting", "c 4 s (still): a person is walking"]


def test_hand_checked_motion_labels_are_well_formed():
    from captioner.training.evidence import load_motion, load_presence

    motion, presence = load_motion(), load_presence()
    assert motion and set(motion) <= set(presence)  # labelled clips are the held-out ones
    for clip, windows in motion.items():
        for start, label in windows.items():
            assert label in ("moves", "still", "mixed", "none") and float(start) % 4 == 0, (clip, start, label)


def test_evidence_bar_scores_and_calibration():
    from captioner.grounding import EvidenceBar
    from captioner.tokens import SLOT_FEATURES, WindowObjects
    from captioner.training.evidence import LabelledObjects, calibrate, scores

    def item(conf, area, present, share=1.0, tracked=0.0):
        f = np.zeros((1, SLOT_FEATURES), np.float32)
        f[0, 1], f[0, 2], f[0, 3], f[0, 4] = conf, area, share, tracked
        return LabelledObjects(WindowObjects(np.array([0]), f, np.zeros((1, 4), np.float32)), np.array([present]))

    # confident detections are real, weak ones are not, except large weak ones (only size tells them apart)
    photos = [item(0.9, 0.1, True)] * 8 + [item(0.45, 0.1, False)] * 8 + [item(0.45, 0.6, True)] * 4
    bar, report = calibrate(photos, [])
    assert report["photos"]["precision"] == 1.0 and report["photos"]["recall"] == 1.0
    assert bar.min_conf_weak <= 0.45 < bar.min_conf and 0.1 < bar.min_area <= 0.6
    s = scores(EvidenceBar(min_share=0, min_conf=0.95, min_area=1.1), photos)
    assert s["passed"] == 0 and s["recall"] == 0.0
    # in video, a flicker seen in one frame of ten is not enough
    assert not EvidenceBar(min_share=0.3).passes(item(0.95, 0.2, True, share=0.1).objects)[0]
    assert EvidenceBar(min_share=0.3).passes(item(0.95, 0.2, True, share=0.5).objects)[0]


def test_forecast_sentences_are_checked_against_what_happened(model, monkeypatch):
    """Each sentence a live stream lists at a step with a full horizon is scored by its kind's
    target at that step: here the future has the person in view, a leave (e.g. one of two people)
    and motion to the left; steps without a full horizon are not scored."""
    from types import SimpleNamespace

    import captioner.stream as stream_module
    from captioner.coco import CLASS_INDEX, NUM_CLASSES
    from captioner.events import DIRECTIONS
    from captioner.result import NextEvent
    from captioner.training.eval import forecast_reliability
    from frames import SIZE, box, frame

    person = CLASS_INDEX["person"]
    said = [NextEvent("the person will stay in view (0.90)", 0.9, "stay", "person"),
            NextEvent("people will still be in view (0.80)", 0.8, "stay", "person"),
            NextEvent("the person will probably leave (0.70)", 0.7, "leave", "person"),
            NextEvent("the person will probably keep moving to the right (0.60)", 0.6, "move", "person", direction="right"),
            NextEvent("another person may enter (0.50)", 0.5, "enter", "person")]
    monkeypatch.setattr(stream_module, "forecast_next", lambda *args: said)
    n = 10
    frames = [frame(i, (box(100 + 10 * i, 180, 80, 160), "person", 1)) for i in range(n)]
    for f in frames:
        f.embedding = np.zeros(model.trained.network.cfg.embedding_dim, np.float32)
    presence = np.zeros((n, NUM_CLASSES), np.float32)
    presence[:, person] = 1.0
    clip = SimpleNamespace(frame_size=SIZE, frames=frames, valid=np.arange(n) < 6, presence=presence,
                           enter=np.zeros_like(presence), leave=presence.copy(),
                           direction=np.full(n, DIRECTIONS.index("left")))
    scores = forecast_reliability(model, [clip])
    assert {k: (v["n"], v["came_true"]) for k, v in scores.items()} == {
        "stay": (6, 0.0), "still in view": (6, 1.0), "leave": (6, 1.0), "enter": (6, 0.0), "appear": (0, 0.0),
        "move": (6, 0.0)}
    assert scores["stay"]["stated"] == pytest.approx(0.9)
    assert "| move | 6 | 0.60 | 0.0% |" in format_table({"forecast_sentences": scores})
