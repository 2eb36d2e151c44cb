"""Time top-k scoring of every user, the work behind ``incr evaluate`` and ``incr recommend``.

Run from the project root::

    python benchmarks/topk.py

It fits incr's model on MovieLens 100K (read from ``../shared/data``, skipped with the
reason where absent) and on a synthetic stream, then times ``BiasedMF.top_k`` for every
user, with and without leaving out the items each user rated, and prints a Markdown
table: users, items, seconds (best of five) and users per second.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from incr_cli.model import BiasedMF
from incr_cli.synthetic import generate_ratings

ROOT = Path(__file__).resolve().parent.parent
ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "deltas"
K = 10
REPEATS = 5


def best_of(repeats: int, func: Callable[[], Any]) -> float:
    """The shortest wall time of ``repeats`` calls: the least disturbed run."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def movielens() -> tuple[np.ndarray, np.ndarray] | str:
    files = sorted(ML100K.glob("ratings-*.tsv"))
    if not files:
        return f"MovieLens 100K not found at {ML100K} (public data set, not shipped)"
    rows = [row for path in files for row in csv.reader(path.open(), delimiter="\t")]
    X = np.array([[row[0], row[1]] for row in rows], dtype=object)
    return X, np.array([float(row[2]) for row in rows])


def synthetic(n_users: int, n_items: int, n_ratings: int) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(generate_ratings(n_users, n_items, n_ratings, seed=0))
    users = np.concatenate([c["user_id"] for c in chunks]).astype(str).astype(object)
    items = np.concatenate([c["item_id"] for c in chunks]).astype(str).astype(object)
    return np.column_stack([users, items]), np.concatenate([c["rating"] for c in chunks])


def measure(name: str, X: np.ndarray, y: np.ndarray) -> list[str]:
    model = BiasedMF(n_epochs=5).fit(X, y)
    users = model.user_ids_
    seen: dict[Any, list[Any]] = {}
    for user, item in X:
        seen.setdefault(user, []).append(item)
    plain = best_of(REPEATS, lambda: model.top_k(users, k=K))
    excluding = best_of(REPEATS, lambda: model.top_k(users, k=K, exclude=seen))
    return [
        name,
        f"{len(users):,}",
        f"{model.n_items_:,}",
        f"{plain:.3f}",
        f"{excluding:.3f}",
        f"{len(users) / excluding:,.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    rows = []
    data = movielens()
    if isinstance(data, str):
        print(f"Skipped: {data}.")
    else:
        rows.append(measure("MovieLens 100K", *data))
    rows.append(measure("synthetic", *synthetic(50_000, 10_000, 1_000_000)))

    print(f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- Machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"- Top {K} of every user, best of {REPEATS} runs\n")
    header = ["data", "users", "items", "s, all items", "s, rated left out", "users / s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
