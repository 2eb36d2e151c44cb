"""Model files: written atomically beside the catalog, checked before they are loaded.

Loading a joblib file runs code, so a file is unpickled only after its sha256 matches the
one recorded when it was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .catalog import Catalog, describe_environment, now
from .config import Config, is_implicit
from .errors import IntegrityError, UsageError

log = logging.getLogger(__name__)

# What a pickled model depends on: another version of any may load it differently.
PICKLE_DEPENDENCIES = ("python", "numpy", "scikit-learn", "joblib")

# Each set of (name, saved, current) mismatches already warned about in this process.
_warned: set[tuple[tuple[str, str, str], ...]] = set()


@dataclass(frozen=True)
class ModelRecord:
    model_id: int
    version: int
    kind: str
    base_model_id: int | None
    path: str
    sha256: str
    rows_trained: int
    environment: dict[str, str]


MODEL_COLUMNS = "model_id, version, kind, base_model_id, path, sha256, rows_trained, environment"


def _record(row: tuple[Any, ...]) -> ModelRecord:
    model_id, version, kind, base_model_id, path, sha256, rows_trained, environment = row
    return ModelRecord(
        model_id, version, kind, base_model_id, path, sha256, rows_trained, json.loads(environment)
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file whole or not at all: ``write`` fills a temporary file beside ``path``,
    which is flushed to disk and then renamed into place.

    A process killed before the rename leaves only a ``.tmp`` file that no version
    references, which ``incr verify`` lists and ``incr gc`` removes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file readable by its owner alone; a model or report is
        # read by whoever may read the catalog beside it (a serving process, a browser),
        # so it gets the mode any new file gets.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask; reading it means setting it, so it is set straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_model(
    catalog: Catalog,
    model: Any,
    *,
    version: int,
    kind: str,
    base_model_id: int | None,
    seconds: float,
    rows_trained: int,
    rows_replayed: int,
) -> ModelRecord:
    """Write the model to a temporary name, flush it, rename it into place, record it."""
    catalog.model_dir.mkdir(parents=True, exist_ok=True)
    model_id = int(catalog.one("SELECT coalesce(max(model_id), 0) + 1 FROM models"))
    # NOTE: joblib (and numpy behind it) is imported here, not at the top: 'incr status'
    # and 'incr log' reach this module and must start fast without a model to touch.
    import joblib

    path = catalog.model_dir / f"v{version}-{kind}-m{model_id}.joblib"
    write_atomically(path, lambda out: joblib.dump(model, out))
    catalog.new_files.append(path)
    digest = file_sha256(path)
    environment = describe_environment()
    catalog.con.execute(
        "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            model_id,
            version,
            kind,
            base_model_id,
            path.name,
            digest,
            now(),
            seconds,
            rows_trained,
            rows_replayed,
            len(getattr(model, "user_ids_", ())),
            len(getattr(model, "item_ids_", ())),
            json.dumps(model.get_params(), default=str, sort_keys=True),
            json.dumps(environment, sort_keys=True),
        ],
    )
    return ModelRecord(
        model_id, version, kind, base_model_id, path.name, digest, rows_trained, environment
    )


# A candidate the quality gate rejected is kept for the record but never used.
NOT_REJECTED = "model_id NOT IN (SELECT model_id FROM gate_decisions WHERE decision = 'rejected')"


def serving_model(catalog: Catalog, version: int) -> ModelRecord | None:
    """The model that serves as of ``version``: the newest one on its lineage.

    At one version the latest written wins, so a full retrain replaces the incremental
    model it was made beside, and later updates continue from it. A candidate the quality
    gate rejected never serves.
    """
    row = catalog.con.execute(
        f"SELECT {MODEL_COLUMNS} FROM models WHERE list_contains(?, version) "
        f"AND {NOT_REJECTED} "
        "ORDER BY version DESC, model_id DESC LIMIT 1",
        [catalog.lineage(version)],
    ).fetchone()
    return None if row is None else _record(row)


def model_trained_through(catalog: Catalog, version: int) -> ModelRecord:
    """The model trained through ``version`` on the head's lineage, for ``--model vN``.

    Raises
    ------
    UsageError
        If ``version`` is off the head's lineage or no model was trained through it.
    """
    catalog.require(version)
    head = catalog.require_head()
    if version not in catalog.lineage(head):
        raise UsageError(
            f"v{version} is not on the head's lineage (v{head}); "
            "pick a version that 'incr log' shows on it"
        )
    record = serving_model(catalog, version)
    if record is None or record.version != version:
        raise UsageError(
            f"no model was trained through v{version}; pick a version that "
            "'incr log' shows with a model, or drop --model"
        )
    return record


def model_at(catalog: Catalog, version: int, kind: str | None = None) -> ModelRecord | None:
    """The newest model written for exactly ``version`` (of ``kind`` when given).

    A candidate the quality gate rejected is left out, as in ``serving_model``.
    """
    row = catalog.con.execute(
        f"SELECT {MODEL_COLUMNS} FROM models WHERE version = ? "
        "AND (? IS NULL OR kind = ?) "
        f"AND {NOT_REJECTED} "
        "ORDER BY model_id DESC LIMIT 1",
        [version, kind, kind],
    ).fetchone()
    return None if row is None else _record(row)


def check_kind(model: Any, config: Config, use: str) -> None:
    """Refuse to ``use`` a model of the other kind than the config's ingest.feedback calls for.

    A catalog of purchases read with a config of ratings (or the other way round) would
    otherwise fail deep inside the model, or train on the wrong reading of the rows.
    """
    from .implicit_model import ImplicitMF

    implicit_model = isinstance(model, ImplicitMF)
    if implicit_model != is_implicit(config):
        kind = "an implicit-feedback" if implicit_model else "a rating"
        raise UsageError(
            f"the model to {use} is {kind} model but ingest.feedback says otherwise; use the "
            "config it was trained with (--config, INCR_CONFIG)"
        )


def load_model(catalog: Catalog, record: ModelRecord) -> Any:
    """Load a model file after checking that its sha256 is the recorded one."""
    path = catalog.model_dir / record.path
    if not path.is_file():
        raise IntegrityError(
            f"model file {str(path)!r} of v{record.version} is missing; run 'incr verify'"
            " and retrain with 'incr update --full'"
        )
    started = time.perf_counter()
    digest = file_sha256(path)
    if digest != record.sha256:
        raise IntegrityError(
            f"model file {str(path)!r} of v{record.version} does not match its recorded "
            "sha256 and was not loaded; restore the file or retrain with 'incr update --full'"
        )
    _warn_environment(record)
    import joblib  # imported when needed, as in save_model

    model = joblib.load(path)
    log.debug("loaded %s in %.3f s", path.name, time.perf_counter() - started)
    return model


def _warn_environment(record: ModelRecord) -> None:
    """Warn once, naming both versions, when a model was saved under other versions."""
    current = describe_environment()
    changed = tuple(
        (name, str(record.environment[name]), current[name])
        for name in PICKLE_DEPENDENCIES
        if record.environment.get(name) and record.environment[name] != current[name]
    )
    if not changed or changed in _warned:
        return
    _warned.add(changed)
    saved = ", ".join(f"{name} {old}" for name, old, _ in changed)
    loaded = ", ".join(f"{name} {new}" for name, _, new in changed)
    warnings.warn(
        f"model of v{record.version} was saved with {saved} and is loaded with {loaded}; "
        "retrain with 'incr update --full' if its predictions look wrong",
        RuntimeWarning,
        stacklevel=3,
    )
