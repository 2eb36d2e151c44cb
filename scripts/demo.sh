#!/usr/bin/env bash
# The whole cycle on sample_data/, as a cron job would run it, into a fresh catalog:
# ingest each file, then clean, featurize, update and evaluate; a report at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# Its own catalog in demo/, whatever INCR_CATALOG and INCR_CONFIG say in the calling shell:
# the demo removes only what an earlier demo left, never a catalog of yours.
unset INCR_CONFIG
export INCR_CATALOG=demo/catalog.duckdb
rm -rf demo

first=1
for file in sample_data/delta-*.csv; do
    echo "== $file"
    incr ingest "$file"
    incr clean
    incr featurize
    incr update
    # The first file has no model trained before it, so there is nothing to score yet.
    if [ "$first" = 0 ]; then incr evaluate; fi
    first=0
done

echo "== rollback to v3, then replay the later files on a new branch"
incr rollback --to v3
for file in sample_data/delta-04.csv sample_data/delta-05.csv sample_data/delta-06.csv; do
    incr ingest "$file" && incr clean && incr featurize && incr update && incr evaluate
done

incr log
incr status
incr evaluate --report
