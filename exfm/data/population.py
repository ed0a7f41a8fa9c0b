"""Users and ads of the simulated world (exfm/data/world.py): parallel numpy arrays that grow as
newcomers arrive. Members who leave stay, marked inactive, so that ids (array indices) are stable.
"""

from __future__ import annotations

import numpy as np


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity weights 1/rank^exponent, in random order."""
    return (1.0 / np.arange(1, n + 1) ** exponent)[rng.permutation(n)]


def activity(rng: np.random.Generator, n: int, ranks: int, exponent: float) -> np.ndarray:
    """Zipf-Mandelbrot weights (r + q)^-exponent of n newcomers, r uniform in 1..ranks, so that
    every cohort (the first day's population or a day's arrivals) has the same distribution. The
    offset q = ranks/100 bounds the head: the busiest user sees tens of ads a day, not thousands."""
    offset = max(1.0, ranks / 100)
    return (rng.integers(1, ranks + 1, n) + offset) ** -exponent


def unit_normal(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n standard-normal latent vectors of size d (float32)."""
    return rng.standard_normal((n, d), dtype=np.float32)


class Population:
    """Users or ads: parallel arrays grown by arrivals; leavers stay inactive (ids are stable)."""

    def __init__(self, d: int, v: int) -> None:
        self.latent = np.zeros((0, d), np.float32)
        self.bias = np.zeros(0, np.float32)
        self.weight = np.zeros(0)
        self.pref = np.zeros((0, v))
        self.extra = np.zeros(0, np.int64)
        self.active = np.zeros(0, bool)
        self.born = np.zeros(0, np.int32)
        self.views = np.zeros(0)
        self.clicks = np.zeros(0)
        self._cdf: dict[int | None, np.ndarray] = {}

    @property
    def ids(self) -> np.ndarray:
        return np.arange(len(self.bias), dtype=np.int64)

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def append(
        self,
        *,
        latent: np.ndarray,
        bias: np.ndarray,
        weight: np.ndarray,
        pref: np.ndarray,
        extra: np.ndarray,
        born: int,
    ) -> None:
        n = len(bias)
        self.latent = np.concatenate([self.latent, latent])
        self.bias = np.concatenate([self.bias, bias])
        self.weight = np.concatenate([self.weight, weight])
        self.pref = np.concatenate([self.pref, pref])
        self.extra = extra if not len(self.extra) else np.concatenate([self.extra, extra])
        self.active = np.concatenate([self.active, np.ones(n, bool)])
        self.born = np.concatenate([self.born, np.full(n, born, np.int32)])
        self.views = np.concatenate([self.views, np.zeros(n)])
        self.clicks = np.concatenate([self.clicks, np.zeros(n)])
        self._cdf.clear()

    def leave(self, rng: np.random.Generator, rate: float) -> int:
        gone = self.active & (rng.random(len(self.active)) < rate)
        self.active &= ~gone
        self._cdf.clear()
        return int(gone.sum())

    def sample(self, rng: np.random.Generator, n: int, column: int | None) -> np.ndarray:
        """n indices of active members, by weight (times pref[:, column] when given)."""
        cdf = self._cdf.get(column)
        if cdf is None:
            w = self.weight * self.active
            if column is not None:
                w = w * self.pref[:, column]
            cdf = np.cumsum(w)
            cdf /= cdf[-1]
            self._cdf[column] = cdf
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)

    def count(self, idx: np.ndarray, label: np.ndarray) -> None:
        size = len(self.views)
        self.views += np.bincount(idx, minlength=size)
        self.clicks += np.bincount(idx, weights=label, minlength=size)

    def decay(self, factor: float) -> None:
        self.views *= factor
        self.clicks *= factor
