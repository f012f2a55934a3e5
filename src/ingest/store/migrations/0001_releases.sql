-- The releases of every publisher, one row per (ocid, release id), newest version wins.
CREATE TABLE releases (
    ocid               text        NOT NULL,
    release_id         text        NOT NULL,
    release_date       timestamptz NOT NULL,
    date_text          text        NOT NULL,
    tag                text[],
    initiation_type    text,
    buyer_id           text,
    buyer_name         text,
    tender_title       text,
    tender_status      text,
    procurement_method text,
    value_amount       numeric,
    value_currency     text,
    publisher_name     text,
    package_uri        text,
    ocds_version       text,
    source             text        NOT NULL,
    flags              text[]      NOT NULL DEFAULT '{}',
    content_hash       bytea       NOT NULL,
    data               jsonb       NOT NULL,
    first_ingested_at  timestamptz NOT NULL DEFAULT now(),
    last_ingested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ocid, release_id)
);
COMMENT ON TABLE releases IS 'OCDS releases; a stored row is replaced only by a newer one by (release_date, content_hash)';

CREATE INDEX releases_release_date_idx ON releases (release_date);
CREATE INDEX releases_buyer_id_idx ON releases (buyer_id) WHERE buyer_id IS NOT NULL;
-- Incremental exports ("what changed since") scan by ingestion time, which only grows: BRIN is tiny and cheap.
CREATE INDEX releases_last_ingested_at_idx ON releases USING brin (last_ingested_at);

-- What could not be a row, with why and the raw text. Replays do not add copies: (reason, raw_hash) is unique.
CREATE TABLE rejected_releases (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,
    context      text        NOT NULL,
    position     text        NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    ocid         text,
    release_id   text,
    raw_hash     bytea       NOT NULL,
    raw_text     text        NOT NULL,
    UNIQUE (reason, raw_hash)
);
CREATE INDEX rejected_releases_source_reason_idx ON rejected_releases (source, reason);

-- Each record's compiledRelease (from record packages), newest per ocid by the same rule as releases.
CREATE TABLE compiled_releases (
    ocid              text        PRIMARY KEY,
    release_date      timestamptz,
    source            text        NOT NULL,
    package_uri       text,
    content_hash      bytea       NOT NULL,
    data              jsonb       NOT NULL,
    first_ingested_at timestamptz NOT NULL DEFAULT now(),
    last_ingested_at  timestamptz NOT NULL DEFAULT now()
);
