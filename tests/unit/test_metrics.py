"""exfm/metrics.py against values computed by hand, a brute-force AUC, streaming and pooling
equivalence, and the degenerate cases (empty, one class only) that must not crash."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from exfm.metrics import (
    BinaryMetrics,
    Metrics,
    auc,
    entropy,
    normalized_entropy,
    relative_ne_gain,
    transfer_ratio,
)

LOG2 = math.log(2.0)
LOG3 = math.log(3.0)

# Four rows: logits [log 3, log 3, 0, -log 3] -> probabilities [0.75, 0.75, 0.5, 0.25];
# labels [1, 0, 0, 0] -> ctr 0.25.
LOGITS = np.array([LOG3, LOG3, 0.0, -LOG3])
LABELS = np.array([1, 0, 0, 0])
# Per-row log loss: -log 0.75, -log 0.25, -log 0.5, -log 0.75 = log(4/3), log 4, log 2, log(4/3).
HAND_LOGLOSS = (
    2 * math.log(4 / 3) + math.log(4) + LOG2
) / 4  # (0.575364 + 2.079442) / 4 = 0.663701
# Entropy of 0.25: -(0.25 log 0.25 + 0.75 log 0.75) = 0.25 log 4 + 0.75 log(4/3) = 0.5623351.
HAND_ENTROPY = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)
# AUC: the positive (log 3) against the negatives log 3 (tie: 1/2), 0 (1), -log 3 (1) -> 2.5 / 3.
HAND_AUC = 2.5 / 3
# Mean prediction (0.75 + 0.75 + 0.5 + 0.25) / 4 = 0.5625; calibration 0.5625 / 0.25 = 2.25.
HAND_MEAN_PRED = 0.5625


def _assert_same_metrics(got_m: Metrics, want_m: Metrics) -> None:
    got, want = got_m.to_dict(), want_m.to_dict()
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9), key


def test_entropy_and_ne_by_hand() -> None:
    assert entropy(0.5) == pytest.approx(LOG2)
    assert entropy(0.25) == pytest.approx(0.5623351, rel=1e-6)
    assert entropy(0.0) == 0.0 and entropy(1.0) == 0.0
    assert normalized_entropy(LOG2, 0.5) == pytest.approx(1.0)
    assert normalized_entropy(0.3, 0.0) is None
    with pytest.raises(ValueError, match="rate"):
        entropy(1.5)


def test_four_row_example_by_hand() -> None:
    acc = BinaryMetrics()
    acc.update(LOGITS, LABELS)
    out = acc.compute()
    assert out.rows == 4 and out.positives == 1
    assert out.ctr == pytest.approx(0.25)
    assert out.logloss == pytest.approx(HAND_LOGLOSS, rel=1e-6)
    assert out.logloss == pytest.approx(0.6637014, rel=1e-6)
    # NE = 0.6637014 / 0.5623351 = 1.1802595 (worse than predicting the base rate everywhere)
    assert out.ne == pytest.approx(HAND_LOGLOSS / HAND_ENTROPY, rel=1e-6)
    assert out.ne == pytest.approx(1.1802595, rel=1e-6)
    assert out.auc == pytest.approx(HAND_AUC)
    assert out.mean_pred == pytest.approx(HAND_MEAN_PRED, rel=1e-6)
    assert out.calibration == pytest.approx(2.25, rel=1e-6)
    assert out.oracle_ne is None


def test_auc_with_ties_by_hand() -> None:
    # Positives {0.5, 0.2}, negatives {0.5, 0.1}: (0.5,0.5) tie 1/2, (0.5,0.1) 1, (0.2,0.5) 0,
    # (0.2,0.1) 1 -> 2.5 / 4.
    assert auc(np.array([0.5, 0.2, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.625)
    # All scores tied: every pair counts 1/2.
    assert auc(np.zeros(5), np.array([1, 0, 1, 0, 0])) == pytest.approx(0.5)
    assert auc(np.array([3.0, 1.0]), np.array([0, 1])) == pytest.approx(0.0)


def test_auc_matches_brute_force_pairs() -> None:
    rng = np.random.default_rng(0)
    n = 200
    # Rounded scores so that many pairs tie.
    scores = np.round(rng.normal(size=n), 1)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    pos, neg = scores[labels == 1], scores[labels == 0]
    correct = 0.0
    for sp in pos:
        for sn in neg:
            correct += 1.0 if sp > sn else 0.5 if sp == sn else 0.0
    assert auc(scores, labels) == pytest.approx(correct / (len(pos) * len(neg)), rel=1e-12)


def test_streaming_chunks_equal_one_update() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=300).astype(np.float32)
    labels = (rng.random(300) < 0.2).astype(np.int8)
    true_ctr = rng.random(300)
    whole = BinaryMetrics()
    whole.update(logits, labels, true_ctr)
    chunked = BinaryMetrics()
    for lo, hi in ((0, 10), (10, 170), (170, 300)):
        chunked.update(logits[lo:hi], labels[lo:hi], true_ctr[lo:hi])
    _assert_same_metrics(chunked.compute(), whole.compute())


def test_merge_equals_one_accumulator_over_both() -> None:
    rng = np.random.default_rng(2)
    a_logits, b_logits = rng.normal(size=120), rng.normal(loc=0.5, size=80)
    a_labels, b_labels = (rng.random(120) < 0.3), (rng.random(80) < 0.5)
    a, b, both = BinaryMetrics(), BinaryMetrics(), BinaryMetrics()
    a.update(a_logits, a_labels)
    b.update(b_logits, b_labels)
    both.update(np.concatenate([a_logits, b_logits]), np.concatenate([a_labels, b_labels]))
    merged = a.merge(b)
    _assert_same_metrics(merged.compute(), both.compute())
    # merge returns a new accumulator and leaves its inputs alone.
    assert a.compute().rows == 120 and b.compute().rows == 80


def test_oracle_ne_from_true_ctr() -> None:
    # true_ctr [0.5, 0.25, 0.25, 0.25] with labels [1, 0, 0, 0]:
    # oracle log loss (log 2 + 3 log(4/3)) / 4 = (0.693147 + 0.863046) / 4 = 0.3890483;
    # NE = 0.3890483 / entropy(0.25) 0.5623351 = 0.6918443.
    acc = BinaryMetrics()
    acc.update(LOGITS, LABELS, true_ctr=np.array([0.5, 0.25, 0.25, 0.25]))
    oracle_logloss = (LOG2 + 3 * math.log(4 / 3)) / 4
    assert acc.compute().oracle_ne == pytest.approx(oracle_logloss / HAND_ENTROPY, rel=1e-9)
    assert acc.compute().oracle_ne == pytest.approx(0.6918443, rel=1e-6)


def test_oracle_ne_needs_true_ctr_on_every_row() -> None:
    acc = BinaryMetrics()
    acc.update(LOGITS, LABELS, true_ctr=np.full(4, 0.25))
    acc.update(LOGITS, LABELS)
    assert acc.compute().oracle_ne is None


def test_oracle_true_ctr_of_zero_and_one_is_clipped() -> None:
    acc = BinaryMetrics()
    # A true CTR of 0 on a positive would be an infinite loss without the clip: -log(1e-7) = 16.118.
    acc.update(np.zeros(2), np.array([1, 0]), true_ctr=np.array([0.0, 1.0]))
    out = acc.compute()
    assert out.oracle_ne == pytest.approx(-math.log(1e-7) / LOG2, rel=1e-6)


def test_accepts_torch_tensors() -> None:
    from_numpy, from_torch = BinaryMetrics(), BinaryMetrics()
    from_numpy.update(LOGITS.astype(np.float32), LABELS)
    logit = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    from_torch.update(logit, torch.tensor(LABELS, dtype=torch.float32))
    assert from_torch.compute() == from_numpy.compute()


def test_extreme_logits_stay_finite() -> None:
    acc = BinaryMetrics()
    acc.update(np.array([100.0, -100.0, 100.0, -100.0]), np.array([0, 1, 1, 0]))
    out = acc.compute()
    # Wrong rows lose 100 each, right rows ~0: mean 50.
    assert out.logloss == pytest.approx(50.0, rel=1e-6)
    assert math.isfinite(out.ne)


def test_degenerate_all_negatives() -> None:
    acc = BinaryMetrics()
    acc.update(np.array([-1.0, 0.0, 2.0]), np.zeros(3))
    out = acc.compute()
    assert out.rows == 3 and out.positives == 0 and out.ctr == 0.0
    assert out.ne is None and out.auc is None and out.calibration is None
    assert out.logloss > 0


def test_degenerate_all_positives() -> None:
    acc = BinaryMetrics()
    acc.update(np.array([-1.0, 2.0]), np.ones(2))
    out = acc.compute()
    assert out.ne is None and out.auc is None
    assert out.calibration == pytest.approx(out.mean_pred)


def test_degenerate_empty() -> None:
    out = BinaryMetrics().compute()
    assert out.rows == 0 and out.positives == 0
    assert out.ne is None and out.auc is None and out.logloss is None
    assert set(out.to_dict()) == {
        "rows", "positives", "ctr", "logloss", "ne", "auc", "calibration", "mean_pred", "oracle_ne"
    }  # fmt: skip
    assert Metrics.from_dict(out.to_dict()) == out


def test_metrics_read_back_from_stored_json() -> None:
    acc = BinaryMetrics()
    acc.update(LOGITS, LABELS)
    out = acc.compute()
    stored = json.loads(json.dumps({**out.to_dict(), "verticals": {}}))
    assert Metrics.from_dict(stored) == out  # extra keys (a snapshot's "verticals") ignored


def test_update_rejects_bad_inputs() -> None:
    acc = BinaryMetrics()
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        acc.update(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="1-D"):
        acc.update(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="labels"):
        acc.update(np.zeros(2), np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="true_ctr"):
        acc.update(np.zeros(2), np.zeros(2), true_ctr=np.zeros(3))
    assert acc.compute().rows == 0


def test_relative_ne_gain_and_transfer_ratio() -> None:
    # (1.0 - 0.9) / 1.0 * 100 = 10%; a worse model has a negative gain.
    assert relative_ne_gain(0.9, 1.0) == pytest.approx(10.0)
    assert relative_ne_gain(0.82, 0.8) == pytest.approx(-2.5)
    # Distilled gains 5% where the FM gains 10%: ratio 0.5.
    assert transfer_ratio(0.95, 1.0, 0.9) == pytest.approx(0.5)
    assert transfer_ratio(0.95, 1.0, 1.0) is None
    assert transfer_ratio(None, 1.0, 0.9) is None
    assert transfer_ratio(0.95, None, 0.9) is None
    assert transfer_ratio(0.95, 1.0, None) is None


def test_large_input_runs() -> None:
    # 200k rows: O(n^2) code would not finish; this asserts correctness, not speed.
    rng = np.random.default_rng(3)
    n = 200_000
    labels = (rng.random(n) < 0.05).astype(np.int8)
    logits = rng.normal(size=n) + 2.0 * labels
    acc = BinaryMetrics()
    for chunk in range(4):
        sl = slice(chunk * n // 4, (chunk + 1) * n // 4)
        acc.update(logits[sl], labels[sl])
    out = acc.compute()
    assert out.rows == n
    # Separation 2 sd between classes: AUC = Phi(2 / sqrt 2) = 0.9214.
    assert out.auc == pytest.approx(0.9214, abs=0.005)
