"""Politeness's pure decisions: the User-Agent, what counts as being told to wait, how long a message waits."""

from __future__ import annotations

import random

import pytest

from ingest import __version__
from ingest.errors import ConfigurationError
from ingest.politeness import (
    DEFAULT_429_WAIT,
    MAX_BLOCK_SECONDS,
    MAX_DEFER_SECONDS,
    MAX_DEFERRED_HOURS,
    Limits,
    deferral_delay,
    may_defer,
    told_to_wait,
    user_agent,
)
from ingest.sources import parse_source


@pytest.mark.parametrize("contact", ["https://data.example.org/contact", "http://example.org", "ops@example.org"])
def test_the_user_agent_names_the_project_its_version_and_the_operators_contact(contact: str) -> None:
    assert user_agent(contact) == f"ocds-ingest/{__version__} (+{contact})"


@pytest.mark.parametrize("contact", [None, "", "   "])
def test_without_a_contact_the_user_agent_names_only_the_project(contact: str | None) -> None:
    assert user_agent(contact) == f"ocds-ingest/{__version__}"


@pytest.mark.parametrize("contact", ["ops", "ftp://example.org", "https://", "a@b", "ops@example.org\r\nX: y",
                                     "x (y) z@example.org", "https://example.org/)"])
def test_a_contact_publishers_could_not_use_is_a_configuration_error(contact: str) -> None:
    with pytest.raises(ConfigurationError, match="USER_AGENT_CONTACT"):
        user_agent(contact)


def test_a_429_is_always_a_wait_with_retry_after_or_the_default() -> None:
    assert told_to_wait(429, 3.0) == 3.0
    assert told_to_wait(429, None) == DEFAULT_429_WAIT


def test_a_503_is_a_wait_only_with_retry_after() -> None:
    assert told_to_wait(503, 7.0) == 7.0
    assert told_to_wait(503, None) is None


@pytest.mark.parametrize("status", [None, 500, 502, 504, 408, 401])
def test_other_failures_are_not_waits(status: int | None) -> None:
    assert told_to_wait(status, 5.0) is None


def test_waits_are_at_least_a_second_and_at_most_an_hour() -> None:
    assert told_to_wait(429, 0.0) == 1.0
    assert told_to_wait(429, 10 * 86400.0) == MAX_BLOCK_SECONDS


def test_a_deferral_is_never_shorter_than_the_wait_and_spreads_over_a_quarter_more() -> None:
    rng = random.Random(1)
    delays = [deferral_delay(40.0, rng) for _ in range(200)]
    assert min(delays) == 40 and max(delays) == 50


def test_a_fraction_of_a_second_is_deferred_a_second_or_two() -> None:
    assert {deferral_delay(0.2, random.Random(seed)) for seed in range(50)} == {1, 2}


def test_a_deferral_stays_within_what_sqs_accepts() -> None:
    assert deferral_delay(MAX_BLOCK_SECONDS, random.Random(2)) == MAX_DEFER_SECONDS


def test_a_message_may_be_deferred_until_it_has_waited_a_day() -> None:
    day = MAX_DEFERRED_HOURS * 3600
    assert may_defer(None, 1_000_000.0)
    assert may_defer(1_000_000.0, 1_000_000.0 + day - 1)
    assert not may_defer(1_000_000.0, 1_000_000.0 + day)


def test_limits_come_from_the_sources_rate_and_concurrency_without_burst() -> None:
    source = parse_source({"name": "s", "requests_per_second": 4, "concurrency": 1})
    assert Limits.of(source) == Limits(interval=0.25, tolerance=0.0, concurrency=1)
    assert Limits.of(source, burst=3) == Limits(interval=0.25, tolerance=0.5, concurrency=1)
