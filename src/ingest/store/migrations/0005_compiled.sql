-- compiled_releases becomes the current state of every contracting process: ``data`` is the merge of all stored
-- releases of the ocid (ingest/compile.py), kept current as pages arrive. What a record package's publisher
-- compiled moves to the publisher_* columns (newest wins, as before), and is the current state only of an ocid
-- with no releases of its own (linked releases only).
ALTER TABLE compiled_releases RENAME COLUMN release_date TO publisher_date;
ALTER TABLE compiled_releases RENAME COLUMN source TO publisher_source;
ALTER TABLE compiled_releases RENAME COLUMN package_uri TO publisher_package_uri;
ALTER TABLE compiled_releases RENAME COLUMN content_hash TO publisher_hash;
ALTER TABLE compiled_releases RENAME COLUMN data TO publisher_data;
ALTER TABLE compiled_releases
    ALTER COLUMN publisher_source DROP NOT NULL,
    ALTER COLUMN publisher_hash DROP NOT NULL,
    ALTER COLUMN publisher_data DROP NOT NULL,
    ADD COLUMN data               jsonb,        -- NULL only until the ocid is first compiled
    ADD COLUMN compiled_from      text CHECK (compiled_from IN ('releases', 'publisher')),
    ADD COLUMN release_count      integer NOT NULL DEFAULT 0,
    ADD COLUMN release_date       timestamptz,  -- the latest release's date
    ADD COLUMN date_text          text,         -- ... as published (also the compiled release's "date")
    ADD COLUMN inputs_hash        bytea,        -- sha256 of the merged (release id, content hash) in merge order
    ADD COLUMN ocds_version       text,         -- the merge rules used: '1.1' (schema 1.1.5) or '1.0' (1.0.3)
    ADD COLUMN source             text,         -- the latest release's source
    ADD COLUMN initiation_type    text,
    ADD COLUMN buyer_id           text,
    ADD COLUMN buyer_name         text,
    ADD COLUMN tender_id          text,
    ADD COLUMN tender_title       text,
    ADD COLUMN tender_status      text,
    ADD COLUMN procurement_method text,
    ADD COLUMN value_amount       numeric,
    ADD COLUMN value_currency     text,
    ADD COLUMN awards_count       integer,
    ADD COLUMN awards_amount      numeric,      -- not cancelled or unsuccessful; NULL if currencies differ
    ADD COLUMN awards_currency    text,
    ADD COLUMN contracts_count    integer,
    ADD COLUMN contracts_amount   numeric,      -- not cancelled; NULL if currencies differ
    ADD COLUMN contracts_currency text,
    ADD COLUMN compile_error      text,         -- why the merge refused these releases (then data is NULL)
    ADD COLUMN compiled_at        timestamptz;
COMMENT ON TABLE compiled_releases IS 'The compiled release (current state) of every ocid: its releases merged by '
    'the rules of its OCDS version, or the publisher''s compiledRelease when it has no releases of its own';
CREATE INDEX compiled_releases_buyer_id_idx ON compiled_releases (buyer_id) WHERE buyer_id IS NOT NULL;
CREATE INDEX compiled_releases_release_date_idx ON compiled_releases (release_date);
