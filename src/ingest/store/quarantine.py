"""Recording messages that cannot be a page: the data-trouble side of the worker (the DLQ is the other)."""

from __future__ import annotations

import hashlib

from ingest.store.connection import Database

_INSERT = """
INSERT INTO rejected_messages (message_id, source, reason, detail, body_hash, body)
VALUES (:message_id, :source, :reason, :detail, :body_hash, :body)
ON CONFLICT (reason, body_hash) DO NOTHING
"""


def reject_message(db: Database, *, message_id: str, source: str, reason: str, detail: str, body: str) -> None:
    """Record a rejected message once, however often SQS delivers it."""
    body = body.replace("\x00", "\\u0000")  # text columns cannot hold NUL
    db.execute(_INSERT, f"recording rejected message {message_id}", message_id=message_id, source=source,
               reason=reason, detail=detail, body_hash=hashlib.sha256(body.encode("utf-8", "replace")).digest(),
               body=body)
