"""The configuration: every key, its type, its default and its allowed range.

The tool runs with no configuration file at all. A file given with ``--config`` (or the
``INCR_CONFIG`` environment variable) overrides the defaults key by key; an unknown key or
a value of the wrong type is refused with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

ColumnRef = str | Annotated[int, Field(ge=1)] | None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Section):
    """Where each field is found: a header name, a 1-based position, or null to detect."""

    user: ColumnRef = None
    item: ColumnRef = None
    rating: ColumnRef = None
    timestamp: ColumnRef = None


class IngestConfig(_Section):
    delimiter: Literal["auto", ",", "\t", ";", "|"] = "auto"
    header: Literal["auto"] | bool = "auto"
    columns: Columns = Columns()
    timestamp_format: str = "auto"
    rating_min: float = 0.5
    rating_max: float = 5.0
    encoding: Literal["utf-8", "latin-1"] = "utf-8"

    @model_validator(mode="after")
    def _range(self) -> IngestConfig:
        if self.rating_min > self.rating_max:
            raise ValueError(
                f"rating_min ({self.rating_min}) must not exceed rating_max ({self.rating_max})"
            )
        return self


class CleanConfig(_Section):
    dedupe: Literal["latest", "none"] = "latest"
    exclude_items: str | None = None
    exclude_users: str | None = None
    min_timestamp: str | None = None
    max_timestamp: str | None = None


class ModelConfig(_Section):
    factors: int = Field(32, ge=1, le=1024)
    epochs: int = Field(20, ge=1, le=1000)
    partial_epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=1)
    lr_decay: float = Field(1.0, gt=0, le=1)
    reg: float = Field(0.05, ge=0)
    reg_bias: float = Field(0.2, ge=0)
    init_std: float = Field(0.1, gt=0)
    replay_ratio: float = Field(1.0, ge=0, le=100)
    seed: int = Field(0, ge=0)


class EvaluateConfig(_Section):
    k: int = Field(10, ge=1, le=1000)
    relevance_threshold: float = 4.0
    exclude_seen: bool = True


class GateMetric(_Section):
    """How much worse than the current model a candidate may be on one metric, and bounds.

    ``tolerance`` is in the metric's units, or with ``relative`` a share of the current
    model's value (0.05: five per cent). ``min`` and ``max`` bound the candidate's value
    whatever the current model scores; null leaves that side open.
    """

    tolerance: float = Field(0.0, ge=0)
    relative: bool = False
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> GateMetric:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


GateMetricName = Literal["rmse", "mae"]


def _default_gate() -> dict[GateMetricName, GateMetric]:
    # Five per cent worse than the current model is noise on a small held-out slice.
    return {
        "rmse": GateMetric(tolerance=0.05, relative=True),
        "mae": GateMetric(tolerance=0.05, relative=True),
    }


class GateConfig(_Section):
    """The quality gate of ``incr update``; see the README's "Quality gate"."""

    # NOTE: only rating metrics for now: a ranking metric on one delta's held-out slice
    # needs each user's earlier items excluded as evaluate does, not done here yet.
    enabled: bool = True
    holdout: float = Field(0.2, gt=0, lt=1)
    metrics: dict[GateMetricName, GateMetric] = Field(default_factory=lambda: _default_gate())


class RuntimeConfig(_Section):
    wait_seconds: float = Field(10.0, ge=0)
    memory_limit: str | None = None
    threads: int | None = Field(None, ge=1)


class Config(_Section):
    """The whole configuration; see ``config.example.yaml`` for every key."""

    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    model: ModelConfig = ModelConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig = GateConfig()
    runtime: RuntimeConfig = RuntimeConfig()


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from exc
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
        else:
            problem = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(
            f"config {str(path)!r}: {key} {problem}; see config.example.yaml"
        ) from exc
