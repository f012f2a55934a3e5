"""``ocds-ingest load``'s work: every document of the inputs into the database, one transaction per batch, with
a progress bar over the bytes read from disk.

A batch is committed as soon as it is written; Ctrl-C stops once the batch being written is committed, so
``Loaded`` holds exactly what was committed (a second Ctrl-C stops at once: that batch may or may not be).
Reading the same files again skips what is stored (the conflict rule), so a rerun finishes the job.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import documents, inputs
from ingest.documents import Unreadable
from ingest.errors import ConfigurationError
from ingest.pages import PageResult, load_stream, save_items
from ingest.store.connection import Database

_RAW_TEXT_CAP = 1024 * 1024  # what is kept of a file that is not JSON at all


@dataclass
class Loaded:
    """What was committed so far."""

    result: PageResult = field(default_factory=PageResult)
    documents: int = 0
    empty: int = 0
    not_json: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def nothing(self) -> bool:
        result = self.result
        return not (result.releases_read or result.rejected_total or result.empty_packages
                    or result.compiled_releases or result.linked_releases)


class Progress:
    """A byte-based bar (rate, ETA) on a terminal, from tqdm when it is installed; nothing otherwise."""

    def __init__(self, total_bytes: int | None, enabled: bool | None = None) -> None:
        self.bar: Any = None
        try:
            from tqdm import tqdm
        except ImportError:  # the Lambda package and a bare install have no tqdm: load without a bar
            return
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                        disable=None if enabled is None else not enabled, dynamic_ncols=True, leave=False,
                        desc="loading", mininterval=0.2)

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def show(self, loaded: Loaded, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{loaded.result.releases_read:,} releases, {Path(name).name}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _StopAfterBatch:
    """Ctrl-C while a batch is being written must not leave its fate unknown (PostgreSQL may commit it just as
    Python is interrupted): the first Ctrl-C is noted and honoured once the batch is written; a second one
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def __enter__(self) -> _StopAfterBatch:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def load(db: Database, files: Sequence[Path], source: str, batch_size: int, strategy: str, loaded: Loaded,
         progress: Progress, compile_releases: bool | str = True) -> None:
    """Load every document of ``files``; ``loaded`` is updated after each committed batch. Ctrl-C stops after
    the batch being written (KeyboardInterrupt), so ``loaded`` is exactly what was committed."""
    with _StopAfterBatch() as stop:
        _load(db, files, source, batch_size, strategy, loaded, progress, stop, compile_releases)


def _load(db: Database, files: Sequence[Path], source: str, batch_size: int, strategy: str, loaded: Loaded,
          progress: Progress, stop: _StopAfterBatch, compile_releases: bool | str) -> None:
    for path in files:
        for member in inputs.members(path, progress.advance):
            try:
                _load_member(db, member, source, batch_size, strategy, loaded, progress, stop, compile_releases)
            except inputs.ARCHIVE_ERRORS as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise ConfigurationError(f"cannot read {member.name}: {exc.strerror}") from None
                raise ConfigurationError(f"{member.name} is not a readable compressed file ({exc}); what was "
                                         "read before it is committed") from None


def _load_member(db: Database, member: inputs.Member, source: str, batch_size: int, strategy: str,
                 loaded: Loaded, progress: Progress, stop: _StopAfterBatch, compile_releases: bool | str) -> None:
    loaded.documents += 1
    progress.show(loaded, member.name)
    if member.size is not None:  # a plain file: its size decides between reading it whole and streaming it
        stream: Any = member.stream
        size = member.size
        head = stream.peek(4096)[:4096]
    else:  # decompressed: read up to the threshold to learn which
        head = member.stream.read(documents.STREAM_THRESHOLD_BYTES + 1)
        if len(head) <= documents.STREAM_THRESHOLD_BYTES:
            stream, size = io.BytesIO(head), len(head)
        else:  # above the threshold: streamed, the head first
            stream, size = io.BufferedReader(_Chained(head, member.stream)), len(head)
    kind = inputs.sniff(head)
    if kind == "empty" and (size == 0 or len(head) == size):
        loaded.empty += 1
        return
    if kind == "text":
        # One rejection for the whole file: a text file is not a sequence of broken JSON values.
        raw = stream.read(_RAW_TEXT_CAP + 1)
        text, _ = documents.decode(raw[:_RAW_TEXT_CAP])
        cut = " (the first 1 MiB is kept)" if len(raw) > _RAW_TEXT_CAP else ""
        detail = f"not JSON: {member.name} starts with {text.lstrip()[:40]!r}{cut}"
        loaded.result += save_items(db, [Unreadable("invalid_json", detail, text, "/")], source, member.name,
                                    strategy)
        loaded.not_json.append(member.name)
        stop.check()
        return
    for result in load_stream(db, stream, size, source, member.name, batch_size, strategy,
                              compile_releases):
        loaded.result += result
        progress.show(loaded, member.name)
        stop.check()


class _Chained(io.RawIOBase):
    """``head`` then the rest of ``stream``: a stream whose first bytes were read to look at them."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head = memoryview(head)
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count] = self.head[:count]
            self.head = self.head[count:]
            return count
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def summary(loaded: Loaded) -> str:
    result, seconds = loaded.result, loaded.seconds
    rate = result.releases_read / seconds if seconds > 0 else 0.0
    lines = [
        f"files            {loaded.documents}" + (f"  ({loaded.empty} empty)" if loaded.empty else ""),
        f"releases read    {result.releases_read}",
        f"  inserted       {result.inserted}",
        f"  updated        {result.updated}",
        f"  unchanged      {result.unchanged}  (already stored, older, or repeated in the same page)",
        f"  rejected       {result.rejected_total}",
    ]
    lines += [f"    {reason:<22} {count}" for reason, count in sorted(result.rejected.items())]
    lines += [
        f"compiled releases {result.compiled_releases}",
        f"linked releases  {result.linked_releases}  (references only: url/date/tag)",
        f"empty packages   {result.empty_packages}",
        f"elapsed          {seconds:.2f} s ({rate:,.0f} releases/s, {result.round_trips} database round trips)",
    ]
    return "\n".join(lines)
