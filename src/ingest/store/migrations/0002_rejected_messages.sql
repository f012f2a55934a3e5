-- Messages that could not be a page at all (not JSON, unknown version, missing fields, a refused URL, 404/410):
-- recorded with their raw body and acknowledged. Redelivering them would give the same answer.
CREATE TABLE rejected_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    message_id   text        NOT NULL,
    source       text        NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    body_hash    bytea       NOT NULL,
    body         text        NOT NULL,
    UNIQUE (reason, body_hash)
);
CREATE INDEX rejected_messages_source_reason_idx ON rejected_messages (source, reason);
