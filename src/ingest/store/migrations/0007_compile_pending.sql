-- Compiling leaves the worker's path: the page statement records each ocid whose releases it changed here, in the
-- same transaction as the releases, and the compile step (handler/compile.py, ``ocds-ingest compile --pending``)
-- claims rows with FOR UPDATE SKIP LOCKED, compiles their ocids and deletes them in one transaction.
--
-- No unique key, on purpose: a mark is an INSERT that never waits on (or locks) anything, so a writer never
-- waits for a compiler and two writers never wait for each other here. An ocid marked twice is compiled once per
-- claim it is in; a mark made while its ocid is being compiled survives that compile (it is a new row), so the
-- ocid is compiled again and the table converges.
--
-- Claims take the oldest marks through the index on marked_at: a claim by sequential scan would read the pages
-- that earlier claims emptied (until VACUUM), so draining a backlog of millions would cost quadratic time. The
-- index also answers the backlog's age at once.
CREATE TABLE compile_pending (
    ocid      text NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
CREATE INDEX compile_pending_marked_at_idx ON compile_pending (marked_at);
COMMENT ON TABLE compile_pending IS 'Ocids whose compiled release must be brought up to date (a queue: rows are '
    'claimed and deleted by the compile step)';

-- Everything stored before this migration is compiled by the compile step too, so nothing is left behind by
-- an upgrade from inline compiling.
INSERT INTO compile_pending (ocid)
SELECT DISTINCT ocid FROM releases
WHERE NOT EXISTS (SELECT FROM compiled_releases c WHERE c.ocid = releases.ocid AND c.data IS NOT NULL);
