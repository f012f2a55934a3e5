-- Where each source's harvest stands, so a harvest stopped by its time budget resumes without gap or duplicate.
CREATE TABLE harvest_state (
    source           text PRIMARY KEY,
    cursor           text,          -- the next URL (or page, offset, window) to fetch; NULL when the last walk ended
    watermark        timestamptz,   -- the newest release date seen by completed walks
    last_success_at  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per harvest run.
CREATE TABLE harvest_runs (
    run_id      text PRIMARY KEY,
    source      text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    status      text        NOT NULL DEFAULT 'running',  -- running, complete, paused, failed
    pages       integer     NOT NULL DEFAULT 0,
    releases    integer     NOT NULL DEFAULT 0,
    messages    integer     NOT NULL DEFAULT 0,
    errors      integer     NOT NULL DEFAULT 0,
    detail      text
);
CREATE INDEX harvest_runs_source_started_idx ON harvest_runs (source, started_at DESC);
