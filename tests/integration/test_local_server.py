"""The local PostgreSQL of the demo and the tests: reuse, and a stale postmaster.pid handled safely."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.store import local_server
from ingest.store.connection import connect_url


def bin_dir() -> Path | None:
    return Path(os.environ["TEST_PG_BIN"]) if os.environ.get("TEST_PG_BIN") else None


def test_a_running_server_is_reused_and_a_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    first = local_server.start(data, bin_dir(), fsync=False)
    try:
        # GIVEN a server already running on the directory THEN starting again reuses it
        again = local_server.start(data, bin_dir(), fsync=False)
        assert (again.started_here, again.port) == (False, first.port)
    finally:
        first.stop()
    # GIVEN a postmaster.pid left behind whose PID now belongs to another process (this test's own)
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n1700000000\n{first.port}\n\n127.0.0.1\n")
    # WHEN the server is started THEN the stale file is ignored, a new server starts, and that process lives on
    restarted = local_server.start(data, bin_dir(), fsync=False)
    try:
        assert restarted.started_here
        db = connect_url(restarted.url)
        assert db.run("SELECT 1", "ping") == [[1]]
        db.close()
        os.kill(os.getpid(), 0)  # still alive: nothing signalled the PID in the stale file
    finally:
        restarted.stop(delete=True)
    assert not data.exists()
