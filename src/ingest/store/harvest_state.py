"""Harvest bookkeeping in PostgreSQL: the per-source lock, cursor and watermark, and the runs table."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from ingest.store.connection import Database


@dataclass(frozen=True)
class HarvestState:
    cursor: str | None = None
    watermark: datetime | None = None
    last_success_at: datetime | None = None


def _lock_key(source: str) -> int:
    """A stable 64-bit advisory-lock key for a source (hashtext() is not guaranteed stable across versions)."""
    return int.from_bytes(hashlib.sha256(f"ocds-ingest harvest {source}".encode()).digest()[:8], "big", signed=True)


def try_lock(db: Database, source: str) -> bool:
    """Take the source's session lock without waiting: two harvests of one source never run at once."""
    return bool(db.execute("SELECT pg_try_advisory_lock(:key)", f"locking the harvest of {source}",
                           key=_lock_key(source))[0][0])


def unlock(db: Database, source: str) -> None:
    db.execute("SELECT pg_advisory_unlock(:key)", f"unlocking the harvest of {source}", key=_lock_key(source))


def load(db: Database, source: str) -> HarvestState:
    rows = db.execute("SELECT cursor, watermark, last_success_at FROM harvest_state WHERE source = :source",
                      f"reading the harvest state of {source}", source=source)
    return HarvestState(*rows[0]) if rows else HarvestState()


def save(db: Database, source: str, state: HarvestState) -> None:
    db.execute("""
        INSERT INTO harvest_state (source, cursor, watermark, last_success_at, updated_at)
        VALUES (:source, :cursor, :watermark, :last_success_at, now())
        ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, watermark = EXCLUDED.watermark,
            last_success_at = EXCLUDED.last_success_at, updated_at = now()
        """, f"saving the harvest state of {source}", source=source, cursor=state.cursor,
        watermark=state.watermark, last_success_at=state.last_success_at)


def start_run(db: Database, run_id: str, source: str) -> None:
    db.execute("INSERT INTO harvest_runs (run_id, source) VALUES (:run_id, :source)",
               f"recording harvest run {run_id}", run_id=run_id, source=source)


def finish_run(db: Database, run_id: str, *, status: str, pages: int, releases: int, messages: int,
               errors: int, detail: str | None) -> None:
    db.execute("""
        UPDATE harvest_runs SET ended_at = now(), status = :status, pages = :pages, releases = :releases,
            messages = :messages, errors = :errors, detail = :detail
        WHERE run_id = :run_id
        """, f"recording the end of harvest run {run_id}", run_id=run_id, status=status, pages=pages,
        releases=releases, messages=messages, errors=errors, detail=detail)


def forget(db: Database, source: str) -> bool:
    """Drop a source's cursor and watermark: its next harvest walks from its first page. True if there was one."""
    return bool(db.execute("DELETE FROM harvest_state WHERE source = :source RETURNING source",
                           f"forgetting the harvest state of {source}", source=source))
