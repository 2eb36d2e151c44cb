"""The configuration: every key, its type, its default and its allowed range.

The tool runs with no configuration file at all. A file given with ``--config`` (or the
``INCR_CONFIG`` environment variable) overrides the defaults key by key; an unknown key or
a value of the wrong type is refused with a message that names the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError


def _not_bool(value: object) -> object:
    # NOTE: YAML's true and false are Python bools, and bool is a subclass of int, so
    # without this `lr: true` would be read as 1.0.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# Integers are strict (no bool, no float, no text). Floats refuse bools but accept text
# such as "1e-3", which YAML 1.1 reads as a string rather than a number.
# NaN and infinity are refused: a NaN threshold or bound would make every comparison false.
Number = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False)]
ColumnRef = str | Annotated[StrictInt, Field(ge=1)] | None

TIMESTAMP_KEYWORDS = ("auto", "unix", "unix_ms")
# What DuckDB's memory_limit accepts: a number and a unit (KB, MiB, ...), or a share of RAM.
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|[KMGT]|B|%)", re.IGNORECASE)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Section):
    """Where each field is found: a header name, a 1-based position, or null to detect.

    ``rating`` is read with ``feedback: rating``, ``event`` with ``event`` and
    ``quantity`` (and ``invoice``, whose cancellation marker makes a quantity negative)
    with ``quantity``.
    """

    user: ColumnRef = None
    item: ColumnRef = None
    rating: ColumnRef = None
    timestamp: ColumnRef = None
    event: ColumnRef = None
    quantity: ColumnRef = None
    invoice: ColumnRef = None


# Which fields each kind of feedback reads; a configured column of another kind is refused.
FEEDBACK_FIELDS = {
    "rating": ("rating",),
    "event": ("event",),
    "quantity": ("quantity", "invoice"),
}


def _check_regex(value: str) -> str:
    """A regular expression DuckDB (RE2) can run, or ValueError with its complaint."""
    with duckdb.connect() as con:
        try:
            con.execute("SELECT regexp_matches('', ?)", [value])
        except duckdb.Error as exc:
            reason = str(exc).strip().splitlines()[0].split(": ", 1)[-1]
            raise ValueError(f"is not a valid regular expression ({reason})") from None
    return value


class IngestConfig(_Section):
    # auto tells each file's format from its first bytes and its name.
    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: Literal["auto", ",", "\t", ";", "|"] = "auto"
    header: Literal["auto"] | bool = "auto"
    columns: Columns = Columns()
    timestamp_format: str = "auto"
    rating_min: Number = 0.5
    rating_max: Number = 5.0
    encoding: Literal["utf-8", "latin-1"] = "utf-8"
    # What a row's value is: a star rating, an event type's weight, or a quantity. The
    # value is stored in the rating column of ratings_raw and ratings_clean.
    feedback: Literal["rating", "event", "quantity"] = "rating"
    event_weights: dict[str, Annotated[Number, Field(gt=0)]] | None = None
    # Matched (anywhere, RE2) against the invoice column: a match makes the quantity
    # negative, a cancellation.
    cancellation_pattern: str = "^C"
    # 17850.0 read as 17850 in user and item ids.
    normalise_float_ids: bool = True
    # The zone of timestamps written without one; every time is stored in UTC.
    timezone: str = "UTC"

    @field_validator("cancellation_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _check_regex(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        with duckdb.connect() as con:
            known = con.execute(
                "SELECT count(*) FROM pg_timezone_names() WHERE name = ?", [value]
            ).fetchone()
        if not known or not known[0]:
            raise ValueError("is not a time zone name such as 'UTC' or 'Europe/London'")
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _strptime_format(cls, value: str) -> str:
        if value in TIMESTAMP_KEYWORDS:
            return value
        if "%" not in value:
            raise ValueError(
                f"must be one of {', '.join(TIMESTAMP_KEYWORDS)} or a strptime format "
                "such as '%d/%m/%Y %H:%M'"
            )
        # Checked once here, in the dialect ingest uses, rather than failing mid-ingest.
        with duckdb.connect() as con:
            try:
                con.execute("SELECT try_strptime('', ?)", [value])
            except duckdb.Error as exc:
                reason = str(exc).split(": ", 2)[-1].strip()
                raise ValueError(f"is not a strptime format DuckDB reads ({reason})") from None
        return value

    @model_validator(mode="after")
    def _range(self) -> IngestConfig:
        if self.rating_min > self.rating_max:
            raise ValueError(
                f"rating_min ({self.rating_min}) must not exceed rating_max ({self.rating_max})"
            )
        return self

    @model_validator(mode="after")
    def _feedback(self) -> IngestConfig:
        # NOTE: a column of another kind of feedback would be silently ignored, so a
        # config that maps one is refused rather than read in a way it did not mean.
        own = FEEDBACK_FIELDS[self.feedback]
        for kind, fields in FEEDBACK_FIELDS.items():
            for name in fields:
                if name not in own and getattr(self.columns, name) is not None:
                    raise ValueError(
                        f"ingest.columns.{name} is read only with ingest.feedback: {kind} "
                        f"(now {self.feedback}); remove it or change ingest.feedback"
                    )
        if self.feedback == "event" and not self.event_weights:
            raise ValueError(
                "ingest.event_weights is required with ingest.feedback: event; give a "
                "weight per event type, e.g. {view: 1, cart: 3, purchase: 5}"
            )
        if self.feedback != "event" and self.event_weights is not None:
            raise ValueError(
                f"ingest.event_weights is read only with ingest.feedback: event (now "
                f"{self.feedback}); remove it or change ingest.feedback"
            )
        return self


class CleanConfig(_Section):
    # latest: of a (user, item) pair's rows in one delta only the latest is kept; exact:
    # only rows with the same user, item, value and time are duplicates; none. The
    # default (null) is latest for ratings and exact for events and quantities.
    dedupe: Literal["latest", "exact", "none"] | None = None
    # What a negative value (a cancellation) does with events or quantities: offset the
    # user's purchases of the item (in the delta, then earlier ones), or drop it.
    cancellations: Literal["offset", "drop"] = "offset"
    # A row identical to one of an earlier version on the lineage (user, item, value and
    # time) is the same data sent again: drop it, or keep it.
    repeated_rows: Literal["drop", "keep"] = "drop"
    exclude_items: str | None = None
    exclude_users: str | None = None
    min_timestamp: str | None = None
    max_timestamp: str | None = None


class ImplicitModelConfig(_Section):
    """The implicit-feedback model (``ImplicitMF``), used when ``ingest.feedback`` is
    ``event`` or ``quantity``; defaults from the Online Retail benchmark."""

    factors: StrictInt = Field(64, ge=1, le=1024)
    iterations: StrictInt = Field(15, ge=1, le=1000)
    partial_iterations: StrictInt = Field(2, ge=0, le=1000)
    alpha: Number = Field(3.0, ge=0)
    reg: Number = Field(0.1, gt=0)
    cg_steps: StrictInt = Field(3, ge=1, le=100)
    # How a (user, item) pair's net value becomes its strength: log1p for quantities.
    transform: Literal["log1p", "identity"] = "log1p"
    history_weight: Number = Field(1.0, ge=0)
    history_half_life: Number | None = Field(90.0, gt=0)
    popularity_weight: Number = Field(0.8, ge=0)
    popularity_half_life: Number | None = Field(7.0, gt=0)


class ModelConfig(_Section):
    factors: StrictInt = Field(32, ge=1, le=1024)
    epochs: StrictInt = Field(20, ge=1, le=1000)
    partial_epochs: StrictInt = Field(3, ge=1, le=1000)
    lr: Number = Field(0.01, gt=0, le=1)
    lr_decay: Number = Field(1.0, gt=0, le=1)
    reg: Number = Field(0.05, ge=0)
    reg_bias: Number = Field(0.2, ge=0)
    init_std: Number = Field(0.1, gt=0)
    replay_ratio: Number = Field(2.0, ge=0, le=100)
    seed: StrictInt = Field(0, ge=0)
    implicit: ImplicitModelConfig = ImplicitModelConfig()


class EvaluateConfig(_Section):
    k: StrictInt = Field(10, ge=1, le=1000)
    relevance_threshold: Number = 4.0
    exclude_seen: bool = True


class GateMetric(_Section):
    """How much worse than the current model a candidate may be on one metric, and bounds.

    ``tolerance`` is in the metric's units, or with ``relative`` a share of the current
    model's value (0.05: five per cent). ``min`` and ``max`` bound the candidate's value
    whatever the current model scores; null leaves that side open.
    """

    tolerance: Number = Field(0.0, ge=0)
    relative: bool = False
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _bounds(self) -> GateMetric:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


# Rating metrics judge a rating model, ranking metrics an implicit-feedback model; the
# gate judges the configured metrics that apply to the model trained.
GateMetricName = Literal["rmse", "mae", "ndcg", "precision", "recall", "hit_rate"]


def _default_gate() -> dict[GateMetricName, GateMetric]:
    # Five per cent worse than the current model is noise on a small held-out slice; the
    # ranking slice, a fifth of one delta's users, is smaller still.
    return {
        "rmse": GateMetric(tolerance=0.05, relative=True),
        "mae": GateMetric(tolerance=0.05, relative=True),
        "ndcg": GateMetric(tolerance=0.1, relative=True),
    }


class GateConfig(_Section):
    """The quality gate of ``incr update``; see the README's "Quality gate"."""

    enabled: bool = True
    holdout: Number = Field(0.2, gt=0, lt=1)
    metrics: dict[GateMetricName, GateMetric] = Field(default_factory=lambda: _default_gate())


class RuntimeConfig(_Section):
    wait_seconds: Number = Field(10.0, ge=0)
    memory_limit: str | None = None
    threads: StrictInt | None = Field(None, ge=1)
    # Where DuckDB spills what does not fit in memory_limit; None: beside the catalog.
    temp_directory: str | None = None

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None and not MEMORY_SIZE.fullmatch(value.strip()):
            raise ValueError("must be a size such as '2GB', '512MB' or '1GiB'")
        return value

    @field_validator("temp_directory")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("must be a folder's path, or null for the catalog's own")
        # NOTE: a missing folder is fine (DuckDB creates it when it first spills), but
        # a file in its place would only fail deep inside a large query.
        if Path(value).exists() and not Path(value).is_dir():
            raise ValueError("names a file, not a folder")
        return value


class Config(_Section):
    """The whole configuration; see ``config.example.yaml`` for every key."""

    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    model: ModelConfig = ModelConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig = GateConfig()
    runtime: RuntimeConfig = RuntimeConfig()


def is_implicit(config: Config) -> bool:
    """Whether the data is implicit feedback (events or quantities) rather than ratings."""
    # NOTE: read with a default so that a config without ingest.feedback means ratings.
    return getattr(config.ingest, "feedback", "rating") != "rating"


def load_config(path: Path | None) -> Config:
    """Read and validate a YAML configuration file; ``None`` gives the defaults.

    Examples
    --------
    >>> load_config(None).model.factors
    32
    """
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {str(path)!r}: {exc.strerror}; "
            "check the --config path or INCR_CONFIG"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {str(path)!r} is not UTF-8 text (byte {exc.start} cannot be read); "
            "save it as UTF-8"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {_yaml_problem(exc)}") from exc
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping of sections to keys")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            problem = "is not a known key"
        elif first["type"] == "value_error":
            error = str(first["ctx"]["error"])
            # A check across keys names them itself, and its input is the whole section.
            if error.startswith(f"{key}."):
                raise ConfigError(f"config {str(path)!r}: {error}") from exc
            problem = f"{error} (got {first.get('input')!r})"
        else:
            problem = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(
            f"config {str(path)!r}: {key} {problem}; see config.example.yaml"
        ) from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and where it is, as one line."""
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}; fix the file or see config.example.yaml"
