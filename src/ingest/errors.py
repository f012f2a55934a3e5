"""The error tree: every failure is either permanent (the data is bad) or transient (the infrastructure is).

Permanent problems are recorded (quarantined with their reason and raw text) and never retried: redelivering
bad data gives the same answer. Transient problems are raised so that the caller (SQS, the CLI, an operator)
tries again later; they must leave nothing half-written.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error this package raises on purpose."""


class PermanentError(IngestError):
    """Raised if input can never be stored as it is; retrying will not help."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientError(IngestError):
    """Raised if the infrastructure failed (connection lost, deadlock, server restarting); retry later."""


class DatabaseUnavailable(TransientError):
    """Raised if the database cannot be reached or the connection was lost."""


class ConfigurationError(IngestError):
    """Raised if a setting (URL, path, option) is wrong; the message says which and how to fix it."""
