"""Benchmark: implicit-feedback recommenders on UCI Online Retail, tested then trained day by day.

Reads the 305 daily files of ``online-retail/by-day/`` under the data folder (default
``../shared/data`` beside the project) with DuckDB, cleans them, and replays them in time
order. Every system is trained on the first ``--warmup`` days (30); then, for each later
day ``d``, the systems trained through day ``d - 1`` rank ten items for every customer who
buys on day ``d``, the items the customer buys that day are the relevant ones, and the
systems learn day ``d``. Items a customer has already bought stay candidates: wholesale
customers reorder. ``ImplicitMF`` learns each day with ``partial_fit``.

Cleaning, in this order:

1. exact duplicate rows are dropped (5,268 in the original file);
2. rows with no CustomerID are dropped: they name no one to recommend to;
3. cancellations (InvoiceNo starting with ``C``, negative quantity) and adjustments
   (``A`` invoices) are dropped. NOTE: they are not netted against the purchases they
   undo: those purchases were learned on earlier days, and netting them beforehand
   would let a later day's information into an earlier day's training data;
4. rows with a unit price of 0 or less are dropped (free samples, bad-debt entries);
5. stock codes that are not products are dropped: a product code is five digits and an
   optional letter suffix (``85123A``); ``POST``, ``D``, ``M``, ``BANK CHARGES``,
   ``AMAZONFEE``, ``DCGS...``, ``gift_...`` and the like are not. Codes are upper-cased
   (``85049a`` and ``85049A`` are one product);
6. CustomerID ``17850.0`` is read as ``17850``;
7. what remains is summed per customer, product and day: ``q`` units, and a row of
   strength ``w = log(1 + q)``, so that ``c = 1 + alpha * w`` is the model's confidence.

Run (about five minutes on two cores; ``--quick`` skips the ``implicit`` comparison)::

    .venv/bin/pip install -q -e '.[bench]' && .venv/bin/python benchmarks/retail.py

The table goes to stdout and to ``benchmarks/retail.md``.
"""

from __future__ import annotations

import os

# One BLAS thread for every system, set before numpy loads it: implicit asks for it (its
# own loop is the parallel one) and warns without it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incr_cli.implicit_model import ImplicitMF  # noqa: E402
from incr_cli.metrics import ranking_metrics  # noqa: E402

K = 10
PRODUCT_CODE = "[0-9]{5}[A-Za-z]*"

# Types pinned: DuckDB infers InvoiceNo as BIGINT in the three files without a 'C' invoice.
COLUMNS = {
    "InvoiceNo": "VARCHAR",
    "StockCode": "VARCHAR",
    "Description": "VARCHAR",
    "Quantity": "BIGINT",
    "InvoiceDate": "TIMESTAMP",
    "UnitPrice": "DOUBLE",
    "CustomerID": "VARCHAR",
    "Country": "VARCHAR",
}

LOAD_SQL = """
CREATE TEMP TABLE raw AS SELECT * FROM read_csv(?, header = true, columns = ?);
CREATE TEMP VIEW uniq AS SELECT DISTINCT * FROM raw;
CREATE TEMP VIEW customer AS
    SELECT * FROM uniq WHERE CustomerID IS NOT NULL AND trim(CustomerID) <> '';
CREATE TEMP VIEW sale AS
    SELECT * FROM customer
    WHERE Quantity > 0 AND NOT starts_with(InvoiceNo, 'C') AND NOT starts_with(InvoiceNo, 'A');
CREATE TEMP VIEW priced AS SELECT * FROM sale WHERE UnitPrice > 0;
CREATE TEMP TABLE product AS SELECT * FROM priced WHERE regexp_full_match(StockCode, ?);
"""

# Rows left after each cleaning step, in order.
STEPS = ("raw", "uniq", "customer", "sale", "priced", "product")

PURCHASES_SQL = """
SELECT
    CAST(InvoiceDate AS DATE) AS day,
    CAST(CAST(CustomerID AS DOUBLE) AS BIGINT)::VARCHAR AS customer,
    upper(StockCode) AS item,
    sum(Quantity)::DOUBLE AS quantity
FROM product
GROUP BY ALL
ORDER BY day, customer, item
"""


@dataclass
class Purchases:
    """One row per customer, product and day, in day order."""

    day: np.ndarray  # day number from 0, one per file with purchases
    date: np.ndarray  # datetime64[D] of each day number
    customer: np.ndarray  # object
    item: np.ndarray  # object
    quantity: np.ndarray  # float64
    starts: np.ndarray  # rows of day d are starts[d]:starts[d + 1]
    cleaning: dict[str, int]

    def rows(self, first: int, stop: int) -> slice:
        return slice(int(self.starts[first]), int(self.starts[stop]))


def load(data_dir: Path) -> Purchases:
    """Read and clean the daily files; see the module docstring for the rules."""
    pattern = str(data_dir / "online-retail" / "by-day" / "*.csv")
    con = duckdb.connect()
    statements = [text for text in LOAD_SQL.split(";") if text.strip()]
    con.execute(statements[0], [pattern, COLUMNS])
    for text in statements[1:-1]:
        con.execute(text)
    con.execute(statements[-1], [PRODUCT_CODE])
    cleaning = {}
    for step in STEPS:
        counted = con.execute(f"SELECT count(*) FROM {step}").fetchone()
        assert counted is not None
        cleaning[step] = int(counted[0])
    found = con.execute(PURCHASES_SQL).fetchnumpy()
    cleaning["purchases"] = int(found["day"].size)

    date = np.asarray(found["day"]).astype("datetime64[D]")
    dates = np.unique(date)
    day = np.searchsorted(dates, date)
    starts = np.searchsorted(day, np.arange(dates.size + 1))
    return Purchases(
        day=day,
        date=dates,
        customer=np.asarray(found["customer"], dtype=object),
        item=np.asarray(found["item"], dtype=object),
        quantity=np.asarray(found["quantity"], dtype=np.float64),
        starts=starts,
        cleaning=cleaning,
    )


# -- systems --------------------------------------------------------------------------


class System(Protocol):
    name: str

    def learn(self, data: Purchases, rows: slice, first: bool) -> None: ...

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]: ...


def _most(counter: Counter[Any], k: int) -> list[Any]:
    # Ties broken by id so that every run ranks the same.
    return [item for item, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _fill(own: list[Any], fallback: Sequence[Any], k: int) -> list[Any]:
    """The user's own list, then the fallback's items not in it, up to ``k``."""
    taken = set(own)
    return own + [item for item in fallback if item not in taken][: k - len(own)]


class MostPopular:
    """Every customer gets the items bought on the most customer-days so far."""

    name = "most popular"

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()

    def learn(self, data: Purchases, rows: slice, first: bool) -> None:
        self.counts.update(data.item[rows].tolist())

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]:
        top = _most(self.counts, K)
        return [top] * len(users)


class RecentlyPopular:
    """Every customer gets the items bought on the most customer-days in the last 7 days."""

    name = "recently popular (7 days)"

    def __init__(self, days: int = 7) -> None:
        self.days = days

    def learn(self, data: Purchases, rows: slice, first: bool) -> None:
        pass

    def top(self, today: int, data: Purchases) -> list[Any]:
        since = data.date[today] - np.timedelta64(self.days, "D")
        first = int(np.searchsorted(data.date, since, side="right"))
        return _most(Counter(data.item[data.rows(first, today)].tolist()), K)

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]:
        return [self.top(today, data)] * len(users)


class BuyAgain:
    """The customer's own items, most days bought first, then the latest bought; then the
    recently popular items to fill the list (and for a new customer)."""

    name = "buy-again"

    def __init__(self) -> None:
        self.counts: dict[str, Counter[Any]] = defaultdict(Counter)
        self.last: dict[str, dict[Any, int]] = defaultdict(dict)
        self.recent = RecentlyPopular()

    def learn(self, data: Purchases, rows: slice, first: bool) -> None:
        for user, item, day in zip(
            data.customer[rows], data.item[rows], data.day[rows], strict=True
        ):
            self.counts[user][item] += 1
            self.last[user][item] = int(day)

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]:
        fallback = self.recent.top(today, data)
        lists = []
        for user in users:
            counts: Counter[Any] = self.counts.get(user, Counter())
            last = self.last.get(user, {})
            own = sorted(counts, key=lambda i: (-counts[i], -last[i], i))[:K]
            lists.append(_fill(own, fallback, K))
        return lists


class Model:
    """``ImplicitMF``: ``fit`` on the warm-up days, then ``partial_fit`` on each day."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        self.name = name
        self.model = ImplicitMF(**params)
        # Compile (or load from numba's cache) every kernel first, so that no day's time
        # includes it.
        warm = ImplicitMF(n_factors=2, solver=params.get("solver", "cg"))
        warm.fit([["a", "x"]]).partial_fit([["b", "y"]])

    def learn(self, data: Purchases, rows: slice, first: bool) -> None:
        X = np.column_stack([data.customer[rows], data.item[rows]])
        w = np.log1p(data.quantity[rows])
        t = data.day[rows].astype(np.float64)
        if first:
            self.model.fit(X, w, times=t)
        else:
            self.model.partial_fit(X, w, times=t)

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]:
        return self.model.top_k(users, K)[0].tolist()


class ImplicitALS:
    """The ``implicit`` library's ALS, refitted on everything so far each day (its
    ``partial_fit_users`` cannot add items), ranking by factors; new customers get the
    most popular items. Same confidence ``1 + alpha * log(1 + q)``."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.name = "implicit ALS (library, refit daily)"
        self.params = params
        self.users: dict[str, int] = {}
        self.items: dict[Any, int] = {}
        self.triplets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.popular = MostPopular()

    def learn(self, data: Purchases, rows: slice, first: bool) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self.popular.learn(data, rows, first)
        u = np.array([self.users.setdefault(x, len(self.users)) for x in data.customer[rows]])
        i = np.array([self.items.setdefault(x, len(self.items)) for x in data.item[rows]])
        self.triplets.append((u, i, np.log1p(data.quantity[rows])))
        users, items, w = (np.concatenate(part) for part in zip(*self.triplets, strict=True))
        strengths = sp.csr_matrix((w, (users, items)), shape=(len(self.users), len(self.items)))
        strengths.sum_duplicates()
        confidence = strengths.copy()
        confidence.data = 1.0 + self.params["alpha"] * confidence.data
        self.model = AlternatingLeastSquares(
            factors=self.params["n_factors"],
            regularization=self.params["reg"],
            iterations=self.params["n_iterations"],
            alpha=1.0,
            dtype=np.float64,
            use_cg=True,
            random_state=self.params["random_state"],
            num_threads=1,
        )
        self.model.fit(confidence, show_progress=False)
        self.item_ids = np.array(list(self.items), dtype=object)

    def rank(self, users: list[str], today: int, data: Purchases) -> list[list[Any]]:
        fallback = _most(self.popular.counts, K)
        lists = []
        for user in users:
            row = self.users.get(user)
            if row is None:
                lists.append(fallback)
                continue
            scores = self.model.item_factors @ self.model.user_factors[row]
            best = np.argsort(-scores, kind="stable")[:K]
            lists.append(self.item_ids[best].tolist())
        return lists


# -- protocol -------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    days: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    learn_s: list[float] = field(default_factory=list)
    rank_s: list[float] = field(default_factory=list)

    def mean(self, metric: str, first: int, last: int) -> float:
        """Mean over evaluated days numbered ``first`` to ``last`` (from 1), inclusive."""
        values = [m[metric] for d, m in zip(self.days, self.metrics, strict=True)]
        chosen = [v for d, v in zip(self.days, values, strict=True) if first <= d + 1 <= last]
        return float(np.mean(chosen)) if chosen else float("nan")


def replay(
    data: Purchases,
    systems: Sequence[System],
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Test then train, day by day, every system on the same customers."""
    results = [Result(s.name) for s in systems]
    n_days = data.date.size
    for system, result in zip(systems, results, strict=True):
        started = time.perf_counter()
        system.learn(data, data.rows(0, warmup), first=True)
        result.learn_s.append(time.perf_counter() - started)
        for today in range(warmup, n_days):
            rows = data.rows(today, today + 1)
            relevant: dict[str, set[Any]] = defaultdict(set)
            for user, item in zip(data.customer[rows], data.item[rows], strict=True):
                relevant[user].add(item)
            users = sorted(relevant)

            started = time.perf_counter()
            lists = system.rank(users, today, data)
            result.rank_s.append(time.perf_counter() - started)
            scores = ranking_metrics(lists, [relevant[u] for u in users], K)
            result.days.append(today)
            result.metrics.append(scores)

            started = time.perf_counter()
            system.learn(data, rows, first=False)
            result.learn_s.append(time.perf_counter() - started)
        if progress:
            progress(f"{system.name}: done")
    return results


def table(results: Sequence[Result], n_days: int, last: int) -> str:
    first_last = n_days - last + 1
    head = (
        "| system | P@10 | R@10 | NDCG@10 | HR@10 | NDCG@10 days 31-60 | "
        "NDCG@10 days 61-205 (tuning) | learn s/day median | worst | rank s/day median |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in results:
        cells = [r.mean(m, first_last, n_days) for m in ("precision", "recall", "ndcg")]
        cells.append(r.mean("hit_rate", first_last, n_days))
        cells.append(r.mean("ndcg", 31, 60))
        cells.append(r.mean("ndcg", 61, 205))
        daily = r.learn_s[1:]
        lines.append(
            f"| {r.name} | "
            + " | ".join(f"{c:.4f}" for c in cells)
            + f" | {np.median(daily):.3f} | {np.max(daily):.3f} | {np.median(r.rank_s):.3f} |"
        )
    return head + "\n".join(lines) + "\n"


# The model's own defaults are the settings this benchmark chose; --set overrides them.
DEFAULTS: dict[str, Any] = ImplicitMF().get_params()


def parse_set(values: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for text in values:
        key, _, raw = text.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"--set {text!r}: unknown parameter {key!r}")
        value: Any
        if raw == "None":
            value = None
        elif raw.lstrip("-").isdigit():
            value = int(raw)
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="folder holding online-retail/by-day/ (default: ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "retail.md")
    parser.add_argument("--warmup", type=int, default=30, help="days of the first full fit")
    parser.add_argument("--last", type=int, default=100, help="days averaged in the table")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="skip the implicit library")
    args = parser.parse_args(argv)

    folder = args.data_dir / "online-retail" / "by-day"
    if not folder.is_dir() or not any(folder.glob("*.csv")):
        print(
            f"no daily files in {folder}: pass the folder holding online-retail/by-day/ "
            "(see the data README); nothing was run",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    data = load(args.data_dir)
    print(f"loaded and cleaned in {time.perf_counter() - started:.1f}s: {data.cleaning}")

    params = DEFAULTS | parse_set(args.set)
    systems: list[System] = [
        Model("ImplicitMF (ALS + own history)", params),
        Model(
            "ImplicitMF, factors only (plain weighted ALS)",
            params | {"history_weight": 0.0, "popularity_weight": 0.0},
        ),
        # Factors held near zero: what the history and popularity terms do on their own.
        Model("ImplicitMF, no factors (reg=1e6)", params | {"reg": 1e6}),
        MostPopular(),
        RecentlyPopular(),
        BuyAgain(),
    ]
    if not args.quick:
        try:
            import implicit  # noqa: F401
        except ImportError:
            print("implicit is not installed: its row is left out", file=sys.stderr)
        else:
            systems.append(ImplicitALS(params))

    results = replay(data, systems, args.warmup, progress=lambda s: print(s, file=sys.stderr))
    text = table(results, data.date.size, args.last)

    settings = ", ".join(f"{k}={v}" for k, v in params.items())
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# Online Retail: test then train, day by day\n\n"
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. {data.date.size} days; full fit on the first "
        f"{args.warmup}; metrics at {K}, each the mean over the last {args.last} days of "
        f"the day's mean over its buyers (every buyer of the day, new customers included); "
        f"items already bought stay candidates.\n\n"
        f"Rows left after each cleaning step: {data.cleaning}.\n\n"
        f"ImplicitMF settings: {settings}. They were chosen by NDCG@10 on days 61 to 205, "
        f"not on the days the table averages. Times are seconds on one thread per system; "
        f"a day's learn time of ImplicitMF is one partial_fit.\n\n"
    )
    print(text)
    args.out.write_text(header + text, encoding="utf-8")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
