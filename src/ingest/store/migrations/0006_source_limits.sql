-- Politeness per publisher, shared by every process that fetches (the harvester's walk, every worker): one row
-- per source, updated under its row lock by one statement per acquire and one per release (store/source_limits.py).
-- UNLOGGED: this state lives for seconds, so its commits need not wait for the disk (0.7 ms per page instead of 9 ms
-- with fsync on, bench/politeness_bench.py). After a crash or a failover the table starts empty: the limits start
-- afresh and a publisher's pending Retry-After is learnt again from its next 429.
CREATE UNLOGGED TABLE source_limits (
    source         text PRIMARY KEY,
    -- The rate, as a generic cell rate algorithm: the moment from which the next request may start. Each granted
    -- request moves it to greatest(next_at, now) + 1 / requests_per_second.
    next_at        timestamptz   NOT NULL DEFAULT now(),
    -- No request before this moment: the publisher answered 429 (or 503 with Retry-After).
    blocked_until  timestamptz   NOT NULL DEFAULT now(),
    -- One entry per fetch in flight: when its lease runs out. A fetch releases its own entry when it ends; the
    -- entry of a process that died mid-fetch stops counting when it runs out.
    leases         timestamptz[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz   NOT NULL DEFAULT now()
);
