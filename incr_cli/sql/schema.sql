-- The catalog's tables. Every data table is keyed by the version that wrote its rows;
-- nothing is ever rewritten in place, so moving the head is all a rollback needs.

CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    parent INTEGER,
    created_at TIMESTAMP NOT NULL,
    command VARCHAR NOT NULL,
    args VARCHAR NOT NULL,
    source_path VARCHAR,
    source_size BIGINT,
    source_sha256 VARCHAR,
    rows_read BIGINT,
    rows_accepted BIGINT,
    rows_rejected BIGINT,
    tool_version VARCHAR NOT NULL
);

-- One row per stage a version has been through: ingest, clean, featurize, update.
CREATE TABLE IF NOT EXISTS stages (
    version INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    seconds DOUBLE NOT NULL,
    command VARCHAR NOT NULL,
    args VARCHAR NOT NULL,
    tool_version VARCHAR NOT NULL,
    details VARCHAR NOT NULL,
    PRIMARY KEY (version, stage)
);

-- Every move of the head, so that 'incr log' can show rollbacks.
CREATE TABLE IF NOT EXISTS head_moves (
    moved_at TIMESTAMP NOT NULL,
    from_version INTEGER,
    to_version INTEGER NOT NULL,
    command VARCHAR NOT NULL
);

-- The rows ingest accepted, in a compact layout; read them through the view ratings_raw.
-- An id whose text is a canonical integer is stored as that integer (user_n), any other
-- id as its text (user_s), so that '007' stays '007'; a time as whole seconds since the
-- epoch and the microseconds past them, which compress far better than microseconds.
CREATE TABLE IF NOT EXISTS raw_rows (
    version INTEGER NOT NULL,
    line BIGINT NOT NULL,
    user_n BIGINT,
    user_s VARCHAR,
    item_n BIGINT,
    item_s VARCHAR,
    rating DOUBLE NOT NULL,
    ts_s BIGINT NOT NULL,
    ts_us INTEGER NOT NULL
);

CREATE OR REPLACE VIEW ratings_raw AS
SELECT version, line,
       coalesce(user_s, CAST(user_n AS VARCHAR)) AS user_id,
       coalesce(item_s, CAST(item_n AS VARCHAR)) AS item_id,
       rating,
       make_timestamp(ts_s * 1000000 + ts_us) AS ts
FROM raw_rows;

CREATE TABLE IF NOT EXISTS rejects (
    version INTEGER NOT NULL,
    line BIGINT,
    reason VARCHAR NOT NULL,
    raw VARCHAR
);

-- What clean changed in a version's raw rows: a row it removed (value NULL) or the new
-- value of a row it kept (a purchase reduced by a cancellation). The rows it kept as they
-- were are not stored again: ratings_clean reads them from raw_rows.
CREATE TABLE IF NOT EXISTS clean_changes (
    version INTEGER NOT NULL,
    line BIGINT NOT NULL,
    value DOUBLE
);

-- Clean rows stored whole, as catalogs made before clean_changes held them.
CREATE TABLE IF NOT EXISTS clean_rows (
    version INTEGER NOT NULL,
    user_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    rating DOUBLE NOT NULL,
    ts TIMESTAMP NOT NULL
);

-- The clean rows of every cleaned version: its raw rows less those clean removed, with the
-- values clean changed.
CREATE OR REPLACE VIEW ratings_clean AS
SELECT r.version, r.user_id, r.item_id, coalesce(c.value, r.rating) AS rating, r.ts
FROM ratings_raw r
LEFT JOIN clean_changes c ON c.version = r.version AND c.line = r.line
WHERE r.version IN (SELECT version FROM stages WHERE stage = 'clean')
    AND (c.line IS NULL OR c.value IS NOT NULL)
UNION ALL
SELECT version, user_id, item_id, rating, ts FROM clean_rows;

-- What clean removed, per version and reason.
CREATE TABLE IF NOT EXISTS clean_removed (
    version INTEGER NOT NULL,
    reason VARCHAR NOT NULL,
    rows BIGINT NOT NULL
);

-- Feature rows are written only for the users (items) a version touched, holding their
-- running totals as of that version; the features as of version v are, per user, the row
-- of the newest version on v's lineage.
CREATE TABLE IF NOT EXISTS user_features (
    version INTEGER NOT NULL,
    user_id VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    mean DOUBLE NOT NULL,
    m2 DOUBLE NOT NULL,
    first_ts TIMESTAMP NOT NULL,
    last_ts TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS item_features (
    version INTEGER NOT NULL,
    item_id VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    mean DOUBLE NOT NULL,
    m2 DOUBLE NOT NULL,
    first_ts TIMESTAMP NOT NULL,
    last_ts TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS models (
    model_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    base_model_id INTEGER,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    seconds DOUBLE NOT NULL,
    rows_trained BIGINT NOT NULL,
    rows_replayed BIGINT NOT NULL,
    n_users BIGINT NOT NULL,
    n_items BIGINT NOT NULL,
    params VARCHAR NOT NULL,
    environment VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS metrics (
    version INTEGER NOT NULL,
    model_id INTEGER,
    system VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE,
    created_at TIMESTAMP NOT NULL
);

-- The quality gate's decision on every model 'incr update' trains: promoted, rejected
-- (kept, but never serving) or forced (promoted by --force despite the gate). Figures
-- holds, per metric, the candidate's and the current model's values and the limit applied.
CREATE TABLE IF NOT EXISTS gate_decisions (
    model_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    candidate_id INTEGER NOT NULL,
    current_model_id INTEGER,
    decision VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    holdout_rows BIGINT NOT NULL,
    figures VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
