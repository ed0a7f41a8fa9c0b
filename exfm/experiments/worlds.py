"""World shapes: the simulated world of a config with another positive rate, another pace of drift
and churn, another number of verticals and another FM delay (`WorldShapeConfig`). The tuning
family (`experiment.tune_worlds`) and the robustness grid (`experiment.robustness`) are made of
them, so the method is chosen, and then judged, off the default world.

- base CTR: every vertical's base CTR moves by one common factor on the odds,
  odds(b_v) -> k odds(b_v), with k set so that the traffic-weighted mean of the base CTRs is the
  shape's (bisection on log k): the verticals keep their order and the ratios of their odds.
  The CTR the data then shows also depends on affinity, position and the auction; the experiments
  report the one they measure.
- drift: x the world's latent_drift and its user and ad arrival and leave rates (capped at the
  bounds WorldConfig allows).
- verticals: the first n of the world's verticals in order; past the world's own, clones of them
  in turn (`feed2`, `stories2`, ...) with their own twist of the shared affinity (+0.15 a clone)
  and their original's traffic share, then every share renormalized. A feature that only some
  verticals have is had by those verticals' clones too.
- fm_delay: das.fm_delay_days.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from exfm.config import Config, RobustnessConfig, VerticalWorldConfig, WorldShapeConfig
from exfm.experiments.records import ExperimentError

DRIFT_KEYS = (
    "latent_drift",
    "user_arrival_rate",
    "user_leave_rate",
    "ad_arrival_rate",
    "ad_leave_rate",
)
# the largest value each drift key may take (WorldConfig's bounds; leave rates must stay below 1)
DRIFT_CAP = {
    "latent_drift": 1.0,
    "user_arrival_rate": 1.0,
    "user_leave_rate": 0.5,
    "ad_arrival_rate": 1.0,
    "ad_leave_rate": 0.5,
}
CLONE_TWIST = 0.15
MAX_TWIST = 3.0
AXES = ("base_ctr", "drift", "verticals", "fm_delay")


def shaped(cfg: Config, shape: WorldShapeConfig, seed: int) -> Config:
    """`cfg` with its world (seed `seed`), feature spec, per-vertical VM settings and FM delay
    made to `shape`."""
    from exfm.experiments.runner import config_with

    world = cfg.world
    origin = _vertical_names(list(world.verticals), shape.verticals)
    verticals = {name: _clone(world.verticals[base], copy) for name, (base, copy) in origin.items()}
    if list(verticals) != list(world.verticals):  # shares of another set: sum them to 1 again
        total = sum(v.traffic_share for v in verticals.values())
        verticals = {
            k: v.model_copy(update={"traffic_share": v.traffic_share / total})
            for k, v in verticals.items()
        }
    if shape.base_ctr is not None:
        verticals = at_mean_ctr(verticals, shape.base_ctr)
    world_changes: dict[str, Any] = {
        "seed": seed,
        "verticals": {k: v.model_dump() for k, v in verticals.items()},
    }
    for key in DRIFT_KEYS:
        world_changes[key] = min(getattr(world, key) * shape.drift, DRIFT_CAP[key])
    features = {}
    for fname, feat in cfg.features.features.items():
        spec = feat.model_dump()
        if feat.only_verticals:
            having = [n for n, (base, _) in origin.items() if base in feat.only_verticals]
            if not having:
                raise ExperimentError(
                    f"feature {fname} exists only in {list(feat.only_verticals)}, none of the "
                    f"{shape.verticals} verticals of the shape ({list(origin)})"
                )
            spec["only_verticals"] = having
        features[fname] = spec
    per_vertical = {k: v.model_dump() for k, v in cfg.vm.per_vertical.items() if k in verticals}
    sections: dict[str, dict[str, Any]] = {
        "world": world_changes,
        "features": {"verticals": list(verticals), "features": features},
    }
    raw_vm = cfg.vm.model_dump()
    raw_vm["per_vertical"] = per_vertical
    sections["vm"] = raw_vm
    if shape.fm_delay is not None:
        sections["das"] = {"fm_delay_days": shape.fm_delay}
    return config_with(cfg, **sections)


def _vertical_names(names: list[str], n: int) -> dict[str, tuple[str, int]]:
    """n vertical names -> (the world's vertical each is, or clones, its clone number)."""
    if not names:
        raise ExperimentError("the world has no verticals to shape")
    out = {}
    for i in range(n):
        base, copy = names[i % len(names)], i // len(names)
        out[base if copy == 0 else f"{base}{copy + 1}"] = (base, copy)
    return out


def _clone(v: VerticalWorldConfig, copy: int) -> VerticalWorldConfig:
    if copy == 0:
        return v
    return v.model_copy(
        update={"affinity_twist": min(v.affinity_twist + CLONE_TWIST * copy, MAX_TWIST)}
    )


def mean_ctr(verticals: dict[str, VerticalWorldConfig]) -> float:
    """The traffic-weighted mean base CTR."""
    total = sum(v.traffic_share for v in verticals.values())
    return sum(v.traffic_share * v.base_ctr for v in verticals.values()) / total


def at_mean_ctr(
    verticals: dict[str, VerticalWorldConfig], target: float
) -> dict[str, VerticalWorldConfig]:
    """The verticals with their base CTRs' odds times one factor, so that `mean_ctr` is
    `target` (to 1e-9)."""
    if not 0 < target < 1:
        raise ExperimentError(f"a mean base CTR must be in (0, 1), not {target}")

    def moved(log_k: float) -> dict[str, VerticalWorldConfig]:
        return {
            k: v.model_copy(update={"base_ctr": _sigmoid(_logit(v.base_ctr) + log_k)})
            for k, v in verticals.items()
        }

    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mean_ctr(moved(mid)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    out = moved((lo + hi) / 2)
    for k, v in out.items():  # the schema's bounds: strictly inside (0, 1)
        if not 0 < v.base_ctr < 1:
            raise ExperimentError(f"vertical {k}: base CTR {v.base_ctr} for a mean of {target}")
    return out


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def label(shape: WorldShapeConfig) -> str:
    """A shape in a few words, for tables: `base CTR 10%, drift x1, 4 verticals, FM delay 0`."""
    parts = [
        "the world's base CTR" if shape.base_ctr is None else f"base CTR {shape.base_ctr:.0%}",
        f"drift x{shape.drift:g}",
        f"{shape.verticals} verticals",
    ]
    if shape.fm_delay is not None:
        parts.append(f"FM delay {shape.fm_delay}")
    return ", ".join(parts)


def cells(r: RobustnessConfig) -> list[WorldShapeConfig]:
    """The robustness grid's cells: every combination of the axes (`full`), or the center and,
    for each axis in turn, the center with that axis at each of its other values
    (`one_at_a_time`)."""
    if r.design == "full":
        return [
            WorldShapeConfig(base_ctr=c, drift=d, verticals=n, fm_delay=f)
            for c, d, n, f in itertools.product(r.base_ctr, r.drift, r.verticals, r.fm_delay)
        ]
    out = [r.center]
    for axis in AXES:
        for value in getattr(r, axis):
            if value != getattr(r.center, axis):
                out.append(r.center.model_copy(update={axis: value}))
    return out


def world_key(shape: WorldShapeConfig) -> tuple[Any, ...]:
    """What makes the data of a shape: cells that differ only in the FM delay share a world."""
    return (shape.base_ctr, shape.drift, shape.verticals)
