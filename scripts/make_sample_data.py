"""Write the synthetic delta files in sample_data/ (deterministic: same seed, same bytes).

Usage: python scripts/make_sample_data.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from incr_cli.synthetic import write_deltas

# A few thousand users and items, six files over six weeks: a base holding half the
# ratings, then five deltas, each later in time than the one before.
SAMPLE = {"n_users": 3000, "n_items": 2000, "n_ratings": 50_000, "n_deltas": 6, "seed": 42}


def main(out_dir: Path) -> None:
    for path in write_deltas(out_dir, **SAMPLE):
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "sample_data")
