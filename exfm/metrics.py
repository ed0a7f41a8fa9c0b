"""Binary-classification metrics for CTR models (EXFM.md "Evaluation protocol").

This module owns how NE, log loss, AUC and calibration are computed, streamed over batches and
pooled over days or verticals, and how two models' NEs are compared (relative NE gain, transfer
ratio). It reads nothing and writes nothing: callers feed it logits and labels and get a
`Metrics` record back.

Inputs are 1-D arrays of equal length (B,): `logit` the model's logit (never a probability, so
log loss is computed stably), `label` 0/1, and optionally `true_ctr` the simulator's true
probability (the oracle, the floor of NE on simulated data). Losses are in nats.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# The oracle's probability is clipped so that a true CTR of exactly 0 or 1 gives a finite loss.
_ORACLE_EPS = 1e-7


def _as_numpy(x: Any, dtype: np.dtype | type) -> np.ndarray:
    """A 1-D numpy array (B,) of `dtype` from a numpy array, torch tensor or sequence."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"metrics inputs must be 1-D, got shape {arr.shape}")
    return arr


def logloss_from_logit(logit: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-row log loss log(1 + exp(z)) - y*z from logits z (B,) and labels y (B,); returns (B,).

    np.logaddexp(0, z) is log(1 + exp(z)) without overflow, so logits of +-100 stay finite.
    """
    z = logit.astype(np.float64)
    return np.logaddexp(0.0, z) - label.astype(np.float64) * z


def entropy(p_bar: float) -> float:
    """Binary entropy -(p log p + (1-p) log(1-p)) in nats of a rate p_bar in [0, 1]; 0 at 0, 1."""
    if not 0.0 <= p_bar <= 1.0:
        raise ValueError(f"entropy needs a rate in [0, 1], got {p_bar}")
    if p_bar in (0.0, 1.0):
        return 0.0
    return -(p_bar * math.log(p_bar) + (1.0 - p_bar) * math.log(1.0 - p_bar))


def normalized_entropy(logloss: float, p_bar: float) -> float | None:
    """NE = logloss / entropy(p_bar), p_bar the empirical positive rate. Lower is better.

    None when p_bar is 0 or 1: the entropy is 0, and a model cannot be normalized against it.
    """
    h = entropy(p_bar)
    return None if h == 0.0 else logloss / h


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x (N,), ties sharing the average of the ranks they span; returns (N,)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Group boundaries: the first index of each run of equal values, plus the end.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    # A run spanning 0-based positions [a, b) holds ranks a+1..b, whose average is (a + b + 1) / 2.
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Exact ROC AUC of scores (N,) against 0/1 labels (N,), ties counted 1/2.

    Rank formula (Mann-Whitney U): (sum of positives' ranks - P(P+1)/2) / (P * N), with average
    ranks for ties. O(N log N). None when there are no positives or no negatives: AUC is the
    probability a positive outranks a negative, undefined without one of each.
    """
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(
            f"auc needs scores and labels of one shape, got {scores.shape} and {labels.shape}"
        )
    is_pos = labels.astype(bool)
    n_pos = int(is_pos.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(_average_ranks(scores)[is_pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def relative_ne_gain(ne_model: float, ne_reference: float) -> float:
    """NE gain of a model over a reference, in percent: (ne_ref - ne_model) / ne_ref * 100.

    Positive means the model is better (lower NE). EXFM.md: 0.02% is significant at paper scale.
    """
    if ne_reference == 0.0:
        raise ValueError("relative_ne_gain needs a nonzero reference NE")
    return (ne_reference - ne_model) / ne_reference * 100.0


def transfer_ratio(
    ne_distilled: float | None, ne_baseline: float | None, ne_fm: float | None
) -> float | None:
    """Share of the FM's NE gain over the baseline VM that distillation carried into the VM.

    relative_ne_gain(distilled, baseline) / relative_ne_gain(fm, baseline), on the same vertical
    and days. None if any NE is None (undefined upstream) or the FM has no gain to transfer.
    """
    if ne_distilled is None or ne_baseline is None or ne_fm is None or ne_baseline == 0.0:
        return None
    fm_gain = relative_ne_gain(ne_fm, ne_baseline)
    if fm_gain == 0.0:
        return None
    return relative_ne_gain(ne_distilled, ne_baseline) / fm_gain


@dataclass(frozen=True)
class Metrics:
    """What a BinaryMetrics measured: rows, positives, ctr, logloss, ne, auc, calibration
    (mean prediction / ctr), mean_pred, oracle_ne (the NE of the true click probabilities, when
    every row had one). None where undefined (no rows; ne and auc without both labels;
    calibration when ctr is 0). Plain data at the JSON boundary: `to_dict` / `from_dict`."""

    rows: int
    positives: int
    ctr: float | None = None
    logloss: float | None = None
    ne: float | None = None
    auc: float | None = None
    calibration: float | None = None
    mean_pred: float | None = None
    oracle_ne: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Read stored metrics (a snapshot's meta.json); keys beyond these are ignored."""
        values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        values["rows"] = int(values["rows"] or 0)
        values["positives"] = int(values["positives"] or 0)
        return cls(**values)


class BinaryMetrics:
    """A streaming accumulator of one model's metrics over batches, days or verticals.

    Sums (rows, positives, log loss, predicted probability, oracle log loss) are kept in float64;
    logits (float32) and labels (int8) are kept in chunks because exact AUC needs every row.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.positives = 0
        self.logloss_sum = 0.0
        self.pred_sum = 0.0
        self.oracle_rows = 0
        self.oracle_logloss_sum = 0.0
        self._logits: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def update(self, logit: Any, label: Any, true_ctr: Any | None = None) -> None:
        """Add a batch: logit (B,), label (B,) 0/1, optional true_ctr (B,) oracle probabilities.

        Inputs are validated before anything is added, so a rejected batch leaves no trace.
        """
        z = _as_numpy(logit, np.float32)
        y = _as_numpy(label, np.float64)
        if z.shape != y.shape:
            raise ValueError(
                f"update needs logit and label of one shape, got {z.shape} and {y.shape}"
            )
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("update needs labels in {0, 1}")
        oracle = None if true_ctr is None else _as_numpy(true_ctr, np.float64)
        if oracle is not None and oracle.shape != y.shape:
            raise ValueError(
                f"update needs true_ctr and label of one shape, got {oracle.shape} and {y.shape}"
            )
        self.rows += len(y)
        self.positives += int(y.sum())
        self.logloss_sum += float(logloss_from_logit(z, y).sum())
        self.pred_sum += float(_sigmoid(z).sum())
        self._logits.append(z)
        self._labels.append(y.astype(np.int8))
        if oracle is not None:
            p = np.clip(oracle, _ORACLE_EPS, 1.0 - _ORACLE_EPS)
            self.oracle_rows += len(y)
            self.oracle_logloss_sum += float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).sum())

    def merge(self, other: BinaryMetrics) -> BinaryMetrics:
        """A new accumulator over both self's and other's rows (pooling days or verticals)."""
        merged = BinaryMetrics()
        for acc in (self, other):
            merged.rows += acc.rows
            merged.positives += acc.positives
            merged.logloss_sum += acc.logloss_sum
            merged.pred_sum += acc.pred_sum
            merged.oracle_rows += acc.oracle_rows
            merged.oracle_logloss_sum += acc.oracle_logloss_sum
            merged._logits.extend(acc._logits)
            merged._labels.extend(acc._labels)
        return merged

    def compute(self) -> Metrics:
        """The metrics so far (see Metrics). On an empty accumulator everything but the counts
        is None; with no positives or no negatives `ne` and `auc` are None (entropy 0 / AUC
        undefined) and so is `calibration` when ctr is 0."""
        if self.rows == 0:
            return Metrics(rows=0, positives=0)
        ctr = self.positives / self.rows
        logloss = self.logloss_sum / self.rows
        mean_pred = self.pred_sum / self.rows
        oracle_ne = None
        if self.oracle_rows == self.rows:
            oracle_ne = normalized_entropy(self.oracle_logloss_sum / self.rows, ctr)
        return Metrics(
            rows=self.rows,
            positives=self.positives,
            ctr=ctr,
            logloss=logloss,
            ne=normalized_entropy(logloss, ctr),
            auc=auc(np.concatenate(self._logits), np.concatenate(self._labels)),
            calibration=mean_pred / ctr if ctr > 0 else None,
            mean_pred=mean_pred,
            oracle_ne=oracle_ne,
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Stable sigmoid (B,) -> (B,) in float64: exp(-logaddexp(0, -z)) never overflows."""
    return np.exp(-np.logaddexp(0.0, -z.astype(np.float64)))
