"""The sections of params.yaml as frozen pydantic models: every key, its type, default, allowed
range and meaning. exfm/config.py loads them (it is the only reader of the file), translates
pydantic's errors into the platform's messages, and re-exports them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exfm.errors import ConfigError
from exfm.variants import DEFAULT as DEFAULT_VARIANT
from exfm.variants import VariantName


class _Section(BaseModel):
    """A section of params.yaml: frozen, strict (no coercion but int -> float; exfm/config.py
    turns YAML lists into tuples and dates into text first), unknown keys refused, no NaN."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, validate_default=False
    )


def _opt(
    default: Any = ...,
    *,
    factory: Any = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> Any:
    """A field with an allowed range (checked at load) and a one-line description."""
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    bounds = {k: v for k, v in bounds.items() if v is not None}
    if factory is not None:
        return Field(default_factory=factory, description=doc or None, **bounds)
    return Field(default, description=doc or None, **bounds)


# ----------------------------------------------------------------------------------------- world


class VerticalWorldConfig(_Section):
    """How one vertical's simulated traffic differs from the others."""

    traffic_share: float = _opt(0.25, gt=0, le=1, doc="share of the day's impressions")
    base_ctr: float = _opt(0.02, gt=0, lt=1, doc="mean click probability on an average day")
    affinity_weight: float = _opt(
        1.0, ge=0, le=5, doc="how much the shared user-ad affinity drives clicks here"
    )
    affinity_twist: float = _opt(
        0.4, ge=0, le=3, doc="size of this vertical's own twist of the shared affinity"
    )


def _default_world_verticals() -> dict[str, VerticalWorldConfig]:
    return {
        "feed": VerticalWorldConfig(
            traffic_share=0.45, base_ctr=0.020, affinity_weight=1.0, affinity_twist=0.35
        ),
        "stories": VerticalWorldConfig(
            traffic_share=0.25, base_ctr=0.012, affinity_weight=0.8, affinity_twist=0.5
        ),
        "search": VerticalWorldConfig(
            traffic_share=0.20, base_ctr=0.035, affinity_weight=1.4, affinity_twist=0.6
        ),
        "video": VerticalWorldConfig(
            traffic_share=0.10, base_ctr=0.008, affinity_weight=0.9, affinity_twist=0.8
        ),
    }


class WorldConfig(_Section):
    """The simulated streaming ads world (exfm/data/world.py): the embedded default data source."""

    seed: int = _opt(20260105, ge=0, le=2**63 - 1, doc="seed of every random draw")
    start_ds: str = _opt("2026-01-05", doc="first simulated day (YYYY-MM-DD)")
    days: int = _opt(14, ge=1, le=3650, doc="number of days `world generate` writes")
    warmup_days: int = _opt(
        7, ge=0, le=365, doc="days simulated before start_ds and not written (history exists)"
    )
    impressions_per_day: int = _opt(200_000, ge=100, le=50_000_000, doc="mean impressions a day")
    latent_dim: int = _opt(16, ge=1, le=256, doc="size of user/ad latent factors")
    n_users: int = _opt(20_000, ge=10, le=100_000_000, doc="active users on the first day")
    n_ads: int = _opt(4_000, ge=10, le=10_000_000, doc="active ads on the first day")
    n_advertisers: int = _opt(1_000, ge=1, le=1_000_000, doc="advertisers owning the ads")
    n_categories: int = _opt(40, ge=1, le=100_000, doc="ad categories")
    n_contexts: int = _opt(5_000, ge=1, le=10_000_000, doc="contexts (pages/queries) a vertical")
    n_devices: int = _opt(4, ge=1, le=1_000, doc="device types")
    n_positions: int = _opt(3, ge=1, le=50, doc="ad slots on a page")
    user_zipf: float = _opt(1.05, ge=0, le=3, doc="Zipf exponent of user activity")
    ad_zipf: float = _opt(1.1, ge=0, le=3, doc="Zipf exponent of ad popularity")
    user_arrival_rate: float = _opt(0.03, ge=0, le=1, doc="new users a day / active users")
    user_leave_rate: float = _opt(0.03, ge=0, lt=1, doc="users leaving a day / active users")
    ad_arrival_rate: float = _opt(0.08, ge=0, le=1, doc="new ads a day / active ads")
    ad_leave_rate: float = _opt(0.08, ge=0, lt=1, doc="ads leaving a day / active ads")
    latent_drift: float = _opt(
        0.1, ge=0, le=1, doc="daily innovation of the AR(1) drift of latent factors"
    )
    weekly_traffic_amplitude: float = _opt(0.15, ge=0, lt=1, doc="weekly swing of traffic")
    weekly_ctr_amplitude: float = _opt(0.1, ge=0, le=2, doc="weekly swing of the CTR logit")
    shock_ds: str | None = _opt(None, doc="day of a sudden shift (YYYY-MM-DD), or null for none")
    shock_strength: float = _opt(
        0.5, ge=0, le=1, doc="share of users and ads whose tastes are redrawn at the shock"
    )
    shock_ctr_shift: float = _opt(-0.3, ge=-5, le=5, doc="CTR logit shift from the shock on")
    auction_candidates: int = _opt(
        4, ge=1, le=64, doc="ads competing per impression (1: no auction selection bias)"
    )
    position_decay: float = _opt(0.35, ge=0, le=5, doc="CTR logit lost per slot below the top")
    counter_prior_views: float = _opt(
        20.0, gt=0, le=1e6, doc="prior weight smoothing the historical CTR counters"
    )
    verticals: dict[str, VerticalWorldConfig] = _opt(factory=_default_world_verticals)


# -------------------------------------------------------------------------------------- features


class FeatureConfig(_Section):
    """One model input: its kind, hash size and the verticals that have it."""

    kind: Literal["categorical", "dense"] = _opt("categorical")
    hash_buckets: int = _opt(0, ge=0, le=2**31 - 1, doc="categorical only: embedding rows")
    only_verticals: tuple[str, ...] = _opt(
        factory=tuple, doc="verticals that have this feature; empty: every vertical"
    )


def _default_features() -> dict[str, FeatureConfig]:
    cat, dense = "categorical", "dense"
    return {
        "user_id": FeatureConfig(kind=cat, hash_buckets=262_144),
        "ad_id": FeatureConfig(kind=cat, hash_buckets=65_536),
        "advertiser_id": FeatureConfig(kind=cat, hash_buckets=4_096),
        "category_id": FeatureConfig(kind=cat, hash_buckets=256),
        "device_type": FeatureConfig(
            kind=cat, hash_buckets=16, only_verticals=("feed", "stories", "video")
        ),
        "context_id": FeatureConfig(
            kind=cat, hash_buckets=16_384, only_verticals=("feed", "search")
        ),
        "position": FeatureConfig(kind=dense),
        "hour": FeatureConfig(kind=dense),
        "user_ctr_hist": FeatureConfig(kind=dense),
        "ad_ctr_hist": FeatureConfig(kind=dense),
        "user_log_views": FeatureConfig(kind=dense),
        "ad_log_views": FeatureConfig(
            kind=dense, hash_buckets=0, only_verticals=("feed", "stories", "search")
        ),
    }


class FeaturesConfig(_Section):
    """The feature spec: the verticals and every impression's features (exfm/data/schema.py)."""

    verticals: tuple[str, ...] = _opt(
        ("feed", "stories", "search", "video"), doc="the verticals, one VM each"
    )
    features: dict[str, FeatureConfig] = _opt(factory=_default_features)

    def vertical(self, name: str) -> str:
        """`name` when it is one of the verticals; else a ConfigError naming the known ones (a
        command's --vertical, a DAG form's field)."""
        if name not in self.verticals:
            raise ConfigError(
                f"unknown vertical {name!r}; the verticals are {', '.join(self.verticals)} "
                "(features.verticals)"
            )
        return name


# ------------------------------------------------------------------------------------------ lake


class LakeConfig(_Section):
    """Where data lives (exfm/lake.py). S3 endpoint and credentials come from the environment."""

    root: str = _opt("data/lake", doc="a local folder or s3://bucket/prefix")
    catalog: str = _opt("data/exfm.duckdb", doc="DuckDB file holding views over the lake")
    compression: Literal["zstd", "snappy", "none"] = _opt("zstd")
    row_group_rows: int = _opt(131_072, ge=1_024, le=16_777_216, doc="parquet row-group size")
    s3_max_attempts: int = _opt(3, ge=1, le=20, doc="tries per S3 request before giving up")
    s3_connect_timeout_s: float = _opt(3.0, gt=0, le=600)
    s3_read_timeout_s: float = _opt(30.0, gt=0, le=3600)


# ---------------------------------------------------------------------------------------- ingest

# How a categorical feature's raw ids are read (exfm/data/columns.py): integers kept as int64, or
# text hashed to int64.
IdType = Literal["int", "string"]


class IngestLookupConfig(_Section):
    """A side table (for instance item attributes) left-joined onto a source on one key column."""

    path: str = _opt("", doc="CSV or parquet file")
    key: str = _opt("", doc="column present in both files, unique in this one")


class IngestSourceConfig(_Section):
    """One input file (or glob) of the user's impressions."""

    path: str = _opt("", doc="CSV or parquet file, or a glob of them")
    vertical: str | None = _opt(
        None, doc="the vertical of every row; null: read ingest.vertical_column"
    )
    lookups: tuple[IngestLookupConfig, ...] = _opt(factory=tuple)


class IngestConfig(_Section):
    """Bring your own data (exfm/data/ingest.py): how source columns map onto the lake schema."""

    sources: tuple[IngestSourceConfig, ...] = _opt(factory=tuple)
    format: Literal["auto", "csv", "parquet"] = _opt("auto", doc="auto: by file extension")
    timestamp_column: str = _opt("timestamp", doc="ISO-8601 text or epoch numbers")
    timestamp_unit: Literal["s", "ms", "us"] = _opt("s", doc="unit of numeric timestamps")
    label_column: str = _opt("label", doc="0/1 click or conversion")
    vertical_column: str = _opt("", doc="column naming the vertical, for sources without one")
    example_id_column: str = _opt("", doc="unique id column; empty: '<vertical>:<file stem>:<row>'")
    columns: dict[str, str] = _opt(
        factory=dict, doc="feature name -> source column, where they differ"
    )
    namespace_by_vertical: tuple[str, ...] = _opt(
        factory=tuple, doc="categorical features whose ids mean different things per vertical"
    )
    id_type: IdType = _opt(
        "int",
        doc="raw ids of every categorical feature: int (integers that fit int64, kept) or "
        "string (text, hashed to int64); the same in every file",
    )
    id_types: dict[str, IdType] = _opt(
        factory=dict, doc="categorical feature -> its id type, where it differs from id_type"
    )

    def id_type_of(self, feature: str) -> IdType:
        """The declared id type of categorical `feature`."""
        return self.id_types.get(feature, self.id_type)


# ---------------------------------------------------------------------------------------- models


class FMConfig(_Section):
    """The foundation model (exfm/models/fm.py): DCNv2-style cross network beside a deep tower,
    conditioned on the vertical, trained on every vertical's traffic."""

    embedding_dim: int = _opt(32, ge=1, le=1024, doc="size of each categorical embedding")
    vertical_dim: int = _opt(16, ge=1, le=1024, doc="size of the vertical embedding")
    cross_layers: int = _opt(3, ge=0, le=16, doc="DCNv2 cross layers")
    cross_rank: int = _opt(0, ge=0, le=4096, doc="low-rank cross layers; 0: full rank")
    deep_layers: tuple[int, ...] = _opt((512, 256, 128), doc="widths of the deep tower")
    lr: float = _opt(1e-3, gt=0, le=1, doc="Adam learning rate of the dense parameters")
    embedding_lr: float = _opt(0.05, gt=0, le=10, doc="row-wise Adagrad rate of embedding rows")


class VMVerticalConfig(_Section):
    """One vertical's departures from the shared `vm` settings (null: the shared value)."""

    variant: VariantName | None = _opt(None)
    lr: float | None = _opt(None, gt=0, le=1)
    embedding_lr: float | None = _opt(None, gt=0, le=10)
    distill_weight: float | None = _opt(None, ge=0, le=100)
    label_scale: float | None = _opt(None, gt=0, le=1000)
    grad_scale: float | None = _opt(None, ge=0, le=100)
    sa_weight: float | None = _opt(None, ge=0, le=100)


class VMConfig(_Section):
    """The vertical models (exfm/models/vm.py), one per vertical, and how they distill the FM."""

    variant: VariantName = _opt(
        DEFAULT_VARIANT,
        doc="baseline: no FM; kd: vanilla KD; ah: auxiliary head; ah2: AH + a second head on "
        "the raw FM prediction (SA's control); ah_sa: AH + adapter",
    )
    features: tuple[str, ...] = _opt(
        ("user_id", "ad_id", "advertiser_id", "category_id", "position", "hour", "ad_ctr_hist"),
        doc="the VM's own feature subset (each VM drops those its vertical lacks)",
    )
    embedding_dim: int = _opt(8, ge=1, le=1024)
    max_hash_buckets: int = _opt(
        32_768, ge=2, le=2**31 - 1, doc="a VM hashes each feature into at most this many rows"
    )
    hidden: tuple[int, ...] = _opt((64, 32), doc="widths of the backbone MLP")
    aux_hidden: int = _opt(16, ge=0, le=4096, doc="hidden width of the auxiliary heads; 0: linear")
    lr: float = _opt(2e-3, gt=0, le=1)
    embedding_lr: float = _opt(0.05, gt=0, le=10, doc="row-wise Adagrad rate of embedding rows")
    distill_weight: float = _opt(1.0, ge=0, le=100, doc="w: weight of the FM term (kd, ah)")
    label_scale: float = _opt(
        1.0, gt=0, le=1000, doc="alpha: the AH target is p_F with its odds times alpha"
    )
    grad_scale: float = _opt(
        1.0, ge=0, le=100, doc="beta: scales the auxiliary branch's gradient into the backbone"
    )
    sa_weight: float = _opt(
        1.0, ge=0, le=100, doc="weight of the second head's term (ah_sa: L_sa; ah2)"
    )
    saturated_share: float = _opt(
        0.01,
        ge=0,
        le=1,
        doc="a day warns when more of its FM targets than this share are saturated (>= 0.999), "
        "or when any is outside (0, 1)",
    )
    adapter_hidden: int = _opt(16, ge=1, le=4096, doc="hidden width of the Student Adapter")
    adapter_lr: float = _opt(1e-2, gt=0, le=10)
    per_vertical: dict[str, VMVerticalConfig] = _opt(
        factory=dict,
        doc="vertical -> its own variant or hyperparameters (every vertical once loaded)",
    )

    def for_vertical(self, vertical: str) -> VMConfig:
        """These settings with `vertical`'s departures applied, and no other vertical's: what a
        vertical's VM is, and all that its snapshot records (another vertical's settings must not
        change its bytes)."""
        own = self.per_vertical.get(vertical)
        changes = own.model_dump(exclude_none=True) if own else {}
        return self.model_copy(update={**changes, "per_vertical": {}})


class TrainConfig(_Section):
    """The streaming trainer (exfm/training.py), shared by the FM and the VMs."""

    seed: int = _opt(0, ge=0, le=2**63 - 1, doc="seeds initialization and daily shuffles")
    batch_size: int = _opt(512, ge=1, le=1_048_576)
    eval_batch_size: int = _opt(8_192, ge=1, le=16_777_216)
    threads: int = _opt(
        1,
        ge=0,
        le=1024,
        doc="torch CPU threads of each process (training and the DAS): 1, since processes "
        "share the cores (Airflow tasks, DVC, tests); 0: one per CPU the process may use",
    )
    device: Literal["cpu", "cuda", "auto"] = _opt("cpu", doc="auto: cuda when available")


class PublishConfig(_Section):
    """The gate between a trained snapshot and serving (exfm/registry.py)."""

    max_ne_regression: float = _opt(
        0.02,
        ge=0,
        le=10,
        doc="largest relative NE loss vs the previous published snapshot on the same day",
    )
    max_ne: float = _opt(1.0, gt=0, le=100, doc="never publish an NE above this (1: base rate)")
    min_calibration: float = _opt(0.5, ge=0, le=1, doc="mean prediction / mean label, lowest")
    max_calibration: float = _opt(2.0, ge=1, le=100, doc="mean prediction / mean label, highest")


class RegistryConfig(_Section):
    """What the registry keeps of each model's daily snapshots (exfm/registry.py)."""

    optimizer_every_days: int = _opt(
        7,
        ge=1,
        le=3650,
        doc="keep the optimizer state (what training resumes from) of the newest snapshot and of "
        "every Nth day (days since 1970-01-01 divisible by N); 1: every day",
    )
    keep_unpublished_days: int | None = _opt(
        30,
        ge=0,
        le=36500,
        doc="remove the files of unpublished snapshots this many days older than the newest, "
        "except those with optimizer state (their records stay); null: keep every snapshot",
    )
    deltas: bool = _opt(
        True,
        doc="store a day's weights as the rows that changed since its parent's (delta.pt) where "
        "that is under half their size; checkpoint days (optimizer_every_days) are whole",
    )


# ------------------------------------------------------------------------------------------- das


class DASConfig(_Section):
    """The Data Augmentation System (exfm/das.py): the FM's stored predictions."""

    fm_delay_days: int = _opt(
        0,
        ge=0,
        le=365,
        doc="days between an FM's training day and the first traffic it scores, beyond one",
    )
    min_coverage: float = _opt(
        0.99, ge=0, le=1, doc="least share of a VM's rows with an FM prediction; else it fails"
    )
    batch_size: int = _opt(16_384, ge=1, le=16_777_216, doc="rows per FM forward pass")


# ---------------------------------------------------------------------------------------- checks


class ThresholdConfig(_Section):
    """A drift metric's thresholds: at or above `warn` the check warns, at or above `fail` the
    day fails (its training stops)."""

    warn: float = _opt(0.1, ge=0, le=1e9)
    fail: float = _opt(0.5, ge=0, le=1e9)


def _default_dense_ranges() -> dict[str, tuple[float, ...]]:
    return {
        "position": (1.0, 50.0),
        "hour": (0.0, 24.0),
        "user_ctr_hist": (0.0, 1.0),
        "ad_ctr_hist": (0.0, 1.0),
        "user_log_views": (0.0, 30.0),
        "ad_log_views": (0.0, 30.0),
    }


class ChecksConfig(_Section):
    """Data-quality and drift checks that gate each day (data_checks/)."""

    reference_days: int = _opt(7, ge=1, le=365, doc="trailing days a day is compared with")
    rows_ratio: tuple[float, ...] = _opt(
        (0.5, 2.0), doc="[low, high]: a vertical's rows / its reference mean; outside fails"
    )
    ctr_ratio: tuple[float, ...] = _opt(
        (0.5, 2.0), doc="[low, high]: a vertical's CTR / its reference CTR; outside fails"
    )
    confidence: float = _opt(
        0.9999,
        ge=0,
        lt=1,
        doc="the rows and CTR bands widen to this two-sided sampling interval of the count "
        "given the reference (Poisson rows, binomial clicks): a small vertical fails only on "
        "a change its counts make clear; 0: the ratio bands alone",
    )
    max_null_fraction: float = _opt(
        0.5, ge=0, le=1, doc="most nulls a feature the vertical has may hold; more fails"
    )
    dense_ranges: dict[str, tuple[float, ...]] = _opt(
        factory=_default_dense_ranges, doc="dense feature -> [min, max]; outside fails"
    )
    top_k: int = _opt(50, ge=1, le=100_000, doc="categorical drift bins: top-k ids + other")
    dense_bins: int = _opt(10, ge=2, le=1000, doc="dense drift bins: reference quantiles")
    ks_grid: int = _opt(
        1000,
        ge=10,
        le=100_000,
        doc="KS of dense features on the reference's quantiles at 1/ks_grid steps (at most "
        "1/ks_grid below the exact value); the shift on both sides' quantiles at those levels",
    )
    id_features: tuple[str, ...] = _opt(
        ("user_id", "ad_id"), doc="categorical features whose unseen ids are churn"
    )
    psi: ThresholdConfig = _opt(factory=lambda: ThresholdConfig(warn=0.1, fail=0.5))
    js: ThresholdConfig = _opt(factory=lambda: ThresholdConfig(warn=0.05, fail=0.25))
    ks: ThresholdConfig = _opt(factory=lambda: ThresholdConfig(warn=0.1, fail=0.5))
    shift: ThresholdConfig = _opt(
        factory=lambda: ThresholdConfig(warn=0.2, fail=1.0),
        doc="dense features: Wasserstein-1 distance / the reference's standard deviation "
        "(a 0.25-sd mean shift is 0.25)",
    )
    label_shift: ThresholdConfig = _opt(
        factory=lambda: ThresholdConfig(warn=0.15, fail=0.5), doc="|CTR / reference CTR - 1|"
    )
    label_shift_min_z: float = _opt(
        4.0, ge=0, le=100, doc="a CTR change counts only when its z-score is at least this"
    )
    churn: ThresholdConfig = _opt(
        factory=lambda: ThresholdConfig(warn=0.5, fail=0.9), doc="share of traffic from unseen ids"
    )
    fm_score_psi: ThresholdConfig = _opt(factory=lambda: ThresholdConfig(warn=0.1, fail=1.0))
    fm_calibration: ThresholdConfig = _opt(
        factory=lambda: ThresholdConfig(warn=0.2, fail=1.0),
        doc="|FM mean prediction / CTR - 1| on the day",
    )
    report_dir: str = _opt("", doc="also write the HTML reports to this local folder")
    unchecked: Literal["refuse", "warn"] = _opt(
        "refuse",
        doc="a day with no current check result (never checked, or checked on impressions "
        "that changed since): refuse to train or score it, or warn and go on",
    )


# --------------------------------------------------------------------------------------- airflow


class AirflowConfig(_Section):
    """How the Airflow DAGs (dags/) schedule the stages."""

    mode: Literal["demo", "sensor"] = _opt(
        "demo", doc="demo: the world generator lands each day; sensor: wait for the partitions"
    )
    schedule: Literal["@daily", "none"] = _opt("@daily", doc="none: runs only when triggered")
    start_date: str | None = _opt(None, doc="first logical date; null: world.start_ds")
    end_date: str | None = _opt(
        None, doc="last logical date; null: the last simulated day in demo mode, open otherwise"
    )
    catchup: bool = _opt(True, doc="run every missed day since start_date, in order")
    owner: str = _opt("exfm")
    retries: int = _opt(2, ge=0, le=20, doc="retries of transient failures (S3, workers)")
    retry_delay_s: float = _opt(60.0, ge=0, le=86_400)
    max_retry_delay_s: float = _opt(900.0, ge=0, le=86_400, doc="cap of the exponential backoff")
    execution_timeout_min: float = _opt(120.0, gt=0, le=10_080)
    max_active_runs: int = _opt(1, ge=1, le=64, doc="days of one DAG in flight (1: in order)")
    pool: str = _opt("exfm_torch", doc="the pool bounding concurrent torch tasks")
    pool_slots: int = _opt(2, ge=1, le=1024, doc="size of that pool (make airflow creates it)")
    torch_queue: str = _opt(
        "default", doc="Celery queue of the torch tasks (workers with the right machines)"
    )
    sensor_poke_s: float = _opt(300.0, gt=0, le=86_400, doc="sensor mode: seconds between looks")
    sensor_timeout_h: float = _opt(24.0, gt=0, le=720, doc="sensor mode: give up after")
    ui_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s\"'<>]+$",
        description="the Airflow UI's base URL for links from reports, e.g. http://127.0.0.1:8080; "
        "null: root-relative links, which work through Airflow's ExFM console",
    )


# -------------------------------------------------------------------------------------- pipeline


class PipelineConfig(_Section):
    """The local pipeline (`dvc repro`, `make run`; exfm/pipeline.py)."""

    source: Literal["world", "ingest"] = _opt("world", doc="where the days come from")
    compare_baseline: bool = _opt(
        True, doc="also train the baseline VM, for NE gains and transfer ratios"
    )
    state_dir: str = _opt("data/pipeline", doc="each stage's record of what it wrote (dvc outs)")
    reports_dir: str = _opt("reports", doc="metrics, plots and the pipeline report")


# ------------------------------------------------------------------------------------ experiment


class FMSizeConfig(_Section):
    """One foundation-model size of the transfer-scaling experiment (null: the `fm` value)."""

    embedding_dim: int | None = _opt(None, ge=1, le=1024)
    vertical_dim: int | None = _opt(None, ge=1, le=1024)
    cross_layers: int | None = _opt(None, ge=0, le=16)
    cross_rank: int | None = _opt(None, ge=0, le=4096)
    deep_layers: tuple[int, ...] | None = _opt(None)


def _default_fm_sizes() -> dict[str, FMSizeConfig]:
    return {
        "xs": FMSizeConfig(embedding_dim=8, vertical_dim=4, cross_layers=1, deep_layers=(64, 32)),
        "s": FMSizeConfig(embedding_dim=16, vertical_dim=8, cross_layers=2, deep_layers=(256, 128)),
        "m": FMSizeConfig(),
    }


class TuneGridConfig(_Section):
    """The values tried for each distillation hyperparameter, one at a time (exfm/experiments),
    in increasing order; a weight or scale whose best value is at an end of its values is
    extended past that end (experiment.grid_extend). beta (vm.grad_scale) is not tuned: with
    Adam and row-wise Adagrad only w x beta reaches the VM, so w covers it."""

    distill_weight: tuple[float, ...] = _opt((0.25, 0.5, 1.0, 2.0, 4.0, 8.0), doc="w (ah)")
    label_scale: tuple[float, ...] = _opt((0.5, 1.0, 2.0, 4.0), doc="alpha (ah)")
    aux_hidden: tuple[int, ...] = _opt(
        (0, 16), doc="hidden width of the auxiliary heads (0: linear); not extended"
    )
    sa_weight: tuple[float, ...] = _opt((0.25, 0.5, 1.0, 2.0, 4.0), doc="weight of L_sa (ah_sa)")


class WorldShapeConfig(_Section):
    """A world of another shape than the default one (exfm/experiments/worlds.py): its positive
    rate, how fast it moves, how many verticals it has, and the FM's delay."""

    base_ctr: float | None = _opt(
        None, gt=0, lt=1, doc="traffic-weighted mean base CTR of the verticals (null: the world's)"
    )
    drift: float = _opt(
        1.0, gt=0, le=10, doc="x the world's latent_drift and user/ad arrival and leave rates"
    )
    verticals: int = _opt(4, ge=1, le=16, doc="number of verticals (more: clones of the first)")
    fm_delay: int | None = _opt(None, ge=0, le=30, doc="das.fm_delay_days (null: das's)")


def _default_tune_worlds() -> tuple[WorldShapeConfig, ...]:
    return (
        WorldShapeConfig(),
        WorldShapeConfig(base_ctr=0.01, drift=3.0, verticals=2),
        WorldShapeConfig(base_ctr=0.15, drift=1.0, verticals=6),
        WorldShapeConfig(base_ctr=0.5, drift=3.0, verticals=3, fm_delay=1),
    )


class RobustnessConfig(_Section):
    """`exfm experiment robustness`: the frozen method on a grid of world shapes."""

    base_ctr: tuple[float, ...] = _opt((0.01, 0.1, 0.5), doc="mean base CTRs")
    drift: tuple[float, ...] = _opt((1.0, 3.0), doc="drift and churn levels (x the world's)")
    verticals: tuple[int, ...] = _opt((2, 4, 8), doc="numbers of verticals")
    fm_delay: tuple[int, ...] = _opt((0, 2), doc="das.fm_delay_days")
    center: WorldShapeConfig = _opt(
        factory=lambda: WorldShapeConfig(base_ctr=0.1, drift=1.0, verticals=4, fm_delay=0),
        doc="the cell every one-at-a-time cell differs from in one axis",
    )
    design: Literal["one_at_a_time", "full"] = _opt(
        "one_at_a_time", doc="the center and one axis changed at a time, or every combination"
    )
    seed_offset: int = _opt(
        100, ge=1, le=2**31, doc="cell i's world seed: world.seed + seed_offset + i"
    )
    overrides: tuple[str, ...] = _opt(
        ("world.days=8", "world.impressions_per_day=100000"),
        doc="`section.key=value` overrides of every cell (after the mode's)",
    )
    quick_cells: int = _opt(2, ge=1, le=1000, doc="--quick: the first cells of the design")


class HistoryConfig(_Section):
    """`exfm experiment history`: FMs of several histories and sizes teaching one VM each; the VM's
    gain against the FM's own gain."""

    days_before: tuple[int, ...] = _opt(
        (0, 14, 42),
        doc="days the FM starts before the VMs' first day (0: the day before it, as the ladder)",
    )
    sizes: tuple[str, ...] = _opt(("xs", "m"), doc="FM sizes, names of experiment.fm_sizes")
    vm_days: int = _opt(8, ge=2, le=365, doc="days the VMs train on (the last of the world)")
    overrides: tuple[str, ...] = _opt(
        ("world.impressions_per_day=40000",),
        doc="`section.key=value` overrides of the history world (after the mode's; world.days is "
        "max(days_before) + vm_days + 1)",
    )
    quick_days_before: tuple[int, ...] = _opt((0, 3), doc="--quick: days_before")
    quick_vm_days: int = _opt(4, ge=2, le=365, doc="--quick: vm_days")


class ExperimentConfig(_Section):
    """The ExFM results (`exfm experiment`, experiments/dvc.yaml): ablation ladder, freshness gap,
    transfer scaling, amortization and the real-data ladder, measured on fresh workspaces."""

    dir: str = _opt("data/experiments", doc="workspaces (lakes, registries) of the runs")
    reports_dir: str = _opt("reports/experiments", doc="results JSON, results.html, results.md")
    overrides: tuple[str, ...] = _opt(
        (), doc="`section.key=value` overrides of every run (none: the default world and models)"
    )
    quick: tuple[str, ...] = _opt(
        (
            "world.days=8",
            "world.impressions_per_day=30000",
            "world.n_users=5000",
            "world.n_ads=1000",
            "world.n_advertisers=250",
            "world.n_contexts=1000",
            "fm.deep_layers=[256, 128]",
        ),
        doc="--quick: `section.key=value` overrides of every run (a few minutes in all)",
    )
    quick_grid_values: int = _opt(2, ge=1, le=10, doc="--quick: first values of each grid axis")
    quick_tune_worlds: int = _opt(2, ge=1, le=100, doc="--quick: the first tuning worlds")
    quick_obd_seeds: int = _opt(2, ge=1, le=100, doc="--quick: seeds of the OBD ladder")
    quick_bootstrap: int = _opt(200, ge=10, le=100_000, doc="--quick: bootstrap resamples")
    bootstrap: int = _opt(1000, ge=10, le=100_000, doc="paired bootstrap resamples (units: days)")
    confidence: float = _opt(0.95, gt=0.5, lt=1, doc="level of the confidence intervals")
    tune_world_seed_offset: int = _opt(
        1, ge=1, le=2**31, doc="tuning world i's seed: world.seed + this + i"
    )
    tune_days: int = _opt(6, ge=3, le=365, doc="days of each tuning world")
    tune_worlds: tuple[WorldShapeConfig, ...] = _opt(
        factory=_default_tune_worlds, doc="the shapes of the tuning worlds (at least one)"
    )
    tune_overrides: tuple[str, ...] = _opt(
        ("world.impressions_per_day=80000",),
        doc="`section.key=value` overrides of every tuning world (after the mode's)",
    )
    grid: TuneGridConfig = _opt(factory=TuneGridConfig)
    grid_extend: int = _opt(
        2, ge=0, le=10, doc="times an axis is extended past an end its best value sits at"
    )
    robustness: RobustnessConfig = _opt(factory=RobustnessConfig)
    history: HistoryConfig = _opt(factory=HistoryConfig)
    delays: tuple[int, ...] = _opt((0, 1, 2, 4), doc="das.fm_delay_days of the freshness gap")
    cadences: tuple[int, ...] = _opt(
        (1, 3, 7),
        doc="days between the FM refreshes the DAS scores with (the FM and VMs train daily)",
    )
    fm_sizes: dict[str, FMSizeConfig] = _opt(
        factory=_default_fm_sizes, doc="name -> FM size of the transfer scaling (null: fm's)"
    )
    max_vms: int = _opt(8, ge=1, le=64, doc="amortization: N = 1..max_vms VMs on one FM")
    obd_params: str = _opt("configs/obd.yaml", doc="the bring-your-own-data ladder's params")
    obd_seeds: int = _opt(3, ge=1, le=100, doc="train.seed values of the OBD ladder")
    obd_overrides: tuple[str, ...] = _opt(
        ("publish.max_ne=100.0",),
        doc="overrides of the OBD runs (the FM rarely beats the base rate on this small sample, "
        "so the default gate would publish no FM for the DAS)",
    )
