"""Integrity: check the catalog's invariants (verify) and drop what no one needs (gc).

``verify`` only reads. Each problem it finds names the command that repairs it. ``gc``
removes versions off the head's lineage that are older than the N most recent, with their
rows and model files, and model files that no version references; the head's lineage is
never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import file_sha256
from .catalog import Catalog
from .errors import NothingToDo

log = logging.getLogger(__name__)

# Tables whose rows belong to one version, and so go with it in gc.
VERSIONED_TABLES = (
    "raw_rows",
    "rejects",
    "clean_changes",
    "clean_rows",
    "clean_removed",
    "user_features",
    "item_features",
    "metrics",
    "models",
    "gate_decisions",
    "stages",
)

# Per version: the recorded counts beside the rows actually held.
COUNTS_SQL = """
SELECT v.version, v.rows_read, v.rows_accepted, v.rows_rejected,
       (SELECT count(*) FROM ratings_raw r WHERE r.version = v.version) AS raw,
       (SELECT count(*) FROM rejects j WHERE j.version = v.version) AS rejected,
       (SELECT count(*) FROM ratings_clean c WHERE c.version = v.version) AS clean,
       (SELECT CAST(json_extract(s.details, '$.rows_out') AS BIGINT) FROM stages s
        WHERE s.version = v.version AND s.stage = 'clean') AS clean_recorded
FROM versions v ORDER BY v.version
"""


@dataclass
class Problem:
    """One broken invariant, with the command that repairs it."""

    check: str
    version: int | None
    message: str
    repair: str


@dataclass
class VerifyResult:
    versions: int
    models_checked: int
    problems: list[Problem] = field(default_factory=list)
    unreferenced_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GcResult:
    removed_versions: list[int]
    removed_files: list[str]
    kept_off_lineage: list[int]


def verify(catalog: Catalog) -> VerifyResult:
    """Check every invariant the catalog promises; an empty problem list means all hold."""
    problems: list[Problem] = []
    versions = {row[0]: row[1] for row in catalog.rows("SELECT version, parent FROM versions")}

    # Every parent exists, and the numbers never run past the last one handed out.
    for version, parent in sorted(versions.items()):
        if parent is not None and parent >= version:
            # A parent is made before its child, so its number is smaller; anything else
            # is damage, and a loop of parents would otherwise never end a lineage.
            problems.append(
                Problem(
                    "parent",
                    version,
                    f"v{version} names parent v{parent}, which is not older than it",
                    "restore the catalog from a backup",
                )
            )
        elif parent is not None and parent not in versions:
            problems.append(
                Problem(
                    "parent",
                    version,
                    f"v{version} names parent v{parent}, which does not exist",
                    f"incr rollback --to v{max(v for v in versions if v != version)}",
                )
            )
    last = catalog.last_version()
    if versions and max(versions) > last:
        problems.append(
            Problem(
                "numbering",
                max(versions),
                f"v{max(versions)} exists but the last number handed out is {last}",
                "restore the catalog from a backup",
            )
        )

    # The head exists and its lineage reaches a root.
    head = catalog.head()
    if head is not None and head not in versions:
        problems.append(
            Problem(
                "head",
                head,
                f"the head names v{head}, which does not exist",
                f"incr rollback --to v{max(versions)}" if versions else "incr init",
            )
        )
    elif head is not None:
        lineage = catalog.lineage(head)
        if versions.get(lineage[0]) is not None or lineage[0] not in versions:
            problems.append(
                Problem(
                    "lineage",
                    head,
                    f"the head's lineage stops at v{lineage[0]}, short of a first version",
                    "incr rollback --to an earlier complete version (see incr log)",
                )
            )

    problems.extend(_check_counts(catalog))
    checked, model_problems, referenced = _check_models(catalog)
    problems.extend(model_problems)

    # NOTE: a file no version references is what a writer killed between writing a model
    # file and committing leaves behind. It harms nothing, so it is listed, not a problem.
    unreferenced = sorted(
        path.name for path in _model_files(catalog) if path.name not in referenced
    )
    return VerifyResult(len(versions), checked, problems, unreferenced)


def _check_counts(catalog: Catalog) -> list[Problem]:
    problems = []
    for row in catalog.rows(COUNTS_SQL):
        version, read, accepted, rejected, raw, held_rejects, clean, clean_recorded = row
        if raw != accepted:
            problems.append(
                Problem(
                    "rows",
                    version,
                    f"v{version} records {accepted} accepted rows but holds {raw}",
                    f"incr rollback --to v{version - 1}" if version > 1 else "incr init",
                )
            )
        if held_rejects != rejected or read != accepted + rejected:
            problems.append(
                Problem(
                    "rejects",
                    version,
                    f"v{version} records {read} read and {rejected} rejected rows but holds "
                    f"{held_rejects} rejects",
                    f"incr rollback --to v{version - 1}" if version > 1 else "incr init",
                )
            )
        if clean_recorded is not None and clean != clean_recorded:
            problems.append(
                Problem(
                    "clean rows",
                    version,
                    f"v{version} records {clean_recorded} clean rows but holds {clean}",
                    f"incr rollback --to v{version - 1}" if version > 1 else "incr init",
                )
            )
    return problems


def _check_models(catalog: Catalog) -> tuple[int, list[Problem], set[str]]:
    problems = []
    referenced = set()
    rows = catalog.rows("SELECT model_id, version, path, sha256 FROM models ORDER BY model_id")
    for model_id, version, name, digest in rows:
        referenced.add(name)
        path = catalog.model_dir / name
        if not path.is_file():
            problems.append(
                Problem(
                    "model file",
                    version,
                    f"model m{model_id} of v{version}: file {name!r} is missing",
                    "incr update --full",
                )
            )
        elif file_sha256(path) != digest:
            problems.append(
                Problem(
                    "model file",
                    version,
                    f"model m{model_id} of v{version}: file {name!r} does not match its "
                    "recorded sha256",
                    "restore the file, or incr update --full",
                )
            )
    return len(rows), problems, referenced


def _model_files(catalog: Catalog) -> list[Path]:
    if not catalog.model_dir.is_dir():
        return []
    return [p for p in catalog.model_dir.iterdir() if p.is_file()]


def gc(catalog: Catalog, keep: int) -> GcResult:
    """Remove versions off the head's lineage older than the ``keep`` newest, and stray files.

    The ``keep`` most recent versions stay whatever their branch, and so do their
    ancestors, so that no kept version ever loses its parent. The head's lineage always
    stays. Removed versions take their rows and model files with them; model files that
    no version references (left by a writer killed before it committed) go too.

    Raises
    ------
    NothingToDo
        If no version and no file would be removed.
    """
    lineage = set(catalog.lineage())
    parents = dict(catalog.rows("SELECT version, parent FROM versions"))
    off = sorted((v for v in parents if v not in lineage), reverse=True)
    kept: set[int] = set()
    for version in sorted(parents, reverse=True)[:keep]:
        node: int | None = version
        while node is not None and node not in lineage and node not in kept:
            kept.add(node)
            node = parents.get(node)
    doomed = sorted(v for v in off if v not in kept)

    files = [
        row[0]
        for row in catalog.rows("SELECT path FROM models WHERE list_contains(?, version)", [doomed])
    ]
    referenced = {row[0] for row in catalog.rows("SELECT path FROM models")} - set(files)
    stray = [p.name for p in _model_files(catalog) if p.name not in referenced]
    if not doomed and not stray:
        raise NothingToDo(
            f"nothing to remove: {len(off)} version(s) off the head's lineage, each among "
            f"the {keep} most recent or an ancestor of one, and no unreferenced model file"
        )

    with catalog.transaction():
        for table in VERSIONED_TABLES:
            catalog.con.execute(f"DELETE FROM {table} WHERE list_contains(?, version)", [doomed])
        catalog.con.execute("DELETE FROM versions WHERE list_contains(?, version)", [doomed])
    # NOTE: files go only after the commit; a crash in between leaves unreferenced files,
    # which the next gc removes, never a record without its file.
    removed = sorted(set(files) | set(stray))
    for name in removed:
        (catalog.model_dir / name).unlink(missing_ok=True)
    log.debug("gc removed %d versions and %d files", len(doomed), len(removed))
    return GcResult(doomed, removed, sorted(kept))
