"""A source's politeness limits, coordinated in PostgreSQL for every process that fetches from it.

One row per source (migration 0006). ``acquire`` is one statement: it locks the source's row, decides with the
database's clock (one clock for every process) and, when the request may go, takes a lease (a slot of the
source's ``concurrency``) and moves the rate's next start; ``release`` is one statement that gives the lease back
and, when the publisher said so, blocks the source. Sources never wait on each other: each has its own row.

Under READ COMMITTED, ``SELECT … FOR UPDATE`` returns the row as the previous holder of the lock left it, and the
UPDATE in the same statement writes that same version, so two processes can never both see the last free slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ingest.store.connection import Database

GRANTED = "granted"
BLOCKED = "blocked"          # the publisher asked us to wait (Retry-After)
CONCURRENCY = "concurrency"  # all of the source's slots are in use
RATE = "rate"                # requests_per_second reached

_ACQUIRE = """
WITH locked AS (
    SELECT next_at, blocked_until, leases FROM source_limits WHERE source = :source FOR UPDATE
), clocked AS (
    SELECT clock_timestamp() AS at, next_at, blocked_until, leases FROM locked
), live AS (
    SELECT at, next_at, blocked_until, ARRAY(SELECT e FROM unnest(leases) AS e WHERE e > at ORDER BY e) AS leases
    FROM clocked
), decision AS (
    SELECT at, leases, greatest(next_at, at) + :interval * interval '1 second' AS following,
        CASE WHEN blocked_until > at THEN 'blocked'
             WHEN cardinality(leases) >= :concurrency THEN 'concurrency'
             WHEN next_at - at > :tolerance * interval '1 second' THEN 'rate'
             ELSE 'granted' END AS outcome,
        CASE WHEN blocked_until > at THEN extract(epoch FROM blocked_until - at)
             WHEN cardinality(leases) >= :concurrency THEN 0
             ELSE greatest(0, extract(epoch FROM next_at - at) - :tolerance) END::float8 AS wait
    FROM live
), granted AS (
    UPDATE source_limits AS l
    SET next_at = d.following, leases = d.leases || (d.at + :lease * interval '1 second'), updated_at = d.at
    FROM decision AS d
    WHERE l.source = :source AND d.outcome = 'granted'
    RETURNING d.at + :lease * interval '1 second' AS lease
)
SELECT d.outcome, d.wait, (SELECT lease FROM granted) FROM decision AS d
"""

_CREATE = "INSERT INTO source_limits (source) VALUES (:source) ON CONFLICT (source) DO NOTHING"

# The lease's own entry goes (array_position: the first equal one; equal entries are interchangeable), entries
# that ran out go too, and a block only ever lengthens.
_RELEASE = """
UPDATE source_limits
SET leases = ARRAY(SELECT e FROM unnest(leases) WITH ORDINALITY AS x(e, i)
                   WHERE e > clock_timestamp() AND i IS DISTINCT FROM array_position(leases, :lease::timestamptz)
                   ORDER BY e),
    blocked_until = greatest(blocked_until, clock_timestamp() + :block * interval '1 second'),
    updated_at = clock_timestamp()
WHERE source = :source
"""

_BLOCK = """
INSERT INTO source_limits AS l (source, blocked_until)
VALUES (:source, clock_timestamp() + :block * interval '1 second')
ON CONFLICT (source) DO UPDATE
SET blocked_until = greatest(l.blocked_until, EXCLUDED.blocked_until), updated_at = clock_timestamp()
"""


@dataclass(frozen=True)
class Decision:
    """What the database decided: ``lease`` is set when the request may go now; otherwise ``outcome`` says why
    not and ``wait`` how long before asking again helps (0 when unknown: a slot frees when a fetch ends)."""

    outcome: str
    wait: float
    lease: datetime | None = None


def acquire(db: Database, source: str, *, interval: float, tolerance: float, concurrency: int,
            lease_seconds: float) -> Decision:
    """Ask for one request to ``source`` now: one round trip (two the first time a database sees the source)."""
    where = f"asking for a turn to fetch from {source}"
    params = dict(source=source, interval=float(interval), tolerance=float(tolerance),
                  concurrency=int(concurrency), lease=float(lease_seconds))
    rows = db.execute(_ACQUIRE, where, **params)
    if not rows:
        db.execute(_CREATE, where, source=source)
        rows = db.execute(_ACQUIRE, where, **params)
    outcome, wait, lease = rows[0]
    return Decision(str(outcome), float(wait), lease)


def release(db: Database, source: str, lease: datetime, *, block_seconds: float = 0.0) -> None:
    """Give the lease back; ``block_seconds`` > 0 keeps every process away from the source that long."""
    db.execute(_RELEASE, f"ending a fetch from {source}", source=source, lease=lease, block=float(block_seconds))


def block(db: Database, source: str, seconds: float) -> None:
    """No request to ``source`` from anyone for ``seconds`` (a publisher's Retry-After), without a lease."""
    db.execute(_BLOCK, f"pausing fetches from {source}", source=source, block=float(seconds))


def in_flight(db: Database, source: str) -> int:
    """Leases not yet run out (for tests and operators)."""
    rows = db.execute("SELECT cardinality(ARRAY(SELECT e FROM unnest(leases) e WHERE e > clock_timestamp())) "
                      "FROM source_limits WHERE source = :source", f"counting fetches from {source}", source=source)
    return int(rows[0][0]) if rows else 0
