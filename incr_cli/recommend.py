"""Recommend: each user's top items from a model, never an item the user already has.

A user the model knows gets the model's highest-scoring items. A user it does not know (no
rating in the data it learned from) gets the most popular items of that data instead, and
every such list is marked as the fallback it is, because its scores are rating counts, not
predicted ratings. Either way the items the user has rated on the head's lineage are left
out, so a newer rating than the model's data still counts as "already has". The one
exception is implicit feedback with ``evaluate.exclude_seen`` off: shop customers reorder,
so the items they bought stay candidates.

Known gaps, on purpose:

- ``recommend_all`` reads the list of user ids whole (one string per user, as the model
  itself holds); the recommendations, which are ``k`` times larger, are what it streams.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from .artifacts import ModelRecord, check_kind, load_model, model_trained_through, serving_model
from .catalog import Catalog
from .config import is_implicit
from .errors import UsageError
from .evaluate import fixed_order_lists
from .ingest import normalise_id

log = logging.getLogger(__name__)

#: Where a list comes from: the model, or the most-popular fallback for an unknown user.
SOURCES = ("model", "most_popular")

#: Output formats of ``recommend_all``, chosen by the file's extension.
FORMATS = {".csv": "csv", ".parquet": "parquet"}

# Users whose seen items are read in one query and whose rows are written at once by
# recommend_all: each chunk costs one scan of the ratings, and memory holds its rows
# (CHUNK_USERS * k) and seen items; the model scores it in smaller batches (see topk).
CHUNK_USERS = 32_768

# Every user on the lineage, in a stable order.
USERS_SQL = """
SELECT DISTINCT user_id FROM ratings_clean WHERE list_contains($lineage, version)
ORDER BY user_id
"""

# What each of a chunk of users has rated: never recommended back to them.
SEEN_SQL = """
SELECT user_id, list(DISTINCT item_id) AS items FROM ratings_clean
WHERE list_contains($lineage, version) AND list_contains($users, user_id)
GROUP BY user_id
"""

# The same, as rows of the model's items for positions in a chunk of users, so that no
# item id passes through Python: the chunk's users and the model's items are registered
# with the connection as ``chunk_users`` and ``model_items``.
SEEN_ROWS_SQL = """
SELECT c.position, m.item_row FROM ratings_clean r
JOIN chunk_users c ON r.user_id = c.user_id
JOIN model_items m ON r.item_id = m.item_id
WHERE list_contains($lineage, r.version)
ORDER BY c.position
"""

# The fallback's ranking: items of the model's data by number of ratings, ties by id.
POPULAR_SQL = """
SELECT item_id, count(*) AS ratings FROM ratings_clean WHERE list_contains($lineage, version)
GROUP BY item_id ORDER BY ratings DESC, item_id
"""

# The staging table recommend_all fills chunk by chunk and then copies to the file.
STAGING_SQL = """
CREATE TABLE recommendations (
    user_id VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    item_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    source VARCHAR NOT NULL
)
"""
INSERT_SQL = "INSERT INTO recommendations SELECT * FROM chunk"
COPY_SQL = {
    "csv": "COPY recommendations TO $path (FORMAT csv, HEADER)",
    "parquet": "COPY recommendations TO $path (FORMAT parquet)",
}

# The columns of a chunk of rows, in the staging table's order.
_COLUMNS = ("user_id", "rank", "item_id", "score", "source")


@dataclass
class Recommendation:
    """One recommended item: its rank (from 1), id and score."""

    rank: int
    item_id: str
    score: float


@dataclass
class UserRecommendations:
    """One user's top items.

    Attributes
    ----------
    user_id
        The user.
    model_version, model_id
        The model asked.
    k
        The number of items asked for; ``items`` holds fewer when fewer are left.
    source
        ``model``, or ``most_popular`` when the model does not know the user: then each
        score is the item's number of ratings in the model's data, not a rating.
    seen
        Items the user has rated on the head's lineage, all left out (kept as candidates
        for implicit feedback with ``evaluate.exclude_seen`` off).
    items
        The items, best first.
    """

    user_id: str
    model_version: int
    model_id: int
    k: int
    source: str
    seen: int
    items: list[Recommendation]


@dataclass
class ExportResult:
    """Every user's top items, written to a file.

    Attributes
    ----------
    path, format
        The file written and its format (``csv`` or ``parquet``).
    model_version, model_id, k
        The model asked and the number of items asked for per user.
    users
        Users on the head's lineage, each with a list.
    users_fallback
        Of those, users the model does not know, listed from the most popular items.
    rows
        Rows written: one per (user, item), with columns ``user_id``, ``rank``,
        ``item_id``, ``score`` and ``source``.
    """

    path: Path
    format: str
    model_version: int
    model_id: int
    k: int
    users: int
    users_fallback: int
    rows: int


class _Lister:
    """Top-k rows for chunks of users: from the model, or the fallback for unknown users."""

    def __init__(self, catalog: Catalog, record: ModelRecord, k: int) -> None:
        self.catalog = catalog
        self.model = load_model(catalog, record)
        check_kind(self.model, catalog.config, "recommend from")
        self.k = k
        self.lineage = catalog.lineage(catalog.require_head())
        popular = catalog.rows(POPULAR_SQL, {"lineage": catalog.lineage(record.version)})
        self.popular = [item for item, _ in popular]
        self.popularity = dict(popular)
        # Shop customers reorder: with implicit feedback and evaluate.exclude_seen off,
        # the items a user already bought stay candidates.
        config = catalog.config
        self.exclude_seen = not is_implicit(config) or config.evaluate.exclude_seen
        self._items_registered = False

    def seen(self, users: Sequence[str]) -> dict[Hashable, set[Hashable]]:
        found = self.catalog.rows(SEEN_SQL, {"lineage": self.lineage, "users": list(users)})
        return {user: set(items) for user, items in found}

    def seen_rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What each user has rated, as model item rows in compressed rows (indptr, rows)."""
        con = self.catalog.con
        if not self._items_registered:
            items = self.model.item_ids_
            con.register("model_items", {"item_id": items, "item_row": np.arange(items.size)})
            self._items_registered = True
        con.register("chunk_users", {"user_id": users, "position": np.arange(users.size)})
        try:
            found = con.execute(SEEN_ROWS_SQL, {"lineage": self.lineage}).fetchnumpy()
        finally:
            con.unregister("chunk_users")
        positions = np.asarray(found["position"], dtype=np.int64)
        indptr = np.searchsorted(positions, np.arange(users.size + 1))
        return indptr, np.asarray(found["item_row"], dtype=np.int64)

    def rows(self, users: Sequence[str]) -> dict[str, np.ndarray]:
        """The rows of these users' lists as columns, users in the order given."""
        ids = np.asarray(users, dtype=object)
        index = self.model.user_index_
        user_rows = np.fromiter((index.get(u, -1) for u in users), np.int64, ids.size)
        known = user_rows >= 0
        items = np.full((ids.size, self.k), None, dtype=object)
        scores = np.full((ids.size, self.k), -np.inf)

        # Known users: the model's lists, a batch of users per matrix product.
        if known.any() and hasattr(self.model, "top_k_rows"):
            if self.exclude_seen:
                indptr, seen = self.seen_rows(ids[known])
            else:
                indptr, seen = np.zeros(int(known.sum()) + 1, np.int64), np.zeros(0, np.int64)
            rows, best = self.model.top_k_rows(user_rows[known], self.k, indptr, seen)
            listed = self.model.item_ids_[rows]
            listed[rows < 0] = None
            items[known], scores[known] = listed, best
        elif known.any():
            # A model without top_k_rows (implicit feedback) takes the seen items by id.
            seen_ids = self.seen(ids[known].tolist()) if self.exclude_seen else {}
            items[known], scores[known] = self.model.top_k(
                ids[known], self.k, exclude=seen_ids or None
            )

        # Unknown users: the popular items they have not rated, scored by rating count.
        if not known.all():
            strangers = ids[~known].tolist()
            seen_ids = self.seen(strangers) if self.exclude_seen else {}
            lists = fixed_order_lists(self.popular, strangers, seen_ids, self.k)
            for row, picks in zip(np.flatnonzero(~known), lists, strict=True):
                items[row, : len(picks)] = picks
                scores[row, : len(picks)] = [self.popularity[item] for item in picks]

        source = np.where(known, "model", "most_popular").astype(object)
        return _columns(ids, items, scores, source)


def _columns(
    users: np.ndarray, items: np.ndarray, scores: np.ndarray, source: np.ndarray
) -> dict[str, np.ndarray]:
    """Flatten (users, k) arrays of items and scores into rows, dropping empty places."""
    filled = (items != None).ravel()  # noqa: E711 - elementwise over an object array
    n_users, k = items.shape
    return {
        "user_id": np.repeat(users, k)[filled],
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n_users)[filled],
        "item_id": items.ravel()[filled],
        "score": scores.ravel()[filled].astype(np.float64),
        "source": np.repeat(source, k)[filled],
    }


def recommend_user(
    catalog: Catalog, user: str, *, k: int | None = None, model_version: int | None = None
) -> UserRecommendations:
    """One user's top ``k`` items, without the items the user has rated.

    Parameters
    ----------
    catalog
        An open catalog.
    user
        The user id, as in the data files.
    k
        Items to list; by default ``evaluate.k``.
    model_version
        Ask the model trained through this version instead of the serving one.

    Returns
    -------
    UserRecommendations
        With ``source == "most_popular"`` when the model does not know the user.

    Raises
    ------
    UsageError
        If no model serves yet, ``k`` is below 1, or ``model_version`` is not on the
        head's lineage or no model was trained through it.
    IntegrityError
        If the model file is missing or does not match its recorded sha256.
    """
    k = _check_k(catalog, k)
    record = _model_record(catalog, model_version)
    lister = _Lister(catalog, record, k)
    user = normalise_id(user, catalog.config.ingest)
    rows = lister.rows([user])
    source = "model" if user in lister.model.user_index_ else "most_popular"
    return UserRecommendations(
        user_id=user,
        model_version=record.version,
        model_id=record.model_id,
        k=k,
        source=source,
        seen=len(lister.seen([user]).get(user, ())),
        items=[
            Recommendation(int(rank), str(item), float(score))
            for rank, item, score in zip(rows["rank"], rows["item_id"], rows["score"], strict=True)
        ],
    )


def recommend_all(
    catalog: Catalog,
    out: Path,
    *,
    k: int | None = None,
    model_version: int | None = None,
    progress: Callable[[str], None] | None = None,
    chunk_users: int = CHUNK_USERS,
) -> ExportResult:
    """Write every user's top ``k`` items to a CSV or Parquet file, in chunks of users.

    The users are those with a rating on the head's lineage; each gets the model's list, or
    the most-popular fallback when the model does not know them (``source`` says which).
    Each chunk of lists is appended to a staging DuckDB file beside ``out``, which DuckDB
    copies to ``out`` (through a temporary name, then renamed into place): memory holds
    one chunk at a time, never the whole output.

    Parameters
    ----------
    catalog
        An open catalog.
    out
        The file to write; its extension picks the format: ``.csv`` or ``.parquet``.
    k
        Items per user; by default ``evaluate.k``.
    model_version
        Ask the model trained through this version instead of the serving one.
    progress
        Called with a short note before each chunk.
    chunk_users
        Users scored at once.

    Returns
    -------
    ExportResult

    Raises
    ------
    UsageError
        If no model serves yet, the extension is neither ``.csv`` nor ``.parquet``, ``k``
        is below 1, or ``model_version`` is not on the head's lineage or no model was
        trained through it.
    IntegrityError
        If the model file is missing or does not match its recorded sha256.
    """
    started = time.perf_counter()
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot tell the format of {str(out)!r} from its extension {out.suffix!r}; "
            f"name the file with one of {', '.join(FORMATS)}"
        )
    k = _check_k(catalog, k)
    record = _model_record(catalog, model_version)
    lister = _Lister(catalog, record, k)
    users = [row[0] for row in catalog.rows(USERS_SQL, {"lineage": lister.lineage})]
    chunks = range(0, len(users), chunk_users)

    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    rows = fallback = 0
    try:
        with duckdb.connect(str(workdir / "staging.duckdb")) as staging:
            limit = catalog.config.runtime.memory_limit
            if limit:
                staging.execute("SET memory_limit = ?", [limit])
            staging.execute(STAGING_SQL)
            for number, start in enumerate(chunks, start=1):
                chunk = users[start : start + chunk_users]
                if progress:
                    last = start + len(chunk)
                    progress(f"chunk {number}/{len(chunks)} (users {start + 1}-{last})")
                columns = lister.rows(chunk)
                fallback += sum(u not in lister.model.user_index_ for u in chunk)
                rows += int(columns["rank"].size)
                staging.register("chunk", columns)
                staging.execute(INSERT_SQL)
                staging.unregister("chunk")

            # Copied to a temporary name first, so a reader never sees half a file.
            partial = workdir / f"partial{out.suffix}"
            staging.execute(COPY_SQL[fmt], {"path": str(partial)})
        os.replace(partial, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.debug(
        "wrote %d rows for %d users to %s in %.3f s",
        rows,
        len(users),
        out,
        time.perf_counter() - started,
    )
    return ExportResult(
        path=out,
        format=fmt,
        model_version=record.version,
        model_id=record.model_id,
        k=k,
        users=len(users),
        users_fallback=fallback,
        rows=rows,
    )


def _check_k(catalog: Catalog, k: int | None) -> int:
    if k is None:
        return catalog.config.evaluate.k
    if isinstance(k, bool) or k < 1:
        raise UsageError(f"-k must be a whole number of at least 1, got {k!r}")
    return int(k)


def _model_record(catalog: Catalog, model_version: int | None) -> ModelRecord:
    """The serving model, or the one trained through ``model_version``."""
    head = catalog.require_head()
    if model_version is None:
        record = serving_model(catalog, head)
        if record is None:
            # Not 'nothing to do': a cron job waiting for lists must not read this as done.
            raise UsageError(
                "no model serves yet; run 'incr update' first ('incr status' shows why)"
            )
        return record
    return model_trained_through(catalog, model_version)


__all__ = [
    "ExportResult",
    "Recommendation",
    "UserRecommendations",
    "recommend_all",
    "recommend_user",
]
