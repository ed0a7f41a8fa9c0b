"""`exfm evaluate`: per-day rows, pooled rows over the days every model shares, gains over the
baseline, and evaluations of content no longer in the lake refused. The fm / das / vm / evaluate
commands end to end are in tests/cli/test_evaluation_cli.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from exfm.errors import ExfmError
from exfm.evaluation import evaluate
from exfm.lake import EVALS, IMPRESSIONS, Lake
from exfm.lineage import StaleError, inputs_metadata
from exfm.metrics import BinaryMetrics


def _evals(lake: Lake, model: str, ds: str, logits: list[float], labels: list[int]) -> None:
    """Predictions of `model` on the rows of (ds, feed), naming those rows' content id as a
    trainer's evaluation does."""
    n = len(labels)
    rows = pa.table({"example_id": pa.array(range(n), pa.int64()), "label": labels})
    scored = lake.write_partition(
        IMPRESSIONS, {"ds": ds, "vertical": "feed"}, rows, keep_if_same=True
    )
    lake.write_partition(
        EVALS,
        {"model": model, "vertical": "feed", "ds": ds},
        pa.table(
            {
                "example_id": pa.array(range(n), pa.int64()),
                "label": pa.array(labels, pa.int8()),
                "logit": pa.array(logits, pa.float32()),
                "snapshot_ds": pa.array(["x"] * n),
            }
        ),
        metadata=inputs_metadata({scored.name: scored.write_id}),
    )


def test_pooled_rows_use_the_days_every_model_has(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    labels = [1, 0, 0, 1, 0, 0]
    good = [2.0, -2.0, -2.0, 1.0, -1.0, -3.0]
    weak = [0.5, -0.5, 0.0, 0.0, -0.5, -0.5]
    _evals(lake, "vm_baseline", "2026-01-06", weak, labels)
    _evals(lake, "vm_baseline", "2026-01-07", weak, labels)
    _evals(lake, "vm_ah_sa", "2026-01-07", good, labels)  # only one day in common
    table = evaluate(lake)
    rows = {(r["model"], r["vertical"], r["ds"]): r for r in table.to_pylist()}
    assert rows[("vm_baseline", "feed", "2026-01-06")]["rows"] == 6
    pooled_base = rows[("vm_baseline", "feed", "pooled")]
    assert pooled_base["rows"] == 6  # 2026-01-06 is left out: vm_ah_sa has no row there
    expected = BinaryMetrics()
    expected.update(np.array(good), np.array(labels))
    base = BinaryMetrics()
    base.update(np.array(weak), np.array(labels))
    ne, ne_base = expected.compute().ne, base.compute().ne
    got = rows[("vm_ah_sa", "feed", "pooled")]
    assert got["ne"] == pytest.approx(ne, abs=1e-5)
    assert got["ne_gain_pct"] == pytest.approx((ne_base - ne) / ne_base * 100, abs=1e-3)
    assert rows[("vm_ah_sa", "all", "pooled")]["ne"] == got["ne"]
    only = evaluate(lake, models=["vm_baseline"], ds_start="2026-01-06", ds_end="2026-01-06")
    assert set(only.column("ds").to_pylist()) == {"2026-01-06", "pooled"}
    with pytest.raises(ExfmError, match="no progressive evaluations"):
        evaluate(lake, models=["fm"])


def test_evaluations_of_content_no_longer_in_the_lake_are_refused(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    labels = [1, 0, 0, 1]
    _evals(lake, "vm_baseline", "2026-01-06", [0.5, -0.5, 0.0, 0.0], labels)
    _evals(lake, "vm_ah_sa", "2026-01-06", [1.0, -1.0, -1.0, 1.0], labels)
    assert evaluate(lake).num_rows == 6  # per day, pooled and "all" for each model: all current
    before = lake.content_id(IMPRESSIONS, {"ds": "2026-01-06", "vertical": "feed"})
    relanded = pa.table({"example_id": pa.array(range(4), pa.int64()), "label": [0, 0, 0, 1]})
    lake.write_partition(IMPRESSIONS, {"ds": "2026-01-06", "vertical": "feed"}, relanded)
    after = lake.content_id(IMPRESSIONS, {"ds": "2026-01-06", "vertical": "feed"})
    with pytest.raises(StaleError) as e:
        evaluate(lake)
    message = str(e.value)
    for name in ("evals/model=vm_ah_sa/vertical=feed/ds=2026-01-06", "vm_baseline"):
        assert name in message
    assert "impressions/ds=2026-01-06/vertical=feed" in message
    assert before in message and after in message
    # the same content landed again keeps its id: nothing goes stale for nothing
    again = lake.write_partition(
        IMPRESSIONS, {"ds": "2026-01-06", "vertical": "feed"}, relanded, keep_if_same=True
    )
    assert again.kept and again.write_id == after
