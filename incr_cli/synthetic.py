"""Deterministic synthetic rating streams for demos, tests and benchmarks.

The generator draws a hidden "true" biased factor model once from the seed, then
emits ratings in time order, block by block, so that tens of millions of rows can
be produced with memory bounded by the block size rather than the stream length.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "generate_ratings", "write_deltas"]

#: Column names of every chunk and of the CSV header, in file order.
COLUMNS = ("user_id", "item_id", "rating", "timestamp")

# Randomness is drawn per block of this many rows, each block from its own
# child seed, so the stream is the same whatever ``chunk_size`` the caller asks
# for. It also bounds the window inside which repeated pairs are re-drawn.
_BLOCK_ROWS = 1 << 20

# Share of users and items present from the first row; the rest arrive at
# uniformly spread points of the stream.
_INITIAL_USER_SHARE = 0.6
_INITIAL_ITEM_SHARE = 0.8

# Zipf exponents: weight of the r-th most active user / popular item ~ r**-alpha.
_USER_ALPHA = 0.8
_ITEM_ALPHA = 1.1

# No user is expected to rate more than this share of the catalogue.
_MAX_USER_SHARE_OF_CATALOGUE = 0.25

# Upper bound on a user's expected number of ratings of any one item. Heavy
# users have their item distribution flattened at the head to respect it, which
# mimics how real heavy raters move on from the hits into the long tail.
_MAX_PAIR_RATE = 0.3

# A denser matrix cannot be sampled without many repeated pairs.
_MAX_DENSITY = 0.1

# Rounds of re-drawing for a repeated (user, item) pair or a not-yet-released
# item before giving up and keeping the draw.
_REDRAW_ROUNDS = 12

# True model: global mean and standard deviations of the parts of a rating.
_MU = 3.4
_USER_BIAS_SD = 0.45
_ITEM_BIAS_SD = 0.4
_INTERACTION_SD = 0.7
_NOISE_SD = 0.65
# Correlation of an item's bias with its log popularity: hits are rated higher.
_POPULARITY_QUALITY_CORR = 0.5

# Time profile: traffic grows over the period, peaks each evening (UTC) and is
# higher at weekends. Resolution of the profile in seconds.
_GROWTH = 0.5
_DAILY_AMPLITUDE = 0.6
_DAILY_PEAK_HOUR = 20
_WEEKEND_FACTOR = 1.25
_PROFILE_STEP = 600

_SECONDS_PER_DAY = 86_400

# Lower bounds of the integer arguments of generate_ratings, checked up front.
_MINIMUM = {
    "n_users": 1,
    "n_items": 1,
    "n_ratings": 1,
    "n_factors": 1,
    "days": 1,
    "chunk_size": 1,
}

_FORMATS = ("csv",)


@dataclass(frozen=True)
class _World:
    """Hidden parameters of one synthetic population, all drawn from the seed.

    Users and items are indexed ``0..n-1`` in order of arrival, so an id is
    ``index + 1`` and the users present at stream position ``s`` are a prefix.
    """

    n_items: int
    start_s: int  # unix seconds of the first instant
    user_bias: np.ndarray
    item_bias: np.ndarray
    # (n_factors, n) so that gathering one factor for a block is contiguous
    user_factors_t: np.ndarray
    item_factors_t: np.ndarray

    user_arrival: np.ndarray  # stream position in [0, 1), non-decreasing
    user_cum_weight: np.ndarray  # running sum of activity weights, arrival order
    item_arrival: np.ndarray  # stream position in [0, 1) by item index

    rank_item: np.ndarray  # item index at each popularity rank, most popular first
    rank_cum_weight: np.ndarray  # [0, w_0, w_0 + w_1, ...] over popularity ranks
    user_tau: np.ndarray  # per-user cap on an item weight (head flattening)
    user_head: np.ndarray  # number of ranks whose weight exceeds the cap
    user_norm: np.ndarray  # sum of the capped weights
    user_strata: np.ndarray  # m_u: blocks draw from m_u disjoint rank classes
    user_stratum_shift: np.ndarray  # o_u: class of block j is (j + o_u) mod m_u
    initial_cum_weight: np.ndarray  # running weight over items present at start

    time_cdf: np.ndarray  # share of traffic before each profile point
    time_offsets: np.ndarray  # seconds after the start of each profile point


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _start_seconds(start: str | dt.date) -> int:
    """Unix seconds of midnight UTC on ``start``."""
    if isinstance(start, dt.datetime):
        day = start.date()
    elif isinstance(start, dt.date):
        day = start
    else:
        try:
            day = dt.date.fromisoformat(str(start))
        except ValueError:
            raise ValueError(f"start must be a date written YYYY-MM-DD, got {start!r}") from None
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return int(midnight.timestamp())


def _arrivals(rng: np.random.Generator, n: int, initial_share: float) -> np.ndarray:
    """Sorted arrival positions: a share at 0, the rest uniform on (0, 1)."""
    n_initial = max(1, round(initial_share * n))
    late = np.sort(rng.random(n - n_initial))
    return np.concatenate((np.zeros(n_initial), late))


def _expected_counts(
    n_ratings: int, weight: np.ndarray, arrival: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Expected ratings per user, and the running weight, for arrival-ordered users.

    A row at position ``s`` picks user ``u`` with chance ``w_u / W(s)``, where
    ``W(s)`` is the weight of the users arrived by ``s``, so
    ``c_u = N * w_u * integral from a_u to 1 of ds / W(s)``. ``W`` is a step
    function that changes at each arrival, so the integral is a sum of segments.
    """
    cum = np.cumsum(weight)
    segment = np.diff(np.append(arrival, 1.0))
    # tail[k] = sum over segments j >= k of len_j / W_j
    tail = np.cumsum((segment / cum)[::-1])[::-1]
    return n_ratings * weight * tail, cum


def _flatten_head(
    item_weight: np.ndarray, cum_weight: np.ndarray, max_prob: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, cap item weights at ``tau`` so no item's chance exceeds ``max_prob``.

    With weights capped, ``P(item r) = min(w_r, tau) / Z(tau)`` and
    ``Z(tau) = h * tau + sum of w_r over r >= h``, ``h`` being the number of
    weights above ``tau``. The largest chance ``tau / Z(tau)`` grows with ``tau``,
    from ``1 / n`` (uniform) at the smallest weight to ``w_0 / sum(w)`` (no cap)
    at the largest, so a bisection on ``log(tau)`` finds the cap.
    """
    neg_weight = -item_weight  # ascending, for searchsorted

    def capped(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        head = np.searchsorted(neg_weight, -tau, side="left")
        return head, head * tau + (cum_weight[-1] - cum_weight[head])

    lo = np.full(max_prob.shape, math.log(item_weight[-1]))
    hi = np.full(max_prob.shape, math.log(item_weight[0]))
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        head, norm = capped(np.exp(mid))
        too_peaked = np.exp(mid) / norm > max_prob
        hi = np.where(too_peaked, mid, hi)
        lo = np.where(too_peaked, lo, mid)

    # Users light enough to need no cap keep the plain popularity weights.
    uncapped = item_weight[0] / cum_weight[-1] <= max_prob
    # A user too heavy for any cap (max_prob below 1/n) ends at the smallest
    # weight, which makes the distribution uniform: the most even it can be.
    tau = np.where(uncapped, item_weight[0], np.exp(lo))
    head, norm = capped(tau)
    return tau, head, norm


def _time_profile(start_s: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative traffic share at each profile point over ``days`` days."""
    n_cells = days * _SECONDS_PER_DAY // _PROFILE_STEP
    offsets = np.arange(n_cells + 1, dtype=np.int64) * _PROFILE_STEP
    mid = offsets[:-1] + _PROFILE_STEP / 2.0

    # rate(t) = growth(t) * daily(t) * weekly(t), piecewise constant per cell
    growth = 1.0 + _GROWTH * mid / offsets[-1]
    hour = ((start_s + mid) % _SECONDS_PER_DAY) / 3600.0
    daily = 1.0 + _DAILY_AMPLITUDE * np.cos(2.0 * np.pi * (hour - _DAILY_PEAK_HOUR) / 24)
    # 1970-01-01 was a Thursday: day index 2 and 3 of the week are Sat and Sun.
    weekday = ((start_s + mid) // _SECONDS_PER_DAY) % 7
    weekly = np.where((weekday == 2) | (weekday == 3), _WEEKEND_FACTOR, 1.0)

    cdf = np.concatenate(([0.0], np.cumsum(growth * daily * weekly)))
    return cdf / cdf[-1], offsets


def _build_world(
    n_users: int,
    n_items: int,
    n_ratings: int,
    n_factors: int,
    seed: int,
    start_s: int,
    days: int,
) -> _World:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))

    # Arrival order defines the index; activity and popularity ranks are shuffled
    # independently of it, so an early id says nothing about how busy it is.
    user_arrival = _arrivals(rng, n_users, _INITIAL_USER_SHARE)
    item_arrival = _arrivals(rng, n_items, _INITIAL_ITEM_SHARE)
    user_weight = (1.0 + rng.permutation(n_users)) ** -_USER_ALPHA
    rank_item = rng.permutation(n_items)
    item_weight = np.arange(1, n_items + 1, dtype=np.float64) ** -_ITEM_ALPHA

    # Cap heavy users at a share of the catalogue: scaling a weight down raises
    # everyone else's share, so repeat until it settles.
    cap = max(1.0, _MAX_USER_SHARE_OF_CATALOGUE * n_items)
    for _ in range(20):
        counts, user_cum = _expected_counts(n_ratings, user_weight, user_arrival)
        if counts.max() <= cap * (1.0 + 1e-6):
            break
        user_weight = user_weight * np.minimum(1.0, cap / counts)
    counts, user_cum = _expected_counts(n_ratings, user_weight, user_arrival)

    rank_cum = np.concatenate(([0.0], np.cumsum(item_weight)))
    tau, head, norm = _flatten_head(
        item_weight, rank_cum, _MAX_PAIR_RATE / np.maximum(counts, 1e-12)
    )

    # Repeats inside a block are re-drawn, but a heavy user's blocks would still
    # overlap. Giving each block of such a user its own class of popularity
    # ranks (r = o_u + j mod m_u) keeps the blocks apart. Snapping a draw to
    # its class moves it by fewer than m_u ranks, which only matters where
    # weights differ, so m_u stays within half the user's flat head.
    n_blocks = -(-n_ratings // _BLOCK_ROWS)
    strata = np.clip(head // 2, 1, min(n_blocks, n_items)).astype(np.int64)
    shift = rng.integers(0, strata)

    # Items present from the start, by index, with their popularity weight: the
    # fallback catalogue when a draw keeps landing on unreleased items.
    weight_by_item = np.empty(n_items)
    weight_by_item[rank_item] = item_weight
    n_initial_items = int(np.count_nonzero(item_arrival == 0.0))
    initial_cum = np.cumsum(weight_by_item[:n_initial_items])

    # Biases; the item bias leans towards popular items.
    user_bias = rng.normal(0.0, _USER_BIAS_SD, n_users)
    # Popularity enters through its rank, as a unit-variance uniform score in
    # [-sqrt(3), sqrt(3)]; log weights would give the few hits huge scores.
    rank_of_item = np.empty(n_items)
    rank_of_item[rank_item] = np.arange(n_items)
    z_pop = math.sqrt(12.0) * (0.5 - (rank_of_item + 0.5) / n_items)
    rho = _POPULARITY_QUALITY_CORR
    item_bias = _ITEM_BIAS_SD * (
        rho * z_pop + math.sqrt(1.0 - rho * rho) * rng.standard_normal(n_items)
    )

    # p_u . q_i is a sum of n_factors products of N(0, s^2) terms with
    # variance n_factors * s**4, so s = (sd**2 / n_factors) ** (1/4).
    factor_sd = (_INTERACTION_SD**2 / n_factors) ** 0.25
    user_factors_t = rng.normal(0.0, factor_sd, (n_factors, n_users))
    item_factors_t = rng.normal(0.0, factor_sd, (n_factors, n_items))

    time_cdf, time_offsets = _time_profile(start_s, days)

    return _World(
        n_items=n_items,
        start_s=start_s,
        user_bias=user_bias,
        item_bias=item_bias,
        user_factors_t=user_factors_t,
        item_factors_t=item_factors_t,
        user_arrival=user_arrival,
        user_cum_weight=user_cum,
        item_arrival=item_arrival,
        rank_item=rank_item,
        rank_cum_weight=rank_cum,
        user_tau=tau,
        user_head=head,
        user_norm=norm,
        user_strata=strata,
        user_stratum_shift=shift,
        initial_cum_weight=initial_cum,
        time_cdf=time_cdf,
        time_offsets=time_offsets,
    )


def _draw_users(rng: np.random.Generator, world: _World, position: np.ndarray) -> np.ndarray:
    """Users weighted by activity among those arrived by each row's position."""
    arrived = np.searchsorted(world.user_arrival, position, side="right")
    # Inverse CDF over the arrived prefix: u = first index with cum_w > v.
    v = rng.random(position.size) * world.user_cum_weight[arrived - 1]
    users = np.searchsorted(world.user_cum_weight, v, side="right")
    return np.minimum(users, arrived - 1)


def _draw_capped_items(
    rng: np.random.Generator, world: _World, users: np.ndarray, block: int
) -> np.ndarray:
    """Items from each user's head-flattened popularity distribution.

    The rank drawn is snapped down to the user's rank class for this block.
    """
    tau = world.user_tau[users]
    head = world.user_head[users]
    cum = world.rank_cum_weight
    v = rng.random(users.size) * world.user_norm[users]

    # v below h * tau falls in the flat head of h equally likely ranks; beyond
    # it, walk the plain cumulative weights from rank h on.
    flat = v < head * tau
    head_rank = np.floor(v / tau)
    tail_rank = np.searchsorted(cum, cum[head] + (v - head * tau), side="right") - 1
    rank = np.where(flat, head_rank, tail_rank).astype(np.int64)
    np.clip(rank, 0, world.n_items - 1, out=rank)

    # r' = r - ((r - c) mod m), the nearest rank at or below r in class c; a
    # rank below c itself wraps up to c (c < m <= n_items, so it exists).
    m = world.user_strata[users]
    c = (block + world.user_stratum_shift[users]) % m
    rank -= (rank - c) % m
    rank[rank < 0] += m[rank < 0]
    return world.rank_item[rank]


def _draw_items(
    rng: np.random.Generator,
    world: _World,
    users: np.ndarray,
    position: np.ndarray,
    block: int,
) -> np.ndarray:
    """Items for each (user, position), re-drawing items not yet released."""
    items = np.empty(users.size, dtype=np.int64)
    todo = np.arange(users.size)
    for _ in range(_REDRAW_ROUNDS):
        drawn = _draw_capped_items(rng, world, users[todo], block)
        released = world.item_arrival[drawn] <= position[todo]
        items[todo[released]] = drawn[released]
        todo = todo[~released]
        if todo.size == 0:
            return items

    # NOTE: only reached when unreleased items hold most of a user's weight;
    # fall back to the catalogue present from the start, which always exists.
    cum = world.initial_cum_weight
    v = rng.random(todo.size) * cum[-1]
    items[todo] = np.minimum(np.searchsorted(cum, v, side="right"), cum.size - 1)
    return items


def _redraw_repeats(
    rng: np.random.Generator,
    world: _World,
    users: np.ndarray,
    items: np.ndarray,
    position: np.ndarray,
    block: int,
) -> None:
    """Re-draw, in place, items that repeat an earlier (user, item) pair in a block.

    Repeats inside one block are re-drawn, which samples each user's items of the
    block without replacement; repeats across blocks are kept (a re-rating).
    """
    n_items = world.n_items
    key = users * n_items + items
    accepted, first = np.unique(key, return_index=True)
    repeat = np.ones(key.size, dtype=bool)
    repeat[first] = False

    for _ in range(_REDRAW_ROUNDS):
        rows = np.flatnonzero(repeat)
        if rows.size == 0:
            return
        drawn = _draw_items(rng, world, users[rows], position[rows], block)
        new_key = users[rows] * n_items + drawn

        at = np.searchsorted(accepted, new_key)
        taken = accepted[np.minimum(at, accepted.size - 1)] == new_key
        free = np.flatnonzero(~taken)
        # Two repeats may draw the same new pair: keep the first.
        new_unique, first_free = np.unique(new_key[free], return_index=True)
        ok = free[first_free]

        items[rows[ok]] = drawn[ok]
        repeat[rows[ok]] = False
        accepted = np.insert(accepted, np.searchsorted(accepted, new_unique), new_unique)


def _block(
    world: _World, seed: int, index: int, first_row: int, n_rows: int, n_total: int
) -> dict[str, np.ndarray]:
    """Rows ``first_row .. first_row + n_rows - 1`` of the stream."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))

    # Stream positions are sorted uniforms inside this block's slice of [0, 1),
    # so they never decrease from one block to the next.
    lo = first_row / n_total
    hi = (first_row + n_rows) / n_total
    position = np.sort(rng.uniform(lo, hi, n_rows))

    users = _draw_users(rng, world, position)
    items = _draw_items(rng, world, users, position, index)
    _redraw_repeats(rng, world, users, items, position, index)

    # rating = clip(round(mu + b_u + b_i + p_u . q_i + noise), 1, 5)
    score = _MU + world.user_bias[users] + world.item_bias[items]
    for p_f, q_f in zip(world.user_factors_t, world.item_factors_t, strict=True):
        score += p_f[users] * q_f[items]
    score += rng.normal(0.0, _NOISE_SD, n_rows)
    rating = np.clip(np.rint(score), 1.0, 5.0)

    # Position -> time through the inverse of the traffic profile's CDF; the map
    # is monotone, so time order follows stream order.
    offset = np.interp(position, world.time_cdf, world.time_offsets)
    return {
        "user_id": users + 1,
        "item_id": items + 1,
        "rating": rating,
        "timestamp": world.start_s + np.floor(offset).astype(np.int64),
    }


def generate_ratings(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    n_factors: int = 8,
    seed: int = 0,
    start: str | dt.date = "2026-01-05",
    days: int = 42,
    chunk_size: int = 1_000_000,
) -> Iterator[dict[str, np.ndarray]]:
    """Stream realistic synthetic ratings in time order, in chunks.

    A hidden biased factor model is drawn from ``seed`` and ratings are sampled
    from it:

    ``rating = clip(round(mu + b_u + b_i + p_u . q_i + noise), 1, 5)``

    with ``mu = 3.4``, normal biases (an item's bias correlates with its
    popularity, so the ratings given have a mean near 3.55),
    ``n_factors``-dimensional normal factors and normal noise. Ratings are whole
    stars, 1 to 5, with 4 the most common.

    Who rates what:

    - user activity and item popularity follow Zipf-like power laws, with
      shuffled ranks so ids carry no information about either;
    - 60% of users and 80% of items exist from the first row; the rest arrive at
      uniformly spread points of the stream, so every later part brings new users
      and items; ids are numbered from 1 in order of arrival;
    - no user is expected to rate more than a quarter of the catalogue, and heavy
      users' draws are flattened over the most popular items so they move on to
      the long tail rather than keep hitting the same few hits.

    Timestamps cover ``days`` days from midnight UTC of ``start``, with traffic
    that grows over the period, peaks in the evening and is higher at weekends;
    they never decrease along the stream.

    A (user, item) pair can occur more than once, as a re-rating, as in real
    logs. Repeats are rare: they are re-drawn within each block of about a
    million rows and heavy users' blocks draw from disjoint parts of the
    catalogue, so they come up mainly in streams of several million rows
    (about 0.1% of 5 million rows over 100,000 users and 20,000 items).

    Parameters
    ----------
    n_users, n_items
        Sizes of the population, at least 1. Some users and items may receive no
        rating at all.
    n_ratings
        Number of rows, at least 1 and at most a tenth of ``n_users * n_items``
        (real rating matrices are sparser still).
    n_factors
        Dimension of the hidden taste vectors.
    seed
        Seed of every random draw: equal arguments give identical streams.
    start
        First day, ``YYYY-MM-DD`` or a date.
    days
        Length of the period in days.
    chunk_size
        Maximum rows per yielded chunk. The stream itself does not depend on it.

    Yields
    ------
    dict of str to numpy.ndarray
        Chunks with ``user_id`` (int64), ``item_id`` (int64), ``rating``
        (float64) and ``timestamp`` (int64, unix seconds) arrays of equal length.
        Memory use is bounded by about a million rows whatever ``n_ratings``.

    Raises
    ------
    ValueError
        If an argument is out of its range or ``start`` is not a date.

    Examples
    --------
    >>> chunks = list(generate_ratings(50, 40, 120, seed=1, chunk_size=100))
    >>> [len(c["rating"]) for c in chunks]
    [100, 20]
    >>> ratings = np.concatenate([c["rating"] for c in chunks])
    >>> bool(ratings.min() >= 1 and ratings.max() <= 5)
    True
    """
    sizes = {
        "n_users": n_users,
        "n_items": n_items,
        "n_ratings": n_ratings,
        "n_factors": n_factors,
        "days": days,
        "chunk_size": chunk_size,
    }
    checked = {name: _check_int(name, sizes[name], low) for name, low in _MINIMUM.items()}
    seed = _check_int("seed", seed, 0)
    start_s = _start_seconds(start)
    if checked["n_ratings"] > _MAX_DENSITY * checked["n_users"] * checked["n_items"]:
        raise ValueError(
            f"n_ratings must be at most {_MAX_DENSITY:g} * n_users * n_items "
            f"= {int(_MAX_DENSITY * checked['n_users'] * checked['n_items'])}, "
            f"got {checked['n_ratings']}"
        )
    # Validation is done eagerly; the rows come from the inner generator.
    return _generate(start_s=start_s, seed=seed, **checked)


def _generate(
    *,
    n_users: int,
    n_items: int,
    n_ratings: int,
    n_factors: int,
    seed: int,
    start_s: int,
    days: int,
    chunk_size: int,
) -> Iterator[dict[str, np.ndarray]]:
    world = _build_world(n_users, n_items, n_ratings, n_factors, seed, start_s, days)

    buffer: dict[str, np.ndarray] | None = None
    offset = 0
    n_blocks = -(-n_ratings // _BLOCK_ROWS)
    for index in range(n_blocks):
        first_row = index * _BLOCK_ROWS
        block = _block(
            world,
            seed,
            index,
            first_row,
            min(_BLOCK_ROWS, n_ratings - first_row),
            n_ratings,
        )

        # Carry the unsent tail of the previous block over and cut chunks.
        if buffer is not None and offset < buffer["rating"].size:
            block = {name: np.concatenate((buffer[name][offset:], block[name])) for name in COLUMNS}
        buffer, offset = block, 0
        while buffer["rating"].size - offset >= chunk_size:
            yield {name: buffer[name][offset : offset + chunk_size] for name in COLUMNS}
            offset += chunk_size

    if buffer is not None and offset < buffer["rating"].size:
        yield {name: buffer[name][offset:] for name in COLUMNS}


def _file_sizes(n_ratings: int, n_deltas: int) -> list[int]:
    """Half the rows in the first file, the rest split as evenly as possible."""
    if n_deltas == 1:
        return [n_ratings]
    first = n_ratings // 2
    rest, extra = divmod(n_ratings - first, n_deltas - 1)
    return [first] + [rest + (i < extra) for i in range(n_deltas - 1)]


def write_deltas(
    out_dir: str | os.PathLike[str],
    n_users: int,
    n_items: int,
    n_ratings: int,
    n_deltas: int,
    *,
    seed: int = 0,
    fmt: str = "csv",
) -> list[Path]:
    """Write a synthetic stream as a base file followed by delta files.

    The stream of :func:`generate_ratings` is cut in time order into
    ``delta-01.csv``, ``delta-02.csv``, ...: the first file holds half the rows
    (the base) and the others share the rest equally, each file later in time
    than the one before. Every file is a comma-separated table with the header
    ``user_id,item_id,rating,timestamp``; ratings are written as whole numbers.
    Files of the same names are overwritten; other files are left alone.

    Parameters
    ----------
    out_dir
        Directory for the files, created if missing.
    n_users, n_items, n_ratings
        As for :func:`generate_ratings`.
    n_deltas
        Number of files, at least 1; ``n_ratings`` must be at least
        ``2 * (n_deltas - 1)`` so that every file holds a row.
    seed
        Seed of the stream.
    fmt
        File format; only ``"csv"`` is supported.

    Returns
    -------
    list of pathlib.Path
        The files written, in time order.

    Raises
    ------
    ValueError
        If an argument is out of its range or ``fmt`` is not supported.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_deltas(tmp, 60, 50, 200, 3, seed=7)
    ...     print([p.name for p in paths])
    ...     print([len(p.read_text().splitlines()) - 1 for p in paths])
    ['delta-01.csv', 'delta-02.csv', 'delta-03.csv']
    [100, 50, 50]
    """
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    n_deltas = _check_int("n_deltas", n_deltas, 1)
    n_ratings = _check_int("n_ratings", n_ratings, 1)
    if n_ratings < 2 * (n_deltas - 1):
        raise ValueError(
            f"n_ratings must be at least 2 * (n_deltas - 1) = {2 * (n_deltas - 1)} "
            f"so that every file holds a row, got {n_ratings}"
        )
    chunks = generate_ratings(n_users, n_items, n_ratings, seed=seed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(n_deltas)))
    paths = [out / f"delta-{i:0{width}d}.{fmt}" for i in range(1, n_deltas + 1)]
    sizes = _file_sizes(n_ratings, n_deltas)

    file_index = 0
    left_in_file = sizes[0]
    handle = paths[0].open("w", encoding="ascii", newline="\n")
    try:
        handle.write(",".join(COLUMNS) + "\n")
        for chunk in chunks:
            # Whole-star ratings, so every column is written as an integer.
            table = np.column_stack([chunk[name].astype(np.int64, copy=False) for name in COLUMNS])
            while table.shape[0]:
                if left_in_file == 0:
                    handle.close()
                    file_index += 1
                    left_in_file = sizes[file_index]
                    handle = paths[file_index].open("w", encoding="ascii", newline="\n")
                    handle.write(",".join(COLUMNS) + "\n")
                part, table = table[:left_in_file], table[left_in_file:]
                np.savetxt(handle, part, fmt="%d", delimiter=",")
                left_in_file -= part.shape[0]
    finally:
        handle.close()
    return paths
