"""The local PostgreSQL of the demo and the tests: reuse, and a stale postmaster.pid handled safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    placed = first.data_dir  # as root, under /var/tmp/ocds-ingest rather than in the requested directory
    (placed / "postmaster.pid").write_text(f"{os.getpid()}\n{placed}\n1700000000\n{first.port}\n\n127.0.0.1\n")
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
    assert not placed.exists()


def test_as_root_a_checkout_in_a_private_directory_works_and_no_permission_changes(tmp_path: Path) -> None:
    import shutil
    import stat
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("as another user the server runs as that user and reaches what it can")
    wheel = local_server.wheel_bin_dir()
    # GIVEN a checkout under a 0700 directory of root's (mktemp -d), its virtualenv holding the wheel
    private = Path(tempfile.mkdtemp(prefix="ocds-ingest-private-"))
    try:
        site = private / "checkout" / ".venv" / "site-packages"
        shutil.copytree(wheel.parents[1], site / wheel.parents[1].name, symlinks=True)
        libs = wheel.parents[2] / f"{wheel.parents[1].name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True)
        modes = {path: path.stat().st_mode for path in (private, private.parent, private / "checkout")}
        bin_dir = site / wheel.parents[1].name / "pginstall" / "bin"
        # WHEN the server starts for a data directory inside the checkout
        server = local_server.start(private / "checkout" / ".local" / "pgdata", bin_dir, fsync=False)
        try:
            db = connect_url(server.url)
            assert db.run("SELECT 1", "ping") == [[1]]
            db.close()
            # THEN it runs from copies the server user owns or can reach, outside the checkout
            assert server.data_dir.parent == local_server.RUNTIME_ROOT
            assert server.bin_dir.is_relative_to(local_server.RUNTIME_ROOT)
            assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
        finally:
            server.stop(delete=True)
        # AND no permission was changed on the way
        assert {path: path.stat().st_mode for path in modes} == modes
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        copy = server.bin_dir.parents[2]
    finally:
        shutil.rmtree(private)
    # AND once the checkout is gone, the copy of its binaries goes at the next start
    local_server._remove_orphans()
    assert not copy.exists()
