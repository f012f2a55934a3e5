"""The worker's look-ahead: the next message is prepared while the current one is written."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest.errors import TransientError
from ingest.worker import (
    BATCH_SWITCH_INTERVAL_SECONDS,
    LOOKAHEAD_NICENESS,
    Connections,
    LookAhead,
    Message,
    Prepared,
    Worker,
    prepare_thread,
)


def batch(count: int) -> list[Message]:
    return [Message(f"m{n}", f"body {n}") for n in range(count)]


@pytest.fixture
def thread() -> Iterator[ThreadPoolExecutor]:
    """The background thread a look-ahead prepares on, as a worker keeps it."""
    executor = prepare_thread()
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_the_next_message_is_prepared_while_the_current_one_is_written(thread: ThreadPoolExecutor) -> None:
    started: dict[str, threading.Event] = {f"m{n}": threading.Event() for n in range(3)}

    def prepare(message: Message) -> Prepared:
        started[message.message_id].set()
        return Prepared(message, "s")

    ahead = LookAhead(prepare, batch(3), thread)
    try:
        assert ahead.take(Message("m0", "body 0")).message.message_id == "m0"
        # WHEN m0 is being "written" (we are still here) THEN m1 is already being prepared on the thread
        assert started["m1"].wait(5)
        assert not started["m2"].is_set()  # only one ahead: memory stays at one extra page
        assert ahead.take(Message("m1", "body 1")).message.message_id == "m1"
        assert started["m2"].wait(5)
    finally:
        ahead.close()


def test_a_failed_preparation_is_raised_for_its_own_message_only(thread: ThreadPoolExecutor) -> None:
    def prepare(message: Message) -> Prepared:
        if message.message_id == "m1":
            raise TransientError("the publisher timed out")
        return Prepared(message, "s")

    ahead = LookAhead(prepare, batch(3), thread)
    try:
        assert ahead.take(Message("m0", "body 0")).message.message_id == "m0"
        with pytest.raises(TransientError, match="timed out"):
            ahead.take(Message("m1", "body 1"))
        assert ahead.take(Message("m2", "body 2")).message.message_id == "m2"
    finally:
        ahead.close()


def test_the_following_message_is_seen_once_prepared_and_still_taken_in_its_turn(thread: ThreadPoolExecutor) -> None:
    calls: list[str] = []

    def prepare(message: Message) -> Prepared:
        calls.append(message.message_id)
        if message.message_id == "m2":
            raise TransientError("the publisher timed out")
        return Prepared(message, "s", context=f"prepared {message.message_id}")

    ahead = LookAhead(prepare, batch(3), thread)
    try:
        first = ahead.take(Message("m0", "body 0"))
        # WHEN the writer looks at the message after m0 (prepared ahead) THEN it gets it, prepared once
        following = ahead.following(first.message)
        assert following is not None and following.context == "prepared m1"
        assert ahead.take(Message("m1", "body 1")) is following
        # a following message whose preparation failed is not handed out; its own take raises the failure
        assert ahead.following(Message("m1", "body 1")) is None
        with pytest.raises(TransientError, match="timed out"):
            ahead.take(Message("m2", "body 2"))
        # nothing follows the last message, or one from outside the batch
        assert ahead.following(Message("m2", "body 2")) is None
        assert ahead.following(Message("x", "body")) is None
        assert calls == ["m0", "m1", "m2"]
    finally:
        ahead.close()


def test_a_message_outside_the_batch_is_prepared_on_the_spot(thread: ThreadPoolExecutor) -> None:
    threads: list[str] = []

    def prepare(message: Message) -> Prepared:
        threads.append(threading.current_thread().name)
        return Prepared(message, "s")

    ahead = LookAhead(prepare, [], thread)
    try:
        assert ahead.take(Message("x", "body")).message.message_id == "x"
        assert threads == [threading.current_thread().name]
    finally:
        ahead.close()


@pytest.mark.parametrize("fails", [False, True])
def test_a_batch_hands_the_gil_over_faster_while_it_runs_and_restores_the_interval(fails: bool) -> None:
    # GIVEN a worker (no database is touched: the batch only prepares ahead) and the interpreter's interval
    worker = Worker(Connections(lambda: None), {})  # type: ignore[arg-type, return-value]
    before = sys.getswitchinterval()
    seen: list[float] = []
    # WHEN a batch runs (and ends normally, or with an error)
    with contextlib.suppress(RuntimeError), worker.batch(batch(2)):
        seen.append(sys.getswitchinterval())
        if fails:
            raise RuntimeError("a message failed")
    # THEN the look-ahead thread held the GIL for at most the batch's interval, and the interval is as it was
    assert seen == [min(before, BATCH_SWITCH_INTERVAL_SECONDS)] and seen[0] < 0.005
    assert sys.getswitchinterval() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are set on Linux only")
def test_the_look_ahead_thread_runs_at_a_lower_priority_than_the_writing_thread(thread: ThreadPoolExecutor) -> None:
    priorities: dict[str, int] = {}

    def prepare(message: Message) -> Prepared:
        priorities[message.message_id] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return Prepared(message, "s")

    writing = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    ahead = LookAhead(prepare, batch(2), thread)
    try:
        ahead.take(Message("m0", "body 0"))
        ahead.take(Message("m1", "body 1"))
    finally:
        ahead.close()
    # THEN both were prepared on the thread, nicer than this one (capped at 19), which kept its own priority
    assert priorities == {f"m{n}": min(19, writing + LOOKAHEAD_NICENESS) for n in range(2)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == writing


def test_a_worker_prepares_all_its_batches_on_one_thread_and_stops_it_when_closed() -> None:
    # GIVEN a worker (no database is touched: only the look-ahead runs) whose preparations note their thread
    worker = Worker(Connections(lambda: None), {})  # type: ignore[arg-type, return-value]
    threads: set[int] = set()

    def prepare(message: Message) -> Prepared:
        threads.add(threading.get_ident())
        return Prepared(message, "s")

    worker.prepare = prepare  # type: ignore[method-assign]
    # WHEN three batches (three invocations of a warm container) run
    for _ in range(3):
        with worker.batch(batch(2)):
            assert worker._ahead is not None
            worker._ahead.take(Message("m0", "body 0"))
            worker._ahead.take(Message("m1", "body 1"))
    # THEN one thread, not this one, prepared every message, and closing the worker ends it
    assert len(threads) == 1 and threading.get_ident() not in threads
    prepare_thread = next(thread for thread in threading.enumerate() if thread.ident in threads)
    worker.close()
    prepare_thread.join(5)
    assert not prepare_thread.is_alive()
