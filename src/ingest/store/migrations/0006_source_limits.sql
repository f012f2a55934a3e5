-- Politeness per publisher, shared by every process that fetches (the harvester's walk, every worker): one row
-- per source, updated under its row lock by one statement per acquire and one per release (store/source_limits.py).
CREATE TABLE source_limits (
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
