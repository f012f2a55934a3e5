"""Versioned, idempotent migrations: ``migrations/NNNN_name.sql`` applied in order, each once, under a lock."""

from __future__ import annotations

from importlib import resources

from ingest.store.connection import Database

# Any fixed number: every migrator takes this transaction-level advisory lock, so two cold starts (or a deploy
# and a developer) cannot apply the same migration twice at once.
_MIGRATION_LOCK = 7_202_611


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("ingest.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text("utf-8")))
    return sorted(found)


def migrate(db: Database) -> list[str]:
    """Apply what is missing; return the names applied (empty when the schema is current)."""
    applied_now: list[str] = []
    with db.transaction("migrating the schema"):
        db.execute_once("SELECT pg_advisory_xact_lock(:lock)", "migrating the schema", lock=_MIGRATION_LOCK)
        db.run("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
               "applied_at timestamptz NOT NULL DEFAULT now())", "migrating the schema")
        done = {row[0] for row in db.run("SELECT version FROM schema_migrations", "migrating the schema")}
        for version, name, sql in available():
            if version in done:
                continue
            db.run(sql, f"applying migration {name}")
            db.execute_once("INSERT INTO schema_migrations (version, name) VALUES (:version, :name)",
                            f"recording migration {name}", version=version, name=name)
            applied_now.append(name)
    return applied_now
