"""incr: keep a recommender fresh from files of new interactions."""

from __future__ import annotations

__version__ = "0.1.0"
