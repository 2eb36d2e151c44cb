"""The quality gate: whether a candidate model may replace the one serving.

``incr update`` holds out a random share of the last delta it learns, trains a
twin of the candidate without those rows, and scores the twin and the reference model (the
newest model that has not learned that delta either) on the same held-out rows. A model of
implicit feedback predicts no rating, so it is judged by ranking instead: a random share of
the delta's users is held out, and the twin and the reference rank items for each of them,
the items they bought in the delta being the relevant ones. This module holds the pure
part: scoring a model on the held-out rows or users and judging the figures against the
``gate`` section of the config. The twin's training lives in :mod:`incr_cli.update`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import GateMetric
from .metrics import mae, ranking_metrics, rmse
from .pairs import Pairs

#: Metrics the gate can judge, each with whether a lower value is better.
LOWER_IS_BETTER: dict[str, bool] = {
    "rmse": True,
    "mae": True,
    "ndcg": False,
    "precision": False,
    "recall": False,
    "hit_rate": False,
}
#: The metrics that judge a rating model and those that judge an implicit-feedback model.
RATING_METRICS = ("rmse", "mae")
RANKING_METRICS = ("ndcg", "precision", "recall", "hit_rate")

PROMOTED = "promoted"
REJECTED = "rejected"
FORCED = "forced"


@dataclass
class Judgement:
    """The gate's verdict on one candidate.

    Attributes
    ----------
    reasons
        One sentence per broken rule; empty when the candidate passes.
    figures
        Per metric: the candidate's value, the reference's (``None`` without one) and the
        limit the tolerance allows (``None`` without a reference).
    """

    reasons: list[str] = field(default_factory=list)
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.reasons


def score(model: Any, X: np.ndarray | Pairs, y: np.ndarray, metrics: list[str]) -> dict[str, float]:
    """The gate's metrics of ``model`` predicting the rows ``X`` (raw ids or codes) rated ``y``.

    A model that predicts a non-finite value (one whose training diverged) scores
    infinity on every metric, the worst value, rather than failing the command.
    """
    predicted = model.predict(X)
    if not np.isfinite(predicted).all():
        return {name: math.inf for name in metrics}
    functions = {"rmse": rmse, "mae": mae}
    return {name: functions[name](y, predicted) for name in metrics}


def rank_score(
    model: Any,
    users: Sequence[Hashable],
    relevant: Sequence[Iterable[Hashable]],
    k: int,
    metrics: list[str],
    exclude: Mapping[Hashable, Iterable[Hashable]] | None = None,
) -> dict[str, float]:
    """The gate's ranking metrics of ``model``'s top ``k`` for ``users``.

    ``relevant[n]`` holds the items ``users[n]`` bought in the held-out rows; ``exclude``
    the items never to list for a user (none when bought items stay candidates). A
    model whose scores are not finite scores 0, the worst value, rather than failing.

    Examples
    --------
    >>> class Fixed:
    ...     def top_k(self, users, k, exclude=None):
    ...         return np.array([["x", "y"]] * len(users), dtype=object), np.ones((len(users), 2))
    >>> rank_score(Fixed(), ["a", "b"], [{"x"}, {"z"}], 2, ["hit_rate", "precision"])
    {'hit_rate': 0.5, 'precision': 0.25}
    """
    if not len(users):
        return {name: math.nan for name in metrics}
    items, scores = model.top_k(np.asarray(users, dtype=object), k, exclude=exclude or None)
    if not np.isfinite(scores[items != None]).all():  # noqa: E711 - elementwise
        return {name: 0.0 for name in metrics}
    found = ranking_metrics(list(items), list(relevant), k)
    return {name: float(found[name]) for name in metrics}


def judge(
    rules: Mapping[str, GateMetric],
    candidate: Mapping[str, float],
    reference: Mapping[str, float] | None,
    reference_name: str = "the current model",
) -> Judgement:
    """Judge a candidate's figures against bounds and, when there is one, a reference.

    For a metric where lower is better, the candidate passes when
    ``candidate <= reference + tolerance`` (``tolerance * |reference|`` when relative),
    and in the other direction when higher is better; either way it must lie within
    ``[min, max]``. Without a reference (the first model) only the bounds apply.

    Parameters
    ----------
    rules
        Per metric, its tolerance and bounds (the config's ``gate.metrics``).
    candidate, reference
        Per metric, the values of the candidate and of the model it would replace.
    reference_name
        How the reasons name the reference, e.g. ``"m3"``.

    Returns
    -------
    Judgement

    Examples
    --------
    >>> rules = {"rmse": GateMetric(tolerance=0.05, relative=True, max=1.5)}
    >>> judge(rules, {"rmse": 1.04}, {"rmse": 1.0}).passed
    True
    >>> judge(rules, {"rmse": 1.06}, {"rmse": 1.0}).reasons
    ["rmse 1.0600 is worse than the current model's 1.0000 by more than 5% (limit 1.0500)"]
    >>> judge(rules, {"rmse": 1.6}, None).reasons
    ['rmse 1.6000 is above the bound max 1.5']
    """
    judgement = Judgement()
    for name, rule in rules.items():
        value = candidate[name]
        lower = LOWER_IS_BETTER[name]
        figures: dict[str, float | None] = {"candidate": value, "reference": None, "limit": None}

        if reference is not None:
            current = reference[name]
            allowed = rule.tolerance * abs(current) if rule.relative else rule.tolerance
            limit = current + allowed if lower else current - allowed
            figures |= {"reference": current, "limit": limit}
            if (value > limit) if lower else (value < limit):
                tolerance = f"{rule.tolerance:.0%}" if rule.relative else f"{rule.tolerance:g}"
                judgement.reasons.append(
                    f"{name} {value:.4f} is worse than {reference_name}'s {current:.4f} "
                    f"by more than {tolerance} (limit {limit:.4f})"
                )

        if rule.min is not None and value < rule.min:
            judgement.reasons.append(f"{name} {value:.4f} is below the bound min {rule.min:g}")
        if rule.max is not None and value > rule.max:
            judgement.reasons.append(f"{name} {value:.4f} is above the bound max {rule.max:g}")
        judgement.figures[name] = figures
    return judgement
