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
